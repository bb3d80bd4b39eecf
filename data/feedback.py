"""Labels that arrive after scoring (``POST /feedback``), kept for the online state and for retraining.

Every label is appended to a SQLite file shared by the service workers (WAL mode, one transaction
per request, so a request's labels land together or not at all). The monitor and training flows
read it with :func:`read_feedback`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    transaction_id TEXT NOT NULL,
    is_fraud INTEGER NOT NULL CHECK (is_fraud IN (0, 1)),
    received_at TEXT NOT NULL,
    known_to_state INTEGER NOT NULL,
    model_version TEXT NOT NULL
)
"""


class FeedbackLog:
    """Append-only label log in one SQLite file (safe with several processes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def record(self, labels: Iterable[tuple[str, int, bool]], model_version: str) -> int:
        """Append ``(transaction_id, is_fraud, known_to_state)`` rows in one transaction; return the count."""
        now = datetime.now(UTC).isoformat()
        rows = [(tid, int(label), now, int(known), model_version) for tid, label, known in labels]
        with self._connect() as db:  # commits on success, rolls back on error
            db.executemany(
                "INSERT INTO feedback (transaction_id, is_fraud, received_at, known_to_state, model_version)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)


def read_feedback(path: Path) -> pl.DataFrame:
    """All labels received so far, newest last (an empty frame when there are none).

    ``path`` is the service's log (``Settings.feedback_path``).
    """
    schema = {
        "transaction_id": pl.String,
        "is_fraud": pl.Int8,
        "received_at": pl.String,
        "known_to_state": pl.Int8,
        "model_version": pl.String,
    }
    if not Path(path).exists():
        return pl.DataFrame(schema=schema)
    with sqlite3.connect(path, timeout=30) as db:
        rows = db.execute(
            "SELECT transaction_id, is_fraud, received_at, known_to_state, model_version FROM feedback ORDER BY rowid"
        ).fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pl.DataFrame({name: list(values) for name, values in zip(schema, columns, strict=True)}, schema=schema)
