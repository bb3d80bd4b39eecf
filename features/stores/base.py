"""The online store interface: the window queries the feature definitions ask, plus recording and loading.

A store keeps, per customer, the (time, amount) of recent transactions and, per terminal, the
(time, label) of recent transactions; it is loaded from a snapshot of the lake at start-up and
updated as transactions are scored and labels arrive. Times are integer microseconds so window
boundaries compare exactly as they do offline. The definitions themselves live once, in
:func:`features.definitions.online_features`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import polars as pl

from features.definitions import FeatureSpec, online_features

#: One observed transaction: (transaction_id, customer_id, terminal_id, t_us, amount, label or None, and the
#: label's time in µs or None). A label without a time is known ``spec.label_delay_days`` after the transaction.
Event = tuple[str, str, str, int, float, int | None, int | None]

#: The snapshot layout (:meth:`FeatureStore.load_snapshot`; written by ``MemoryFeatureStore.to_frame``).
STATE_SCHEMA = {
    "transaction_id": pl.String(),
    "t_us": pl.Int64(),
    "customer_id": pl.String(),
    "terminal_id": pl.String(),
    "amount": pl.Float64(),
    "is_fraud": pl.Int8(),
    "label_us": pl.Int64(),
}
SNAPSHOT_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "t_us", "amount", "is_fraud", "label_us")


def snapshot_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """A snapshot's :data:`SNAPSHOT_COLUMNS` (one written before labels had a time gets null ``label_us``)."""
    if "label_us" not in frame.columns:
        frame = frame.with_columns(label_us=pl.lit(None, pl.Int64))
    return frame.select(SNAPSHOT_COLUMNS)


class FeatureStore(ABC):
    """Online feature state behind five window queries, so an external store can implement it.

    A store answers the queries below, records events (:meth:`observe`, :meth:`add_label`) and loads
    snapshots (:meth:`load_snapshot`). Implementations: ``features.stores.memory.MemoryFeatureStore``
    (one worker) and ``features.stores.sqlite.SQLiteFeatureStore`` (several worker processes on one
    machine: a shared log each worker mirrors, see :meth:`refresh`). A Redis store would implement
    the same methods with sorted sets per customer, terminal and pair. Callers use a store inside
    :meth:`transaction`, which serialises this process's threads and catches up with other writers.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()

    # --- the window queries (see features.definitions.WindowQueries) ------------------------------------

    @abstractmethod
    def knows(self, transaction_id: str) -> bool:
        """Whether the transaction has been observed."""

    @abstractmethod
    def event(self, transaction_id: str) -> tuple[str, str, int, float] | None:
        """(customer_id, terminal_id, t_us, amount) of an observed transaction, else None."""

    @abstractmethod
    def customer_window(self, customer_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and amount sum of the customer's events with ``lo < t <= hi``."""

    @abstractmethod
    def terminal_window(self, terminal_id: str, lo: int, hi: int, known_at: int) -> tuple[int, float]:
        """Count of the terminal's events with ``lo < t <= hi`` and how many are fraud as known at ``known_at``."""

    @abstractmethod
    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Events of this customer at this terminal with ``lo < t <= hi``."""

    @abstractmethod
    def customer_known_frauds(self, customer_id: str, lo: int, hi: int, known_at: int) -> float:
        """The customer's events with ``lo < t <= hi`` that are fraud as known at ``known_at``."""

    @abstractmethod
    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest event time of the customer before ``t_us`` (``<=`` unless ``strictly_before``)."""

    @abstractmethod
    def __len__(self) -> int:
        """Transactions in the store."""

    # --- recording ---------------------------------------------------------------------------------------

    def observe(
        self,
        transaction_id: str,
        customer_id: str,
        terminal_id: str,
        t_us: int,
        amount: float,
        label: int | None = None,
        label_us: int | None = None,
    ) -> bool:
        """Add a transaction; returns False (and changes nothing) if already seen."""
        return self.record((transaction_id, customer_id, terminal_id, t_us, amount, label, label_us))

    @abstractmethod
    def record(self, event: Event) -> bool:
        """Store one event (what :meth:`observe` does); False (and nothing changes) if already seen."""

    def observe_many(self, events: Iterable[Event]) -> list[Event]:
        """Observe events in order (the same state as :meth:`record` one by one); returns those that were new."""
        return [event for event in events if self.record(event)]

    @abstractmethod
    @abstractmethod
    def add_label(self, transaction_id: str, label: int, label_us: int, source: str = "feedback") -> bool:
        """Record a label event known from ``label_us``; returns False if the transaction is unknown.

        Events are kept, not overwritten: the label as known at t is the newest event by then
        (``data.labels``' rule: label time, then source rank, then arrival). Recording the same event
        again changes nothing.
        """

    @abstractmethod
    def evict(self) -> int:
        """Forget events older than the features' horizon before the newest event; returns how many (this store)."""

    @abstractmethod
    def load_snapshot(self, frame: pl.DataFrame) -> bool:
        """Load a state snapshot (:data:`STATE_SCHEMA` rows); False when this store already holds it."""

    def conflict(self, transaction_id: str, customer_id: str, terminal_id: str, t_us: int, amount: float) -> str | None:
        """Why this transaction cannot be scored: its id is known with other values (None when it can)."""
        known = self.event(transaction_id)
        given = (customer_id, terminal_id, t_us, amount)
        if known is None or known == given:
            return None
        fields = ("customer_id", "terminal_id", "tx_datetime", "amount")
        differ = [f for f, a, b in zip(fields, known, given, strict=True) if a != b]
        return (
            f"transaction_id {transaction_id!r} was already scored with another {' and '.join(differ)}; "
            "ids must not be reused"
        )

    def chunk_features(
        self,
        transaction_ids: Sequence[str],
        customer_ids: Sequence[str],
        terminal_ids: Sequence[str],
        t_us: np.ndarray,
        amount: np.ndarray,
    ) -> np.ndarray | None:
        """Window features of a chunk's leading new transactions in one pass (each sees those before it), recorded.

        Returns the rows of the leading transactions it could answer exactly as :meth:`features` + :meth:`observe`
        one at a time would (bit for bit, ``features.stores.batch``): none from the first one already known,
        repeated or late on. None (nothing recorded) when this store has no such path or the chunk does not fit
        it: the caller goes row by row.
        """
        return None

    def one_pass_prefix(self, transaction_ids: Sequence[str], t_us: np.ndarray) -> int:
        """How many leading transactions :meth:`chunk_features` would take (0: none, or no such path)."""
        return 0

    def features(
        self, transaction_id: str, customer_id: str, terminal_id: str, t_us: int, amount: float, when: datetime
    ) -> np.ndarray:
        """Feature vector for a transaction (:func:`features.definitions.online_features` on this store)."""
        return online_features(self, transaction_id, customer_id, terminal_id, t_us, amount, when)

    # --- consistency -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with what other writers added (a no-op for a store only this process writes)."""
        return

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Observations inside may be written together at the end (a shared store's one transaction)."""
        yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Exclusive use by this thread: caught up with other writers first, observations written together at the end.

        Hold it briefly (a few hundred rows): single requests wait for it.
        """
        with self._lock:
            self.refresh()
            with self.batch():
                yield
