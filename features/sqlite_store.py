"""The embedded default online store for several service workers on one machine: SQLite in WAL mode.

Every worker process opens the same file; SQLite serialises writers and lets readers run beside
them, so a transaction scored by one worker is in the windows of the next request, whichever
worker answers it. The definitions live in :class:`features.online.FeatureStore`; this class only
answers its window queries with indexed range scans.

Trade-offs (vs the in-process :class:`features.online.OnlineFeatureState`): ~10 indexed queries per
transaction instead of dictionary lookups (tens of microseconds more, measured in bench/), and one
writer at a time (fine for a single machine's request rate). Beyond one machine, implement
:class:`~features.online.FeatureStore` on a shared server (e.g. Redis sorted sets).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import polars as pl

from features.engineering import FeatureSpec
from features.online import FeatureStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    transaction_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    t_us INTEGER NOT NULL,
    amount REAL NOT NULL,
    is_fraud INTEGER
);
CREATE INDEX IF NOT EXISTS events_customer ON events (customer_id, t_us);
CREATE INDEX IF NOT EXISTS events_terminal ON events (terminal_id, t_us);
CREATE INDEX IF NOT EXISTS events_pair ON events (customer_id, terminal_id, t_us);
CREATE TABLE IF NOT EXISTS snapshots (digest TEXT PRIMARY KEY, rows INTEGER NOT NULL);
"""


class SQLiteFeatureStore(FeatureStore):
    """Feature state in a SQLite file shared by the worker processes of one machine."""

    def __init__(self, path: Path, spec: FeatureSpec, timeout_s: float = 30.0) -> None:
        self.spec = spec
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every observe is its own transaction, visible to other workers at once.
        self._db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def knows(self, transaction_id: str) -> bool:
        """Whether the transaction has been observed (by any worker)."""
        found = self._db.execute("SELECT 1 FROM events WHERE transaction_id = ?", (transaction_id,)).fetchone()
        return found is not None

    def customer_window(self, customer_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and amount sum of the customer's events in ``(lo, hi]``."""
        n, total = self._db.execute(
            "SELECT count(*), total(amount) FROM events WHERE customer_id = ? AND t_us > ? AND t_us <= ?",
            (customer_id, lo, hi),
        ).fetchone()
        return int(n), float(total)

    def terminal_window(self, terminal_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and known frauds of the terminal's events in ``(lo, hi]``."""
        n, frauds = self._db.execute(
            "SELECT count(*), total(is_fraud) FROM events WHERE terminal_id = ? AND t_us > ? AND t_us <= ?",
            (terminal_id, lo, hi),
        ).fetchone()
        return int(n), float(frauds)

    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Visits of the customer to the terminal in ``(lo, hi]``."""
        return int(
            self._db.execute(
                "SELECT count(*) FROM events WHERE customer_id = ? AND terminal_id = ? AND t_us > ? AND t_us <= ?",
                (customer_id, terminal_id, lo, hi),
            ).fetchone()[0]
        )

    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest customer event time before ``t_us``."""
        op = "<" if strictly_before else "<="
        (latest,) = self._db.execute(
            f"SELECT max(t_us) FROM events WHERE customer_id = ? AND t_us {op} ?", (customer_id, t_us)
        ).fetchone()
        return None if latest is None else int(latest)

    def observe(
        self,
        transaction_id: str,
        customer_id: str,
        terminal_id: str,
        t_us: int,
        amount: float,
        label: int | None = None,
    ) -> bool:
        """Add a transaction; False if any worker already added it."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (transaction_id, customer_id, terminal_id, t_us, amount, label),
        )
        return cursor.rowcount == 1

    def add_label(self, transaction_id: str, label: int) -> bool:
        """Record a late label; False if the transaction is unknown."""
        cursor = self._db.execute("UPDATE events SET is_fraud = ? WHERE transaction_id = ?", (label, transaction_id))
        return cursor.rowcount == 1

    def load_snapshot(self, frame: pl.DataFrame) -> bool:
        """Insert a state snapshot (``OnlineFeatureState.to_frame`` layout) once per content digest.

        Several workers may call this at start-up; the first loads it in one transaction, the
        others see its digest and skip. Returns whether this call loaded it.
        """
        rows = frame.select("transaction_id", "customer_id", "terminal_id", "t_us", "amount", "is_fraud")
        digest = hashlib.sha256(rows.hash_rows().to_numpy().tobytes()).hexdigest()
        self._db.execute("BEGIN IMMEDIATE")  # one loader at a time
        try:
            if self._db.execute("SELECT 1 FROM snapshots WHERE digest = ?", (digest,)).fetchone():
                self._db.execute("COMMIT")
                return False
            self._db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows.iter_rows())
            self._db.execute("INSERT INTO snapshots VALUES (?, ?)", (digest, rows.height))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return True
