"""Hyperparameter search around a known-good XGBoost recipe, bounded by a wall-clock budget.

The search starts from ``base`` (in production: the champion's recipe) and always evaluates it
first, so the result is never worse than ``base`` on the validation data. It then tries seeded
random neighbours of the incumbent (the best recipe so far): each neighbour changes one to three
of ``max_depth``, ``learning_rate``, ``min_child_weight``, ``subsample``, ``colsample_bytree``,
``scale_pos_weight``, ``reg_lambda`` and ``n_estimators`` by a bounded random step. A trial is
scored by average precision (AP) on the validation rows, as the mean over folds when several
(train, valid) folds are given.

The sequence of trials depends only on ``seed``, ``base`` and the (deterministic) trial scores:
two runs with the same inputs try the same recipes in the same order, and only the number of
trials that fit in ``budget_seconds`` can differ (``max_trials`` fixes it). A new trial starts
only when the time spent plus the mean trial duration fits in the budget; ``base`` runs whatever
the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from features.definitions import FeatureSpec
from model.metrics import ranking_metrics
from model.training import TrainingConfig, fit_xgboost, labels, matrix, predict

#: Parameters a neighbour may change, and how many of them change at once.
SEARCHED = (
    "max_depth",
    "learning_rate",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "scale_pos_weight",
    "reg_lambda",
    "n_estimators",
)
MAX_CHANGES = 3


@dataclass(frozen=True)
class SearchFold:
    """One validation fold: fit on ``train``, score AP on ``valid``.

    Early stopping uses ``stop`` when given (a window before ``train`` in the weekly protocols),
    else ``valid`` itself.
    """

    train: pl.DataFrame
    valid: pl.DataFrame
    stop: pl.DataFrame | None = None


@dataclass(frozen=True)
class Trial:
    """One evaluated recipe: its config, mean validation AP, per-fold APs and boosting rounds used."""

    index: int
    config: TrainingConfig
    ap: float
    fold_ap: tuple[float, ...]
    best_iterations: tuple[int, ...]
    seconds: float
    changed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (only the searched parameters of the config)."""
        return {
            "index": self.index,
            "ap": self.ap,
            "fold_ap": list(self.fold_ap),
            "best_iterations": list(self.best_iterations),
            "seconds": round(self.seconds, 3),
            "changed": list(self.changed),
            "params": {name: getattr(self.config, name) for name in SEARCHED},
        }


@dataclass
class SearchResult:
    """The best recipe found, its validation AP, every trial in order, and the best trial's boosters.

    ``boosters`` holds the best trial's model per fold (same order as the folds), so a caller can
    score the validation rows again (a threshold choice, for instance) without refitting.
    """

    best: TrainingConfig
    best_ap: float
    trials: list[Trial]
    seconds: float
    budget_seconds: float
    boosters: list[xgb.Booster] = field(default_factory=list, repr=False)

    @property
    def best_trial(self) -> Trial:
        """The trial that produced :attr:`best` (the first one on ties)."""
        return next(t for t in self.trials if t.config == self.best)

    @property
    def base_ap(self) -> float:
        """Validation AP of the starting recipe (always the first trial)."""
        return self.trials[0].ap

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: best parameters and AP, base AP, trial count, time and the trials."""
        return {
            "best_params": {name: getattr(self.best, name) for name in SEARCHED},
            "best_ap": self.best_ap,
            "base_ap": self.base_ap,
            "best_trial": self.best_trial.index,
            "best_iterations": list(self.best_trial.best_iterations),
            "n_trials": len(self.trials),
            "seconds": round(self.seconds, 3),
            "budget_seconds": self.budget_seconds,
            "trials": [t.to_dict() for t in self.trials],
        }


def neighbour(config: TrainingConfig, rng: np.random.Generator) -> tuple[TrainingConfig, tuple[str, ...]]:
    """A random neighbour of ``config``: one to :data:`MAX_CHANGES` searched parameters moved a bounded step.

    Steps are multiplicative for scale parameters (log-uniform, within ×/÷ 2) and additive for
    depth and the sampling shares; every value is clipped to a sensible range.
    """
    n_changes = int(rng.integers(1, MAX_CHANGES + 1))
    names = tuple(sorted(rng.choice(len(SEARCHED), size=n_changes, replace=False)))
    changes: dict[str, Any] = {}
    for i in names:
        name = SEARCHED[i]
        value = getattr(config, name)
        if name == "max_depth":
            step = int(rng.choice([-2, -1, 1, 2]))
            changes[name] = int(np.clip(value + step, 2, 12))
        elif name in ("subsample", "colsample_bytree"):
            changes[name] = round(float(np.clip(value + rng.uniform(-0.2, 0.2), 0.4, 1.0)), 3)
        elif name == "n_estimators":
            changes[name] = int(np.clip(round(value * _log_step(rng, 2.0)), 50, 2_000))
        elif name == "learning_rate":
            changes[name] = round(float(np.clip(value * _log_step(rng, 2.0), 0.01, 0.5)), 4)
        elif name == "min_child_weight":
            changes[name] = round(float(np.clip(value * _log_step(rng, 3.0), 0.1, 100.0)), 3)
        elif name == "scale_pos_weight":
            changes[name] = round(float(np.clip(value * _log_step(rng, 3.0), 1.0, 50.0)), 3)
        else:  # reg_lambda
            changes[name] = round(float(np.clip(value * _log_step(rng, 3.0), 0.01, 100.0)), 3)
    changed = tuple(SEARCHED[i] for i in names if changes[SEARCHED[i]] != getattr(config, SEARCHED[i]))
    return config.with_changes(**changes), changed


def _untried_neighbour(
    config: TrainingConfig, tried: set[TrainingConfig], rng: np.random.Generator, attempts: int = 20
) -> tuple[TrainingConfig, tuple[str, ...]]:
    """A neighbour of ``config`` not in ``tried`` (the last draw if every attempt was already tried)."""
    for _ in range(attempts):
        candidate, changed = neighbour(config, rng)
        if candidate not in tried:
            break
    return candidate, changed


def _log_step(rng: np.random.Generator, factor: float) -> float:
    """A multiplicative step, log-uniform in ``[1/factor, factor]``."""
    return float(math.exp(rng.uniform(-math.log(factor), math.log(factor))))


def evaluate_recipe(
    folds: Sequence[SearchFold], spec: FeatureSpec, config: TrainingConfig
) -> tuple[float, tuple[float, ...], tuple[int, ...], list[xgb.Booster]]:
    """Fit ``config`` on every fold: (mean AP, AP per fold, best iteration per fold, boosters)."""
    aps, iterations, boosters = [], [], []
    for fold in folds:
        booster = fit_xgboost(fold.train, fold.stop if fold.stop is not None else fold.valid, spec, config)
        ap = ranking_metrics(labels(fold.valid), predict(booster, matrix(fold.valid, spec)))["ap"]
        aps.append(ap if math.isfinite(ap) else 0.0)
        iterations.append(int(booster.best_iteration))
        boosters.append(booster)
    return float(np.mean(aps)), tuple(aps), tuple(iterations), boosters


def search_folds(
    folds: Sequence[SearchFold],
    spec: FeatureSpec,
    base: TrainingConfig,
    budget_seconds: float,
    seed: int,
    max_trials: int | None = None,
) -> SearchResult:
    """Search recipes around ``base`` by mean validation AP over ``folds`` (see the module docstring).

    ``base`` is evaluated first whatever the budget; a neighbour replaces the incumbent only when
    its AP is strictly higher. ``max_trials`` counts ``base``.
    """
    if not folds:
        raise ValueError("search needs at least one (train, valid) fold")
    for i, fold in enumerate(folds):
        if fold.valid.height == 0 or fold.valid["is_fraud"].sum() == 0:
            raise ValueError(f"validation fold {i} has no labelled fraud: AP cannot rank recipes")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials must be at least 1, not {max_trials}")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    trials: list[Trial] = []
    best_boosters: list[xgb.Booster] = []
    config, changed = base, ()
    while True:
        t0 = time.perf_counter()
        ap, fold_ap, iterations, boosters = evaluate_recipe(folds, spec, config)
        trials.append(Trial(len(trials), config, ap, fold_ap, iterations, time.perf_counter() - t0, changed))
        best = max(trials, key=lambda t: (t.ap, -t.index))
        if best is trials[-1]:
            best_boosters = boosters
        spent = time.perf_counter() - started
        if (max_trials is not None and len(trials) >= max_trials) or spent + spent / len(trials) > budget_seconds:
            break
        config, changed = _untried_neighbour(best.config, {t.config for t in trials}, rng)
    return SearchResult(best.config, best.ap, trials, time.perf_counter() - started, budget_seconds, best_boosters)


def search(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    spec: FeatureSpec,
    base: TrainingConfig,
    budget_seconds: float,
    seed: int,
    max_trials: int | None = None,
) -> SearchResult:
    """Search recipes around ``base``: fit on ``train``, early-stop and score AP on ``valid``.

    The one-fold form of :func:`search_folds`, independent of any data set: the train flow can
    pass its own time split (``valid`` must precede the test window under the label delay).
    """
    return search_folds([SearchFold(train, valid)], spec, base, budget_seconds, seed, max_trials)
