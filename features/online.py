"""Online feature state: the same definitions as :mod:`features.engineering`, one event at a time.

The state keeps, per customer, the (time, amount) of recent transactions and, per terminal, the
(time, label) of recent transactions; it is built from the lake at packaging time and updated as
transactions are scored and as labels arrive. Times are integer microseconds so window
boundaries compare exactly as they do offline.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from features.engineering import ORDER_COLUMNS, US_PER_DAY, US_PER_HOUR, FeatureSpec

STATE_SCHEMA = {
    "transaction_id": pl.String(),
    "t_us": pl.Int64(),
    "customer_id": pl.String(),
    "terminal_id": pl.String(),
    "amount": pl.Float64(),
    "is_fraud": pl.Int8(),
}


@dataclass
class _Series:
    """Time-sorted events of one customer or terminal."""

    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def insert(self, t_us: int, value: float) -> int:
        i = bisect.bisect_right(self.times, t_us)
        self.times.insert(i, t_us)
        self.values.insert(i, value)
        return i

    def window(self, lo_exclusive: int, hi_inclusive: int) -> tuple[int, float]:
        """Count and sum of values with lo < t <= hi."""
        i = bisect.bisect_right(self.times, lo_exclusive)
        j = bisect.bisect_right(self.times, hi_inclusive)
        return j - i, float(sum(self.values[i:j]))


def to_epoch_us(when: datetime) -> int:
    """UTC epoch microseconds of a datetime (naive means UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class FeatureStore(ABC):
    """Online feature state behind five window queries, so an external store can implement it.

    :meth:`features` holds every definition once; a store only answers the queries below and
    records events (:meth:`observe`, :meth:`add_label`). Implementations: the in-process
    :class:`OnlineFeatureState` (one worker) and ``features.sqlite_store.SQLiteFeatureStore``
    (several worker processes on one machine: a shared log each worker mirrors, see
    :meth:`refresh`). A Redis store would implement the same methods with sorted sets per
    customer, terminal and pair.
    """

    spec: FeatureSpec

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
    def terminal_window(self, terminal_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and known-fraud count of the terminal's events with ``lo < t <= hi``."""

    @abstractmethod
    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Events of this customer at this terminal with ``lo < t <= hi``."""

    @abstractmethod
    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest event time of the customer before ``t_us`` (``<=`` unless ``strictly_before``)."""

    @abstractmethod
    def observe(
        self,
        transaction_id: str,
        customer_id: str,
        terminal_id: str,
        t_us: int,
        amount: float,
        label: int | None = None,
    ) -> bool:
        """Add a transaction; returns False (and changes nothing) if already seen."""

    @abstractmethod
    def add_label(self, transaction_id: str, label: int) -> bool:
        """Record a late label; returns False if the transaction is unknown."""

    @abstractmethod
    def __len__(self) -> int:
        """Transactions in the store."""

    def refresh(self) -> None:
        """Catch up with what other writers added (a no-op for a store only this process writes)."""
        return

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Observations inside may be written together at the end (a shared store's one transaction)."""
        yield

    def observe_many(self, rows: Iterable[tuple[str, str, str, int, float, int | None]]) -> None:
        """Observe (transaction_id, customer_id, terminal_id, t_us, amount, label) rows in order."""
        for tid, cust, term, t_us, amount, label in rows:
            self.observe(tid, cust, term, t_us, amount, label)

    def features(
        self, transaction_id: str, customer_id: str, terminal_id: str, t_us: int, amount: float, when: datetime
    ) -> np.ndarray:
        """Feature vector (in ``spec.feature_names`` order) for a transaction.

        A transaction already in the state is scored as of its own arrival (it is not counted twice).
        """
        spec = self.spec
        seen = self.knows(transaction_id)
        own = 0 if seen else 1  # an observed transaction is in its own windows already
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        row = [amount, float(when.isoweekday() >= 6), float(when.hour <= spec.night_end_hour)]
        windows = {w: self.customer_window(customer_id, t_us - w * US_PER_DAY, t_us) for w in spec.windows_days}
        for n, total in windows.values():
            n, total = n + own, total + own * amount
            row += [float(n), total / n]
        hi = t_us - spec.label_delay_days * US_PER_DAY
        for w in spec.windows_days:
            n, frauds = self.terminal_window(terminal_id, hi - w * US_PER_DAY, hi)
            row += [float(n), frauds / n if n else 0.0]
        if spec.feature_set == "extended":
            row += self._behavioural(customer_id, terminal_id, t_us, amount, seen, windows[spec.longest_window_days])
        return np.asarray(row, dtype=np.float64)

    def _behavioural(
        self,
        customer_id: str,
        terminal_id: str,
        t_us: int,
        amount: float,
        seen: bool,
        longest: tuple[int, float],
    ) -> list[float]:
        """Same definitions as ``features.engineering._behavioural``; ``longest`` is the W-day customer window."""
        horizon_us = self.spec.longest_window_days * US_PER_DAY
        mine = 1 if seen else 0
        n, total = longest
        prev_n, prev_total = n - mine, total - mine * amount
        ratio = (amount + 1) / (prev_total / prev_n + 1) if prev_n > 0 else 1.0
        if seen and self.customer_window(customer_id, t_us - 1, t_us)[0] > 1:
            previous: int | None = t_us  # another transaction of the customer at the same instant
        else:
            previous = self.previous_time(customer_id, t_us, strictly_before=seen)
        gap = horizon_us if previous is None else min(t_us - previous, horizon_us)
        earlier = self.pair_count(customer_id, terminal_id, t_us - horizon_us, t_us) - mine
        in_hour = self.customer_window(customer_id, t_us - US_PER_HOUR, t_us)[0] + 1 - mine
        return [ratio, gap / US_PER_HOUR, float(earlier == 0), float(in_hour)]


class OnlineFeatureState(FeatureStore):
    """Embedded in-process feature state (one worker; the fastest)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._customers: dict[str, _Series] = {}
        self._terminals: dict[str, _Series] = {}
        self._pairs: dict[tuple[str, str], _Series] = {}  # (customer, terminal) visits
        # transaction_id -> (customer_id, terminal_id, t_us, amount, label or None).
        self._seen: dict[str, tuple[str, str, int, float, int | None]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def knows(self, transaction_id: str) -> bool:
        """Whether the transaction has been observed."""
        return transaction_id in self._seen

    def event(self, transaction_id: str) -> tuple[str, str, int, float] | None:
        """(customer_id, terminal_id, t_us, amount) of an observed transaction, else None."""
        entry = self._seen.get(transaction_id)
        return None if entry is None else entry[:4]

    def customer_window(self, customer_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and amount sum of the customer's events in ``(lo, hi]``."""
        series = self._customers.get(customer_id)
        return series.window(lo, hi) if series else (0, 0.0)

    def terminal_window(self, terminal_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and known frauds of the terminal's events in ``(lo, hi]``."""
        series = self._terminals.get(terminal_id)
        return series.window(lo, hi) if series else (0, 0.0)

    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Visits of the customer to the terminal in ``(lo, hi]``."""
        series = self._pairs.get((customer_id, terminal_id))
        return series.window(lo, hi)[0] if series else 0

    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest customer event time before ``t_us``."""
        series = self._customers.get(customer_id)
        if not series:
            return None
        i = (bisect.bisect_left if strictly_before else bisect.bisect_right)(series.times, t_us)
        return series.times[i - 1] if i else None

    def observe(
        self,
        transaction_id: str,
        customer_id: str,
        terminal_id: str,
        t_us: int,
        amount: float,
        label: int | None = None,
    ) -> bool:
        """Add a transaction to the state; returns False (and changes nothing) if already seen."""
        if transaction_id in self._seen:
            return False
        self._customers.setdefault(customer_id, _Series()).insert(t_us, amount)
        self._terminals.setdefault(terminal_id, _Series()).insert(t_us, float(label or 0))
        self._pairs.setdefault((customer_id, terminal_id), _Series()).insert(t_us, 1.0)
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, label)
        return True

    def add_label(self, transaction_id: str, label: int) -> bool:
        """Record a late label; returns False if the transaction is unknown to the state."""
        entry = self._seen.get(transaction_id)
        if entry is None:
            return False
        customer_id, terminal_id, t_us, amount, old = entry
        if old == label:
            return True
        series = self._terminals[terminal_id]
        i = bisect.bisect_left(series.times, t_us)
        # Several events may share the time; relabel one that carries the old value.
        while series.times[i] == t_us and series.values[i] != float(old or 0):
            i += 1
        series.values[i] = float(label)
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, label)
        return True

    @classmethod
    def from_transactions(cls, transactions: pl.DataFrame, spec: FeatureSpec) -> OnlineFeatureState:
        """Build the state from canonical transactions (only the history the features need)."""
        state = cls(spec)
        df = transactions.sort(*ORDER_COLUMNS)
        if df.height:
            newest = df["tx_datetime"].max()
            df = df.filter(pl.col("tx_datetime") > newest - pl.duration(days=spec.history_days))  # type: ignore[operator]
        state.observe_many(
            df.select(
                "transaction_id",
                "customer_id",
                "terminal_id",
                pl.col("tx_datetime").dt.epoch("us").alias("t_us"),
                "amount",
                "is_fraud",
            ).iter_rows()
        )
        return state

    def to_frame(self) -> pl.DataFrame:
        """Snapshot as a frame (ships inside the model; reload with :meth:`from_frame`)."""
        rows = [(tid, *event) for tid, event in self._seen.items()]
        return pl.DataFrame(
            rows,
            schema=["transaction_id", "customer_id", "terminal_id", "t_us", "amount", "is_fraud"],
            orient="row",
        ).cast(STATE_SCHEMA)  # type: ignore[arg-type]

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, spec: FeatureSpec) -> OnlineFeatureState:
        """Reload a snapshot written by :meth:`to_frame`."""
        state = cls(spec)
        state.observe_many(
            frame.sort("t_us", "transaction_id")
            .select("transaction_id", "customer_id", "terminal_id", "t_us", "amount", "is_fraud")
            .iter_rows()
        )
        return state
