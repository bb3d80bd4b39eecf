"""The on-disk bundle a BentoML model carries: booster, model card and online feature state.

Written by the package flow, read by the service; neither imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import xgboost as xgb

from features.definitions import FeatureSpec
from model.card import CARD_FILE, ModelCard

BOOSTER_FILE = "booster.ubj"
STATE_FILE = "online_state.parquet"
#: Example requests from the served data (optional; ``flows.packaging.request_examples``).
EXAMPLES_FILE = "examples.json"


@dataclass
class Bundle:
    """A loaded bundle."""

    booster: xgb.Booster
    card: ModelCard
    state: pl.DataFrame

    @property
    def spec(self) -> FeatureSpec:
        """Feature spec recorded in the model card."""
        return self.card.spec

    @property
    def threshold(self) -> float:
        """Alert threshold on the fraud probability."""
        return self.card.threshold

    @property
    def version(self) -> str:
        """Model version from the card, or ``unknown``."""
        return self.card.version


def write_bundle(
    directory: Path,
    booster: xgb.Booster,
    card: ModelCard,
    state: pl.DataFrame,
    examples: dict[str, dict[str, object]] | None = None,
) -> None:
    """Write the files into ``directory`` (a fresh BentoML model directory).

    ``examples``: scoring requests made from the served data (the UI's prefill); they hold customer
    keys, as the state does, so they live in the model, never in an MLflow artifact or a log.
    """
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(directory / BOOSTER_FILE)
    (directory / CARD_FILE).write_text(card.to_json())
    state.write_parquet(directory / STATE_FILE)
    if examples:
        (directory / EXAMPLES_FILE).write_text(json.dumps(examples, indent=1, default=str))


def read_examples(directory: Path) -> dict[str, dict[str, object]]:
    """The bundle's example requests (empty for bundles packaged before they existed)."""
    path = directory / EXAMPLES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_bundle(directory: Path) -> Bundle:
    """Load a bundle; raises FileNotFoundError naming the missing file."""
    for name in (BOOSTER_FILE, CARD_FILE, STATE_FILE):
        if not (directory / name).exists():
            raise FileNotFoundError(f"model bundle {directory} lacks {name}")
    booster = xgb.Booster()
    booster.load_model(directory / BOOSTER_FILE)
    card = ModelCard.from_json((directory / CARD_FILE).read_text())
    # Restore the early-stopping point: saved boosters keep all trees.
    booster.set_attr(best_iteration=str(card.best_iteration))
    return Bundle(booster, card, pl.read_parquet(directory / STATE_FILE))
