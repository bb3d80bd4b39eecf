"""The service's scorer against the offline pipeline and the raw booster (no server needed)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import service.scoring
from data.contract import TransactionIn
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from features.stores.sqlite import SQLiteFeatureStore
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import TrainingResult, train_model
from service.scoring import Scorer

COLUMNS = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"]


@dataclass
class Trained:
    spec: FeatureSpec
    result: TrainingResult
    held_out: pl.DataFrame  # offline features of the last 500 transactions
    bundle: Bundle  # its state: every transaction before them


@pytest.fixture(scope="module")
def trained(small_transactions: pl.DataFrame) -> Trained:
    spec = FeatureSpec()
    features = compute_features(small_transactions, spec)
    days = features["tx_datetime"].dt.date()
    result = train_model(features, spec, TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days))
    held_out = features.tail(500)
    history = small_transactions.filter(~pl.col("transaction_id").is_in(held_out["transaction_id"].implode()))
    state = MemoryFeatureStore.from_transactions(history, spec).to_frame()
    return Trained(
        spec, result, held_out, Bundle(result.booster, result.model_card().registered_as("t", "run-t"), state)
    )


def test_scorer_probabilities_equal_the_booster_on_offline_features(trained: Trained) -> None:
    scorer = Scorer(trained.bundle)
    scored = [scorer.score(TransactionIn.model_construct(**row)) for row in trained.held_out.select(COLUMNS).to_dicts()]
    expected = trained.result.booster.inplace_predict(
        trained.held_out.select(trained.spec.feature_names).to_numpy(),
        iteration_range=(0, trained.result.best_iteration + 1),
    )
    got = np.array([s.fraud_probability for s in scored])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(s.decision == ("alert" if s.fraud_probability >= s.threshold else "approve") for s in scored)
    assert all(len(s.reasons) == 3 for s in scored)


def test_a_batch_scores_exactly_as_the_same_transactions_one_at_a_time(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch path (shared SQLite store, chunked, one write per chunk) against single requests in memory."""
    monkeypatch.setattr(service.scoring, "STATE_CHUNK_ROWS", 64)  # several chunks in 500 rows
    records = [
        {**row, "tx_datetime": row["tx_datetime"].isoformat()} for row in trained.held_out.select(COLUMNS).to_dicts()
    ]
    bad = {7: {**records[7], "amount": -1.0}, 130: {**records[130], "customer_id": ""}, 499: {"amount": 1}}
    batch_input = [bad.get(i, record) for i, record in enumerate(records)]

    store = SQLiteFeatureStore(tmp_path / "state.sqlite", trained.spec)
    store.load_snapshot(trained.bundle.state)
    batch = Scorer(trained.bundle, store=store).score_batch(batch_input)
    one_at_a_time = Scorer(trained.bundle)
    expected = [
        one_at_a_time.score_one(TransactionIn.model_validate(record))
        for i, record in enumerate(records)
        if i not in bad
    ]

    model = batch.to_model()  # the plain answers have the documented shape
    assert (model.received, model.scored, model.rejected) == (500, 497, 3)
    assert [e.index for e in model.errors] == [7, 130, 499]
    assert "amount" in model.errors[0].reason and "customer_id" in model.errors[1].reason
    assert [r["transaction_id"] for r in batch.results] == [r["transaction_id"] for r in expected]
    np.testing.assert_allclose(
        [r["fraud_probability"] for r in batch.results], [r["fraud_probability"] for r in expected], atol=1e-12
    )

    def reasons(results: list[dict]) -> tuple[list[str], np.ndarray]:
        flat = [reason for r in results for reason in r["reasons"]]
        return [x["feature"] for x in flat], np.array([(x["value"], x["contribution"]) for x in flat])

    (got_names, got_values), (want_names, want_values) = reasons(batch.results), reasons(expected)
    assert got_names == want_names
    np.testing.assert_allclose(got_values, want_values, atol=1e-9)
    # The batch reached the shared file: a new worker knows every scored transaction.
    assert len(SQLiteFeatureStore(tmp_path / "state.sqlite", trained.spec)) == trained.bundle.state.height + 497
