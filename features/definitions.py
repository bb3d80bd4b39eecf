"""Feature definitions, offline and online side by side: a new feature is an edit here plus its parity test.

Offline, :func:`compute_features` adds every feature column to a frame of transactions at once
(Polars + NumPy); online, :func:`online_features` computes the same values for one transaction from
the window queries of a store (:class:`WindowQueries`, implemented in ``features/stores/``).
``tests/features/test_parity.py`` checks that the two agree, with late, out-of-order and same-instant
events.

Definitions (all windows are half-open ``(t - w, t]`` on event time):

- ``tx_amount``; ``tx_during_weekend`` (Saturday/Sunday, UTC); ``tx_during_night`` (hour <= 6).
- ``customer_id_nb_tx_{w}day_window`` / ``customer_id_avg_amount_{w}day_window``: the
  customer's transactions in ``(t - w, t]`` up to and including the current one. Transactions
  with the same timestamp count in order of arrival (time, then transaction id), so a later
  transaction never leaks into an earlier one.
- ``terminal_id_nb_tx_{w}day_window`` / ``terminal_id_risk_{w}day_window``: the terminal's
  transactions in ``(t - d - w, t - d]`` with ``d`` the label delay, and the share of them
  known to be fraud. Labels younger than the delay are never used.

Behavioural features (``feature_set="extended"``, the default; ``"baseline"`` is the handbook's 15),
with ``W`` the longest window (30 days by default):

- ``customer_amount_ratio_{W}day``: ``(amount + 1) / (m + 1)`` with ``m`` the mean amount of the
  customer's earlier transactions in ``(t - W, t]``; 1 when there are none. Stolen cards spend
  differently from their owner (handbook scenario 3 multiplies amounts by 5).
- ``customer_hours_since_prev_tx``: hours since the customer's previous transaction, capped at
  ``W`` days (also when there is none).
- ``customer_terminal_first_visit_{W}day``: 1 if the customer has no earlier transaction at this
  terminal in ``(t - W, t]``, else 0.
- ``customer_nb_tx_1hour_window``: the customer's transactions in the last hour, the current one
  included (velocity; card testing is a burst of payments).

How (NumPy, no per-window joins): rows are sorted once by (time, transaction id), then grouped by
customer and by terminal with one stable sort each. Where a window starts is one binary search over
(key, time) packed into an int64; counts and sums are differences of per-key running totals (amounts
added in time order). With ``start``, rows before it are only look-back: they are grouped and summed
but get no features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import polars as pl

US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000
ORDER_COLUMNS = ("tx_datetime", "transaction_id")
FEATURE_SETS = ("baseline", "extended")


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature pipeline computes; shipped with the model so serving matches training."""

    windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = 7
    night_end_hour: int = 6
    feature_set: str = "extended"

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set must be one of {FEATURE_SETS}, not {self.feature_set!r}")

    @property
    def longest_window_days(self) -> int:
        """``W``: the longest window, also the horizon of the behavioural features."""
        return max(self.windows_days)

    @property
    def behavioural_names(self) -> list[str]:
        """The behavioural feature columns (empty for the baseline set)."""
        if self.feature_set == "baseline":
            return []
        w = self.longest_window_days
        return [
            f"customer_amount_ratio_{w}day",
            "customer_hours_since_prev_tx",
            f"customer_terminal_first_visit_{w}day",
            "customer_nb_tx_1hour_window",
        ]

    @property
    def feature_names(self) -> list[str]:
        """Model input columns, in order."""
        names = ["tx_amount", "tx_during_weekend", "tx_during_night"]
        for w in self.windows_days:
            names += [f"customer_id_nb_tx_{w}day_window", f"customer_id_avg_amount_{w}day_window"]
        for w in self.windows_days:
            names += [f"terminal_id_nb_tx_{w}day_window", f"terminal_id_risk_{w}day_window"]
        return names + self.behavioural_names

    @property
    def history_days(self) -> int:
        """How much history an online state must keep to compute every feature."""
        return max(self.windows_days) + self.label_delay_days

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "windows_days": list(self.windows_days),
            "label_delay_days": self.label_delay_days,
            "night_end_hour": self.night_end_hour,
            "feature_set": self.feature_set,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            windows_days=tuple(int(w) for w in data["windows_days"]),  # type: ignore[union-attr]
            label_delay_days=int(data["label_delay_days"]),  # type: ignore[arg-type]
            night_end_hour=int(data["night_end_hour"]),  # type: ignore[arg-type]
            # Model cards written before the behavioural features existed used the baseline set.
            feature_set=str(data.get("feature_set", "baseline")),
        )


# --- offline: a whole frame at once ---------------------------------------------------------------------

# Keys times the time span must stay below this for (key, time) to fit in one int64.
KEYED_TIME_LIMIT = 2**62


class _Timeline:
    """Event times in row order ((time, transaction id) order); output rows are ``first_row`` onwards."""

    def __init__(self, t_us: np.ndarray, first_row: int, max_offset_us: int) -> None:
        self.t_us = t_us
        self.first_row = first_row
        # Every bound (time - offset, offset <= max_offset_us) is >= origin: bounds never go negative.
        self.origin = int(t_us[0]) - max_offset_us if len(t_us) else 0
        self.span = int(t_us[-1]) - self.origin + 1 if len(t_us) else 1
        self._visible: dict[int, np.ndarray] = {}

    def visible(self, offset_us: int) -> np.ndarray:
        """Per output row, how many rows have time <= its time - ``offset_us`` (rows are in time order)."""
        if offset_us not in self._visible:
            bounds = self.t_us[self.first_row :] - offset_us
            self._visible[offset_us] = np.searchsorted(self.t_us, bounds, side="right")
        return self._visible[offset_us]


@dataclass(frozen=True)
class _Groups:
    """The rows of one key (customer, terminal) side by side, each key's rows in time order.

    ``order[i]`` is the row at grouped position ``i`` and ``first[i]`` the grouped position of that
    key's first row. ``pos`` are the grouped positions of the output rows, ``rows`` their output row
    numbers. ``keyed`` is (key, time) as one increasing int64 when that fits, else (key, row).
    """

    timeline: _Timeline
    order: np.ndarray
    first: np.ndarray
    keyed: np.ndarray
    by_time: bool
    pos: np.ndarray
    rows: np.ndarray
    keyed_out: np.ndarray  # keyed[pos]

    @classmethod
    def of(cls, codes: np.ndarray, timeline: _Timeline) -> _Groups:
        """Group the rows by integer key ``codes`` (given in row order)."""
        n = len(codes)
        order = np.argsort(codes, kind="stable")  # stable: a key's rows stay in time order
        keys = codes[order].astype(np.int64)
        starts = np.ones(n, dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        n_keys = int(keys[-1]) + 1 if n else 0
        by_time = n_keys * timeline.span < KEYED_TIME_LIMIT
        # (key, time), or (key, row) when keys * span would overflow: key * (n + 1) + row < n ** 2 + n.
        keyed = keys * timeline.span + (timeline.t_us[order] - timeline.origin) if by_time else keys * (n + 1) + order
        if timeline.first_row == 0:
            return cls(timeline, order, first, keyed, by_time, np.arange(n), order, keyed)
        pos = np.flatnonzero(order >= timeline.first_row)
        return cls(timeline, order, first, keyed, by_time, pos, order[pos] - timeline.first_row, keyed[pos])

    def last_at_or_before(self, offset_us: int) -> np.ndarray:
        """Per output position, the grouped position of its key's last row with time <= its time - offset.

        ``first - 1`` when the key has no such row. Rows at the same time count in row order, so
        for ``offset_us`` > 0 every row at the bound's time is included.
        """
        if self.by_time:
            return np.searchsorted(self.keyed, self.keyed_out - offset_us, side="right") - 1
        bound = self.keyed_out - self.order[self.pos] + self.timeline.visible(offset_us)[self.rows]
        return np.searchsorted(self.keyed, bound, side="left") - 1

    def to_rows(self, values: np.ndarray) -> np.ndarray:
        """Values given per output position, in output row order."""
        out = np.empty(len(values), dtype=values.dtype)
        out[self.rows] = values
        return out


def _codes(ids: pl.Series) -> np.ndarray:
    """Small integer codes, equal for equal ids (the order of the codes means nothing)."""
    return ids.cast(pl.Enum(ids.unique())).to_physical().to_numpy()


def to_epoch_us(when: datetime) -> int:
    """UTC epoch microseconds of a datetime (naive means UTC): the time unit of every window, offline and online."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


REQUIRED_NOT_NULL = ("tx_datetime", "customer_id", "terminal_id", "amount")


def compute_features(
    transactions: pl.DataFrame, spec: FeatureSpec | None = None, start: datetime | None = None
) -> pl.DataFrame:
    """Add the feature columns to canonical transactions, in (time, transaction id) order.

    The input needs the canonical columns; ``is_fraud`` may be null (unknown labels count as
    not fraud). Output rows are sorted by time then transaction id. With ``start``, only the
    transactions at or after it are returned: earlier ones are history that feeds their windows
    (the values are the same as without ``start``; scoring a period skips the work on its history).
    """
    spec = spec or FeatureSpec()
    nulls = transactions.select(pl.col(REQUIRED_NOT_NULL).null_count()).row(0)
    if any(nulls):
        counts = ", ".join(f"{c}: {k}" for c, k in zip(REQUIRED_NOT_NULL, nulls, strict=True) if k)
        raise ValueError(f"null values where features need a value ({counts}); validate with the raw suite first")
    df = transactions.sort(*ORDER_COLUMNS)
    t_us = df["tx_datetime"].dt.epoch("us").to_numpy()
    first_row = 0 if start is None else int(np.searchsorted(t_us, to_epoch_us(start), side="left"))
    timeline = _Timeline(t_us, first_row, max(spec.history_days * US_PER_DAY, US_PER_HOUR))  # the longest look-back
    customer_codes, terminal_codes = _codes(df["customer_id"]), _codes(df["terminal_id"])
    customers, terminals = _Groups.of(customer_codes, timeline), _Groups.of(terminal_codes, timeline)
    amount = df["amount"].cast(pl.Float64).to_numpy()
    # Amounts add up per customer in time order: the same float sums as a per-customer cum_sum.
    cum_amount = (
        pl.DataFrame({"key": customer_codes[customers.order], "amount": amount[customers.order]})
        .select(pl.col("amount").cum_sum().over("key"))
        .to_series()
        .to_numpy()
    )
    fraud = df["is_fraud"].fill_null(0).cast(pl.Int64).to_numpy()[terminals.order]
    cum_fraud = np.concatenate(([0], np.cumsum(fraud)))  # [p + 1]: frauds up to grouped position p

    columns: dict[str, np.ndarray] = {}
    windows: dict[str, np.ndarray] = {}  # customer windows in customers' grouped output order
    delay_us = spec.label_delay_days * US_PER_DAY
    ripe = terminals.last_at_or_before(delay_us)
    first_of_key, cum_amount_out = customers.first[customers.pos], cum_amount[customers.pos]
    with np.errstate(divide="ignore", invalid="ignore"):
        for w in spec.windows_days:
            before = customers.last_at_or_before(w * US_PER_DAY)
            n = (customers.pos - before).astype(np.float64)
            older = np.where(before >= first_of_key, cum_amount[before], 0.0)
            windows[f"n{w}"] = n
            windows[f"mean{w}"] = (cum_amount_out - older) / n
            columns[f"customer_id_nb_tx_{w}day_window"] = customers.to_rows(n)
            columns[f"customer_id_avg_amount_{w}day_window"] = customers.to_rows(windows[f"mean{w}"])
            unripe = terminals.last_at_or_before(delay_us + w * US_PER_DAY)
            term_n = (ripe - unripe).astype(np.float64)
            risk = (cum_fraud[ripe + 1] - cum_fraud[unripe + 1]) / term_n
            columns[f"terminal_id_nb_tx_{w}day_window"] = terminals.to_rows(term_n)
            columns[f"terminal_id_risk_{w}day_window"] = terminals.to_rows(np.where(np.isnan(risk), 0.0, risk))
        if spec.feature_set == "extended":
            columns |= _behavioural(spec, customers, terminals, windows, amount, customer_codes, terminal_codes)
    out = df.slice(first_row).with_columns(
        tx_amount=pl.col("amount"),
        tx_during_weekend=pl.col("tx_datetime").dt.weekday() >= 6,
        tx_during_night=pl.col("tx_datetime").dt.hour() <= spec.night_end_hour,
    )
    return out.with_columns(
        pl.col("tx_amount", "tx_during_weekend", "tx_during_night").cast(pl.Float64),
        *(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()),
    )


def _behavioural(
    spec: FeatureSpec,
    customers: _Groups,
    terminals: _Groups,
    windows: dict[str, np.ndarray],
    amount: np.ndarray,
    customer_codes: np.ndarray,
    terminal_codes: np.ndarray,
) -> dict[str, np.ndarray]:
    """The behavioural columns (see the module docstring), in output row order.

    ``windows`` holds the customer window counts and means in ``customers``' grouped output order.
    """
    w = spec.longest_window_days
    horizon_us = w * US_PER_DAY
    t_us, first_row = customers.timeline.t_us, customers.timeline.first_row
    pos = customers.pos
    n = windows[f"n{w}"]
    total = windows[f"mean{w}"] * n  # the mean times n, as the definition always computed it
    current = amount[customers.order[pos]]
    prev_n = n - 1
    ratio = (current + 1) / ((total - current) / prev_n + 1)
    ratio = np.where(prev_n > 0, np.where(np.isnan(ratio), 1.0, ratio), 1.0)

    grouped_t = t_us[customers.order]
    gap_us = np.where(pos > customers.first[pos], grouped_t[pos] - grouped_t[pos - 1], horizon_us)
    # Divided by Polars as before: it multiplies by the reciprocal, and the bits must not change.
    hours = (pl.Series(np.minimum(gap_us, horizon_us)) / US_PER_HOUR).to_numpy()

    # First visit: no earlier transaction of the customer at this terminal, or the latest is W days old.
    # Rows grouped by (customer, terminal), in time order: the terminals' order, then by customer (stable).
    pair_order = terminals.order[np.argsort(customer_codes[terminals.order], kind="stable")]
    pair_customer, pair_terminal, pair_t = customer_codes[pair_order], terminal_codes[pair_order], t_us[pair_order]
    seen = np.zeros(len(pair_order), dtype=bool)
    seen[1:] = (
        (pair_customer[1:] == pair_customer[:-1])
        & (pair_terminal[1:] == pair_terminal[:-1])
        & (pair_t[1:] - pair_t[:-1] < horizon_us)
    )
    first_visit = np.empty(len(pair_order), dtype=np.float64)
    first_visit[pair_order] = ~seen

    per_hour = (pos - customers.last_at_or_before(US_PER_HOUR)).astype(np.float64)
    names = spec.behavioural_names
    return {
        names[0]: customers.to_rows(ratio),
        names[1]: customers.to_rows(hours),
        names[2]: first_visit[first_row:],
        names[3]: customers.to_rows(per_hour),
    }


# --- online: one transaction against a store's windows --------------------------------------------------


class WindowQueries(Protocol):
    """The questions :func:`online_features` asks a store (``features.stores.base.FeatureStore`` answers them)."""

    spec: FeatureSpec

    def knows(self, transaction_id: str) -> bool:
        """Whether the transaction has been observed."""
        ...

    def customer_window(self, customer_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and amount sum of the customer's events with ``lo < t <= hi``."""
        ...

    def terminal_window(self, terminal_id: str, lo: int, hi: int) -> tuple[int, float]:
        """Count and known-fraud count of the terminal's events with ``lo < t <= hi``."""
        ...

    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Events of this customer at this terminal with ``lo < t <= hi``."""
        ...

    def previous_time(self, customer_id: str, t_us: int, strictly_before: bool) -> int | None:
        """Latest event time of the customer before ``t_us`` (``<=`` unless ``strictly_before``)."""
        ...


def online_features(
    store: WindowQueries,
    transaction_id: str,
    customer_id: str,
    terminal_id: str,
    t_us: int,
    amount: float,
    when: datetime,
) -> np.ndarray:
    """Feature vector (``spec.feature_names`` order) of one transaction: the online twin of :func:`compute_features`.

    A transaction already in the store is scored as of its own arrival (it is not counted twice).
    """
    spec = store.spec
    seen = store.knows(transaction_id)
    own = 0 if seen else 1  # an observed transaction is in its own windows already
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    row = [amount, float(when.isoweekday() >= 6), float(when.hour <= spec.night_end_hour)]
    windows = {w: store.customer_window(customer_id, t_us - w * US_PER_DAY, t_us) for w in spec.windows_days}
    for n, total in windows.values():
        n, total = n + own, total + own * amount
        row += [float(n), total / n]
    hi = t_us - spec.label_delay_days * US_PER_DAY
    for w in spec.windows_days:
        n, frauds = store.terminal_window(terminal_id, hi - w * US_PER_DAY, hi)
        row += [float(n), frauds / n if n else 0.0]
    if spec.feature_set == "extended":
        longest = windows[spec.longest_window_days]
        row += _online_behavioural(store, customer_id, terminal_id, t_us, amount, seen, longest)
    return np.asarray(row, dtype=np.float64)


def _online_behavioural(
    store: WindowQueries,
    customer_id: str,
    terminal_id: str,
    t_us: int,
    amount: float,
    seen: bool,
    longest: tuple[int, float],
) -> list[float]:
    """The behavioural features of :func:`_behavioural`, one transaction; ``longest`` is the W-day customer window."""
    horizon_us = store.spec.longest_window_days * US_PER_DAY
    mine = 1 if seen else 0
    n, total = longest
    prev_n, prev_total = n - mine, total - mine * amount
    ratio = (amount + 1) / (prev_total / prev_n + 1) if prev_n > 0 else 1.0
    if seen and store.customer_window(customer_id, t_us - 1, t_us)[0] > 1:
        previous: int | None = t_us  # another transaction of the customer at the same instant
    else:
        previous = store.previous_time(customer_id, t_us, strictly_before=seen)
    gap = horizon_us if previous is None else min(t_us - previous, horizon_us)
    earlier = store.pair_count(customer_id, terminal_id, t_us - horizon_us, t_us) - mine
    in_hour = store.customer_window(customer_id, t_us - US_PER_HOUR, t_us)[0] + 1 - mine
    return [ratio, gap / US_PER_HOUR, float(earlier == 0), float(in_hour)]


# --- online, a run of new transactions at once ----------------------------------------------------------

#: Amounts as exact integers ``amount * 2**72`` split in limbs of 31 bits: exact for 0 and for amounts in
#: ``[2**-20, 2**20)`` (every plausible amount), so window sums are exact integer sums, rounded once.
AMOUNT_SCALE_BITS = 72
LIMB_BITS = 31
_LIMB_MASK = (1 << LIMB_BITS) - 1
MIN_EXACT_AMOUNT = 2.0**-20
MAX_EXACT_AMOUNT = 2.0**20


@dataclass(frozen=True)
class RecentEvents:
    """A store's events that a run of transactions' windows can reach, as arrays (``FeatureStore.recent_events``).

    Keys are indices into the customer and terminal lists the store was asked about. Customer events
    carry their terminal (-1 for a terminal not in the list); terminal events their label (0 when unknown).
    """

    customer: np.ndarray  # int64 index of the customer
    customer_t_us: np.ndarray
    customer_amount: np.ndarray
    customer_terminal: np.ndarray  # int64 index of the terminal, -1 if not asked about
    terminal: np.ndarray  # int64 index of the terminal
    terminal_t_us: np.ndarray
    terminal_label: np.ndarray  # int64, 0 or 1


def exact_amounts(amount: np.ndarray) -> bool:
    """Whether every amount is one the exact window sums represent (0.0, or ``2**-20 <= amount < 2**20``)."""
    plain_zero = (amount == 0) & ~np.signbit(amount)
    return bool(np.all(plain_zero | ((amount >= MIN_EXACT_AMOUNT) & (amount < MAX_EXACT_AMOUNT))))


def _limbs(amount: np.ndarray) -> np.ndarray:
    """``amount * 2**72`` as three int64 limbs of 31 bits (each step is exact in float64)."""
    x = np.ldexp(amount, AMOUNT_SCALE_BITS)
    top = np.floor(np.ldexp(x, -2 * LIMB_BITS))
    rest = x - np.ldexp(top, 2 * LIMB_BITS)
    mid = np.floor(np.ldexp(rest, -LIMB_BITS))
    low = rest - np.ldexp(mid, LIMB_BITS)
    return np.stack([top, mid, low]).astype(np.int64)


def _rounded(limbs: np.ndarray) -> np.ndarray:
    """The float64 nearest to each exact limb sum ``(top * 2**62 + mid * 2**31 + low) * 2**-72`` (ties to even).

    That is what ``math.fsum`` of the same amounts answers. A fast float estimate is checked exactly in
    integers; the rare estimate within a quarter unit of a rounding boundary is rounded by Python's ints.
    """
    top, mid, low = limbs[0].copy(), limbs[1].copy(), limbs[2].copy()
    mid += low >> LIMB_BITS
    low &= _LIMB_MASK
    top += mid >> LIMB_BITS
    mid &= _LIMB_MASK
    rest = (mid << LIMB_BITS) | low  # < 2**62
    scale = float(2 ** (2 * LIMB_BITS))
    approx = top.astype(np.float64) * scale + rest.astype(np.float64)
    approx_top = np.floor(approx / scale)
    approx_rest = (approx - approx_top * scale).astype(np.int64)
    diff = (top - approx_top.astype(np.int64)) * (1 << (2 * LIMB_BITS)) + (rest - approx_rest)
    unsure = np.flatnonzero(~(np.abs(diff).astype(np.float64) * 4 < np.spacing(approx)))
    for i in unsure.tolist():
        approx[i] = float((int(top[i]) << (2 * LIMB_BITS)) + int(rest[i]))
    return np.ldexp(approx, -AMOUNT_SCALE_BITS)


class _Windows:
    """Store events and a run's rows of one key (customer, terminal, pair), in (key, time, arrival) order.

    Store events come before the run's rows at the same instant, the rows in arrival order. ``last(offset)``
    gives, per row, the sorted position of its key's last event with time <= its time - offset.
    """

    def __init__(self, keys: np.ndarray, t_us: np.ndarray, n_history: int, max_offset_us: int) -> None:
        origin = int(t_us.min()) - max_offset_us
        span = int(t_us.max()) - origin + 1
        n_keys = int(keys.max()) + 1
        if n_keys * span >= KEYED_TIME_LIMIT:
            raise OverflowError("keys times the time span do not fit one int64")
        packed = keys * span + (t_us - origin)
        order = np.argsort(packed)
        packed_sorted = packed[order]
        ties = packed_sorted[1:] == packed_sorted[:-1]
        if ties.any():  # same key and instant: store events first, then arrival order (the input order)
            group = np.concatenate(([0], np.cumsum(~ties)))
            order = order[np.argsort(group * len(order) + order)]
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        self.order, self.sorted, self.n_history = order, packed_sorted, n_history
        self.pos = position[n_history:]  # per row (arrival order), its sorted position
        self.row_packed = packed[n_history:]
        self.by_pos = np.argsort(self.pos)  # rows in sorted order: their bounds are increasing, searches are fast
        self.keys_sorted = keys[order]
        self.t_sorted = t_us[order]

    def last(self, offset_us: int) -> np.ndarray:
        """Per row, the sorted position of the key's last event with time <= time - ``offset_us``."""
        out = np.empty(len(self.pos), dtype=np.int64)
        out[self.by_pos] = np.searchsorted(self.sorted, self.row_packed[self.by_pos] - offset_us, side="right") - 1
        return out

    def prefix(self, values: np.ndarray) -> np.ndarray:
        """Running totals (int64) of ``values`` (given in input order) over sorted positions; ``[k]`` = first k."""
        sorted_values = values[..., self.order]
        out = np.zeros((*sorted_values.shape[:-1], sorted_values.shape[-1] + 1), dtype=np.int64)
        np.cumsum(sorted_values, axis=-1, out=out[..., 1:])
        return out


def _pair_codes(customer: np.ndarray, terminal: np.ndarray) -> np.ndarray:
    """Dense codes of (customer, terminal) pairs (``terminal`` may be -1)."""
    wide = customer * (int(terminal.max()) + 2) + (terminal + 1)
    if len(wide) and int(wide.max()) < 1 << 20:
        return wide
    return np.unique(wide, return_inverse=True)[1].astype(np.int64)


def run_features(
    spec: FeatureSpec,
    history: RecentEvents,
    customer: np.ndarray,
    terminal: np.ndarray,
    t_us: np.ndarray,
    amount: np.ndarray,
) -> np.ndarray | None:
    """Feature rows of a run of new transactions, bit for bit what :func:`online_features` gives one at a time.

    The rows (``customer``/``terminal`` indices as in ``history``, in arrival order, times non-decreasing,
    ids neither in the store nor repeated) each see ``history`` (the store's events in their look-back) and
    the run's earlier rows, as if each were scored and then observed in turn. Window sums are exact (what
    the store's ``math.fsum`` gives), counts and times are integers, and every float operation is the one
    :func:`online_features` does, in the same order. None when the run cannot be computed exactly this way
    (an amount outside :func:`exact_amounts`, or too wide a key/time range): score it one row at a time.
    """
    if not (exact_amounts(amount) and exact_amounts(history.customer_amount)):
        return None
    n = len(t_us)
    max_offset = max(spec.history_days * US_PER_DAY, US_PER_HOUR)
    try:
        customers = _Windows(
            np.concatenate((history.customer, customer)),
            np.concatenate((history.customer_t_us, t_us)),
            len(history.customer),
            max_offset,
        )
        terminals = _Windows(
            np.concatenate((history.terminal, terminal)),
            np.concatenate((history.terminal_t_us, t_us)),
            len(history.terminal),
            max_offset,
        )
        pairs = _Windows(
            _pair_codes(
                np.concatenate((history.customer, customer)), np.concatenate((history.customer_terminal, terminal))
            ),
            np.concatenate((history.customer_t_us, t_us)),
            len(history.customer),
            max_offset,
        )
    except OverflowError:
        return None
    limbs = customers.prefix(_limbs(np.concatenate((history.customer_amount, amount))))
    frauds = terminals.prefix(np.concatenate((history.terminal_label, np.zeros(n, dtype=np.int64))))
    columns: list[np.ndarray] = [
        amount,
        (((t_us // US_PER_DAY) + 3) % 7 + 1 >= 6).astype(np.float64),  # ISO weekday of 1970-01-01 is 4
        ((t_us % US_PER_DAY) // US_PER_HOUR <= spec.night_end_hour).astype(np.float64),
    ]
    pos = customers.pos
    longest: tuple[np.ndarray, np.ndarray] | None = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for w in spec.windows_days:
            before = customers.last(w * US_PER_DAY)
            earlier = (pos - before - 1).astype(np.int64)  # the store's count (without the row itself)
            total = _rounded(limbs[:, pos] - limbs[:, before + 1])  # the store's exact sum, rounded once
            if w == spec.longest_window_days:
                longest = (earlier, total)
            n_w = earlier + 1
            columns += [n_w.astype(np.float64), (total + amount) / n_w]
        delay = spec.label_delay_days * US_PER_DAY
        # Without a delay the window ends at the row itself: only what arrived before it counts.
        ripe = terminals.last(delay) if delay else terminals.pos - 1
        for w in spec.windows_days:
            unripe = terminals.last(delay + w * US_PER_DAY)
            count = ripe - unripe
            risk = frauds[ripe + 1] - frauds[unripe + 1]
            columns += [count.astype(np.float64), np.where(count > 0, risk / count, 0.0)]
        if spec.feature_set == "extended":
            assert longest is not None
            horizon = spec.longest_window_days * US_PER_DAY
            prev_n, prev_total = longest
            ratio = np.where(prev_n > 0, (amount + 1) / (prev_total / prev_n + 1), 1.0)
            has_previous = (pos > 0) & (customers.keys_sorted[pos - 1] == customers.keys_sorted[pos])
            gap = np.where(has_previous, np.minimum(t_us - customers.t_sorted[pos - 1], horizon), horizon)
            visits = pairs.pos - pairs.last(horizon) - 1
            in_hour = pos - customers.last(US_PER_HOUR)
            columns += [
                ratio,
                gap.astype(np.float64) / US_PER_HOUR,
                (visits == 0).astype(np.float64),
                in_hour.astype(np.float64),
            ]
    return np.column_stack(columns).astype(np.float64, copy=False)
