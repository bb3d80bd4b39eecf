"""Time-ordered splits that respect the label delay."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta

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
    #: Exact ``[start, end)`` event-time bounds of train, valid and test, for a split finer than days (a
    #: dataset of a few days, as ULB's two); the dates above are then the days those bounds fall on.
    bounds: tuple[tuple[datetime, datetime], tuple[datetime, datetime], tuple[datetime, datetime]] | None = None

    @classmethod
    def ending_at_hours(
        cls, last_time: datetime, first_time: datetime, delay_hours: int, valid_hours: int, test_hours: int
    ) -> TimeSplit:
        """An hourly split, for data of a few days: ``[start, end)`` bounds in event time.

        The test window is the ``test_hours`` up to ``last_time`` (included), then ``delay_hours`` of gap,
        ``valid_hours`` of validation, the gap again, and training from ``first_time``.
        """
        end = last_time + timedelta(microseconds=1)
        test = (end - timedelta(hours=test_hours), end)
        valid_end = test[0] - timedelta(hours=delay_hours)
        valid = (valid_end - timedelta(hours=valid_hours), valid_end)
        train = (first_time, valid[0] - timedelta(hours=delay_hours))
        if train[1] <= first_time:
            raise ValueError(
                f"not enough history: an hourly split with delay {delay_hours}h, valid {valid_hours}h and test "
                f"{test_hours}h needs more than {(end - train[1]).total_seconds() / 3600:.0f} hours, data covers "
                f"{first_time:%Y-%m-%d %H:%M}..{last_time:%Y-%m-%d %H:%M}"
            )
        last = timedelta(microseconds=1)
        return cls(
            train[0].date(),
            (train[1] - last).date(),
            valid[0].date(),
            (valid[1] - last).date(),
            test[0].date(),
            (test[1] - last).date(),
            (train, valid, test),
        )

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
        """Window boundaries as ISO date strings (and, for an hourly split, ``<part>_from``/``<part>_until`` times)."""
        out = {f.name: getattr(self, f.name).isoformat() for f in fields(self) if f.name != "bounds"}
        for part, (start, end) in zip(("train", "valid", "test"), self.bounds or (), strict=False):
            out |= {f"{part}_from": start.isoformat(), f"{part}_until": end.isoformat()}
        return out

    def select(self, frame: pl.DataFrame, part: str) -> pl.DataFrame:
        """Rows of ``frame`` whose event time falls in ``part`` (train, valid or test) and have a label."""
        labelled = pl.col("is_fraud").is_not_null()
        if self.bounds is not None:
            start, end = self.bounds[("train", "valid", "test").index(part)]
            return frame.filter((pl.col("tx_datetime") >= start) & (pl.col("tx_datetime") < end) & labelled)
        start, end = getattr(self, f"{part}_start"), getattr(self, f"{part}_end")
        day = pl.col("tx_datetime").dt.date()
        return frame.filter((day >= start) & (day <= end) & labelled)
