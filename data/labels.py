"""Labels as their own time-stamped stream, and the one rule that says what was known when.

A label event is ``transaction_id, is_fraud, label_time, source`` (plus an optional reviewer and
note). Events are never overwritten: a label that contradicts an earlier one is a new event.

**The label of a transaction as known at time T** is its newest event with ``label_time <= T``.
Events at the same ``label_time`` are ranked by source, :data:`LABEL_SOURCES` from lowest to
highest (an analyst's verdict outranks a dataset label given at the same time), then by the order
they were recorded (the later wins). A transaction with no event by T whose ``tx_datetime`` is at
least ``maturity_days`` before T counts as genuine; a younger one is pending (unknown).

Every consumer reads labels through this module: the terminal-risk features (offline through
:func:`fraud_intervals`, online through the stores' label events), the training split, promotion's
comparison window, the monitor and the evaluation protocols.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

#: Label sources, lowest rank first: at the same label_time the higher-ranked event wins.
LABEL_SOURCES: tuple[str, ...] = ("dataset", "chargeback", "feedback", "analyst")
SOURCE_RANK: dict[str, int] = {source: rank for rank, source in enumerate(LABEL_SOURCES)}

#: Column -> dtype of a label event.
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "is_fraud": pl.Int8(),
    "label_time": pl.Datetime("us", "UTC"),
    "source": pl.String(),
    "reviewer": pl.String(),
    "note": pl.String(),
}
LABEL_COLUMNS: tuple[str, ...] = tuple(LABEL_SCHEMA)
#: The columns a label file must have (``label_time`` and ``source`` are optional there).
REQUIRED_LABEL_COLUMNS: tuple[str, ...] = ("transaction_id", "is_fraud")

#: Days after which a transaction without a fraud label counts as genuine (the handbook's delay).
DEFAULT_MATURITY_DAYS = 7
#: ``fraud_until_us`` of a fraud label that nothing later contradicts.
OPEN_END_US = 2**62


def empty_labels() -> pl.DataFrame:
    """An empty frame of label events."""
    return pl.DataFrame(schema=LABEL_SCHEMA)


def as_label_events(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the label columns (missing optional ones null), in :data:`LABEL_SCHEMA` types."""
    return frame.select(
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(dtype).alias(c) for c, dtype in LABEL_SCHEMA.items()
    )


def dataset_labels(transactions: pl.DataFrame, delay_days: int) -> pl.DataFrame:
    """Label events of a dataset that carries its labels: ``label_time = tx_datetime + delay``, source dataset.

    Rows whose ``is_fraud`` is null carry no label and give no event. With the handbook's 7-day delay
    this reproduces its protocols exactly: a label is known once its transaction is a delay old.
    """
    if "is_fraud" not in transactions.columns:
        return empty_labels()
    labelled = transactions.filter(pl.col("is_fraud").is_not_null())
    return as_label_events(
        labelled.select(
            "transaction_id",
            "is_fraud",
            label_time=pl.col("tx_datetime") + pl.duration(days=delay_days),
            source=pl.lit("dataset"),
        )
    )


def _ordered(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Events in (transaction, label_time, source rank, recorded order): the last of a transaction is its label."""
    return (
        events.lazy()
        .with_row_index("_recorded")
        .with_columns(_rank=pl.col("source").replace_strict(SOURCE_RANK, default=-1, return_dtype=pl.Int8))
        .sort("transaction_id", "label_time", "_rank", "_recorded")
    )


def labels_as_of(events: pl.DataFrame | pl.LazyFrame, as_of: datetime | None = None) -> pl.DataFrame:
    """Per transaction, its label as known at ``as_of`` (None: every event).

    Columns ``transaction_id, is_fraud, label_time, source``; transactions with no event by then are absent.
    """
    lazy = events.lazy()
    if as_of is not None:
        lazy = lazy.filter(pl.col("label_time") <= as_of)
    return (
        _ordered(lazy)
        .group_by("transaction_id", maintain_order=True)
        .last()
        .select("transaction_id", "is_fraud", "label_time", "source")
        .collect()
    )


def with_labels_as_of(
    transactions: pl.DataFrame,
    events: pl.DataFrame | pl.LazyFrame,
    as_of: datetime | None,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
    matured_at: datetime | None = None,
) -> pl.DataFrame:
    """``transactions`` with ``is_fraud`` as known at ``as_of``: the label, else 0 once mature, else null (pending).

    ``as_of=None`` reads every event and treats every unlabelled transaction as mature (the latest view).
    Maturity is measured at ``matured_at`` (default ``as_of``): the data's own clock when it lags the wall
    clock (a simulated or replayed world), see :func:`data_clock`. The transactions' own ``is_fraud``
    column, if any, is replaced.
    """
    known = labels_as_of(events, as_of).select("transaction_id", pl.col("is_fraud").alias("_label"))
    out = transactions.drop("is_fraud", strict=False).join(
        known, on="transaction_id", how="left", maintain_order="left"
    )
    clock = matured_at or as_of
    mature = pl.lit(True) if clock is None else pl.col("tx_datetime") <= clock - timedelta(days=maturity_days)
    label = pl.when(pl.col("_label").is_not_null()).then(pl.col("_label")).when(mature).then(pl.lit(0, pl.Int8))
    out = out.with_columns(is_fraud=label.cast(pl.Int8)).drop("_label")
    return out.select(transactions.columns) if "is_fraud" in transactions.columns else out


def data_clock(newest_transaction: datetime | None, now: datetime) -> datetime:
    """When maturity is measured: ``now``, or the end of the newest transaction's day when the data lags behind.

    In production the two agree. A simulated or replayed world ends in the past: by the wall clock all of
    it would be mature at once, although by its own clock its newest week's labels are not due yet.
    """
    if newest_transaction is None:
        return now
    end_of_day = datetime.combine(newest_transaction.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return min(now, end_of_day)


def pending_count(
    transactions: pl.DataFrame,
    events: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
) -> int:
    """Transactions up to ``as_of`` whose label is not known at ``as_of`` (no event, not mature yet)."""
    seen = transactions.filter(pl.col("tx_datetime") <= as_of)
    return with_labels_as_of(seen, events, as_of, maturity_days)["is_fraud"].null_count()


def fraud_intervals(events: pl.DataFrame | pl.LazyFrame, as_of: datetime | None = None) -> pl.DataFrame:
    """When each transaction counts as fraud: ``transaction_id, fraud_from_us, fraud_until_us`` (UTC epoch µs).

    A transaction is fraud at time t, as known at t, for t in ``[fraud_from, fraud_until)``: from a fraud
    event's label_time until the next event of that transaction (:data:`OPEN_END_US` when none). Events
    after ``as_of`` are not known (None: all). Same-time events follow :func:`labels_as_of`'s ranking: the
    outranked one gets an empty interval and is dropped.
    """
    lazy = events.lazy()
    if as_of is not None:
        lazy = lazy.filter(pl.col("label_time") <= as_of)
    # Only transactions with a fraud event can be fraud at any time: the rest (most) need no ordering.
    lazy = lazy.filter((pl.col("is_fraud") == 1).any().over("transaction_id"))
    return (
        _ordered(lazy)
        .with_columns(
            fraud_from_us=pl.col("label_time").dt.epoch("us"),
            fraud_until_us=pl.col("label_time").dt.epoch("us").shift(-1).over("transaction_id").fill_null(OPEN_END_US),
        )
        .filter((pl.col("is_fraud") == 1) & (pl.col("fraud_until_us") > pl.col("fraud_from_us")))
        .select("transaction_id", "fraud_from_us", "fraud_until_us")
        .collect()
    )


def contradictions(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Transactions whose events disagree (both fraud and genuine): ``transaction_id, events, frauds``."""
    return (
        events.lazy()
        .group_by("transaction_id")
        .agg(events=pl.len(), frauds=(pl.col("is_fraud") == 1).sum())
        .filter((pl.col("frauds") > 0) & (pl.col("frauds") < pl.col("events")))
        .sort("transaction_id")
        .collect()
    )
