"""Request and response schemas of the service (they are its OpenAPI document) and the row-error wording."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    is_fraud: Literal[0, 1] = Field(description="1 fraud, 0 genuine (true/false are refused).")

    @field_validator("is_fraud", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON false would otherwise pass as 0 (the schema says 0 or 1)
            raise ValueError("is_fraud must be 0 or 1, not true/false")
        return value


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
        # Documented, not enforced here: the route answers 422 with the count (bad rows are per-row errors).
        # Any item is accepted: one that is not a valid TransactionIn comes back in ``errors`` with the reason.
        json_schema_extra={
            "items": {"anyOf": [TransactionIn.model_json_schema(), {}]},
            "minItems": 1,
            "maxItems": MAX_BATCH_ROWS,
        },
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


class ModelSummary(BaseModel):
    """What ``GET /model`` (and ``POST /model``) answers: the loaded model's card in brief."""

    model_version: str
    mlflow_run_id: str | None
    threshold: float
    threshold_policy: dict[str, Any] | None
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    data_window: dict[str, str]
    label_delay_days: int
    feature_set: str
    features: list[str]
    online_state_transactions: int
