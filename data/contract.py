"""The canonical transaction record used everywhere after ingestion."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Column -> Polars dtype of the canonical record.
CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "tx_datetime": pl.Datetime("us", "UTC"),
    "customer_id": pl.String(),
    "terminal_id": pl.String(),
    "amount": pl.Float64(),
    "is_fraud": pl.Int8(),
}
CANONICAL_COLUMNS: tuple[str, ...] = tuple(CANONICAL_SCHEMA)

#: Generator ground truth; kept for analysis, never a model feature.
SCENARIO_COLUMN = "fraud_scenario"

#: Largest amount accepted as plausible (in the transaction currency).
MAX_PLAUSIBLE_AMOUNT = 1_000_000.0

#: How far ahead of the wall clock an event time may be (clock skew between systems).
MAX_CLOCK_SKEW = timedelta(hours=1)


class TransactionIn(BaseModel):
    """One raw transaction as it arrives at the real-time endpoint."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    transaction_id: str = Field(min_length=1, max_length=128, description="Unique transaction id.")
    tx_datetime: datetime = Field(description="Event time, ISO 8601; naive times are read as UTC.")
    customer_id: str = Field(min_length=1, max_length=128, description="Card / customer id.")
    terminal_id: str = Field(min_length=1, max_length=128, description="Merchant terminal id.")
    amount: float = Field(ge=0, le=MAX_PLAUSIBLE_AMOUNT, description="Amount, >= 0.")

    @field_validator("tx_datetime", mode="before")
    @classmethod
    def _not_a_number(cls, value: object) -> object:
        # The contract is ISO 8601 text (or a datetime from a typed file); pydantic would read 0 as 1970.
        if isinstance(value, int | float):
            raise ValueError("tx_datetime must be an ISO 8601 date-time, not a number")
        return value

    @field_validator("tx_datetime")
    @classmethod
    def _utc_and_not_future(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("tx_datetime is in the future")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _a_finite_number(cls, value: object) -> object:
        # Before the bounds: NaN would otherwise read "should be less than or equal to ..."; and JSON
        # true/false would be taken as 1.0/0.0.
        if isinstance(value, bool):
            raise ValueError("amount must be a number, not true/false")
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value  # not a number at all: pydantic says so
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("amount must be a finite number")
        return value


def empty_transactions() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=CANONICAL_SCHEMA)
