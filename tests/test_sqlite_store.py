"""The multi-worker online store: same features as offline, shared by separate processes."""

import multiprocessing
from pathlib import Path

import numpy as np
import polars as pl

from features.engineering import FeatureSpec, compute_features
from features.online import OnlineFeatureState, to_epoch_us
from features.sqlite_store import SQLiteFeatureStore

COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")


def test_sqlite_store_reproduces_offline_features(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    history, held_out = ordered.head(-2_000), ordered.tail(2_000)
    expected = compute_features(ordered, spec).tail(2_000).select(spec.feature_names).to_numpy()
    store = SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    assert store.load_snapshot(OnlineFeatureState.from_transactions(history, spec).to_frame())
    worst = 0.0
    for i, (tid, when, cust, term, amount, label) in enumerate(held_out.select(COLUMNS).iter_rows()):
        t_us = to_epoch_us(when)
        worst = max(worst, float(np.abs(store.features(tid, cust, term, t_us, amount, when) - expected[i]).max()))
        assert store.observe(tid, cust, term, t_us, amount)
        store.add_label(tid, label)
    assert worst <= 1e-6


def test_loading_the_same_snapshot_twice_loads_it_once(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    snapshot = OnlineFeatureState.from_transactions(small_transactions, spec).to_frame()
    first, second = (SQLiteFeatureStore(tmp_path / "s.sqlite", spec) for _ in range(2))
    assert first.load_snapshot(snapshot) and not second.load_snapshot(snapshot)
    assert len(first) == len(second) == snapshot.height


def _worker_observes(path: str, rows: list[tuple[str, str, str, int, float]]) -> None:
    store = SQLiteFeatureStore(Path(path), FeatureSpec())
    for tid, cust, term, t_us, amount in rows:
        store.observe(tid, cust, term, t_us, amount)
    store.close()


def test_a_second_worker_process_sees_what_the_first_observed(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    """Two processes write at the same time; each transaction lands once and counts for both."""
    spec = FeatureSpec()
    path = tmp_path / "shared.sqlite"
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    rows = [
        (tid, cust, term, to_epoch_us(when), amount)
        for tid, when, cust, term, amount, _ in ordered.head(4_000).select(COLUMNS).iter_rows()
    ]
    ctx = multiprocessing.get_context("spawn")
    # Each worker observes half, plus the same first 50 (the duplicates must not double count).
    workers = [ctx.Process(target=_worker_observes, args=(str(path), rows[k::2] + rows[:50])) for k in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    store = SQLiteFeatureStore(path, spec)
    assert len(store) == 4_000
    reference = OnlineFeatureState(spec)
    reference.observe_many((*r, None) for r in rows)
    tid, when, cust, term, amount, _ = ordered.select(COLUMNS).row(4_000)
    t_us = to_epoch_us(when)
    np.testing.assert_allclose(
        store.features(tid, cust, term, t_us, amount, when),
        reference.features(tid, cust, term, t_us, amount, when),
        atol=1e-9,
    )
