"""The in-process online store: per customer, terminal and (customer, terminal) pair, time-sorted events.

Bounded: every :data:`EVICT_EVERY` recorded events, events older than the horizon (the longest window
plus the label delay, plus :data:`EVICTION_SLACK_US` for transactions that arrive late) before the
newest event seen are forgotten (:meth:`MemoryFeatureStore.evict`). No feature of a transaction
within the slack of the newest one looks that far back, so eviction changes no feature value; a
transaction that arrives later than that is scored against the history still kept.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

import polars as pl

from features.definitions import ORDER_COLUMNS, US_PER_DAY, FeatureSpec
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA, Event, FeatureStore

#: Recorded events between two eviction passes.
EVICT_EVERY = 4096
#: How much older than the newest event a transaction may arrive and still see its full history.
EVICTION_SLACK_US = US_PER_DAY


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


class MemoryFeatureStore(FeatureStore):
    """Embedded in-process feature state (one worker; the fastest)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self._customers: dict[str, _Series] = {}
        self._terminals: dict[str, _Series] = {}
        self._pairs: dict[tuple[str, str], _Series] = {}  # (customer, terminal) visits
        # transaction_id -> (customer_id, terminal_id, t_us, amount, label or None).
        self._seen: dict[str, tuple[str, str, int, float, int | None]] = {}
        self._by_time: list[tuple[int, str]] = []  # heap of (t_us, transaction_id): what to evict first
        self._newest_us: int | None = None
        self._recorded_since_eviction = 0
        self.horizon_us = spec.history_days * US_PER_DAY + EVICTION_SLACK_US

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

    def record(self, event: Event) -> bool:
        """Add a transaction to the state; False (and nothing changes) if already seen."""
        transaction_id, customer_id, terminal_id, t_us, amount, label = event
        if transaction_id in self._seen:
            return False
        self._customers.setdefault(customer_id, _Series()).insert(t_us, amount)
        self._terminals.setdefault(terminal_id, _Series()).insert(t_us, float(label or 0))
        self._pairs.setdefault((customer_id, terminal_id), _Series()).insert(t_us, 1.0)
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, label)
        heapq.heappush(self._by_time, (t_us, transaction_id))
        if self._newest_us is None or t_us > self._newest_us:
            self._newest_us = t_us
        self._recorded_since_eviction += 1
        if self._recorded_since_eviction >= EVICT_EVERY:
            self.evict()
        return True

    @property
    def cutoff_us(self) -> int | None:
        """Events at or before this time are evicted (None while the store is empty)."""
        return None if self._newest_us is None else self._newest_us - self.horizon_us

    def evict(self) -> int:
        """Forget the events at or before :attr:`cutoff_us`; returns how many."""
        self._recorded_since_eviction = 0
        cutoff = self.cutoff_us
        if cutoff is None:
            return 0
        customers: set[str] = set()
        terminals: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        evicted = 0
        while self._by_time and self._by_time[0][0] <= cutoff:
            _, transaction_id = heapq.heappop(self._by_time)
            entry = self._seen.pop(transaction_id, None)
            if entry is not None:
                evicted += 1
                customers.add(entry[0])
                terminals.add(entry[1])
                pairs.add((entry[0], entry[1]))
        for index, keys in ((self._customers, customers), (self._terminals, terminals), (self._pairs, pairs)):
            for key in keys:
                series = index[key]  # type: ignore[index]
                i = bisect.bisect_right(series.times, cutoff)
                del series.times[:i], series.values[:i]
                if not series.times:
                    del index[key]  # type: ignore[arg-type]
        return evicted

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
    def from_transactions(cls, transactions: pl.DataFrame, spec: FeatureSpec) -> MemoryFeatureStore:
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

    def load_snapshot(self, frame: pl.DataFrame) -> bool:
        """Observe a snapshot written by :meth:`to_frame` (events already known are skipped)."""
        self.observe_many(frame.sort("t_us", "transaction_id").select(SNAPSHOT_COLUMNS).iter_rows())
        return True

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, spec: FeatureSpec) -> MemoryFeatureStore:
        """A store holding a snapshot written by :meth:`to_frame`."""
        state = cls(spec)
        state.load_snapshot(frame)
        return state
