"""Ranking and alerting metrics, and the threshold choice."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def ranking_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC ROC and average precision (NaN when only one class is present)."""
    if len(np.unique(y_true)) < 2:
        return {"auc": float("nan"), "ap": float("nan")}
    return {"auc": float(roc_auc_score(y_true, scores)), "ap": float(average_precision_score(y_true, scores))}


def alert_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and alert rate of the decision ``score >= threshold``."""
    alerts = scores >= threshold
    tp = float(np.sum(alerts & (y_true == 1)))
    return {
        "precision": tp / float(alerts.sum()) if alerts.any() else 0.0,
        "recall": tp / float(y_true.sum()) if y_true.any() else 0.0,
        "alert_rate": float(alerts.mean()) if alerts.size else 0.0,
    }


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising F1 on validation data (0.5 when it cannot be chosen)."""
    if y_true.sum() == 0 or len(np.unique(y_true)) < 2:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])
