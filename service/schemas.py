"""Request and response schemas of the service (they are its OpenAPI document) and the row-error wording."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from data.contract import TransactionIn

MAX_BATCH_ROWS = 10_000
MAX_FEEDBACK_LABELS = 10_000
MAX_VERDICTS = 1_000


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


class Verdict(BaseModel):
    """An analyst's verdict on a scored transaction (an alert): it becomes an ``analyst`` label event."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=128)
    is_fraud: Literal[0, 1] = Field(description="1 fraud, 0 genuine (true/false are refused).")
    reviewer: str | None = Field(None, max_length=128, description="Who reviewed it.")
    note: str | None = Field(None, max_length=2000, description="Free text, e.g. what the cardholder said.")

    @field_validator("is_fraud", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # as for FeedbackItem: JSON false is not 0
            raise ValueError("is_fraud must be 0 or 1, not true/false")
        return value


class VerdictError(BaseModel):
    """Why one verdict of a request was refused (``index`` in the request's list)."""

    index: int
    transaction_id: str
    reason: str


class QueueFigures(BaseModel):
    """A day's alert queue in numbers: ``backlog = alerts - reviewed``, ``precision = frauds / reviewed``."""

    date: dt.date | None = Field(description="The queue's transaction day (UTC); null when nothing is scored yet.")
    capacity: int = Field(description="Daily investigation capacity k (FRAUDOPS_ALERT_CAPACITY): the queue's cap.")
    alerts: int = Field(description="Alerted cards that day, at most k.")
    reviewed: int = Field(description="Alerts with an analyst's verdict.")
    frauds: int = Field(description="Reviewed alerts found fraudulent.")
    precision: float | None = Field(description="Realised CP@k: frauds / reviewed (null before the first verdict).")
    backlog: int = Field(description="Alerts not reviewed yet.")


class VerdictsResponse(BaseModel):
    """``received == accepted + rejected``; every accepted verdict is an ``analyst`` label event at ``label_time``."""

    received: int
    accepted: int
    rejected: int
    applied: int = Field(description="Accepted verdicts whose transaction the online state holds (terminal risk).")
    label_time: dt.datetime = Field(description="The verdicts' label_time: when they arrived (UTC).")
    errors: list[VerdictError]
    figures: QueueFigures = Field(description="Today's queue (the newest scored day) after these verdicts.")


class RecentTransaction(BaseModel):
    """One of a card's recent transactions from the scored log."""

    transaction_id: str
    tx_datetime: dt.datetime
    terminal_id: str
    amount: float
    score: float
    decision: Literal["alert", "approve"]


class AlertVerdict(BaseModel):
    """The newest analyst verdict on the card's transactions of the alert's day."""

    transaction_id: str
    is_fraud: Literal[0, 1]
    reviewer: str | None
    note: str | None
    label_time: dt.datetime


class Alert(BaseModel):
    """One alerted card of the day: its highest-scored transaction, the card's recent history and its verdict."""

    rank: int = Field(description="1 = the highest score of the day.")
    transaction_id: str
    customer_id: str
    terminal_id: str
    tx_datetime: dt.datetime
    amount: float
    score: float = Field(ge=0, le=1, description="The fraud probability it was scored with.")
    model_version: str
    reasons: list[Reason]
    recent: list[RecentTransaction] = Field(description="The card's newest scored transactions up to the day's end.")
    verdict: AlertVerdict | None = Field(description="Null until an analyst reviews the card's alert.")


class AlertsResponse(BaseModel):
    """The ``GET /alerts`` answer: a day's alert queue ranked by score, and its figures."""

    date: dt.date | None
    capacity: int
    limit: int = Field(description="Alerts listed at most: min(limit asked, capacity).")
    figures: QueueFigures
    alerts: list[Alert]


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


def batch_request_for(item: type[BaseModel]) -> type[BatchRequest]:
    """:class:`BatchRequest` whose rows are documented as ``item`` (a dataset profile's request layout)."""
    if item is TransactionIn:
        return BatchRequest
    field = Field(
        description=f"Raw transactions ({item.__name__} objects), 1 to {MAX_BATCH_ROWS:,}.",
        json_schema_extra={
            "items": {"anyOf": [item.model_json_schema(), {}]},
            "minItems": 1,
            "maxItems": MAX_BATCH_ROWS,
        },
    )
    return create_model("BatchRequest", __base__=BatchRequest, transactions=(list[Any], field))


class BatchResponse(BaseModel):
    """Per-row results; ``received == scored + rejected``."""

    received: int
    scored: int
    rejected: int
    results: list[ScoreResponse]
    errors: list[RowError]


def row_error(index: int, transaction_id: object, reason: str) -> dict[str, Any]:
    """A :class:`RowError` as plain data (a batch row refused, by its index in the request)."""
    return {"index": index, "transaction_id": None if transaction_id is None else str(transaction_id), "reason": reason}


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
    single_row_reasons: str = Field(
        "XGBoost",
        description="What computes a single /score's reasons: PathAttributions (model/attributions.py, the same "
        "bits without a DMatrix) or XGBoost (a model it does not cover).",
    )
    dataset_profile: str | None = Field(None, description="The training data's dataset profile (data/profiles.py).")
    request_columns: list[str] | None = Field(
        None, description="The profile's columns /score takes, when the model is served in its layout (else null)."
    )
