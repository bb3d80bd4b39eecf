"""Real-time scoring: online features from the shared state, native booster, readable reasons."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, Literal

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from features.contract import TransactionIn
from features.online import FeatureStore, OnlineFeatureState, to_epoch_us
from model.bundle import Bundle

MAX_BATCH_ROWS = 10_000
MAX_FEEDBACK_LABELS = 10_000
#: Salt of the customer-id hash in logs and monitoring (set it per deployment to stop dictionary attacks).
ID_HASH_SALT = os.environ.get("FRAUDOPS_ID_HASH_SALT", "fraudops")


def hash_id(value: str) -> str:
    """A stable pseudonym for a customer (or card) id in logs and monitoring: salted SHA-256, 16 hex chars."""
    return hashlib.sha256(f"{ID_HASH_SALT}:{value}".encode()).hexdigest()[:16]


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

    transaction_id: str = Field(min_length=1, max_length=128)
    is_fraud: Literal[0, 1]


class FeedbackResponse(BaseModel):
    """``received == applied + unknown``; every label is stored for retraining either way."""

    received: int
    applied: int
    unknown: int
    stored: int
    unknown_ids: list[str]


class BatchResponse(BaseModel):
    """Per-row results; ``received == scored + rejected``."""

    received: int
    scored: int
    rejected: int
    results: list[ScoreResponse]
    errors: list[RowError]


_TX = TypeAdapter(TransactionIn)


def describe_validation_error(exc: ValidationError) -> str:
    """'field: message' pairs, e.g. ``amount: Input should be greater than or equal to 0``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors(include_url=False)
    )


class Scorer:
    """Holds the booster, threshold and online state of one loaded model bundle."""

    def __init__(self, bundle: Bundle, n_reasons: int = 3, store: FeatureStore | None = None) -> None:
        self.bundle = bundle
        self.booster: xgb.Booster = bundle.booster
        self.booster.set_param({"nthread": 1})
        self.spec = bundle.spec
        self.feature_names = self.spec.feature_names
        self.threshold = bundle.threshold
        self.version = bundle.version
        self.n_reasons = n_reasons
        # In-process state unless the caller passes a shared store (see service.service.open_store).
        self.state = store if store is not None else OnlineFeatureState.from_frame(bundle.state, self.spec)
        self._iteration_range = (0, int(bundle.card.get("best_iteration", 0)) + 1)
        self._lock = threading.Lock()

    def features(self, tx: TransactionIn) -> np.ndarray:
        """Online feature row for ``tx``; the state then records the transaction."""
        t_us = to_epoch_us(tx.tx_datetime)
        with self._lock:
            row = self.state.features(
                tx.transaction_id, tx.customer_id, tx.terminal_id, t_us, tx.amount, tx.tx_datetime
            )
            self.state.observe(tx.transaction_id, tx.customer_id, tx.terminal_id, t_us, tx.amount)
        return row

    def _probabilities_and_reasons(self, rows: np.ndarray) -> tuple[np.ndarray, list[list[Reason]]]:
        """One booster call: per-feature contributions (log-odds) sum to the margin, so they give both.

        Contributions are XGBoost's path attributions (``approx_contribs``, Saabas): like TreeSHAP they
        add up exactly to the margin, and on this model they cost ~0.3 ms per row instead of ~2 ms.
        """
        contributions = self.booster.predict(
            xgb.DMatrix(rows, nthread=1),  # columns in model order by construction: skip the name check
            pred_contribs=True,
            approx_contribs=True,
            iteration_range=self._iteration_range,
            validate_features=False,
        )
        margins = contributions.sum(axis=1, dtype=np.float64)  # features + bias column
        probabilities = 1.0 / (1.0 + np.exp(-margins))
        out = []
        for row, contrib in zip(rows, contributions[:, :-1], strict=True):
            top = np.argsort(-contrib)[: self.n_reasons]
            out.append(
                [
                    Reason(feature=self.feature_names[i], value=float(row[i]), contribution=float(contrib[i]))
                    for i in top
                ]
            )
        return probabilities, out

    def score_rows(self, txs: list[TransactionIn], rows: np.ndarray) -> list[ScoreResponse]:
        """Score precomputed feature rows: probability, decision and top reasons per transaction."""
        probabilities, reasons = self._probabilities_and_reasons(rows)
        return [
            ScoreResponse(
                transaction_id=tx.transaction_id,
                fraud_probability=float(p),
                decision="alert" if p >= self.threshold else "approve",
                threshold=self.threshold,
                model_version=self.version,
                reasons=r,
            )
            for tx, p, r in zip(txs, probabilities, reasons, strict=True)
        ]

    def score(self, tx: TransactionIn) -> ScoreResponse:
        """Score one transaction and add it to the online state."""
        return self.score_rows([tx], self.features(tx)[None, :])[0]

    def score_batch(self, records: list[Any], unreadable: dict[int, str] | None = None) -> BatchResponse:
        """Validate each record; score the valid ones in order, report the others by index.

        ``unreadable`` maps indices of rows already known bad (e.g. a CSV line with the wrong number of
        fields) to their reason.
        """
        return self.score_batch_with_inputs(records, unreadable)[0]

    def score_batch_with_inputs(
        self, records: list[Any], unreadable: dict[int, str] | None = None
    ) -> tuple[BatchResponse, list[TransactionIn]]:
        """:meth:`score_batch`, also returning the validated transactions (aligned with the results)."""
        valid: list[TransactionIn] = []
        errors: list[RowError] = []
        unreadable = unreadable or {}
        for index, record in enumerate(records):
            if index in unreadable:
                tid = record.get("transaction_id") if isinstance(record, dict) else None
                errors.append(RowError(index=index, transaction_id=tid, reason=unreadable[index]))
                continue
            try:
                valid.append(_TX.validate_python(record))
            except ValidationError as exc:
                tid = record.get("transaction_id") if isinstance(record, dict) else None
                errors.append(
                    RowError(
                        index=index,
                        transaction_id=str(tid) if tid is not None else None,
                        reason=describe_validation_error(exc),
                    )
                )
        results: list[ScoreResponse] = []
        if valid:
            rows = np.vstack([self.features(tx) for tx in valid])
            results = self.score_rows(valid, rows)
        response = BatchResponse(
            received=len(records), scored=len(results), rejected=len(errors), results=results, errors=errors
        )
        return response, valid

    def apply_labels(self, labels: list[FeedbackItem]) -> list[bool]:
        """Late labels into the online state (terminal risk features); whether each transaction was known."""
        with self._lock:
            return [self.state.add_label(item.transaction_id, item.is_fraud) for item in labels]

    def summary(self) -> dict[str, Any]:
        """What ``GET /model`` answers: version, metrics, data window, threshold, features."""
        card = self.bundle.card
        return {
            "model_version": self.version,
            "mlflow_run_id": card.get("run_id"),
            "threshold": self.threshold,
            "threshold_policy": card.get("threshold_policy"),
            "metrics": card.get("metrics", {}),
            "baseline_metrics": card.get("baseline_metrics", {}),
            "data_window": card.get("split", {}),
            "label_delay_days": self.spec.label_delay_days,
            "feature_set": self.spec.feature_set,
            "features": self.feature_names,
            "online_state_transactions": len(self.state),
        }

    def model_card(self) -> dict[str, Any]:
        """The bundle's model card plus the online state's transaction count."""
        return {**self.bundle.card, "online_state_transactions": len(self.state)}
