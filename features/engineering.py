"""Offline point-in-time features (Polars), the reference that online scoring must reproduce.

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
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _cumulative_at(left: pl.DataFrame, events: pl.DataFrame, key: str, cutoff: str, values: list[str]) -> pl.DataFrame:
    """For each left row, the key's cumulative ``values`` over events with time <= cutoff (0 if none)."""
    # One row per (key, time): the cumulative totals after the last event at that time.
    table = events.group_by(key, "t_us", maintain_order=True).agg(pl.col(values).last()).sort("t_us")
    joined = (
        left.select("_row", key, cutoff)
        .sort(cutoff)
        .join_asof(table, left_on=cutoff, right_on="t_us", by=key, strategy="backward", check_sortedness=False)
    )
    return joined.select("_row", *[pl.col(v).fill_null(0) for v in values]).sort("_row")


def compute_features(transactions: pl.DataFrame, spec: FeatureSpec | None = None) -> pl.DataFrame:
    """Add the feature columns to canonical transactions, in (time, transaction id) order.

    The input needs the canonical columns; ``is_fraud`` may be null (unknown labels count as
    not fraud). Output rows are sorted by time then transaction id.
    """
    spec = spec or FeatureSpec()
    df = (
        transactions.sort(*ORDER_COLUMNS).with_row_index("_row").with_columns(t_us=pl.col("tx_datetime").dt.epoch("us"))
    )

    cust = df.select("_row", "customer_id", "t_us", "amount").with_columns(
        cum_n=pl.int_range(1, pl.len() + 1).over("customer_id"),
        cum_amount=pl.col("amount").cum_sum().over("customer_id"),
    )
    term = df.select("_row", "terminal_id", "t_us", "is_fraud").with_columns(
        cum_n=pl.int_range(1, pl.len() + 1).over("terminal_id"),
        cum_fraud=pl.col("is_fraud").fill_null(0).cast(pl.Int64).cum_sum().over("terminal_id"),
    )

    out = df.with_columns(
        tx_amount=pl.col("amount"),
        tx_during_weekend=(pl.col("tx_datetime").dt.weekday() >= 6).cast(pl.Int8),
        tx_during_night=(pl.col("tx_datetime").dt.hour() <= spec.night_end_hour).cast(pl.Int8),
    )
    delay_us = spec.label_delay_days * US_PER_DAY
    term_hi = term.with_columns(cut=pl.col("t_us") - delay_us)
    hi = _cumulative_at(term_hi, term, "terminal_id", "cut", ["cum_n", "cum_fraud"])
    for w in spec.windows_days:
        cust_cut = cust.with_columns(cut=pl.col("t_us") - w * US_PER_DAY)
        before = _cumulative_at(cust_cut, cust, "customer_id", "cut", ["cum_n", "cum_amount"])
        n = cust["cum_n"] - before["cum_n"]
        total = cust["cum_amount"] - before["cum_amount"]
        lo = _cumulative_at(
            term.with_columns(cut=pl.col("t_us") - delay_us - w * US_PER_DAY),
            term,
            "terminal_id",
            "cut",
            ["cum_n", "cum_fraud"],
        )
        term_n = hi["cum_n"] - lo["cum_n"]
        frauds = hi["cum_fraud"] - lo["cum_fraud"]
        out = out.with_columns(
            pl.Series(f"customer_id_nb_tx_{w}day_window", n, dtype=pl.Float64),
            pl.Series(f"customer_id_avg_amount_{w}day_window", total / n, dtype=pl.Float64),
            pl.Series(f"terminal_id_nb_tx_{w}day_window", term_n, dtype=pl.Float64),
            pl.Series(
                f"terminal_id_risk_{w}day_window",
                (frauds / term_n.cast(pl.Float64)).fill_nan(0.0),
                dtype=pl.Float64,
            ),
        )
    if spec.feature_set == "extended":
        out = _behavioural(out, cust, spec)
    # cust/term were built from df in _row order, so the Series above align with `out`.
    return out.drop("_row", "t_us").with_columns(
        pl.col("tx_amount", "tx_during_weekend", "tx_during_night").cast(pl.Float64)
    )


def _behavioural(out: pl.DataFrame, cust: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """The behavioural columns (see the module docstring); ``out`` and ``cust`` are in ``_row`` order."""
    w = spec.longest_window_days
    horizon_us = w * US_PER_DAY
    n = out[f"customer_id_nb_tx_{w}day_window"]
    total = out[f"customer_id_avg_amount_{w}day_window"] * n
    prev_n = n - 1
    prev_mean = (total - out["amount"]) / prev_n
    ratio = pl.Series((out["amount"] + 1) / (prev_mean + 1)).fill_nan(1.0)
    ratio = pl.select(pl.when(prev_n > 0).then(ratio).otherwise(1.0)).to_series()
    gap_us = cust.select(pl.col("t_us").diff().over("customer_id")).to_series()
    hours = (gap_us.fill_null(horizon_us).clip(upper_bound=horizon_us) / US_PER_HOUR).cast(pl.Float64)

    pair = cust.select(
        "_row", "t_us", _pair=pl.concat_str("customer_id", pl.lit("\x1f"), out["terminal_id"])
    ).with_columns(cum_n=pl.int_range(1, pl.len() + 1).over("_pair"))
    before = _cumulative_at(pair.with_columns(cut=pl.col("t_us") - horizon_us), pair, "_pair", "cut", ["cum_n"])
    first_visit = (pair["cum_n"] - 1 - before["cum_n"] == 0).cast(pl.Float64)
    hour_before = _cumulative_at(
        cust.with_columns(cut=pl.col("t_us") - US_PER_HOUR), cust, "customer_id", "cut", ["cum_n"]
    )
    per_hour = (cust["cum_n"] - hour_before["cum_n"]).cast(pl.Float64)
    names = spec.behavioural_names
    return out.with_columns(
        ratio.alias(names[0]), hours.alias(names[1]), first_visit.alias(names[2]), per_hour.alias(names[3])
    )
