"""The embedded default online store for several service workers on one machine: SQLite as a shared log.

Every worker process opens the same file (WAL mode). The file is the source of truth; each worker
answers the window queries from an in-memory :class:`~features.stores.memory.MemoryFeatureStore` mirror
and, before each request, catches up with what the other workers wrote since (one read
transaction over two small tables: new events by rowid, new labels by sequence number). So a
transaction scored by one worker is in the windows of the next request, whichever worker answers
it, while the features cost dictionary lookups instead of indexed queries.

Costs (measured in bench/bench_service.py): per request one catch-up read and one autocommit
insert; a batch writes all its transactions in one SQLite transaction. Each worker holds the
history in memory (the same as the in-process store) and reads it once at start. Writers are
serialised by SQLite: fine for one machine's request rate. Beyond one machine, implement
:class:`~features.stores.base.FeatureStore` on a shared server (e.g. Redis sorted sets).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from data.wal import WalCheckpoints, no_autocheckpoint
from features.definitions import FeatureSpec
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA, Event, FeatureStore, snapshot_rows
from features.stores.batch import chunk_events, chunk_window_features, usable_prefix
from features.stores.memory import EVICT_EVERY, MemoryFeatureStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    transaction_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    t_us INTEGER NOT NULL,
    amount REAL NOT NULL,
    is_fraud INTEGER,
    label_us INTEGER
);
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    is_fraud INTEGER NOT NULL,
    label_us INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'feedback'
);
CREATE TABLE IF NOT EXISTS snapshots (digest TEXT PRIMARY KEY, rows INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (t_us);
"""
# Old events go; the newest row (highest rowid) always stays, so rowids are never reused and every
# worker's "events after rowid N" catch-up stays exact.
_EVICT_EVENTS = (
    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events"
    " WHERE t_us <= ? AND rowid < (SELECT max(rowid) FROM events) LIMIT ?)"
)
_EVICT_LABELS = (
    "DELETE FROM labels WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.transaction_id = labels.transaction_id)"
)

_INSERT = "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)"
#: Columns added since the first layout (a state file written before label times gets them, null).
_ADDED_COLUMNS = {
    "events": (("label_us", "INTEGER"),),
    "labels": (("label_us", "INTEGER NOT NULL DEFAULT 0"), ("source", "TEXT NOT NULL DEFAULT 'feedback'")),
}


def _add_missing_columns(db: sqlite3.Connection, schema: str = "main") -> None:
    """Bring a state file of the earlier layout up to date (ALTER TABLE ADD COLUMN; cheap, idempotent)."""
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA {schema}.table_info({table})")}
        for name, declaration in columns:
            if have and name not in have:
                db.execute(f"ALTER TABLE {schema}.{table} ADD COLUMN {name} {declaration}")


#: Rows one eviction transaction deletes: a write that waits for it waits about a millisecond.
EVICT_CHUNK_ROWS = 200
#: Eviction chunks one maintenance round deletes at most (the rest waits for the next rounds). Deleting a whole
#: backlog in one go held the writer lock in back-to-back chunks: SQLite's busy handler, sleeping ever longer
#: between tries, kept the other workers' writes waiting ~1 s while 356,548 expired rows went (a service
#: started on a snapshot weeks older than its traffic). 5 x 200 rows take ~3 ms: 10,000 rows/s at most.
#: Rounds run every ``data.wal.EVERY_S`` (0.1 s), each ending with the WAL checkpoint.
EVICT_ROUND_CHUNKS = 5


def _evict_rows(db: sqlite3.Connection, cutoff_us: int, max_chunks: int | None = None) -> tuple[int, bool]:
    """Delete events at or before ``cutoff_us`` (and labels of deleted events) in short transactions.

    Returns how many and whether that was all of them (False: ``max_chunks`` chunks ran, more may be left).
    """
    deleted, chunks = 0, 0
    while max_chunks is None or chunks < max_chunks:
        chunks += 1
        db.execute("BEGIN IMMEDIATE")
        try:
            count = db.execute(_EVICT_EVENTS, (cutoff_us, EVICT_CHUNK_ROWS)).rowcount
            if count < EVICT_CHUNK_ROWS:
                db.execute(_EVICT_LABELS)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        deleted += count
        if count < EVICT_CHUNK_ROWS:
            return deleted, True
    return deleted, False


class _Maintenance(WalCheckpoints):
    """A store's background thread: WAL checkpoints (``data.wal``) and the file's eviction, off the request path."""

    def __init__(self, path: Path, store: SQLiteFeatureStore) -> None:
        self.evict_before: int | None = None  # set by the store, done by the thread
        self._cutoff: int | None = None  # this round's
        super().__init__(path, store, "maintenance")

    def chore(self, db: sqlite3.Connection) -> None:
        """Evict up to the cutoff the store asked for, at most :data:`EVICT_ROUND_CHUNKS` chunks a round."""
        self._cutoff, self.evict_before = self.evict_before, None
        if self._cutoff is not None and not _evict_rows(db, self._cutoff, EVICT_ROUND_CHUNKS)[1]:
            self._resume(self._cutoff)  # a backlog: the next round goes on

    def busy(self) -> None:
        """A busy or locked round: its cutoff is evicted by the next one."""
        if self._cutoff is not None:
            self._resume(self._cutoff)  # not lost: the next round evicts it

    def _resume(self, cutoff: int) -> None:
        """Have the next round evict up to ``cutoff`` (unless the store asked for a newer cutoff meanwhile)."""
        if self.evict_before is None:
            self.evict_before = cutoff


class SQLiteFeatureStore(FeatureStore):
    """Feature state in a SQLite file shared by the worker processes of one machine.

    Reads come from this process's mirror after :meth:`refresh`; writes go to the file first (so
    every worker sees them at its next refresh) and to the mirror.
    """

    def __init__(self, path: Path, spec: FeatureSpec, timeout_s: float = 30.0) -> None:
        super().__init__(spec)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write is its own transaction (visible to other workers at once) unless batched.
        self._db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _add_missing_columns(self._db)
        # Checkpoints (and the file's eviction) run in a background thread, not in the request that crosses a threshold.
        no_autocheckpoint(self._db)
        self._maintenance = _Maintenance(path, self)
        self._mirror = MemoryFeatureStore(spec)
        self._events_seen = 0  # highest events.rowid applied to the mirror
        self._labels_seen = 0  # highest labels.seq applied to the mirror
        self._pending: list[Event] | None = None  # writes held back inside batch()
        self._written_since_eviction = 0
        self.refresh()

    def close(self) -> None:
        """Stop the checkpoints and close the connection."""
        self._maintenance.close()
        self._db.close()

    def refresh(self) -> None:
        """Apply what any worker wrote since the last refresh (one consistent read of both logs)."""
        self._db.execute("BEGIN")  # a read snapshot: the events and the labels agree with each other
        try:
            events = self._db.execute(
                "SELECT rowid, transaction_id, customer_id, terminal_id, t_us, amount, is_fraud, label_us"
                " FROM events WHERE rowid > ? ORDER BY rowid",
                (self._events_seen,),
            ).fetchall()
            labels = self._db.execute(
                "SELECT seq, transaction_id, is_fraud, label_us, source FROM labels WHERE seq > ? ORDER BY seq",
                (self._labels_seen,),
            ).fetchall()
        finally:
            self._db.execute("COMMIT")
        if events and self._events_seen == 0 and not len(self._mirror):
            # The first read is a load (start-up): column-wise, ~4x faster than observing piece by piece.
            columns = ("rowid", *SNAPSHOT_COLUMNS)
            frame = pl.DataFrame(events, schema=columns, orient="row").drop("rowid").cast(STATE_SCHEMA)  # type: ignore[arg-type]
            self._mirror.load_frame(frame)
            self._events_seen = events[-1][0]
        elif events:
            # Other workers' events, in the request path: forget expired ones gradually.
            self._mirror.observe_many((row[1:] for row in events), gradual=True)
            self._events_seen = events[-1][0]
        for _, tid, label, label_us, source in labels:
            self._mirror.add_label(tid, label, label_us, source)  # an event already known is not added twice
        if labels:
            self._labels_seen = labels[-1][0]

    def __len__(self) -> int:
        return len(self._mirror)

    def knows(self, transaction_id: str) -> bool:
        """Whether the transaction has been observed (by any worker, as of the last refresh)."""
        return self._mirror.knows(transaction_id)

    def event(self, transaction_id: str) -> tuple[str, str, int, float] | None:
        """(customer_id, terminal_id, t_us, amount) of an observed transaction, else None."""
        return self._mirror.event(transaction_id)

    def customer_window(self, customer_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and amount sum of the customer's events in ``(lo, hi]``."""
        return self._mirror.customer_window(customer_id, lo, hi)

    def terminal_window(self, terminal_id: str, lo: int, hi: int, known_at: int) -> tuple[int, float]:
        """Count of the terminal's events in ``(lo, hi]`` and how many are fraud as known at ``known_at``."""
        return self._mirror.terminal_window(terminal_id, lo, hi, known_at)

    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Visits of the customer to the terminal in ``(lo, hi]``."""
        return self._mirror.pair_count(customer_id, terminal_id, lo, hi)

    def customer_known_frauds(self, customer_id: str, lo: int, hi: int, known_at: int) -> float:
        """The customer's events in ``(lo, hi]`` that are fraud as known at ``known_at``."""
        return self._mirror.customer_known_frauds(customer_id, lo, hi, known_at)

    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest customer event time before ``t_us``."""
        return self._mirror.previous_time(customer_id, t_us, strictly_before)

    def features(
        self, transaction_id: str, customer_id: str, terminal_id: str, t_us: int, amount: float, when: datetime
    ) -> np.ndarray:
        """The mirror answers every window query (one call, not one delegation per query: the hot path)."""
        return self._mirror.features(transaction_id, customer_id, terminal_id, t_us, amount, when)

    def chunk_features(
        self,
        transaction_ids: Sequence[str],
        customer_ids: Sequence[str],
        terminal_ids: Sequence[str],
        t_us: np.ndarray,
        amount: np.ndarray,
    ) -> np.ndarray | None:
        """The mirror's one-pass window features (see the base class); the rows go to the file as :meth:`record`'s."""
        rows = chunk_window_features(self._mirror, transaction_ids, customer_ids, terminal_ids, t_us, amount)
        if rows is None or not len(rows):
            return rows
        events = chunk_events(transaction_ids, customer_ids, terminal_ids, t_us, amount, len(rows))
        self._mirror.record_chunk(events)
        if self._pending is not None:
            self._pending += events
        else:
            self._write(events)
            self._count_writes(len(events))
        return rows

    def one_pass_prefix(self, transaction_ids: Sequence[str], t_us: np.ndarray) -> int:
        """How many leading transactions :meth:`chunk_features` would take."""
        return usable_prefix(self._mirror, transaction_ids, t_us)

    def record(self, event: Event) -> bool:
        """Add a transaction; False if this worker already knew it (or, unbatched, any worker added it)."""
        if not self._mirror.record(event):
            return False
        if self._pending is not None:
            self._pending.append(event)
            return True
        cursor = self._db.execute(_INSERT, event)
        if cursor.rowcount != 1:
            return False
        if cursor.lastrowid == self._events_seen + 1:  # nobody wrote since our refresh: skip reading it back
            self._events_seen = cursor.lastrowid
        self._count_writes(1)
        return True

    def observe_many(self, events: Iterable[Event]) -> list[Event]:
        """Add transactions in one go: the mirror in one pass, the file in one write (at the end of a batch)."""
        new = self._mirror.observe_many(events)
        if not new:
            return new
        if self._pending is not None:
            self._pending += new
            return new
        self._write(new)
        self._count_writes(len(new))
        return new

    def _count_writes(self, count: int) -> None:
        self._written_since_eviction += count
        if self._written_since_eviction >= EVICT_EVERY:
            self._written_since_eviction = 0
            self._maintenance.evict_before = self._mirror.cutoff_us  # the thread deletes, in short transactions

    def evict(self) -> int:
        """Forget old events in this worker's mirror and in the shared file now (see ``MemoryFeatureStore.evict``)."""
        evicted = self._mirror.evict()
        self._written_since_eviction = 0
        cutoff = self._mirror.cutoff_us
        if cutoff is not None:
            _evict_rows(self._db, cutoff)
        return evicted

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the observations made inside back and write them in one transaction at the end."""
        if self._pending is not None:  # nested: the outer batch writes
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self._write(pending)
                self._count_writes(len(pending))

    def _write(self, events: list[Event]) -> None:
        last_rowid = "SELECT coalesce(max(rowid), 0) FROM events"
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (before,) = self._db.execute(last_rowid).fetchone()
            self._db.executemany(_INSERT, events)
            (after,) = self._db.execute(last_rowid).fetchone()
            self._db.execute("COMMIT")
            if before == self._events_seen:  # nobody wrote since our refresh: skip reading our rows back
                self._events_seen = after
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def add_label(self, transaction_id: str, label: int, label_us: int, source: str = "feedback") -> bool:
        """Record a label event (for every worker); False if the transaction is unknown.

        The events row keeps the newest label (by label time) for snapshots and carry-over; the labels
        table keeps every event, which each worker's mirror replays.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            known = (
                self._db.execute("SELECT 1 FROM events WHERE transaction_id = ?", (transaction_id,)).fetchone()
                is not None
            )
            if known:
                self._db.execute(
                    "UPDATE events SET is_fraud = ?, label_us = ?"
                    " WHERE transaction_id = ? AND (label_us IS NULL OR label_us <= ?)",
                    (label, label_us, transaction_id, label_us),
                )
                self._db.execute(
                    "INSERT INTO labels (transaction_id, is_fraud, label_us, source) VALUES (?, ?, ?, ?)",
                    (transaction_id, label, label_us, source),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if known and not self._mirror.add_label(transaction_id, label, label_us, source):
            self.refresh()  # another worker's event since our last refresh: reading it brings its label too
        return known

    def load_snapshot(self, frame: pl.DataFrame) -> bool:
        """Insert a state snapshot (``MemoryFeatureStore.to_frame`` layout) once per content digest.

        Several workers may call this at start-up; the first loads it in one transaction, the
        others see its digest and skip. Returns whether this call loaded it. Either way the mirror
        then holds the file's whole state.
        """
        rows = snapshot_rows(frame)
        digest = hashlib.sha256(rows.hash_rows().to_numpy().tobytes()).hexdigest()
        self._db.execute("BEGIN IMMEDIATE")  # one loader at a time
        try:
            loaded = self._db.execute("SELECT 1 FROM snapshots WHERE digest = ?", (digest,)).fetchone() is None
            if loaded:
                self._db.executemany(_INSERT, rows.iter_rows())
                self._db.execute("INSERT INTO snapshots VALUES (?, ?)", (digest, rows.height))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.refresh()
        return loaded

    def carry_over(self, sources: Sequence[Path], after_us: int) -> int:
        """Copy the events other state files hold after ``after_us`` (with their labels); returns how many were new.

        A new model version starts from its lake snapshot; what the service scored since the lake's newest
        transaction lives only in the previous versions' files. Idempotent (ids already here are skipped),
        so every worker of the new version may run it at start-up.
        """
        copied = 0
        for source in sources:
            if not Path(source).exists() or Path(source).resolve() == self.path.resolve():
                continue
            self._db.execute("ATTACH DATABASE ? AS previous", (str(source),))
            try:
                columns = {row[1] for row in self._db.execute("PRAGMA previous.table_info(events)")}
                label_us = "label_us" if "label_us" in columns else "NULL"  # a file of the earlier layout
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    copied += self._db.execute(
                        "INSERT OR IGNORE INTO events SELECT transaction_id, customer_id, terminal_id, t_us, amount,"
                        f" is_fraud, {label_us} FROM previous.events WHERE t_us > ? ORDER BY t_us, transaction_id",
                        (after_us,),
                    ).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("DETACH DATABASE previous")
        self.refresh()
        return copied
