"""WAL checkpoints off the request path: the feedback log's and the online store's commits never checkpoint."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import polars as pl

from data.feedback import FeedbackLog
from features.definitions import FeatureSpec
from features.stores.base import STATE_SCHEMA
from features.stores.sqlite import SQLiteFeatureStore


def _rows_in_main_file(path: Path, table: str, tmp: Path) -> int:
    """Rows of ``table`` in the database file alone, without its WAL: what checkpoints have copied there."""
    alone = tmp / f"alone-{time.monotonic_ns()}.sqlite"
    shutil.copyfile(path, alone)  # no -wal file next to the copy
    db = sqlite3.connect(alone)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:  # the schema not checkpointed yet, or copied mid-checkpoint: look again
        return -1
    finally:
        db.close()


def _wait_for(path: Path, table: str, rows: int, tmp: Path) -> int:
    seen = -1
    for _ in range(100):  # the thread runs every 0.1 s: up to 10 s on a loaded machine
        seen = _rows_in_main_file(path, table, tmp)
        if seen == rows:
            break
        time.sleep(0.1)
    return seen


def _score(log: FeedbackLog, transaction_id: str) -> None:
    when = "2026-01-01T00:00:00+00:00"
    log.record_scored([transaction_id], [when], ["c"], ["m"], [1.0], [0.1], ["approve"], "1", ["[]"])


def test_the_feedback_log_checkpoints_in_its_own_thread(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.sqlite")
    hot = log._db()
    assert hot.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # a /score's commit never copies the WAL
    n = 1_500  # one commit each: ~1,500 WAL pages, past SQLite's automatic threshold of 1,000
    for i in range(n):
        _score(log, f"t{i}")
    # ...and yet the rows reach the database file: the checkpoint thread copied them there.
    assert _wait_for(log.path, "scored", n, tmp_path) == n
    log.close()
    _score(log, "late")
    time.sleep(0.5)
    assert _rows_in_main_file(log.path, "scored", tmp_path) == n  # closed: nobody checkpoints any more
    db = sqlite3.connect(log.path)  # while the WAL still has it for every reader
    try:
        assert db.execute("SELECT count(*) FROM scored").fetchone()[0] == n + 1
    finally:
        db.close()


def test_the_online_store_checkpoints_in_its_own_thread(tmp_path: Path) -> None:
    spec = FeatureSpec()
    store = SQLiteFeatureStore(tmp_path / "state.sqlite", spec)
    store.load_snapshot(pl.DataFrame(schema=STATE_SCHEMA))
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    n = 1_500
    for i in range(n):
        store.observe(f"t{i}", f"c{i % 7}", f"m{i % 5}", 1_700_000_000_000_000 + i * 1_000_000, 10.0)
    assert _wait_for(store.path, "events", n, tmp_path) == n
    store.close()
