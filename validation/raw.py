"""The raw-transaction suite: which rows may enter the lake, and why the others may not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from data.contract import CANONICAL_COLUMNS, MAX_CLOCK_SKEW, MAX_PLAUSIBLE_AMOUNT
from data.labels import LABEL_SOURCES, as_label_events
from data.sources import IS_FRAUD_TEXT, LABEL_TIME_TEXT, PARSE_ERRORS
from validation.gx_runner import ROW_INDEX, SuiteResult, run_suite

EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RawValidation:
    """Split of a batch: ``received == accepted.height + rejected.height``."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame  # the input columns plus ``reason``
    suite: SuiteResult

    @property
    def received(self) -> int:
        """Rows in the batch (accepted plus rejected)."""
        return self.accepted.height + self.rejected.height


def raw_expectations(now: datetime) -> list[tuple[Any, str]]:
    """The raw suite as (GX expectation, reason shown for a failing row)."""
    import great_expectations as gx

    e = gx.expectations
    newest = now + MAX_CLOCK_SKEW
    suite: list[tuple[Any, str]] = [
        (e.ExpectColumnValuesToNotBeNull(column=c), f"{c}: missing or unparseable")
        for c in ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
    ]
    suite += [
        (e.ExpectColumnValuesToBeUnique(column="transaction_id"), "transaction_id: duplicated in the batch"),
        (
            e.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=MAX_PLAUSIBLE_AMOUNT),
            f"amount: negative or above {MAX_PLAUSIBLE_AMOUNT:,.0f}",
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="tx_epoch_s", min_value=EARLIEST_PLAUSIBLE.timestamp(), max_value=newest.timestamp()
            ),
            f"tx_datetime: before {EARLIEST_PLAUSIBLE:%Y-%m-%d} or in the future",
        ),
        (e.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[0, 1]), "is_fraud: not 0, 1 or empty"),
        (e.ExpectColumnValuesToBeNull(column=PARSE_ERRORS), "parse error"),
    ]
    return suite


def validate_raw(batch: pl.DataFrame, now: datetime | None = None) -> RawValidation:
    """Run the raw suite; rows failing any expectation are rejected with every reason that applies.

    ``batch`` is the output of :func:`data.sources.to_canonical_frame` (canonical columns plus
    ``parse_errors``); rows already deduplicated by the caller.
    """
    now = now or datetime.now(UTC)
    if PARSE_ERRORS not in batch.columns:
        batch = batch.with_columns(pl.lit(None, dtype=pl.String).alias(PARSE_ERRORS))
    frame = batch.with_row_index(ROW_INDEX).with_columns(
        # Epoch seconds: GX range checks on timezone-aware pandas datetimes are fragile.
        tx_epoch_s=pl.col("tx_datetime").dt.epoch("us") / 1e6,
    )
    result = run_suite(
        "raw_transactions",
        raw_expectations(now),
        frame.select(ROW_INDEX, *CANONICAL_COLUMNS, "tx_epoch_s", PARSE_ERRORS),
    )
    reasons: dict[int, list[str]] = {}
    for outcome in result.failures:
        for row in outcome.failed_rows:
            reasons.setdefault(row, []).append(outcome.reason)
    parse = dict(frame.filter(pl.col(PARSE_ERRORS).is_not_null()).select(ROW_INDEX, PARSE_ERRORS).iter_rows())
    for row, text in parse.items():
        # The parse note is more precise than "parse error" and than "<col>: missing" for those columns.
        unparsed = {part.split(":", 1)[0] for part in text.split("; ")}
        kept = [r for r in reasons.get(row, []) if r != "parse error" and r.split(":", 1)[0] not in unparsed]
        reasons[row] = [*kept, text]
    reason_frame = pl.DataFrame(
        {ROW_INDEX: list(reasons), "reason": ["; ".join(dict.fromkeys(v)) for v in reasons.values()]},
        schema={ROW_INDEX: pl.UInt32, "reason": pl.String},
    )
    labelled = frame.drop("tx_epoch_s").join(reason_frame, on=ROW_INDEX, how="left", maintain_order="left")
    accepted = labelled.filter(pl.col("reason").is_null()).drop(ROW_INDEX, "reason", PARSE_ERRORS)
    rejected = labelled.filter(pl.col("reason").is_not_null()).drop(ROW_INDEX, PARSE_ERRORS)
    return RawValidation(accepted, rejected, result)


#: Source of a label-file row that names none (a chargeback file is the usual late label).
DEFAULT_LABEL_SOURCE = "chargeback"
#: Longest accepted transaction id (as at the real-time endpoint).
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class LabelValidation:
    """Split of a label file: ``received == accepted.height + rejected.height``.

    ``accepted`` holds label events (:data:`data.labels.LABEL_SCHEMA`, defaults filled in); ``rejected``
    the parsed input columns plus ``reason``.
    """

    accepted: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def received(self) -> int:
        """Rows in the file (accepted plus rejected)."""
        return self.accepted.height + self.rejected.height


def validate_labels(
    batch: pl.DataFrame, known: pl.DataFrame, now: datetime | None = None, arrived: datetime | None = None
) -> LabelValidation:
    """Check each row of a label file (from :func:`data.sources.to_label_frame`); name every problem.

    ``known`` holds ``transaction_id, tx_datetime`` of the file's transactions already in the lake (a label
    may not predate its transaction; labels of other transactions are fine: they apply when it arrives).
    A missing ``label_time`` is ``arrived`` (the ingest passes the file's modification time; default
    ``now``), a missing ``source`` is ``chargeback``.
    """
    now = now or datetime.now(UTC)
    arrived = min(arrived or now, now)
    tid, fraud_text, when = pl.col("transaction_id"), pl.col(IS_FRAUD_TEXT), pl.col("label_time")
    fraud = fraud_text.cast(pl.Float64, strict=False)
    sources = ", ".join(LABEL_SOURCES)
    frame = batch.join(
        # An id on two days is two lake rows: a label may not predate the earlier one (one row per label row).
        known.group_by("transaction_id").agg(pl.col("tx_datetime").min().alias("_tx_datetime")),
        on="transaction_id",
        how="left",
        maintain_order="left",
    )
    checks = [
        pl.col(PARSE_ERRORS),
        pl.when(tid.is_null()).then(pl.lit("transaction_id: missing or empty")),
        pl.when((tid.str.len_chars() > MAX_ID_LENGTH) | tid.str.contains(r"[\s\x00-\x1f\x7f]")).then(
            pl.lit("transaction_id: malformed '")
            + tid.str.slice(0, 40)
            + pl.lit(f"' (whitespace, control characters or over {MAX_ID_LENGTH} characters)")
        ),
        pl.when(fraud_text.is_null()).then(pl.lit("is_fraud: missing")),
        pl.when(fraud_text.is_not_null() & ~fraud.is_in([0.0, 1.0]).fill_null(False)).then(
            pl.lit("is_fraud: must be 0 or 1, got '") + fraud_text.str.slice(0, 40) + pl.lit("'")
        ),
        pl.when(pl.col(LABEL_TIME_TEXT).is_not_null() & when.is_null()).then(
            pl.lit("label_time: cannot parse value '") + pl.col(LABEL_TIME_TEXT).str.slice(0, 40) + pl.lit("'")
        ),
        pl.when(when > now + MAX_CLOCK_SKEW).then(
            pl.lit("label_time: in the future (") + when.dt.to_string("%Y-%m-%d %H:%M:%S") + pl.lit(" UTC)")
        ),
        pl.when(when < pl.col("_tx_datetime")).then(
            pl.lit("label_time: before its transaction's tx_datetime (")
            + pl.col("_tx_datetime").dt.to_string("%Y-%m-%d %H:%M:%S")
            + pl.lit(" UTC)")
        ),
        pl.when(pl.col("source").is_not_null() & ~pl.col("source").is_in(LABEL_SOURCES)).then(
            pl.lit("source: unknown '") + pl.col("source").str.slice(0, 40) + pl.lit(f"' (expected one of {sources})")
        ),
    ]
    checked = frame.with_columns(
        reason=pl.concat_str(checks, separator="; ", ignore_nulls=True).replace("", None)
    ).drop("_tx_datetime")
    good = checked.filter(pl.col("reason").is_null())
    accepted = as_label_events(
        good.with_columns(
            is_fraud=good[IS_FRAUD_TEXT].cast(pl.Float64, strict=False).cast(pl.Int8),
            label_time=when.fill_null(pl.lit(arrived, dtype=pl.Datetime("us", "UTC"))),
            source=pl.col("source").fill_null(DEFAULT_LABEL_SOURCE),
        )
    )
    rejected = checked.filter(pl.col("reason").is_not_null()).drop(PARSE_ERRORS)
    return LabelValidation(accepted, rejected)
