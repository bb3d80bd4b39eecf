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
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

US_PER_DAY = 86_400 * 1_000_000
ORDER_COLUMNS = ("tx_datetime", "transaction_id")


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature pipeline computes; shipped with the model so serving matches training."""

    windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = 7
    night_end_hour: int = 6

    @property
    def feature_names(self) -> list[str]:
        """Model input columns, in order."""
        names = ["tx_amount", "tx_during_weekend", "tx_during_night"]
        for w in self.windows_days:
            names += [f"customer_id_nb_tx_{w}day_window", f"customer_id_avg_amount_{w}day_window"]
        for w in self.windows_days:
            names += [f"terminal_id_nb_tx_{w}day_window", f"terminal_id_risk_{w}day_window"]
        return names

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            windows_days=tuple(int(w) for w in data["windows_days"]),  # type: ignore[union-attr]
            label_delay_days=int(data["label_delay_days"]),  # type: ignore[arg-type]
            night_end_hour=int(data["night_end_hour"]),  # type: ignore[arg-type]
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
    # cust/term were built from df in _row order, so the Series above align with `out`.
    return out.drop("_row", "t_us").with_columns(
        pl.col("tx_amount", "tx_during_weekend", "tx_during_night").cast(pl.Float64)
    )
