"""The in-process online store: per customer, terminal and (customer, terminal) pair, time-sorted events.

Bounded: events older than the horizon (the longest window plus the label delay, plus
:data:`EVICTION_SLACK_US` for transactions that arrive late) before the newest event seen are
forgotten. A single recorded event (a /score) forgets up to :data:`EVICT_PER_RECORD` of them, oldest
first, so no request pays for a whole pass; a bulk record runs a whole pass (:meth:`MemoryFeatureStore.evict`)
every :data:`EVICT_EVERY` events when it loads (a snapshot), and forgets :data:`EVICT_PER_RECORD` per new
event when it is ``gradual`` (another worker's events, read in the request path). No feature of a transaction
within the slack of the newest one looks that far back, so eviction changes no feature value; a
transaction that arrives later than that is scored against the history still kept.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from data.labels import SOURCE_RANK, labels_as_of
from features.definitions import ORDER_COLUMNS, US_PER_DAY, FeatureSpec
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA, Event, FeatureStore, snapshot_rows
from features.stores.batch import chunk_events, chunk_window_features, usable_prefix

#: Events recorded in bulk between two eviction passes.
EVICT_EVERY = 4096
#: Expired events one single recorded event forgets (more than one: a backlog shrinks). A whole pass in the
#: request path paused /score ~250 ms every 4,096 requests (measured before; figures after: bench/results/latency.md).
EVICT_PER_RECORD = 2
#: How much older than the newest event a transaction may arrive and still see its full history.
EVICTION_SLACK_US = US_PER_DAY


@dataclass
class _Series:
    """Time-sorted events of one customer or terminal (a customer's also carry their terminal's code).

    Unboxed arrays (``array.array``), not lists: a batch's one-pass features copy a key's slice out in one
    ``memcpy`` (``features.stores.batch``). From lists of boxed ints and floats, scattered over the heap,
    that copy cost ~140 ns per value and held a 10,000-row batch at ~20,000 rows/s.
    """

    times: array = field(default_factory=lambda: array("q"))
    values: array = field(default_factory=lambda: array("d"))
    keys: array = field(default_factory=lambda: array("q"))  # customers: the terminal code of each event

    def insert(self, t_us: int, value: float, key: int = 0) -> None:
        i = bisect.bisect_right(self.times, t_us)
        self.times.insert(i, t_us)
        self.values.insert(i, value)
        self.keys.insert(i, key)

    def extend(self, times: list[int], values: list[float], keys: list[int]) -> None:
        """Insert events given in time order (appended in one go when they are the newest, the usual case)."""
        if not self.times or self.times[-1] <= times[0]:
            self.times.extend(times)
            self.values.extend(values)
            self.keys.extend(keys)
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


class _PinnedDict(dict):  # type: ignore[type-arg]
    """A dict the garbage collector never untracks, so a ``gc.freeze()`` keeps it out of every later pass.

    CPython untracks an exact ``dict`` whose values are all untracked (here: tuples of str, int and float,
    which the collector untracks in turn) and tracks it again, as a new object in generation 0, when a new
    tuple is stored. Our ``_seen`` index of a few 100,000 transactions then went through generations 0, 1
    and 2 again after every /score: 7-15 ms collections every 1-2 s (measured with a ``gc.callbacks`` probe;
    docs/architecture.md, "Tail latency"). A subclass is never untracked: frozen once at start-up, it stays
    frozen. ``tests/features/test_stores.py`` checks it.
    """

    __slots__ = ()


def _merge_candidates(index: dict[str, list[tuple[int, str]]], key: str, new: list[tuple[int, str]]) -> None:
    """Add new (t_us, id) fraud candidates (given in time order) to ``index[key]``, kept sorted."""
    if not new:
        return
    new.sort()  # same-instant events by id: the order every lookup (bisect on (t_us, id)) relies on
    candidates = index.setdefault(key, [])
    candidates += new
    if len(candidates) > len(new) and candidates[-len(new) - 1] > new[0]:
        candidates.sort()


class MemoryFeatureStore(FeatureStore):
    """Embedded in-process feature state (one worker; the fastest)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self._customers: dict[str, _Series] = {}
        self._terminals: dict[str, _Series] = {}
        self._terminal_codes: dict[str, int] = {}  # terminal id -> small int (kept in the customers' series)
        # transaction_id -> (customer_id, terminal_id, t_us, amount, label or None, label_us or None): the newest label.
        self._seen: dict[str, tuple[str, str, int, float, int | None, int | None]] = _PinnedDict()
        # Label events (label_us, source rank, arrival, is_fraud), sorted: transactions with more than one event.
        self._labels: dict[str, list[tuple[int, int, int, int]]] = {}
        self._label_arrivals = 0
        # Per terminal, the (t_us, transaction_id) of its transactions that have a fraud event, sorted.
        self._frauds: dict[str, list[tuple[int, str]]] = {}
        self._customer_frauds: dict[str, list[tuple[int, str]]] = {}  # the same, per customer
        self._default_delay_us = spec.label_delay_days * US_PER_DAY
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

    def terminal_window(self, terminal_id: str, lo: int, hi: int, known_at: int) -> tuple[int, float]:
        """Count of the terminal's events in ``(lo, hi]`` and how many are fraud as known at ``known_at``."""
        series = self._terminals.get(terminal_id)
        if not series:
            return 0, 0.0
        count = bisect.bisect_right(series.times, hi) - bisect.bisect_right(series.times, lo)
        return count, self._known_frauds(self._frauds.get(terminal_id), lo, hi, known_at)

    def customer_known_frauds(self, customer_id: str, lo: int, hi: int, known_at: int) -> float:
        """The customer's events in ``(lo, hi]`` that are fraud as known at ``known_at``."""
        return self._known_frauds(self._customer_frauds.get(customer_id), lo, hi, known_at)

    def _known_frauds(self, candidates: list[tuple[int, str]] | None, lo: int, hi: int, known_at: int) -> float:
        """Among (t_us, id) fraud candidates in ``(lo, hi]``, those whose label as known at ``known_at`` is fraud."""
        if not candidates:
            return 0.0
        i = bisect.bisect_right(candidates, (lo, "\uffff"))
        j = bisect.bisect_right(candidates, (hi, "\uffff"))
        label_at = self.label_at
        return float(sum(1 for _, tid in candidates[i:j] if label_at(tid, known_at) == 1))

    def label_at(self, transaction_id: str, at_us: int) -> int | None:
        """The transaction's label as known at ``at_us`` (``data.labels``' rule), None when none is known yet."""
        events = self._labels.get(transaction_id)
        if events is None:
            entry = self._seen.get(transaction_id)
            if entry is None or entry[4] is None or entry[5] > at_us:  # type: ignore[operator]
                return None
            return entry[4]
        for label_us, _, _, label in reversed(events):
            if label_us <= at_us:
                return label
        return None

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
        transaction_id, customer_id, terminal_id, t_us, amount, label, label_us = event
        if transaction_id in self._seen:
            return False
        code = self._terminal_codes.setdefault(terminal_id, len(self._terminal_codes))
        self._customers.setdefault(customer_id, _Series()).insert(t_us, amount, code)
        self._terminals.setdefault(terminal_id, _Series()).insert(t_us, 0.0)
        if label is not None and label_us is None:
            label_us = t_us + self._default_delay_us
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, label, label_us)
        if label == 1:
            self._add_candidate(customer_id, terminal_id, t_us, transaction_id)
        heapq.heappush(self._by_time, (t_us, transaction_id))
        if self._newest_us is None or t_us > self._newest_us:
            self._newest_us = t_us
        self._evict_oldest(EVICT_PER_RECORD)
        return True

    def _evict_oldest(self, limit: int, cutoff: int | None = None) -> None:
        """Forget up to ``limit`` of the oldest events at or before ``cutoff`` (default :attr:`cutoff_us`).

        Straight-line: it runs about once per recorded event in steady traffic (bench/results/batch.md's profile).
        """
        cutoff, heap = self.cutoff_us if cutoff is None else cutoff, self._by_time
        if cutoff is None:
            return
        forget, labels = self._seen.pop, self._labels
        customers, terminals, codes = self._customers, self._terminals, self._terminal_codes
        for _ in range(limit):
            if not heap or heap[0][0] > cutoff:
                return
            _, transaction_id = heapq.heappop(heap)
            entry = forget(transaction_id, None)
            if entry is None:
                continue
            customer_id, terminal_id, t_us, amount, label, _ = entry
            if label is not None or transaction_id in labels:  # never labelled: never a fraud candidate
                self._forget_labels(transaction_id, customer_id, terminal_id, t_us)
            # Every older event is gone already: this one is among its customer's first events (those at its
            # time), and any first event of its terminal is one at its time (a terminal's carry no values).
            series = customers[customer_id]
            code, values, keys = codes[terminal_id], series.values, series.keys
            i = 0
            while values[i] != amount or keys[i] != code:
                i += 1
            del series.times[i], values[i], keys[i]
            if not series.times:
                del customers[customer_id]
            series = terminals[terminal_id]
            del series.times[0], series.values[0], series.keys[0]
            if not series.times:
                del terminals[terminal_id]

    def _add_candidate(self, customer_id: str, terminal_id: str, t_us: int, transaction_id: str) -> None:
        """A transaction with a fraud event joins its customer's and its terminal's fraud candidates (once)."""
        entry = (t_us, transaction_id)
        for index, key in ((self._frauds, terminal_id), (self._customer_frauds, customer_id)):
            candidates = index.setdefault(key, [])
            i = bisect.bisect_left(candidates, entry)
            if i == len(candidates) or candidates[i] != entry:
                candidates.insert(i, entry)

    def _forget_labels(self, transaction_id: str, customer_id: str, terminal_id: str, t_us: int) -> None:
        """Drop an evicted transaction's label events and its place among the fraud candidates."""
        self._labels.pop(transaction_id, None)
        entry = (t_us, transaction_id)
        for index, key in ((self._frauds, terminal_id), (self._customer_frauds, customer_id)):
            candidates = index.get(key)
            if candidates:
                i = bisect.bisect_left(candidates, entry)
                if i < len(candidates) and candidates[i] == entry:
                    del candidates[i]
                    if not candidates:
                        del index[key]

    def observe_many(self, events: Iterable[Event], gradual: bool = False) -> list[Event]:
        """Record events (those already seen are skipped) in one pass per customer and terminal; returns the new ones.

        A whole eviction pass runs every :data:`EVICT_EVERY` events recorded this way (a load). With ``gradual``
        (in the request path) none does: up to :data:`EVICT_PER_RECORD` expired events go per new one, as with
        :meth:`record`. A service started on a snapshot weeks older than its first requests finds the whole
        snapshot expired at once: a pass forgot ~350,000 events in 1.1 s, stalling every request of both workers
        (bench/bench_latency.py at concurrency 32; docs/architecture.md, "Tail latency").
        """
        seen, new, delay = self._seen, [], self._default_delay_us
        for event in events:
            if event[0] not in seen:
                label, label_us = event[5], event[6]
                if label is not None and label_us is None:
                    event = (*event[:6], event[3] + delay)
                seen[event[0]] = event[1:]
                new.append(event)
        if gradual:
            if new:
                self._insert(new)
                self._evict_oldest(EVICT_PER_RECORD * len(new))
            return new
        start = 0
        while start < len(new):
            piece = new[start : start + EVICT_EVERY - self._recorded_since_eviction]
            start += len(piece)
            self._insert(piece)
            self._recorded_since_eviction += len(piece)
            if self._recorded_since_eviction >= EVICT_EVERY:
                self.evict()
        return new

    def chunk_features(
        self,
        transaction_ids: Sequence[str],
        customer_ids: Sequence[str],
        terminal_ids: Sequence[str],
        t_us: np.ndarray,
        amount: np.ndarray,
    ) -> np.ndarray | None:
        """Window features of a chunk's leading new rows in one pass, which are then recorded (see the base class)."""
        rows = chunk_window_features(self, transaction_ids, customer_ids, terminal_ids, t_us, amount)
        if rows is not None and len(rows):
            self.record_chunk(chunk_events(transaction_ids, customer_ids, terminal_ids, t_us, amount, len(rows)))
        return rows

    def one_pass_prefix(self, transaction_ids: Sequence[str], t_us: np.ndarray) -> int:
        """How many leading transactions :meth:`chunk_features` would take."""
        return usable_prefix(self, transaction_ids, t_us)

    def record_chunk(self, events: list[Event]) -> None:
        """Record new unlabelled events (none seen before): :meth:`record` one by one, inlined (the same state after).

        Each event is appended to its series (inserted when older than the series' newest), then up to
        :data:`EVICT_PER_RECORD` expired events go, at the cutoff of that moment, as :meth:`record` does.
        """
        seen, heap, push = self._seen, self._by_time, heapq.heappush
        customers, terminals, codes = self._customers, self._terminals, self._terminal_codes
        newest, horizon = self._newest_us, self.horizon_us
        for transaction_id, customer_id, terminal_id, t_us, amount, _, _ in events:
            code = codes.get(terminal_id)
            if code is None:
                code = codes[terminal_id] = len(codes)
            series = customers.get(customer_id)
            if series is None:
                series = customers[customer_id] = _Series()
            if not series.times or series.times[-1] <= t_us:
                series.times.append(t_us)
                series.values.append(amount)
                series.keys.append(code)
            else:
                series.insert(t_us, amount, code)
            series = terminals.get(terminal_id)
            if series is None:
                series = terminals[terminal_id] = _Series()
            if not series.times or series.times[-1] <= t_us:
                series.times.append(t_us)
                series.values.append(0.0)
                series.keys.append(0)
            else:
                series.insert(t_us, 0.0)
            seen[transaction_id] = (customer_id, terminal_id, t_us, amount, None, None)
            push(heap, (t_us, transaction_id))
            if newest is None or t_us > newest:
                newest = self._newest_us = t_us
            if heap[0][0] <= newest - horizon:
                self._evict_oldest(EVICT_PER_RECORD, newest - horizon)

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
            _merge_candidates(self._customer_frauds, customer_id, [(e[3], e[0]) for e in rows if e[5] == 1])
        for terminal_id, rows in by_terminal.items():
            series = self._terminals.get(terminal_id)
            if series is None:
                series = self._terminals[terminal_id] = _Series()
            series.extend([e[3] for e in rows], [0.0] * len(rows), [0] * len(rows))
            _merge_candidates(self._frauds, terminal_id, [(e[3], e[0]) for e in rows if e[5] == 1])
        heap = self._by_time
        for event in events:
            heapq.heappush(heap, (event[3], event[0]))
        newest = max(e[3] for e in events) if events_by_time is not events else events[-1][3]
        if self._newest_us is None or newest > self._newest_us:
            self._newest_us = newest

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
        evicted = 0
        while self._by_time and self._by_time[0][0] <= cutoff:
            _, transaction_id = heapq.heappop(self._by_time)
            entry = self._seen.pop(transaction_id, None)
            if entry is not None:
                evicted += 1
                customers.add(entry[0])
                terminals.add(entry[1])
                self._forget_labels(transaction_id, entry[0], entry[1], entry[2])
        for index, keys in ((self._customers, customers), (self._terminals, terminals)):
            for key in keys:
                series = index[key]
                series.forget_until(cutoff)
                if not series.times:
                    del index[key]
        return evicted

    def add_label(self, transaction_id: str, label: int, label_us: int, source: str = "feedback") -> bool:
        """Record a label event (see the base class); False if the transaction is unknown to the state."""
        entry = self._seen.get(transaction_id)
        if entry is None:
            return False
        customer_id, terminal_id, t_us, amount, old, old_us = entry
        rank = SOURCE_RANK.get(source, -1)
        events = self._labels.get(transaction_id)
        if events is None:
            if old is None:
                events = []
            elif (old, old_us) == (label, label_us):
                return True  # the same event again (e.g. a worker catching up with the shared log)
            else:
                # The label that came with the transaction ranks below any label event at the same time.
                events = [(old_us, -1, 0, old)]  # type: ignore[list-item]
            self._labels[transaction_id] = events
        else:
            tied = [e for e in events if e[0] == label_us and e[1] == rank]
            if tied and tied[-1][3] == label:  # the same event again: it would change nothing
                return True
        self._label_arrivals += 1
        bisect.insort(events, (label_us, rank, self._label_arrivals, label))
        newest = events[-1]
        self._seen[transaction_id] = (customer_id, terminal_id, t_us, amount, newest[3], newest[0])
        if label == 1:  # among the fraud candidates from now on
            self._add_candidate(customer_id, terminal_id, t_us, transaction_id)
        return True

    @classmethod
    def from_transactions(
        cls, transactions: pl.DataFrame, spec: FeatureSpec, labels: pl.DataFrame | None = None
    ) -> MemoryFeatureStore:
        """Build the state from canonical transactions (only the history the features need).

        Labels: the newest of ``labels`` (label events) per transaction; without them the transactions'
        ``is_fraud``, known ``spec.label_delay_days`` after each transaction.
        """
        state = cls(spec)
        df = transactions.sort(*ORDER_COLUMNS)
        if df.height:
            newest = df["tx_datetime"].max()
            df = df.filter(pl.col("tx_datetime") > newest - pl.duration(days=spec.history_days))  # type: ignore[operator]
        if labels is not None:  # the newest event of each transaction, with its time
            known = labels_as_of(labels).select(
                "transaction_id", pl.col("is_fraud").alias("_label"), pl.col("label_time").dt.epoch("us").alias("_us")
            )
            df = df.join(known, on="transaction_id", how="left", maintain_order="left")
        else:
            df = df.with_columns(
                _label=pl.col("is_fraud"),
                _us=pl.when(pl.col("is_fraud").is_not_null()).then(
                    pl.col("tx_datetime").dt.epoch("us") + spec.label_delay_days * US_PER_DAY
                ),
            )
        state.observe_many(
            df.select(
                "transaction_id",
                "customer_id",
                "terminal_id",
                pl.col("tx_datetime").dt.epoch("us").alias("t_us"),
                "amount",
                "_label",
                "_us",
            ).iter_rows()
        )
        return state

    def to_frame(self) -> pl.DataFrame:
        """Snapshot as a frame (ships inside the model; reload with :meth:`from_frame`)."""
        rows = [(tid, *event) for tid, event in self._seen.items()]
        return pl.DataFrame(
            rows,
            schema=["transaction_id", "customer_id", "terminal_id", "t_us", "amount", "is_fraud", "label_us"],
            orient="row",
        ).cast(STATE_SCHEMA)  # type: ignore[arg-type]

    def load_snapshot(self, frame: pl.DataFrame) -> bool:
        """Observe a snapshot written by :meth:`to_frame` (events already known are skipped)."""
        rows = snapshot_rows(frame.sort("t_us", "transaction_id"))
        if self._newest_us is None and not self._seen:
            self.load_frame(rows)
        else:
            self.observe_many(rows.iter_rows())
        return True

    def load_frame(self, rows: pl.DataFrame) -> None:
        """Fill an empty store with events (:data:`SNAPSHOT_COLUMNS`, in arrival order) column-wise.

        The state :meth:`observe_many` builds from the same rows, except that every expired event goes at once (a
        load by pieces forgets them pass by pass). Per event there is one ``_seen`` entry and one heap entry; the
        series are built per key from sorted columns (``array.frombytes``). Observing 356,548 events one piece at
        a time took 4-6 s per worker at start-up; this takes ~1.2 s (bench world of bench/bench_service.py).
        """
        if self._newest_us is not None or self._seen:
            raise ValueError("load_frame fills an empty store; observe_many adds to one")
        delay = self._default_delay_us
        rows = (
            rows.select(SNAPSHOT_COLUMNS)
            .unique("transaction_id", keep="first", maintain_order=True)
            .with_columns(
                label_us=pl.when(pl.col("is_fraud").is_not_null() & pl.col("label_us").is_null())
                .then(pl.col("t_us") + delay)
                .otherwise(pl.col("label_us"))
            )
        )
        if not rows.height:
            return
        columns = [rows[c].to_list() for c in SNAPSHOT_COLUMNS]
        self._seen.update(zip(columns[0], zip(*columns[1:], strict=True), strict=True))
        # Same-instant events keep their arrival order in each series (a stable sort by time, then by key).
        by_time = rows.sort("t_us", maintain_order=True)
        codes = self._terminal_codes
        for terminal_id in by_time["terminal_id"].unique(maintain_order=True).to_list():
            codes.setdefault(terminal_id, len(codes))
        by_time = by_time.with_columns(mark=pl.col("terminal_id").replace_strict(codes, return_dtype=pl.Int64))
        for index, key, with_values in (
            (self._customers, "customer_id", True),
            (self._terminals, "terminal_id", False),
        ):
            grouped = by_time.sort(key, maintain_order=True)
            times = memoryview(grouped["t_us"].to_numpy()).cast("B")
            values = memoryview(grouped["amount"].to_numpy()).cast("B") if with_values else None
            marks = memoryview(grouped["mark"].to_numpy()).cast("B") if with_values else None
            start = 0
            for name, count in grouped.group_by(key, maintain_order=True).len().iter_rows():
                series = _Series()
                lo, hi = start * 8, (start + count) * 8
                series.times.frombytes(times[lo:hi])
                if values is not None and marks is not None:
                    series.values.frombytes(values[lo:hi])
                    series.keys.frombytes(marks[lo:hi])
                else:
                    series.values.frombytes(bytes(hi - lo))
                    series.keys.frombytes(bytes(hi - lo))
                index[name] = series
                start += count
        frauds = by_time.filter(pl.col("is_fraud") == 1).select("terminal_id", "customer_id", "t_us", "transaction_id")
        for terminal_id, customer_id, t_us, transaction_id in frauds.iter_rows():
            self._frauds.setdefault(terminal_id, []).append((t_us, transaction_id))
            self._customer_frauds.setdefault(customer_id, []).append((t_us, transaction_id))
        for candidates in (*self._frauds.values(), *self._customer_frauds.values()):
            candidates.sort()
        ordered = rows.sort("t_us", "transaction_id")
        self._by_time = list(zip(ordered["t_us"].to_list(), ordered["transaction_id"].to_list(), strict=True))
        self._newest_us = self._by_time[-1][0]  # a sorted list is a heap
        self.evict()

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, spec: FeatureSpec) -> MemoryFeatureStore:
        """A store holding a snapshot written by :meth:`to_frame`."""
        state = cls(spec)
        state.load_snapshot(frame)
        return state
