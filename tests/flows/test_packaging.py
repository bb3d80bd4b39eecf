"""Packaging always ships a fresh state snapshot (a rebuild or rollback must not revive an old one)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from flows.packaging import save_bento_model
from model.bundle import read_bundle
from model.splits import TimeSplit
from model.training import TrainingConfig, train_model


def test_packaging_a_version_again_replaces_its_state_snapshot(small_transactions: pl.DataFrame) -> None:
    import bentoml

    spec = FeatureSpec()
    features = compute_features(small_transactions, spec)
    days = features["tx_datetime"].dt.date()
    split = TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days)  # type: ignore[arg-type]
    result = train_model(features, spec, split, TrainingConfig(n_estimators=20))
    card = result.model_card().registered_as("41", "run-41")
    ordered = small_transactions.sort("tx_datetime")
    early = MemoryFeatureStore.from_transactions(ordered.head(5_000), spec).to_frame()
    late = MemoryFeatureStore.from_transactions(ordered, spec).to_frame()
    tag = save_bento_model("packaging_test", "41", result.booster, card, early, labels={})
    assert read_bundle(Path(bentoml.models.get(tag).path)).state.height == early.height
    again = save_bento_model("packaging_test", "41", result.booster, card, late, labels={})
    assert again == tag
    assert read_bundle(Path(bentoml.models.get(tag).path)).state.height == late.height != early.height
