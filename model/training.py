"""Train XGBoost (and a logistic-regression baseline) on a time split; choose the threshold on validation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.definitions import FeatureSpec
from model.card import ModelCard, PRCurve
from model.metrics import CostModel, alert_metrics, ranking_metrics
from model.policies import ThresholdPolicy
from model.splits import TimeSplit


@dataclass(frozen=True)
class TrainingConfig:
    """XGBoost recipe.

    Class imbalance (about 0.8 % fraud) is handled deliberately: by default the frauds are not
    re-weighted (``scale_pos_weight=1``), so scores stay calibrated probabilities and the
    threshold, chosen on validation data by :class:`ThresholdPolicy`, decides how many alerts
    are raised; a search may still try ``scale_pos_weight > 1``.
    """

    max_depth: int = 6
    learning_rate: float = 0.1
    n_estimators: int = 400
    early_stopping_rounds: int = 40
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    scale_pos_weight: float = 1.0
    reg_lambda: float = 1.0
    n_threads: int = 2
    seed: int = 42
    # Log loss, not AUC-PR: with a few dozen validation frauds, AUC-PR peaks by chance in the first rounds.
    eval_metric: str = "logloss"

    def xgb_params(self) -> dict[str, Any]:
        """Native XGBoost training parameters."""
        return {
            "objective": "binary:logistic",
            "eval_metric": self.eval_metric,
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "scale_pos_weight": self.scale_pos_weight,
            "lambda": self.reg_lambda,
            "nthread": self.n_threads,
            "seed": self.seed,
        }

    def recipe(self) -> dict[str, Any]:
        """The fields as a flat dict (logged as MLflow params with a ``recipe_`` prefix)."""
        return asdict(self)

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any]) -> TrainingConfig:
        """Inverse of :meth:`recipe`; values may be strings (MLflow params), unknown keys are ignored."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in recipe.items():
            if key in known:
                kind = type(getattr(cls(), key))
                values[key] = kind(raw) if kind is not bool else str(raw).lower() == "true"
        return cls(**values)

    def with_changes(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass
class TrainingResult:
    """Everything a run produces and the registry / package steps need."""

    booster: xgb.Booster
    threshold: float
    spec: FeatureSpec
    split: TimeSplit
    config: TrainingConfig
    metrics: dict[str, float]
    rows: dict[str, int]
    best_iteration: int
    seconds: float
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    policy: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    # Labels and XGBoost scores per evaluation window, for the plots logged with the run.
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # A few real feature rows (test window), logged as the model's input example.
    example_rows: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))

    @property
    def feature_names(self) -> list[str]:
        """Feature columns in model order."""
        return self.spec.feature_names

    def model_card(self) -> ModelCard:
        """The typed card shipped with the model (the registry adds its version and run id)."""
        return ModelCard(
            feature_names=self.feature_names,
            feature_spec=self.spec,
            threshold=self.threshold,
            split=self.split,
            metrics=self.metrics,
            baseline_metrics=self.baseline_metrics,
            rows=self.rows,
            best_iteration=self.best_iteration,
            params=self.config.xgb_params(),
            recipe=self.config.recipe(),
            threshold_policy=self.policy,
            pr_curve=self.pr_curve_points(),
        )

    def pr_curve_points(self, window: str = "test", points: int = 200) -> PRCurve:
        """The window's precision-recall curve, thinned to at most ``points`` points (for the UI)."""
        if window not in self.curves or self.curves[window][0].sum() == 0:
            return PRCurve()
        precision, recall, thresholds = precision_recall_curve(*self.curves[window])
        keep = np.unique(np.linspace(0, thresholds.size - 1, min(points, thresholds.size)).round().astype(int))
        return PRCurve(
            precision=[round(float(v), 5) for v in precision[keep]],
            recall=[round(float(v), 5) for v in recall[keep]],
            threshold=[round(float(v), 6) for v in thresholds[keep]],
        )


def matrix(frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Feature matrix in model column order (float64)."""
    return frame.select(spec.feature_names).to_numpy().astype(np.float64, copy=False)


def labels(frame: pl.DataFrame) -> np.ndarray:
    """Fraud labels as an int8 array."""
    return frame["is_fraud"].to_numpy().astype(np.int8)


def predict(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Fraud probabilities from the native booster."""
    return booster.inplace_predict(x, iteration_range=(0, booster.best_iteration + 1))


def evaluate_booster(
    booster: xgb.Booster,
    frame: pl.DataFrame,
    spec: FeatureSpec,
    threshold: float,
    cost_model: CostModel | None = None,
) -> dict[str, float]:
    """Ranking, alert and cost metrics of ``booster`` on a labelled feature frame."""
    y, p = labels(frame), predict(booster, matrix(frame, spec))
    cost = (cost_model or CostModel()).cost(y, p, frame["tx_amount"].to_numpy(), threshold)
    return {**ranking_metrics(y, p), **alert_metrics(y, p, threshold), "cost": cost}


def fit_xgboost(train: pl.DataFrame, valid: pl.DataFrame, spec: FeatureSpec, config: TrainingConfig) -> xgb.Booster:
    """Fit on labelled ``train`` rows, early-stopping on ``valid``; ``best_iteration`` marks the rounds used."""
    return fit_xgboost_columns(train, valid, spec.feature_names, config)


def fit_xgboost_columns(
    train: pl.DataFrame, valid: pl.DataFrame, columns: list[str], config: TrainingConfig
) -> xgb.Booster:
    """:func:`fit_xgboost` on any ``columns`` of the frames (a comparison on another pipeline's columns)."""
    x_train, x_valid = (f.select(columns).to_numpy().astype(np.float64, copy=False) for f in (train, valid))
    dtrain = xgb.DMatrix(x_train, label=labels(train), feature_names=columns)
    dvalid = xgb.DMatrix(x_valid, label=labels(valid), feature_names=columns)
    return xgb.train(
        config.xgb_params(),
        dtrain,
        num_boost_round=config.n_estimators,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )


def fit_logistic(train: pl.DataFrame, spec: FeatureSpec) -> Any:
    """The logistic-regression baseline: standardised features (scaler fitted on train only), no re-weighting."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(matrix(train, spec), labels(train))


def train_model(
    features: pl.DataFrame,
    spec: FeatureSpec,
    split: TimeSplit,
    config: TrainingConfig | None = None,
    policy: ThresholdPolicy | None = None,
) -> TrainingResult:
    """Fit on train, early-stop and pick the threshold (``policy``) on valid, report on test."""
    config = config or TrainingConfig()
    policy = policy or ThresholdPolicy()
    started = time.perf_counter()
    parts = {name: split.select(features, name) for name in ("train", "valid", "test")}
    for name, part in parts.items():
        if part.height == 0 or part["is_fraud"].sum() == 0:
            raise ValueError(f"{name} window {split.to_dict()} has no labelled fraud; widen the data window")
    booster = fit_xgboost(parts["train"], parts["valid"], spec, config)
    curves = {k: (labels(parts[k]), predict(booster, matrix(parts[k], spec))) for k in ("valid", "test")}
    threshold = policy.choose(*curves["valid"], parts["valid"]["tx_amount"].to_numpy())
    metrics: dict[str, float] = {}
    for name in ("valid", "test"):
        for key, value in evaluate_booster(booster, parts[name], spec, threshold, policy.cost_model).items():
            metrics[f"{name}_{key}"] = value

    baseline = fit_logistic(parts["train"], spec)
    test = parts["test"]
    baseline_metrics = {
        f"test_{k}": v
        for k, v in ranking_metrics(labels(test), baseline.predict_proba(matrix(test, spec))[:, 1]).items()
    }
    return TrainingResult(
        booster=booster,
        threshold=threshold,
        spec=spec,
        split=split,
        config=config,
        metrics=metrics,
        rows={k: v.height for k, v in parts.items()},
        best_iteration=int(booster.best_iteration),
        seconds=time.perf_counter() - started,
        baseline_metrics=baseline_metrics,
        policy=policy,
        curves=curves,
        example_rows=matrix(parts["test"].head(3), spec),
    )
