"""The multi-worker online store: same features as offline, shared by separate processes."""

import multiprocessing
from pathlib import Path

import numpy as np
import polars as pl

from features.definitions import FeatureSpec, compute_features, to_epoch_us
from features.stores.memory import MemoryFeatureStore
from features.stores.sqlite import SQLiteFeatureStore

COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")


def test_sqlite_store_reproduces_offline_features(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    history, held_out = ordered.head(-2_000), ordered.tail(2_000)
    expected = compute_features(ordered, spec).tail(2_000).select(spec.feature_names).to_numpy()
    store = SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    assert store.load_snapshot(MemoryFeatureStore.from_transactions(history, spec).to_frame())
    worst = 0.0
    for i, (tid, when, cust, term, amount, label) in enumerate(held_out.select(COLUMNS).iter_rows()):
        t_us = to_epoch_us(when)
        worst = max(worst, float(np.abs(store.features(tid, cust, term, t_us, amount, when) - expected[i]).max()))
        assert store.observe(tid, cust, term, t_us, amount)
        store.add_label(tid, label)
    assert worst <= 1e-6


def test_loading_the_same_snapshot_twice_loads_it_once(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    snapshot = MemoryFeatureStore.from_transactions(small_transactions, spec).to_frame()
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
    reference = MemoryFeatureStore(spec)
    reference.observe_many((*r, None) for r in rows)
    tid, when, cust, term, amount, _ = ordered.select(COLUMNS).row(4_000)
    t_us = to_epoch_us(when)
    np.testing.assert_allclose(
        store.features(tid, cust, term, t_us, amount, when),
        reference.features(tid, cust, term, t_us, amount, when),
        atol=1e-9,
    )


def test_batches_land_whole_and_labels_reach_every_worker(tmp_path: Path) -> None:
    """A batch is invisible to the other worker until it commits; a label from either worker counts in both."""
    spec = FeatureSpec()
    a, b = (SQLiteFeatureStore(tmp_path / "shared.sqlite", spec) for _ in range(2))
    day = 86_400 * 1_000_000
    t0 = 1_600_000_000 * 1_000_000
    with a.batch():
        for k in range(3):
            assert a.observe(f"tx{k}", "c1", "t1", t0 + k, 10.0)
        b.refresh()
        assert len(b) == 0 and not b.knows("tx0")  # nothing written before the batch ends
    b.refresh()
    assert len(b) == 3 and b.customer_window("c1", t0 - day, t0 + day) == (3, 30.0)
    assert not b.observe("tx0", "c1", "t1", t0, 10.0)  # already known: not counted twice

    assert a.add_label("tx1", 1)
    b.refresh()
    assert b.terminal_window("t1", t0 - day, t0 + day) == (3, 1.0)
    # b labels a transaction a wrote after b's last refresh: b catches up first.
    assert a.observe("tx9", "c2", "t1", t0 + 9, 5.0)
    assert b.add_label("tx9", 1) and not b.add_label("unknown", 1)
    a.refresh()
    assert a.terminal_window("t1", t0 - day, t0 + day) == (4, 2.0)
    # A third worker starting now reads the labels with the events.
    c = SQLiteFeatureStore(tmp_path / "shared.sqlite", spec)
    assert c.terminal_window("t1", t0 - day, t0 + day) == (4, 2.0)
