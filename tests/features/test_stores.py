"""The multi-worker online store: same features as offline, shared by separate processes."""

import gc
import multiprocessing
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from features.definitions import FeatureSpec, compute_features, to_epoch_us
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA
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
        store.add_label(tid, label, t_us + spec.label_delay_days * 86_400_000_000, "dataset")
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
    reference.observe_many((*r, None, None) for r in rows)
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

    at = t0 + day  # when the labels are known
    assert a.add_label("tx1", 1, at)
    b.refresh()
    assert b.terminal_window("t1", t0 - day, t0 + day, at) == (3, 1.0)
    assert b.terminal_window("t1", t0 - day, t0 + day, at - 1) == (3, 0.0)  # not known yet just before
    # b labels a transaction a wrote after b's last refresh: b catches up first.
    assert a.observe("tx9", "c2", "t1", t0 + 9, 5.0)
    assert b.add_label("tx9", 1, at) and not b.add_label("unknown", 1, at)
    a.refresh()
    assert a.terminal_window("t1", t0 - day, t0 + day, at) == (4, 2.0)
    # An analyst clears tx1 later: both labels are kept, each applies from its own time.
    assert a.add_label("tx1", 0, at + day, "analyst")
    # A third worker starting now reads the labels with the events.
    c = SQLiteFeatureStore(tmp_path / "shared.sqlite", spec)
    for store in (a, b, c):
        store.refresh()
        assert store.terminal_window("t1", t0 - day, t0 + day, at) == (4, 2.0)
        assert store.terminal_window("t1", t0 - day, t0 + day, at + day) == (4, 1.0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_eviction_bounds_the_state_and_changes_no_feature(
    kind: str, tmp_path: Path, small_transactions: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 days through an empty store, evicting every 500 events: the state holds the horizon, features stay exact."""
    import features.stores.memory as memory
    import features.stores.sqlite as sqlite_store

    monkeypatch.setattr(memory, "EVICT_EVERY", 500)
    monkeypatch.setattr(sqlite_store, "EVICT_EVERY", 500)
    spec = FeatureSpec()
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    expected = compute_features(ordered, spec).select(spec.feature_names).to_numpy()
    store = MemoryFeatureStore(spec) if kind == "memory" else SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    worst, largest = 0.0, 0
    for i, (tid, when, cust, term, amount, label) in enumerate(ordered.select(COLUMNS).iter_rows()):
        t_us = to_epoch_us(when)
        worst = max(worst, float(np.abs(store.features(tid, cust, term, t_us, amount, when) - expected[i]).max()))
        store.observe(tid, cust, term, t_us, amount, label)
        largest = max(largest, len(store))
    assert worst <= 1e-6
    newest = to_epoch_us(ordered["tx_datetime"].max())
    horizon = (spec.history_days + 1) * 86_400 * 1_000_000
    kept = ordered.filter(pl.col("tx_datetime").dt.epoch("us") > newest - horizon).height
    assert ordered.height > 1.4 * kept  # 60 days of events, about 38 of them kept
    assert len(store) <= kept + 500 and largest <= kept + 1_000
    if kind == "sqlite":
        store.evict()
        with sqlite3.connect(tmp_path / "state.sqlite") as db:
            (rows,) = db.execute("SELECT count(*) FROM events").fetchone()
        assert rows <= kept + 1  # the newest row always stays, so rowids are never reused
        fresh = SQLiteFeatureStore(tmp_path / "state.sqlite", spec)  # a worker starting later reads only that
        assert len(fresh) == rows


def test_a_new_model_version_carries_what_the_previous_one_scored(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    """v2 starts from its lake snapshot plus what v1 scored after it; a rollback to v1 gets what v2 scored."""
    from features.stores import open_store

    spec = FeatureSpec()
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    lake, live = ordered.head(-300), ordered.tail(300)  # the service scored the last 300; the lake never saw them
    snapshot = MemoryFeatureStore.from_transactions(lake, spec).to_frame()
    rows = list(live.select(COLUMNS).iter_rows())
    v1_path, v2_path = tmp_path / "fraud_detector-v1.sqlite", tmp_path / "fraud_detector-v2.sqlite"
    v1 = open_store("sqlite", spec, snapshot, v1_path)
    for tid, when, cust, term, amount, _ in rows[:200]:
        v1.observe(tid, cust, term, to_epoch_us(when), amount)
    v1.add_label(rows[0][0], 1, to_epoch_us(rows[0][1]) + 3_600_000_000)
    v2 = open_store("sqlite", spec, snapshot, v2_path, carry_from=[v1_path])
    assert all(v2.knows(tid) for tid, *_ in rows[:200])
    assert v2.event(rows[0][0]) == v1.event(rows[0][0]) and len(v2) == len(v1)
    for tid, when, cust, term, amount, _ in rows[200:]:
        v2.observe(tid, cust, term, to_epoch_us(when), amount)
    # The next transaction's features are the same whichever version scores it.
    tid, when, cust, term, amount, _ = rows[-1]
    probe = (f"{tid}-probe", cust, term, to_epoch_us(when) + 1, amount, when)
    back = open_store("sqlite", spec, snapshot, v1_path, carry_from=[v2_path])  # a rollback to v1
    assert all(back.knows(t) for t, *_ in rows)
    assert np.array_equal(back.features(*probe), v2.features(*probe))
    again = open_store("sqlite", spec, snapshot, v2_path, carry_from=[v1_path])  # idempotent restart
    assert len(again) == len(v2)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_frozen_state_stays_out_of_later_collections(
    tmp_path: Path, small_transactions: pl.DataFrame, kind: str
) -> None:
    """After the service's ``gc.freeze()``, scoring puts no large container back in the collector's generations.

    An exact dict of tuples is untracked by a collection and tracked again, in generation 0, when a new entry
    arrives: the store's index of every transaction then cost 7-15 ms per collection, every 1-2 s under load.
    """
    spec = FeatureSpec()
    ordered = small_transactions.sort("tx_datetime", "transaction_id")
    snapshot = MemoryFeatureStore.from_transactions(ordered.head(-10), spec).to_frame()
    store = MemoryFeatureStore(spec) if kind == "memory" else SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    store.load_snapshot(snapshot)
    gc.collect()
    gc.freeze()
    try:
        for tid, when, cust, term, amount, _ in ordered.tail(10).select(COLUMNS).iter_rows():
            assert store.observe(tid, cust, term, to_epoch_us(when), amount)
        gc.collect(0)
        young = [o for g in range(3) for o in gc.get_objects(g)]
        largest = max(len(gc.get_referents(o)) for o in young)
    finally:
        gc.unfreeze()
    assert all(store.knows(tid) for tid in ordered.tail(10)["transaction_id"])
    assert len(store) > 10_000  # the snapshot's transactions (bounded by eviction) are there to pin
    assert largest < 1_000, f"a container of {largest} references is back in the collector's generations"


# 3,000 events of one afternoon, and a time 100 days later: from there all of them have expired at once.
_T0_US = 1_600_000_000 * 1_000_000
_EXPIRING = [(f"old{k}", f"c{k % 50}", f"t{k % 20}", _T0_US + k * 1_000_000, 1.0, None, None) for k in range(3_000)]
_LATE_US = _T0_US + 100 * 86_400 * 1_000_000


def test_the_maintenance_thread_goes_on_with_a_backlog_until_it_is_gone(tmp_path: Path) -> None:
    """A backlog bigger than one round is deleted over the next rounds, without the store asking again."""
    import features.stores.sqlite as sqlite_store

    path = tmp_path / "state.sqlite"
    store = SQLiteFeatureStore(path, FeatureSpec())
    store.observe_many(_EXPIRING)
    assert store.observe("new0", "c1", "t1", _LATE_US, 5.0)
    assert len(_EXPIRING) > sqlite_store.EVICT_ROUND_CHUNKS * sqlite_store.EVICT_CHUNK_ROWS  # more than one round
    store._maintenance.evict_before = store._mirror.cutoff_us  # what the store asks every EVICT_EVERY writes
    with sqlite3.connect(path) as db:
        for _ in range(600):  # rounds run every data.wal.EVERY_S: wait up to a minute for the backlog to go
            (rows,) = db.execute("SELECT count(*) FROM events").fetchone()
            if rows == 1:
                break
            time.sleep(0.1)
    store.close()
    assert rows == 1  # only the new event is left: the rounds after the first went on by themselves


def test_a_snapshot_that_expires_at_once_is_forgotten_a_little_per_request(tmp_path: Path) -> None:
    """A service started on an old snapshot: the first new event expires all of it; no request forgets it all.

    Another worker's events reach a mirror in the request path (refresh): up to EVICT_PER_RECORD expired events
    go per new one. The file's eviction deletes at most EVICT_ROUND_CHUNKS chunks per maintenance round.
    """
    import features.stores.memory as memory
    import features.stores.sqlite as sqlite_store

    spec = FeatureSpec()
    day = 86_400 * 1_000_000
    old, late = _EXPIRING, _LATE_US

    memory_store = MemoryFeatureStore(spec)
    memory_store.observe_many(old)
    memory_store.observe_many([("new0", "c1", "t1", late, 5.0, None, None)], gradual=True)
    assert len(memory_store) == 3_000 + 1 - memory.EVICT_PER_RECORD
    assert memory_store.evict() == 3_000 - memory.EVICT_PER_RECORD and len(memory_store) == 1  # a whole pass

    path = tmp_path / "state.sqlite"
    a, b = SQLiteFeatureStore(path, spec), SQLiteFeatureStore(path, spec)
    for store in (a, b):
        store._maintenance.stop.set()  # this test runs the file's eviction itself
    a.observe_many(old)
    b.refresh()
    assert len(b) == 3_000
    assert a.observe("new0", "c1", "t1", late, 5.0)
    b.refresh()  # one new event from another worker: b forgets two expired ones, not 3,000
    assert len(b) == 3_000 + 1 - memory.EVICT_PER_RECORD
    # The expired history is outside every window of the new event: features are what an empty store gives.
    fresh = MemoryFeatureStore(spec)
    fresh.observe("new0", "c1", "t1", late, 5.0)
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=late)
    assert (
        b.features("new1", "c1", "t1", late, 7.0, when).tobytes()
        == fresh.features("new1", "c1", "t1", late, 7.0, when).tobytes()
    )

    with sqlite3.connect(path, isolation_level=None) as db:
        cutoff = late - (spec.history_days + 1) * day
        rounds, deleted, done = 0, 0, False
        while not done:
            count, done = sqlite_store._evict_rows(db, cutoff, sqlite_store.EVICT_ROUND_CHUNKS)
            assert count <= sqlite_store.EVICT_ROUND_CHUNKS * sqlite_store.EVICT_CHUNK_ROWS
            deleted, rounds = deleted + count, rounds + 1
        (left,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert deleted == 3_000 and left == 1  # in 3 rounds of at most 1,000 rows, then one that finds none left
    assert rounds == -(-3_000 // (sqlite_store.EVICT_ROUND_CHUNKS * sqlite_store.EVICT_CHUNK_ROWS)) + 1


def _series_of(store: MemoryFeatureStore) -> dict[str, Any]:
    names = {code: terminal for terminal, code in store._terminal_codes.items()}
    customers = {c: (list(s.times), list(s.values), [names[k] for k in s.keys]) for c, s in store._customers.items()}
    terminals = {k: list(s.times) for k, s in store._terminals.items()}
    return {
        "seen": dict(store._seen),
        "customers": customers,
        "terminals": terminals,
        "frauds": store._frauds,
        "customer_frauds": store._customer_frauds,
        "heap": sorted(store._by_time),
        "newest": store._newest_us,
    }


def test_a_column_wise_load_builds_the_state_observing_builds(tmp_path: Path) -> None:
    """Duplicates, same-instant events, labels with and without a time, arrival out of time order."""
    spec = FeatureSpec()
    rng = np.random.default_rng(3)
    t0 = to_epoch_us(datetime(2026, 2, 1, tzinfo=UTC))
    events = []
    for i in range(3_000):
        t_us = t0 + int(rng.integers(0, 30 * 24 * 60)) * 60_000_000 if i % 7 else t0 + 86_400_000_000
        label = [None, 0, 1][int(rng.integers(0, 3))]
        label_us = None if label is None or i % 2 else t_us + int(rng.integers(0, 10**12))
        tid = f"x{i}" if i % 50 else f"x{i - 1}"  # every 50th repeats the id before it
        events.append(
            (
                tid,
                f"c{rng.integers(0, 40)}",
                f"t{rng.integers(0, 60)}",
                t_us,
                float(rng.integers(1, 10**6)) / 100,
                label,
                label_us,
            )
        )
    observed = MemoryFeatureStore(spec)
    observed.observe_many(events)
    frame = pl.DataFrame(events, schema=list(SNAPSHOT_COLUMNS), orient="row").cast(STATE_SCHEMA)  # type: ignore[arg-type]
    loaded = MemoryFeatureStore(spec)
    loaded.load_frame(frame)
    assert _series_of(loaded) == _series_of(observed)
    with pytest.raises(ValueError, match="empty store"):
        loaded.load_frame(frame)
    # A SQLite worker's first read loads the file the same way.
    shared = SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    shared.observe_many(events)
    assert _series_of(SQLiteFeatureStore(tmp_path / "state.sqlite", spec)._mirror) == _series_of(observed)
    # Expired events go at once.
    late = MemoryFeatureStore(spec)
    late.load_frame(
        pl.concat(
            [frame, frame.head(1).with_columns(transaction_id=pl.lit("far"), t_us=pl.lit(t0 + 90 * 86_400_000_000))]
        )
    )
    assert len(late) == 1 and late.knows("far")
