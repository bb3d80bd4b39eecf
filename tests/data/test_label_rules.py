"""The one rule for labels as known at a time (data/labels.py): every consumer reads labels through it."""

from datetime import UTC, datetime, timedelta

import polars as pl

from data.labels import (
    OPEN_END_US,
    as_label_events,
    contradictions,
    data_clock,
    dataset_labels,
    fraud_intervals,
    labels_as_of,
    pending_count,
    with_labels_as_of,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def events(*rows: tuple[str, int, datetime, str]) -> pl.DataFrame:
    frame = pl.DataFrame(list(rows), schema=["transaction_id", "is_fraud", "label_time", "source"], orient="row")
    return as_label_events(frame.cast({"label_time": pl.Datetime("us", "UTC")}))


def test_the_newest_event_by_label_time_wins_and_an_analyst_outranks_a_dataset_label_at_the_same_time() -> None:
    log = events(
        ("a", 1, T0 + timedelta(days=2), "chargeback"),  # recorded first, given later
        ("a", 0, T0 + timedelta(days=1), "dataset"),
        ("b", 1, T0, "analyst"),
        ("b", 0, T0, "dataset"),  # the same instant: the analyst's verdict stands
        ("c", 0, T0, "feedback"),
        ("c", 1, T0, "feedback"),  # same time and source: the later recorded wins
    )
    latest = {r["transaction_id"]: r["is_fraud"] for r in labels_as_of(log).to_dicts()}
    assert latest == {"a": 1, "b": 1, "c": 1}
    as_of_day_one = {r["transaction_id"]: r["is_fraud"] for r in labels_as_of(log, T0 + timedelta(days=1)).to_dicts()}
    assert as_of_day_one == {"a": 0, "b": 1, "c": 1}
    assert labels_as_of(log, T0 - timedelta(seconds=1)).height == 0  # nothing was known before T0
    assert contradictions(log)["transaction_id"].to_list() == ["a", "b", "c"]


def test_unlabelled_transactions_count_as_genuine_only_once_mature() -> None:
    transactions = pl.DataFrame(
        {
            "transaction_id": ["old", "young", "labelled"],
            "tx_datetime": [T0 - timedelta(days=8), T0 - timedelta(days=2), T0 - timedelta(days=1)],
        }
    ).cast({"tx_datetime": pl.Datetime("us", "UTC")})
    log = events(("labelled", 1, T0 - timedelta(hours=1), "analyst"))
    known = with_labels_as_of(transactions, log, T0, maturity_days=7)
    assert known["is_fraud"].to_list() == [0, None, 1]
    assert pending_count(transactions, log, T0, maturity_days=7) == 1
    before_the_verdict = with_labels_as_of(transactions, log, T0 - timedelta(hours=2), maturity_days=7)
    assert before_the_verdict["is_fraud"].to_list() == [0, None, None]


def test_dataset_labels_are_known_a_delay_after_their_transaction_and_null_labels_give_no_event() -> None:
    transactions = pl.DataFrame(
        {"transaction_id": ["a", "b", "c"], "tx_datetime": [T0] * 3, "is_fraud": [1, 0, None]}
    ).cast({"tx_datetime": pl.Datetime("us", "UTC"), "is_fraud": pl.Int8})
    log = dataset_labels(transactions, delay_days=7)
    assert log["transaction_id"].to_list() == ["a", "b"]
    assert log["label_time"].to_list() == [T0 + timedelta(days=7)] * 2
    assert set(log["source"].to_list()) == {"dataset"}


def test_fraud_intervals_end_where_a_later_event_clears_the_transaction() -> None:
    us = 1_000_000
    log = events(
        ("a", 1, T0, "chargeback"),
        ("a", 0, T0 + timedelta(seconds=10), "analyst"),
        ("a", 1, T0 + timedelta(seconds=20), "analyst"),
        ("b", 0, T0, "dataset"),
        ("c", 1, T0, "dataset"),
        ("c", 0, T0, "analyst"),  # outranked at the same instant: never fraud
    )
    intervals = fraud_intervals(log).sort("transaction_id", "fraud_from_us")
    start = int(T0.timestamp()) * us
    assert intervals.rows() == [("a", start, start + 10 * us), ("a", start + 20 * us, OPEN_END_US)]
    assert fraud_intervals(log, T0 + timedelta(seconds=15)).rows() == [("a", start, start + 10 * us)]


def test_a_world_that_ends_in_the_past_matures_by_its_own_clock() -> None:
    """Maturity is measured at the end of the newest transaction's day when that is before now."""
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    newest = datetime(2026, 7, 29, 18, tzinfo=UTC)
    assert data_clock(newest, now) == datetime(2026, 7, 30, tzinfo=UTC)
    assert data_clock(datetime(2026, 12, 2, 9, tzinfo=UTC), now) == now  # live data: the wall clock
    assert data_clock(None, now) == now
    transactions = pl.DataFrame(
        {"transaction_id": ["week-old", "day-old"], "tx_datetime": [newest - timedelta(days=8), newest]}
    ).cast({"tx_datetime": pl.Datetime("us", "UTC")})
    known = with_labels_as_of(transactions, events(), now, maturity_days=7, matured_at=data_clock(newest, now))
    assert known["is_fraud"].to_list() == [0, None]  # by the wall clock both would count as genuine
