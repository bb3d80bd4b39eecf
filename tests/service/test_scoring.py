"""The service's scorer against the offline pipeline and the raw booster (no server needed)."""

import io
import itertools
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import model.attributions
import service.scoring
from data.contract import TransactionIn
from features.definitions import FeatureSpec, compute_features, to_epoch_us
from features.stores import open_store
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA
from features.stores.memory import MemoryFeatureStore
from features.stores.sqlite import SQLiteFeatureStore
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import TrainingResult, train_model
from service.schemas import BatchResponse, describe_validation_error
from service.scoring import PARQUET_ERRORS_KEY, RESULT_SCHEMA, Scorer, TransactionConflict
from service.uploads import read_upload

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


def test_single_rows_score_the_same_bits_with_or_without_xgboost(trained: Trained) -> None:
    """/score's rows take PathAttributions (no DMatrix); the answers are XGBoost's, float for float."""
    fast, plain = Scorer(trained.bundle), Scorer(trained.bundle)
    assert fast.attributions is not None  # the trained model is covered: the fast path is what serves
    plain.attributions = None  # XGBoost's own call
    records = trained.held_out.select(COLUMNS).to_dicts()[:200]
    got = [fast.score_one(TransactionIn.model_construct(**r)) for r in records]
    want = [plain.score_one(TransactionIn.model_construct(**r)) for r in records]
    assert got == want  # probabilities, contributions and reason values compare with == on floats
    rows = trained.held_out.select(trained.spec.feature_names).to_numpy()[:4]
    rows[0, 0] = 1e39  # finite in float64, infinite in float32: XGBoost refuses it, and so does the fast path
    with pytest.raises(xgb.core.XGBoostError, match="inf"):
        fast.contributions(rows)
    assert fast.summary()["single_row_reasons"] == "PathAttributions"


def test_a_model_path_attributions_refuses_scores_through_xgboost(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fast = Scorer(trained.bundle)
    monkeypatch.setattr(model.attributions, "MAX_TABLE_VALUES", 0)  # "too big": refused
    refused = Scorer(trained.bundle)
    assert refused.attributions is None and "does not cover this model" in caplog.text
    assert refused.summary()["single_row_reasons"] == "XGBoost"
    records = trained.held_out.select(COLUMNS).to_dicts()[:20]
    assert [refused.score_one(TransactionIn.model_construct(**r)) for r in records] == [
        fast.score_one(TransactionIn.model_construct(**r)) for r in records
    ]


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
    # The batch reached the shared file: a new worker knows every scored transaction (it forgets, at its load,
    # the snapshot's events older than the horizon before the batch's newest).
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        (rows,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert rows == trained.bundle.state.height + 497
    fresh = SQLiteFeatureStore(tmp_path / "state.sqlite", trained.spec)
    assert all(fresh.knows(r["transaction_id"]) for r in batch.results)


# --- the vectorised batch path against one-at-a-time scoring ---------------------------------------------

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
INSTANTS = [T0 + timedelta(days=d, minutes=m) for d in (30, 36, 37, 38, 45) for m in (0, 30, 90)]


def _minutes_after_t0(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


AMOUNTS = st.one_of(st.floats(0, 2_000, allow_nan=False), st.sampled_from([0.0, -0.0, 1e-7, 0.1, 12.34, 999_999.99]))
store_events = st.lists(
    st.tuples(
        st.integers(0, 45 * 24),  # hour offset from T0
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["t1", "t2", "t3"]),
        AMOUNTS,
        st.sampled_from([0, 1, None]),
    ),
    max_size=40,
)
#: (kind, time, customer, terminal, amount, which earlier row or store event): kinds are a new transaction,
#: a repeat of an earlier batch row or of a store event (same values), a conflicting repeat, an invalid row.
batch_rows = st.lists(
    st.tuples(
        st.sampled_from(["new"] * 6 + ["again", "again_store", "conflict", "conflict_store", "invalid"]),
        st.one_of(
            st.sampled_from(INSTANTS), st.integers(30 * 24 * 60, 46 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m))
        ),
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["t1", "t2", "t3", "t4"]),
        AMOUNTS,
        st.integers(0, 1_000),
    ),
    min_size=1,
    max_size=40,
)


def _state_frame(events: list[tuple[int, str, str, float, int | None]]) -> pl.DataFrame:
    rows = [
        (f"s{i}", c, k, to_epoch_us(T0 + timedelta(hours=h)), a, y, None) for i, (h, c, k, a, y) in enumerate(events)
    ]
    return pl.DataFrame(rows, schema=list(SNAPSHOT_COLUMNS), orient="row").cast(STATE_SCHEMA)  # type: ignore[arg-type]


def _records(rows: list[tuple], state: pl.DataFrame) -> list[dict]:
    out: list[dict] = []
    stored = state.to_dicts()
    for i, (kind, when, customer, terminal, amount, pick) in enumerate(rows):
        record = {
            "transaction_id": f"b{i}",
            "tx_datetime": when.isoformat(),
            "customer_id": customer,
            "terminal_id": terminal,
            "amount": amount,
        }
        earlier = [r for r in out if isinstance(r.get("amount"), float) and r["amount"] >= 0]
        if kind in ("again", "conflict") and earlier:
            record = dict(earlier[pick % len(earlier)])
        elif kind in ("again_store", "conflict_store") and stored:
            event = stored[pick % len(stored)]
            when_store = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=event["t_us"])
            record = {
                "transaction_id": event["transaction_id"],
                "tx_datetime": when_store.isoformat(),
                "customer_id": event["customer_id"],
                "terminal_id": event["terminal_id"],
                "amount": event["amount"],
            }
        if kind.startswith("conflict"):
            record["amount"] = record["amount"] + 1.0
        if kind == "invalid":
            record["amount"] = -1.0
        out.append(record)
    return out


_STORE_NUMBERS = itertools.count()


def _valid(record: dict) -> bool:
    try:
        TransactionIn.model_validate(record)
    except ValidationError:
        return False
    return True


def _one_at_a_time(scorer: Scorer, records: list[dict]) -> tuple[list[dict], list[dict], np.ndarray]:
    """The reference: each record validated and scored alone, in order (features computed on a twin store)."""
    results, errors, rows = [], [], []
    for index, record in enumerate(records):
        try:
            tx = TransactionIn.model_validate(record)
        except ValidationError as exc:
            errors.append(
                {"index": index, "transaction_id": record["transaction_id"], "reason": describe_validation_error(exc)}
            )
            continue
        try:
            results.append(scorer.score_one(tx))
        except TransactionConflict as exc:
            errors.append({"index": index, "transaction_id": tx.transaction_id, "reason": str(exc)})
    return results, errors, np.array(rows)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(events=store_events, rows=batch_rows, chunk=st.sampled_from([5, 500]))
def test_a_batch_is_bit_identical_to_one_at_a_time(
    trained: Trained,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    events: list,
    rows: list,
    chunk: int,
) -> None:
    """Same-customer, same-instant, out-of-order rows, repeated ids (same and other values), rows in the store.

    The one-pass path (``features.stores.batch``) takes batches of 2 rows or more here, in chunks of ``chunk``
    rows; a single /score (the reference) goes row by row.
    """
    monkeypatch.setattr(service.scoring, "STATE_CHUNK_ROWS", chunk)
    monkeypatch.setattr(service.scoring, "BATCH_CHUNK_ROWS", chunk)
    monkeypatch.setattr(service.scoring, "ONE_PASS_MIN_ROWS", 2)
    state = _state_frame(events)
    bundle = Bundle(trained.bundle.booster, trained.bundle.card, state)
    records = _records(rows, state)
    tmp = tmp_path_factory.mktemp("stores")  # numbered: no random names inside hypothesis

    def store() -> Any:
        if kind == "memory":
            return open_store("memory", trained.spec, state)
        return open_store("sqlite", trained.spec, state, tmp / f"{next(_STORE_NUMBERS)}.sqlite")

    batch = Scorer(bundle, store=store()).score_batch(records)
    results, errors, _ = _one_at_a_time(Scorer(bundle, store=store()), records)
    # Features, bit for bit (all of them, not only the reasons'): the batch path against row by row.
    txs = [TransactionIn.model_validate(r) for r in records if _valid(r)]
    got, got_conflicts = Scorer(bundle, store=store()).features_many(txs)
    reference = Scorer(bundle, store=store())
    for i, tx in enumerate(txs):
        try:
            want = reference.features(tx)
        except TransactionConflict as exc:
            assert got_conflicts.pop(i) == str(exc)
            continue
        assert got[i].tobytes() == want.tobytes(), (i, got[i], want)
    assert not got_conflicts
    assert batch.errors == errors
    assert batch.results == results  # probabilities and reason values compare exactly (== on floats)
    for mine, theirs in zip(batch.results, results, strict=True):
        assert np.array([mine["fraud_probability"]]).tobytes() == np.array([theirs["fraud_probability"]]).tobytes()
    decoded = json.loads(batch.to_json())
    assert decoded == {
        "received": len(records),
        "scored": len(results),
        "rejected": len(errors),
        "results": results,
        "errors": errors,
    }
    BatchResponse.model_validate(decoded)


def test_parquet_answer_decodes_to_the_json_answer(trained: Trained) -> None:
    records = [
        {**row, "tx_datetime": row["tx_datetime"].isoformat()} for row in trained.held_out.select(COLUMNS).to_dicts()
    ][:200]
    records[5] = {**records[5], "amount": -3}
    batch = Scorer(trained.bundle).score_batch(records)
    decoded = json.loads(batch.to_json())
    body = batch.to_parquet()
    frame = pl.read_parquet(io.BytesIO(body))
    assert frame.schema == pl.Schema(RESULT_SCHEMA)
    assert frame.to_dicts() == decoded["results"]
    metadata = pl.read_parquet_metadata(io.BytesIO(body))
    assert json.loads(metadata[PARQUET_ERRORS_KEY]) == decoded["errors"]
    assert (metadata["fraudops.received"], metadata["fraudops.rejected"]) == ("200", "1")


def test_an_upload_frame_scores_as_its_records(trained: Trained, tmp_path: Path) -> None:
    """Parquet columns (the fast validation) and the same rows as dicts give the same answer and errors."""
    frame = trained.held_out.select(COLUMNS).head(300)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("amount")).alias("amount"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(pl.lit(" padded "))
        .otherwise(pl.col("customer_id"))
        .alias("customer_id"),
    )
    path = tmp_path / "upload.parquet"
    frame.write_parquet(path)
    upload = read_upload(path, 1_000)
    by_columns = Scorer(trained.bundle).score_frame(upload.frame, upload.unreadable)
    by_records = Scorer(trained.bundle).score_batch(upload.records, upload.unreadable)
    assert by_columns.to_json() == by_records.to_json()
    assert [e["index"] for e in by_columns.errors] == [3]
    assert by_columns.results[9 - 1]["transaction_id"] == frame["transaction_id"][9]
