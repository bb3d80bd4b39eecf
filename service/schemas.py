"""Request and response schemas of the service (they are its OpenAPI document) and the row-error wording."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data.contract import TransactionIn

MAX_BATCH_ROWS = 10_000
MAX_FEEDBACK_LABELS = 10_000


class Reason(BaseModel):
    """One feature's push towards (positive) or away from (negative) fraud, in log-odds."""

    feature: str
    value: float
    contribution: float


class ScoreResponse(BaseModel):
    """The answer for one transaction."""

    transaction_id: str
    fraud_probability: float = Field(ge=0, le=1)
    decision: Literal["alert", "approve"]
    threshold: float
    model_version: str
    reasons: list[Reason]


class RowError(BaseModel):
    """Why one row of a batch was not scored."""

    index: int
    transaction_id: str | None
    reason: str


class FeedbackItem(BaseModel):
    """A label for an earlier transaction."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=128)
    is_fraud: Literal[0, 1]


class FeedbackResponse(BaseModel):
    """``received == applied + unknown``; every label is stored for retraining either way."""

    received: int
    applied: int
    unknown: int
    stored: int
    unknown_ids: list[str]


class BatchRequest(BaseModel):
    """The ``/score_batch`` body. Rows are checked one by one (a bad row is reported, the rest scored)."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[Any] = Field(
        description=f"Raw transactions (TransactionIn objects), 1 to {MAX_BATCH_ROWS:,}.",
        json_schema_extra={"items": TransactionIn.model_json_schema()},
    )


class BatchResponse(BaseModel):
    """Per-row results; ``received == scored + rejected``."""

    received: int
    scored: int
    rejected: int
    results: list[ScoreResponse]
    errors: list[RowError]


def describe_validation_error(exc: ValidationError) -> str:
    """'field: message' pairs, e.g. ``amount: Input should be greater than or equal to 0``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors(include_url=False)
    )
