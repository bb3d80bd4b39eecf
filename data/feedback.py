"""The service's durable log: what it scored, and every label it was told (one SQLite file).

Two tables in ``Settings.feedback_path``, shared by the service workers (WAL mode, one transaction
per request, so a request's rows land together or not at all; ``synchronous=NORMAL``: a commit
survives a crash or restart of the service, a power cut may lose the last commits):

- ``scored``: every transaction the service scored and recorded (``transaction_id`` once: a repeat is
  not a new row), with its raw customer and terminal ids (the lake needs them; they never go to
  logs), score, decision, model version and reasons (JSON);
- ``labels``: label events (:data:`data.labels.LABEL_SCHEMA` plus ``model_version`` and
  ``known_to_state``): ``/feedback`` labels (source ``feedback``) and the analysts' verdicts on the
  alert queue (source ``analyst``), each at its arrival time.

The lake's ingest drains it through :func:`read_scored` and :func:`read_label_events`; the monitor
reads the labels through :func:`read_feedback`. The alert queue (``GET /alerts``) is built from it by
:meth:`FeedbackLog.alert_queue`. The file persists across restarts and model switches.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from data.labels import LABEL_SCHEMA, LABEL_SOURCES, as_label_events
from data.wal import WalCheckpoints, no_autocheckpoint

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS scored (
        transaction_id TEXT PRIMARY KEY,
        tx_datetime TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        amount REAL NOT NULL,
        score REAL NOT NULL,
        decision TEXT NOT NULL,
        model_version TEXT NOT NULL,
        reasons TEXT NOT NULL,
        scored_at TEXT NOT NULL,
        attributes TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS scored_by_time ON scored (tx_datetime)",
    "CREATE INDEX IF NOT EXISTS scored_by_card ON scored (customer_id, tx_datetime)",
    f"""
    CREATE TABLE IF NOT EXISTS labels (
        transaction_id TEXT NOT NULL,
        is_fraud INTEGER NOT NULL CHECK (is_fraud IN (0, 1)),
        label_time TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ({", ".join(f"'{s}'" for s in LABEL_SOURCES)})),
        reviewer TEXT,
        note TEXT,
        model_version TEXT NOT NULL,
        known_to_state INTEGER NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS labels_by_transaction ON labels (transaction_id)",
)
#: The label log of earlier versions (one ``feedback`` table); its rows move to ``labels`` once.
LEGACY_TABLE = "feedback"

SCORED_INSERT = (
    "INSERT OR IGNORE INTO scored (transaction_id, tx_datetime, customer_id, terminal_id, amount, score, decision,"
    " model_version, reasons, scored_at, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LABEL_INSERT = (
    "INSERT INTO labels (transaction_id, is_fraud, label_time, source, reviewer, note, model_version, known_to_state)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

#: Transactions of a card shown with each alert (newest first).
RECENT_TRANSACTIONS = 10

SCORED_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "tx_datetime": pl.Datetime("us", "UTC"),
    "customer_id": pl.String(),
    "terminal_id": pl.String(),
    "amount": pl.Float64(),
    "score": pl.Float64(),
    "model_version": pl.String(),
}
FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "is_fraud": pl.Int8(),
    "received_at": pl.String(),
    "known_to_state": pl.Int8(),
    "model_version": pl.String(),
}


def utc_now() -> datetime:
    """Now, as an aware UTC datetime (a label's arrival time)."""
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    """``when`` in UTC as ISO 8601 text (``+00:00``; microseconds only when not zero, as ``isoformat``)."""
    return when.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class LabelEvent:
    """One label event to record (``label_time`` aware; ``source`` one of :data:`data.labels.LABEL_SOURCES`)."""

    transaction_id: str
    is_fraud: int
    label_time: datetime
    source: str
    known_to_state: bool
    reviewer: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class QueueFigures:
    """A day's alert queue in numbers; ``precision`` (realised CP@k) is None until an alert is reviewed."""

    day: date | None
    capacity: int
    alerts: int
    reviewed: int
    frauds: int

    @property
    def precision(self) -> float | None:
        """Frauds among the reviewed alerts over the reviewed alerts."""
        return self.frauds / self.reviewed if self.reviewed else None

    @property
    def backlog(self) -> int:
        """Alerts not reviewed yet."""
        return self.alerts - self.reviewed

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``QueueFigures`` of service/schemas.py)."""
        return {
            "date": self.day,
            "capacity": self.capacity,
            "alerts": self.alerts,
            "reviewed": self.reviewed,
            "frauds": self.frauds,
            "precision": self.precision,
            "backlog": self.backlog,
        }


class FeedbackLog:
    """The ``scored`` and ``labels`` tables in one SQLite file (safe with several processes and threads).

    Each thread keeps its own connection (opened on first use), so the hot path pays one INSERT and
    its commit, not a connect.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        with db:
            for statement in SCHEMA:
                db.execute(statement)
        self._migrate(db)
        # Checkpoints in a thread of their own (data/wal.py), not inside the /score whose commit crosses 1,000 pages.
        self._checkpoints = WalCheckpoints(self.path, self)

    def close(self) -> None:
        """Stop the checkpoint thread and wait for it (connections close with their threads)."""
        self._checkpoints.close()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes, one fsync less
            no_autocheckpoint(db)
            self._local.db = db
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an earlier version's log up to date, once.

        ``scored`` gains its ``attributes`` column (null for the rows before); the rows of the ``feedback``
        table move into ``labels`` (source feedback).
        """
        columns = {row[1] for row in db.execute("PRAGMA table_info(scored)")}
        if "attributes" not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another worker added it first
                db.execute("ALTER TABLE scored ADD COLUMN attributes TEXT")
        legacy = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        if db.execute(legacy, (LEGACY_TABLE,)).fetchone() is None:
            return
        with db:
            db.execute("BEGIN IMMEDIATE")  # one worker migrates; the others find the table gone
            if db.execute(legacy, (LEGACY_TABLE,)).fetchone() is not None:
                db.execute(
                    "INSERT INTO labels (transaction_id, is_fraud, label_time, source, model_version, known_to_state)"
                    f" SELECT transaction_id, is_fraud, received_at, 'feedback', model_version, known_to_state"
                    f" FROM {LEGACY_TABLE} ORDER BY rowid"
                )
                db.execute(f"DROP TABLE {LEGACY_TABLE}")

    # --- writing ----------------------------------------------------------------------------------------

    def record_scored(
        self,
        ids: Sequence[str],
        times: Sequence[str],
        customers: Sequence[str],
        terminals: Sequence[str],
        amounts: Sequence[float],
        scores: Sequence[float],
        decisions: Sequence[str],
        model_version: str,
        reasons: Sequence[str],
        attributes: Sequence[str | None] | None = None,
    ) -> None:
        """Record scored transactions (columns aligned; ``times`` ISO UTC, ``reasons`` JSON) in one transaction.

        ``attributes``: per row, a JSON object of the request's other columns (``attr_*`` as the lake keeps
        them: a dataset profile's feature inputs), or None. A transaction id already in the log keeps its
        first row (a repeat is not a new row).
        """
        if not ids:
            return
        now = _iso(utc_now())
        db = self._db()
        versions, stamps = [model_version] * len(ids), [now] * len(ids)
        extra = attributes if attributes is not None else [None] * len(ids)
        rows = zip(
            ids, times, customers, terminals, amounts, scores, decisions, versions, reasons, stamps, extra, strict=True
        )
        with db:  # commits on success, rolls back on error
            if len(ids) == 1:
                db.execute(SCORED_INSERT, next(rows))
            else:
                db.executemany(SCORED_INSERT, rows)

    def record_events(self, events: Iterable[LabelEvent], model_version: str) -> int:
        """Append label events in one transaction; return the count."""
        rows = [
            (
                e.transaction_id,
                int(e.is_fraud),
                _iso(e.label_time),
                e.source,
                e.reviewer,
                e.note,
                model_version,
                int(e.known_to_state),
            )
            for e in events
        ]
        db = self._db()
        with db:
            db.executemany(LABEL_INSERT, rows)
        return len(rows)

    def record(
        self, labels: Iterable[tuple[str, int, bool]], model_version: str, label_time: datetime | None = None
    ) -> int:
        """Append ``/feedback`` labels ``(transaction_id, is_fraud, known_to_state)`` as ``feedback`` events.

        Their ``label_time`` is ``label_time`` (default: now, their arrival). One transaction; returns the count.
        """
        when = label_time or utc_now()
        return self.record_events(
            (LabelEvent(tid, int(label), when, "feedback", bool(known)) for tid, label, known in labels),
            model_version,
        )

    # --- reading for the alert queue --------------------------------------------------------------------

    def scored_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` the log holds as scored transactions."""
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        db = self._db()
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(
                row[0]
                for row in db.execute(f"SELECT transaction_id FROM scored WHERE transaction_id IN ({marks})", chunk)
            )
        return found

    def newest_day(self) -> date | None:
        """The newest transaction date in the scored log (UTC), None when it is empty."""
        (newest,) = self._db().execute("SELECT max(tx_datetime) FROM scored").fetchone()
        return None if newest is None else date.fromisoformat(newest[:10])

    def alert_queue(
        self, day: date, capacity: int, limit: int | None = None, recent: int = RECENT_TRANSACTIONS
    ) -> tuple[QueueFigures, list[dict[str, Any]]]:
        """The day's alert queue: its figures, and its first ``limit`` alerts (default all) ranked by score.

        One alert per card (``customer_id``): its highest-scored transaction of ``day`` with decision
        ``alert``; the cards are ranked by that score (ties: earlier, then smaller id) and the queue is
        capped at ``capacity`` (the analysts' daily k). A card is reviewed when an analyst gave a verdict
        on one of its transactions of that day; its verdict is the newest such (label_time, then recording
        order). Each alert carries the card's ``recent`` newest scored transactions up to the end of the day.
        """
        start = day.isoformat()
        end = (day + timedelta(days=1)).isoformat() if day < date.max else f"{start}~"  # "~" sorts after "T..."
        db = self._db()
        rows = db.execute(
            """
            SELECT transaction_id, customer_id, terminal_id, tx_datetime, amount, score, model_version, reasons
            FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY customer_id ORDER BY score DESC, tx_datetime, transaction_id
                ) AS card_rank
                FROM scored WHERE tx_datetime >= ? AND tx_datetime < ? AND decision = 'alert'
            )
            WHERE card_rank = 1 ORDER BY score DESC, tx_datetime, transaction_id LIMIT ?
            """,
            (start, end, capacity),
        ).fetchall()
        cards = [row[1] for row in rows]
        verdicts = self._card_verdicts(db, cards, start, end)
        frauds = sum(1 for v in verdicts.values() if v["is_fraud"] == 1)
        figures = QueueFigures(day, capacity, len(rows), len(verdicts), frauds)
        alerts = []
        for rank, (tid, card, terminal, when, amount, score, version, reasons) in enumerate(rows[:limit], start=1):
            history = db.execute(
                "SELECT transaction_id, tx_datetime, terminal_id, amount, score, decision FROM scored"
                " WHERE customer_id = ? AND tx_datetime < ? ORDER BY tx_datetime DESC, rowid DESC LIMIT ?",
                (card, end, recent),
            ).fetchall()
            alerts.append(
                {
                    "rank": rank,
                    "transaction_id": tid,
                    "customer_id": card,
                    "terminal_id": terminal,
                    "tx_datetime": datetime.fromisoformat(when),
                    "amount": amount,
                    "score": score,
                    "model_version": version,
                    "reasons": json.loads(reasons),
                    "recent": [
                        {
                            "transaction_id": r[0],
                            "tx_datetime": datetime.fromisoformat(r[1]),
                            "terminal_id": r[2],
                            "amount": r[3],
                            "score": r[4],
                            "decision": r[5],
                        }
                        for r in history
                    ],
                    "verdict": verdicts.get(card),
                }
            )
        return figures, alerts

    def _card_verdicts(
        self, db: sqlite3.Connection, cards: list[str], start: str, end: str
    ) -> dict[str, dict[str, Any]]:
        """Per card, the newest analyst verdict on one of its transactions scored in ``[start, end)``."""
        verdicts: dict[str, dict[str, Any]] = {}
        for first in range(0, len(cards), 500):
            chunk = cards[first : first + 500]
            marks = ", ".join("?" * len(chunk))
            rows = db.execute(
                "SELECT s.customer_id, l.transaction_id, l.is_fraud, l.reviewer, l.note, l.label_time"
                " FROM labels l JOIN scored s ON s.transaction_id = l.transaction_id"
                f" WHERE l.source = 'analyst' AND s.customer_id IN ({marks})"
                " AND s.tx_datetime >= ? AND s.tx_datetime < ? ORDER BY l.label_time, l.rowid",
                (*chunk, start, end),
            ).fetchall()
            for card, tid, is_fraud, reviewer, note, label_time in rows:  # the newest comes last
                verdicts[card] = {
                    "transaction_id": tid,
                    "is_fraud": is_fraud,
                    "reviewer": reviewer,
                    "note": note,
                    "label_time": datetime.fromisoformat(label_time),
                }
        return verdicts


# --- the read API (the lake's ingest, the monitor) ----------------------------------------------------------


def _rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """``query``'s rows from the log at ``path`` (none when the file or its table does not exist yet)."""
    if not Path(path).exists():
        return []
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return db.execute(query).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def _frame(rows: list[tuple[Any, ...]], names: Sequence[str]) -> dict[str, list[Any]]:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return {name: list(values) for name, values in zip(names, columns, strict=True)}


def _utc_times(column: str) -> pl.Expr:
    """An ISO 8601 text column with a UTC offset as ``Datetime(us, UTC)``."""
    return pl.col(column).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC")


def read_scored(path: Path) -> pl.DataFrame:
    """Every transaction the service scored and recorded, in recording order (empty when there is none).

    Columns ``transaction_id, tx_datetime (Datetime us UTC), customer_id, terminal_id, amount, score,
    model_version``; ``path`` is the service's log (``Settings.feedback_path``).
    """
    names = [*SCORED_SCHEMA, "attributes"]
    rows = _rows(path, f"SELECT {', '.join(names)} FROM scored ORDER BY rowid")
    text = {**SCORED_SCHEMA, "tx_datetime": pl.String(), "attributes": pl.String()}
    frame = pl.DataFrame(_frame(rows, names), schema=text).with_columns(_utc_times("tx_datetime"))
    return _with_attributes(frame)


def _with_attributes(frame: pl.DataFrame) -> pl.DataFrame:
    """``attributes`` (JSON objects) spread into their ``attr_*`` text columns (none when no row has any)."""
    known = frame.filter(pl.col("attributes").is_not_null())["attributes"]
    if known.is_empty():
        return frame.drop("attributes")
    names = sorted({k for text in known.to_list() for k in json.loads(text)})
    decoded = frame["attributes"].str.json_decode(pl.Struct({n: pl.String() for n in names}))
    return frame.drop("attributes").hstack(decoded.struct.unnest())


def read_label_events(path: Path) -> pl.DataFrame:
    """Every label event the service was told, in recording order: exactly :data:`data.labels.LABEL_SCHEMA`.

    ``feedback`` events from ``/feedback`` and ``analyst`` verdicts from the alert queue, each with its
    arrival time as ``label_time``.
    """
    names = list(LABEL_SCHEMA)
    rows = _rows(path, f"SELECT {', '.join(names)} FROM labels ORDER BY rowid")
    text = {**LABEL_SCHEMA, "label_time": pl.String()}
    return as_label_events(pl.DataFrame(_frame(rows, names), schema=text).with_columns(_utc_times("label_time")))


def read_feedback(path: Path) -> pl.DataFrame:
    """All labels received so far (``/feedback`` and analysts' verdicts), oldest first; empty when none.

    Columns ``transaction_id, is_fraud, received_at`` (ISO text, the label_time), ``known_to_state,
    model_version``; ``path`` is the service's log (``Settings.feedback_path``).
    """
    rows = _rows(
        path, "SELECT transaction_id, is_fraud, label_time, known_to_state, model_version FROM labels ORDER BY rowid"
    )
    return pl.DataFrame(_frame(rows, list(FEEDBACK_SCHEMA)), schema=FEEDBACK_SCHEMA)
