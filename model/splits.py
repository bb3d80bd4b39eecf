"""Time-ordered splits that respect the label delay."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import polars as pl


@dataclass(frozen=True)
class TimeSplit:
    """Consecutive windows ``train | delay gap | valid | delay gap | test`` (dates inclusive).

    The gap makes the evaluation honest: on the first validation day, labels of the last
    ``delay`` days before it are not known yet, so the model cannot have trained on them.
    """

    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    test_start: date
    test_end: date

    @classmethod
    def ending_at(
        cls, last_day: date, first_day: date, delay_days: int, valid_days: int = 7, test_days: int = 7
    ) -> TimeSplit:
        """The newest test window ends at ``last_day``; training takes all earlier labelled history."""
        test_start = last_day - timedelta(days=test_days - 1)
        valid_end = test_start - timedelta(days=delay_days + 1)
        valid_start = valid_end - timedelta(days=valid_days - 1)
        train_end = valid_start - timedelta(days=delay_days + 1)
        if train_end < first_day:
            needed = (last_day - train_end).days + 1
            raise ValueError(
                f"not enough history: a split with delay {delay_days}d, valid {valid_days}d and test "
                f"{test_days}d needs more than {needed} days, data covers {first_day}..{last_day}"
            )
        return cls(first_day, train_end, valid_start, valid_end, test_start, last_day)

    def to_dict(self) -> dict[str, str]:
        """Window boundaries as ISO date strings."""
        return {k: v.isoformat() for k, v in asdict(self).items()}

    def select(self, frame: pl.DataFrame, part: str) -> pl.DataFrame:
        """Rows of ``frame`` whose event date falls in ``part`` (train, valid or test)."""
        start, end = getattr(self, f"{part}_start"), getattr(self, f"{part}_end")
        day = pl.col("tx_datetime").dt.date()
        return frame.filter((day >= start) & (day <= end) & pl.col("is_fraud").is_not_null())
