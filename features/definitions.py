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
  known to be fraud *as known at t* (``data.labels``: a label counts from its own label_time; a
  dataset's own labels are known ``d`` days after their transaction, so with them every label in the
  window is known, as in the handbook).

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

Label-aware features (``feature_set="labels"``: the extended set plus two that read labels as soon as
they are known, with no fixed delay; what faster investigator labels can buy, see docs/quality.md):

- ``customer_known_frauds_{W}day``: the customer's earlier transactions in ``(t - W, t)`` known to be
  fraud at ``t`` (a card confirmed compromised yesterday by an analyst; with only delayed dataset
  labels, only frauds at least the delay old).
- ``terminal_id_known_risk_7day``: the share of the terminal's earlier transactions in ``(t - 7d, t)``
  known to be fraud at ``t`` (0 when there are none).

How (NumPy, no per-window joins): rows are sorted once by (time, transaction id), then grouped by
customer and by terminal with one stable sort each. Where a window starts is one binary search over
(key, time) packed into an int64; counts and sums are differences of per-key running totals (amounts
added in time order). With ``start``, rows before it are only look-back: they are grouped and summed
but get no features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import polars as pl

from data.labels import OPEN_END_US, fraud_intervals
from data.profiles import Profile, feature_name
from data.sources import ATTRIBUTE_PREFIX

#: Mean Earth radius (km) of the great-circle distance.
EARTH_RADIUS_KM = 6371.0088

US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000
ORDER_COLUMNS = ("tx_datetime", "transaction_id")
FEATURE_SETS = ("baseline", "extended", "labels")
#: The window of the label-aware features (``feature_set="labels"``) on terminals.
KNOWN_RISK_DAYS = 7


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature pipeline computes; shipped with the model so serving matches training."""

    windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = 7
    night_end_hour: int = 6
    feature_set: str = "extended"
    #: Window families (off when the dataset profile has no such key).
    customer_windows: bool = True
    terminal_windows: bool = True
    #: Weekend and night flags: off when event times count from an assumed origin (their weekday is made up).
    time_flags: bool = True
    #: Row features from the profile (see :func:`row_feature_frame`): numeric attributes by feature name,
    #: (name, vocabulary) of categorical ones, the date of birth (name, format) for ``age_years`` and
    #: holder and merchant coordinates (lat, long, lat, long) for ``distance_km``.
    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()
    age_from: tuple[str, str] | None = None
    distance_from: tuple[str, str, str, str] | None = None

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set must be one of {FEATURE_SETS}, not {self.feature_set!r}")

    @classmethod
    def for_profile(cls, profile: Profile, **kwargs: Any) -> FeatureSpec:
        """The spec a dataset profile supports: its key families and its row features."""
        age = profile.derived.age_from
        return cls(
            customer_windows=profile.customer is not None,
            terminal_windows=profile.terminal is not None,
            time_flags=profile.event_time.unit is None,
            numeric=tuple(feature_name(c) for c in profile.numeric),
            categorical=tuple((feature_name(c), tuple(v)) for c, v in profile.categorical.items()),
            age_from=(feature_name(age.column), age.format) if age else None,
            distance_from=tuple(feature_name(c) for c in profile.derived.distance_km)  # type: ignore[arg-type]
            if profile.derived.distance_km
            else None,
            **kwargs,
        )

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
    def label_aware_names(self) -> list[str]:
        """The features that read labels as soon as they are known (``feature_set="labels"``), else empty."""
        if self.feature_set != "labels":
            return []
        return [f"customer_known_frauds_{self.longest_window_days}day", f"terminal_id_known_risk_{KNOWN_RISK_DAYS}day"]

    @property
    def all_window_names(self) -> list[str]:
        """Every time and window feature of the feature set, whichever families apply (what is computed)."""
        names = ["tx_amount", "tx_during_weekend", "tx_during_night"]
        for w in self.windows_days:
            names += [f"customer_id_nb_tx_{w}day_window", f"customer_id_avg_amount_{w}day_window"]
        for w in self.windows_days:
            names += [f"terminal_id_nb_tx_{w}day_window", f"terminal_id_risk_{w}day_window"]
        return names + self.behavioural_names + self.label_aware_names

    @property
    def window_names(self) -> list[str]:
        """The time and window features of the families that apply (a customer's need a customer key, ...)."""
        return [n for n in self.all_window_names if self._family_applies(n)]

    def _family_applies(self, name: str) -> bool:
        if name in ("tx_during_weekend", "tx_during_night"):
            return self.time_flags
        uses_customer = name.startswith("customer")
        uses_terminal = name.startswith("terminal") or name.startswith("customer_terminal")
        return (self.customer_windows or not uses_customer) and (self.terminal_windows or not uses_terminal)

    @property
    def window_index(self) -> list[int]:
        """Positions of :attr:`window_names` in :attr:`all_window_names` (to pick from an online vector)."""
        keep = set(self.window_names)
        return [i for i, n in enumerate(self.all_window_names) if n in keep]

    @property
    def row_names(self) -> list[str]:
        """Features of the row alone (the profile's numeric, derived and categorical columns)."""
        names = list(self.numeric)
        names += ["age_years"] if self.age_from else []
        names += ["distance_km"] if self.distance_from else []
        return names + [f"{name}_code" for name, _ in self.categorical]

    @property
    def row_inputs(self) -> list[str]:
        """The attribute columns (``attr_<name>``) the row features read."""
        names = [*self.numeric, *(n for n, _ in self.categorical)]
        names += [self.age_from[0]] if self.age_from else []
        names += list(self.distance_from or ())
        return [ATTRIBUTE_PREFIX + n for n in dict.fromkeys(names)]

    @property
    def feature_names(self) -> list[str]:
        """Model input columns, in order."""
        return self.window_names + self.row_names

    @property
    def history_days(self) -> int:
        """How much history an online state must keep to compute every feature (0 without window families)."""
        if not (self.customer_windows or self.terminal_windows):
            return 0
        days = max(self.windows_days) + self.label_delay_days
        if self.feature_set == "labels":  # the known risk looks back KNOWN_RISK_DAYS, whatever the windows
            days = max(days, KNOWN_RISK_DAYS)
        return days

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "windows_days": list(self.windows_days),
            "label_delay_days": self.label_delay_days,
            "night_end_hour": self.night_end_hour,
            "feature_set": self.feature_set,
            "customer_windows": self.customer_windows,
            "terminal_windows": self.terminal_windows,
            "time_flags": self.time_flags,
            "numeric": list(self.numeric),
            "categorical": [[name, list(vocabulary)] for name, vocabulary in self.categorical],
            "age_from": list(self.age_from) if self.age_from else None,
            "distance_from": list(self.distance_from) if self.distance_from else None,
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
            # Cards written before dataset profiles: both families, no row features.
            customer_windows=bool(data.get("customer_windows", True)),
            terminal_windows=bool(data.get("terminal_windows", True)),
            time_flags=bool(data.get("time_flags", True)),
            numeric=tuple(str(n) for n in data.get("numeric") or ()),  # type: ignore[union-attr]
            categorical=tuple(
                (str(n), tuple(str(v) for v in vocab))
                for n, vocab in data.get("categorical") or ()  # type: ignore[union-attr]
            ),
            age_from=tuple(data["age_from"]) if data.get("age_from") else None,  # type: ignore[arg-type]
            distance_from=tuple(data["distance_from"]) if data.get("distance_from") else None,  # type: ignore[arg-type]
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
    transactions: pl.DataFrame,
    spec: FeatureSpec | None = None,
    start: datetime | None = None,
    labels: pl.DataFrame | pl.LazyFrame | None = None,
    labels_as_of: datetime | None = None,
) -> pl.DataFrame:
    """Add the feature columns to canonical transactions, in (time, transaction id) order.

    The input needs the canonical columns. Output rows are sorted by time then transaction id. With
    ``start``, only the transactions at or after it are returned: earlier ones are history that feeds
    their windows (the values are the same as without ``start``; scoring a period skips the work on
    its history).

    Terminal risk reads labels as known at each row's own time (``data.labels``): ``labels`` are label
    events (those after ``labels_as_of`` are ignored, as not known yet when the features are built).
    Without ``labels``, the transactions' ``is_fraud`` column (null: no label) stands for ``dataset``
    events known ``spec.label_delay_days`` after their transaction.
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
    if labels is None:  # what fraud_intervals(dataset_labels(df, delay)) gives, without ordering every row's event
        intervals = df.filter(pl.col("is_fraud") == 1).select(
            "transaction_id",
            fraud_from_us=pl.col("tx_datetime").dt.epoch("us") + spec.label_delay_days * US_PER_DAY,
            fraud_until_us=pl.lit(OPEN_END_US, pl.Int64),
        )
    else:
        intervals = fraud_intervals(labels, labels_as_of)
    frauds = _KnownFrauds(df, terminal_codes, intervals, timeline)
    if spec.feature_set == "labels":
        customer_frauds = _KnownFrauds(df, customer_codes, intervals, timeline)

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
            risk = frauds.count(delay_us, w * US_PER_DAY) / terminals.to_rows(term_n)
            columns[f"terminal_id_nb_tx_{w}day_window"] = terminals.to_rows(term_n)
            columns[f"terminal_id_risk_{w}day_window"] = np.where(np.isnan(risk), 0.0, risk)
        if spec.feature_set != "baseline":
            columns |= _behavioural(spec, customers, terminals, windows, amount, customer_codes, terminal_codes)
        if spec.feature_set == "labels":
            # No delay: earlier transactions in (t - w, t), each counted once its fraud label is known at t.
            longest, recent = spec.longest_window_days * US_PER_DAY, KNOWN_RISK_DAYS * US_PER_DAY
            known_name, risk_name = spec.label_aware_names
            columns[known_name] = customer_frauds.count(1, longest - 1).astype(np.float64)
            recent_n = terminals.to_rows(
                (terminals.last_at_or_before(1) - terminals.last_at_or_before(recent)).astype(np.float64)
            )
            recent_risk = frauds.count(1, recent - 1) / recent_n
            columns[risk_name] = np.where(np.isnan(recent_risk), 0.0, recent_risk)
    out = df.slice(first_row).with_columns(
        tx_amount=pl.col("amount"),
        tx_during_weekend=pl.col("tx_datetime").dt.weekday() >= 6,
        tx_during_night=pl.col("tx_datetime").dt.hour() <= spec.night_end_hour,
    )
    out = out.with_columns(
        pl.col("tx_amount", "tx_during_weekend", "tx_during_night").cast(pl.Float64),
        *(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()),
    )
    return out.hstack(row_features(out, spec)) if spec.row_names else out


def row_features(frame: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """The row features (:attr:`FeatureSpec.row_names`) of canonical rows with their ``attr_*`` columns.

    The same function offline and online (the service maps a request through the dataset profile, then
    calls this on the batch), so the two agree by construction. A missing attribute (empty, or a column
    the frame lacks) is NaN for numeric and derived features and -1 for a categorical code, as is a
    value outside the vocabulary.
    """
    return frame.select(row_feature_plan(spec, tuple(frame.columns)))


def row_feature_plan(spec: FeatureSpec, columns: tuple[str, ...]) -> list[pl.Expr]:
    """The expressions :func:`row_features` selects from a frame with ``columns`` (built once, reusable)."""

    def attr(name: str) -> pl.Expr:
        column = ATTRIBUTE_PREFIX + name
        if column not in columns:
            return pl.lit(None, dtype=pl.String)
        return pl.col(column).cast(pl.String).str.strip_chars().replace("", None)

    def number(name: str) -> pl.Expr:
        return attr(name).cast(pl.Float64, strict=False)

    exprs = [number(name).alias(name) for name in spec.numeric]
    if spec.age_from:
        dob, fmt = spec.age_from
        born_us = attr(dob).str.to_date(fmt, strict=False).cast(pl.Datetime("us", "UTC")).dt.epoch("us")
        exprs.append(((pl.col("tx_datetime").dt.epoch("us") - born_us) / (365.25 * US_PER_DAY)).alias("age_years"))
    if spec.distance_from:
        lat1, lon1, lat2, lon2 = (number(c).radians() for c in spec.distance_from)
        half = ((lat2 - lat1) / 2).sin().pow(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2).sin().pow(2)
        exprs.append((2 * EARTH_RADIUS_KM * half.sqrt().arcsin()).alias("distance_km"))
    for name, vocabulary in spec.categorical:
        codes = {value: float(i) for i, value in enumerate(vocabulary)}
        exprs.append(
            attr(name)
            .replace_strict(codes, default=-1.0, return_dtype=pl.Float64)
            .fill_null(-1.0)
            .alias(f"{name}_code")
        )
    finite = [e.cast(pl.Float64) for e in exprs]
    return [pl.when(e.is_finite()).then(e).otherwise(float("nan")).alias(e.meta.output_name()) for e in finite]


class _KnownFrauds:
    """Per output row, the frauds known at its time among its key's (terminal's, customer's) transactions in a window.

    A transaction at ``x`` with a fraud interval ``[from, until)`` (``data.labels.fraud_intervals``) counts
    for a row of its terminal at ``t`` in the window ``(t - d - w, t - d]`` when its label is fraud as known
    at ``t``: for ``t`` in ``[max(x + d, from), min(x + d + w, until))``. So each count is the number of
    those intervals that have started by ``t`` minus the number that have ended: two binary searches over
    (terminal, time) packed in one int64 (times as ranks among every time involved, so it always fits).
    """

    def __init__(self, df: pl.DataFrame, codes: np.ndarray, intervals: pl.DataFrame, timeline: _Timeline):
        rows = (
            df.select("transaction_id")
            .with_row_index("row")
            .join(intervals, on="transaction_id", how="inner")
            .select("row", "fraud_from_us", "fraud_until_us")
        )
        row = rows["row"].to_numpy().astype(np.int64)
        self.key = codes[row].astype(np.int64)
        self.x = timeline.t_us[row]
        self.since = rows["fraud_from_us"].to_numpy()
        self.until = rows["fraud_until_us"].to_numpy()
        self.out_t = timeline.t_us[timeline.first_row :]
        self.out_key = codes[timeline.first_row :].astype(np.int64)

    def count(self, delay_us: int, window_us: int) -> np.ndarray:
        """Per output row (row order), the known frauds among its key's transactions in ``(t - d - w, t - d]``."""
        if not len(self.x):
            return np.zeros(len(self.out_t), dtype=np.int64)
        begin = np.maximum(self.x + delay_us, self.since)
        end = np.minimum(self.x + delay_us + window_us, self.until)
        live = begin < end
        begin, end, key = begin[live], end[live], self.key[live]
        times, ranks = np.unique(np.concatenate((self.out_t, begin, end)), return_inverse=True)
        span = len(times) + 1
        n = len(self.out_t)
        row_packed = self.out_key * span + ranks[:n]
        starts = np.sort(key * span + ranks[n : n + len(begin)])
        ends = np.sort(key * span + ranks[n + len(begin) :])
        started = np.searchsorted(starts, row_packed, side="right")
        ended = np.searchsorted(ends, row_packed, side="right")
        return (started - ended).astype(np.int64)


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

    def terminal_window(self, terminal_id: str, lo: int, hi: int, known_at: int) -> tuple[int, float]:
        """Count of the terminal's events with ``lo < t <= hi`` and how many are fraud as known at ``known_at``."""
        ...

    def pair_count(self, customer_id: str, terminal_id: str, lo: int, hi: int) -> int:
        """Events of this customer at this terminal with ``lo < t <= hi``."""
        ...

    def customer_known_frauds(self, customer_id: str, lo: int, hi: int, known_at: int) -> float:
        """The customer's events with ``lo < t <= hi`` that are fraud as known at ``known_at``."""
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
    """Window features (``spec.window_names`` order) of one transaction: the online twin of :func:`compute_features`.

    The row features (``spec.row_names``) follow from the row alone: :func:`row_features`.

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
        n, frauds = store.terminal_window(terminal_id, hi - w * US_PER_DAY, hi, t_us)
        row += [float(n), frauds / n if n else 0.0]
    if spec.feature_set != "baseline":
        longest = windows[spec.longest_window_days]
        row += _online_behavioural(store, customer_id, terminal_id, t_us, amount, seen, longest)
    if spec.feature_set == "labels":
        row.append(
            store.customer_known_frauds(customer_id, t_us - spec.longest_window_days * US_PER_DAY, t_us - 1, t_us)
        )
        n, frauds = store.terminal_window(terminal_id, t_us - KNOWN_RISK_DAYS * US_PER_DAY, t_us - 1, t_us)
        row.append(frauds / n if n else 0.0)
    values = np.asarray(row, dtype=np.float64)
    if not (spec.customer_windows and spec.terminal_windows and spec.time_flags):
        values = values[spec.window_index]
    return values


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
