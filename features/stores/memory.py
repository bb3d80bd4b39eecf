"""The in-process online store: per customer, terminal and (customer, terminal) pair, time-sorted events.

Bounded: events older than the horizon (the longest window plus the label delay, plus
:data:`EVICTION_SLACK_US` for transactions that arrive late) before the newest event seen are
forgotten. A single recorded event (a /score) forgets up to :data:`EVICT_PER_RECORD` of them, oldest
first, so no request pays for a whole pass; a bulk record (a batch, a snapshot load) runs a whole pass
(:meth:`MemoryFeatureStore.evict`) every :data:`EVICT_EVERY` events. No feature of a transaction
within the slack of the newest one looks that far back, so eviction changes no feature value; a
transaction that arrives later than that is scored against the history still kept.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from features.definitions import ORDER_COLUMNS, US_PER_DAY, FeatureSpec, RecentEvents
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA, Event, FeatureStore

#: Events recorded in bulk between two eviction passes.
EVICT_EVERY = 4096
#: Expired events one single recorded event forgets (more than one: a backlog shrinks). A whole pass in the
#: request path paused /score ~250 ms every 4,096 requests (measured before; figures after: bench/results/latency.md).
EVICT_PER_RECORD = 2
#: How much older than the newest event a transaction may arrive and still see its full history.
EVICTION_SLACK_US = US_PER_DAY


@dataclass
class _Series:
    """Time-sorted events of one customer or terminal (a customer's also carry their terminal's code)."""

    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)  # customers: the terminal code of each event

    def insert(self, t_us: int, value: float, key: int = 0) -> None:
        i = bisect.bisect_right(self.times, t_us)
        self.times.insert(i, t_us)
        self.values.insert(i, value)
        self.keys.insert(i, key)

    def extend(self, times: list[int], values: list[float], keys: list[int]) -> None:
        """Insert events given in time order (appended in one go when they are the newest, the usual case)."""
        if not self.times or self.times[-1] <= times[0]:
            self.times += times
            self.values += values
            self.keys += keys
            return
        for t_us, value, key in zip(times, values, keys, strict=True):
            self.insert(t_us, value, key)

    def window(self, lo_exclusive: int, hi_inclusive: int) -> tuple[int, float]:
        """Count and exact sum (``math.fsum``: correctly rounded, whatever the order) of values with lo < t <= hi."""
        i = bisect.bisect_right(self.times, lo_exclusive)
        j = bisect.bisect_right(self.times, hi_inclusive)
        return j - i, math.fsum(self.values[i:j])

    def forget_until(self, cutoff: int) -> None:
        """Drop the events at or before ``cutoff``."""
        i = bisect.bisect_right(self.times, cutoff)
        del self.times[:i], self.values[:i], self.keys[:i]


class MemoryFeatureStore(FeatureStore):
    """Embedded in-process feature state (one worker; the fastest)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self._customers: dict[str, _Series] = {}
        self._terminals: dict[str, _Series] = {}
        self._terminal_codes: dict[str, int] = {}  # terminal id -> small int (kept in the customers' series)
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
        series = self._customers.get(customer_id)
        code = self._terminal_codes.get(terminal_id)
        if not series or code is None:
            return 0
        i = bisect.bisect_right(series.times, lo)
        j = bisect.bisect_right(series.times, hi)
        return series.keys[i:j].count(code)

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
        code = self._terminal_codes.setdefault(terminal_id, len(self._terminal_codes))
        self._customers.setdefault(customer_id, _Series()).insert(t_us, amount, code)
        self._terminals.setdefault(terminal_id, _Series()).insert(t_us, float(label or 0))
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, label)
        heapq.heappush(self._by_time, (t_us, transaction_id))
        if self._newest_us is None or t_us > self._newest_us:
            self._newest_us = t_us
        self._evict_oldest(EVICT_PER_RECORD)
        return True

    def _evict_oldest(self, limit: int) -> None:
        """Forget up to ``limit`` of the oldest events at or before :attr:`cutoff_us` (the heap's head)."""
        cutoff, heap = self.cutoff_us, self._by_time
        for _ in range(limit):
            if cutoff is None or not heap or heap[0][0] > cutoff:
                return
            _, transaction_id = heapq.heappop(heap)
            entry = self._seen.pop(transaction_id, None)
            if entry is None:
                continue
            customer_id, terminal_id, _, amount, label = entry
            code = self._terminal_codes[terminal_id]
            # Every older event is gone already: this one is among each series' first events (those at its time).
            for index, key, value, mark in (
                (self._customers, customer_id, amount, code),
                (self._terminals, terminal_id, float(label or 0), 0),
            ):
                series = index[key]
                i = 0
                while series.values[i] != value or series.keys[i] != mark:
                    i += 1
                del series.times[i], series.values[i], series.keys[i]
                if not series.times:
                    del index[key]

    def observe_many(self, events: Iterable[Event]) -> list[Event]:
        """Record events (those already seen are skipped) in one pass per customer and terminal; returns the new ones.

        A whole eviction pass runs every :data:`EVICT_EVERY` events recorded this way.
        """
        seen, new = self._seen, []
        for event in events:
            if event[0] not in seen:
                seen[event[0]] = event[1:]
                new.append(event)
        start = 0
        while start < len(new):
            piece = new[start : start + EVICT_EVERY - self._recorded_since_eviction]
            start += len(piece)
            self._insert(piece)
            self._recorded_since_eviction += len(piece)
            if self._recorded_since_eviction >= EVICT_EVERY:
                self.evict()
        return new

    def _insert(self, events: list[Event]) -> None:
        """Add new events (already in ``_seen``) to the customer and terminal series and the eviction heap."""
        if any(events[i][3] > events[i + 1][3] for i in range(len(events) - 1)):
            events_by_time = sorted(events, key=lambda e: e[3])  # stable: same-instant events keep their order
        else:
            events_by_time = events
        codes = self._terminal_codes
        by_customer: dict[str, list[Event]] = defaultdict(list)
        by_terminal: dict[str, list[Event]] = defaultdict(list)
        for event in events_by_time:
            by_customer[event[1]].append(event)
            by_terminal[event[2]].append(event)
        for terminal_id in by_terminal:
            codes.setdefault(terminal_id, len(codes))
        for customer_id, rows in by_customer.items():
            series = self._customers.get(customer_id)
            if series is None:
                series = self._customers[customer_id] = _Series()
            series.extend([e[3] for e in rows], [e[4] for e in rows], [codes[e[2]] for e in rows])
        for terminal_id, rows in by_terminal.items():
            series = self._terminals.get(terminal_id)
            if series is None:
                series = self._terminals[terminal_id] = _Series()
            series.extend([e[3] for e in rows], [float(e[5] or 0) for e in rows], [0] * len(rows))
        heap = self._by_time
        for event in events:
            heapq.heappush(heap, (event[3], event[0]))
        newest = max(e[3] for e in events) if events_by_time is not events else events[-1][3]
        if self._newest_us is None or newest > self._newest_us:
            self._newest_us = newest

    def recent_events(self, customers: Sequence[str], terminals: Sequence[str], lo: int, hi: int) -> RecentEvents:
        """The events of ``customers`` and of ``terminals`` with ``lo < t <= hi`` as arrays (keys as list indices)."""
        counts: list[int] = []
        times: list[int] = []
        amounts: list[float] = []
        keys: list[int] = []
        right = bisect.bisect_right
        for customer_id in customers:
            series = self._customers.get(customer_id)
            if series is None:
                counts.append(0)
                continue
            i, j = right(series.times, lo), right(series.times, hi)
            counts.append(j - i)
            times += series.times[i:j]
            amounts += series.values[i:j]
            keys += series.keys[i:j]
        lookup = np.full(len(self._terminal_codes) + 1, -1, dtype=np.int64)
        term_counts: list[int] = []
        term_times: list[int] = []
        labels: list[float] = []
        for index, terminal_id in enumerate(terminals):
            code = self._terminal_codes.get(terminal_id)
            if code is not None:
                lookup[code] = index
            series = self._terminals.get(terminal_id)
            if series is None:
                term_counts.append(0)
                continue
            i, j = right(series.times, lo), right(series.times, hi)
            term_counts.append(j - i)
            term_times += series.times[i:j]
            labels += series.values[i:j]
        return RecentEvents(
            customer=np.repeat(np.arange(len(customers), dtype=np.int64), counts),
            customer_t_us=np.array(times, dtype=np.int64),
            customer_amount=np.array(amounts, dtype=np.float64),
            customer_terminal=lookup[np.array(keys, dtype=np.int64)],
            terminal=np.repeat(np.arange(len(terminals), dtype=np.int64), term_counts),
            terminal_t_us=np.array(term_times, dtype=np.int64),
            terminal_label=np.array(labels, dtype=np.float64).astype(np.int64),
        )

    @property
    def cutoff_us(self) -> int | None:
        """Events at or before this time are evicted (None while the store is empty)."""
        return None if self._newest_us is None else self._newest_us - self.horizon_us

    def keeps_history_for(self, t_us: int) -> bool:
        """Whether ``t_us`` is within :data:`EVICTION_SLACK_US` of the newest event (see the base class)."""
        return self._newest_us is None or t_us >= self._newest_us - EVICTION_SLACK_US

    def evict(self) -> int:
        """Forget the events at or before :attr:`cutoff_us`; returns how many."""
        self._recorded_since_eviction = 0
        cutoff = self.cutoff_us
        if cutoff is None:
            return 0
        customers: set[str] = set()
        terminals: set[str] = set()
        evicted = 0
        while self._by_time and self._by_time[0][0] <= cutoff:
            _, transaction_id = heapq.heappop(self._by_time)
            entry = self._seen.pop(transaction_id, None)
            if entry is not None:
                evicted += 1
                customers.add(entry[0])
                terminals.add(entry[1])
        for index, keys in ((self._customers, customers), (self._terminals, terminals)):
            for key in keys:
                series = index[key]
                series.forget_until(cutoff)
                if not series.times:
                    del index[key]
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
