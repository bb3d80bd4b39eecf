"""The in-process online store: per customer, terminal and (customer, terminal) pair, time-sorted events."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import polars as pl

from features.definitions import ORDER_COLUMNS, FeatureSpec
from features.stores.base import SNAPSHOT_COLUMNS, STATE_SCHEMA, Event, FeatureStore


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
