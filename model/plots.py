"""Figures logged with each training run: PR curve, score distribution per class, feature importance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xgboost as xgb
from sklearn.metrics import average_precision_score, precision_recall_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure() -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    return fig, fig.add_subplot()


def pr_curve(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float | None = None) -> Figure:
    """Precision-recall curve per window (``{"valid": (y, scores), "test": (y, scores)}``), AP in the legend."""
    fig, ax = _figure()
    for name, (y, p) in curves.items():
        if y.sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, p):.3f})")
        if threshold is not None and thresholds.size:
            i = min(int(np.searchsorted(thresholds, threshold)), thresholds.size - 1)
            ax.scatter([recall[i]], [precision[i]], marker="o", s=25)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall")
    ax.legend(loc="lower left")
    return fig


def score_distribution(y: np.ndarray, p: np.ndarray, threshold: float | None = None) -> Figure:
    """Histograms of the scores of genuine and fraudulent transactions (log counts), with the threshold."""
    fig, ax = _figure()
    bins = np.linspace(0, 1, 51)
    ax.hist(p[y == 0], bins=bins, alpha=0.6, label=f"genuine ({int((y == 0).sum())})", log=True)
    ax.hist(p[y == 1], bins=bins, alpha=0.6, label=f"fraud ({int((y == 1).sum())})", log=True)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="score", ylabel="transactions (log)", title="Score distribution per class")
    ax.legend()
    return fig


def feature_importance(booster: xgb.Booster, kind: str = "total_gain", top: int = 20) -> Figure:
    """Horizontal bars of the booster's feature importance (``total_gain`` by default)."""
    scores = booster.get_score(importance_type=kind)
    names = sorted(scores, key=lambda n: scores[n])[-top:]
    fig, ax = _figure()
    fig.set_size_inches(7, 0.3 * len(names) + 1.2)
    ax.barh(names, [scores[n] for n in names])
    ax.set(xlabel=kind.replace("_", " "), title="Feature importance")
    fig.tight_layout()
    return fig
