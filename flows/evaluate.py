"""The `evaluate` flow: our models on the published protocols of the handbook data, next to the published figures.

Reads a transaction file (the handbook Parquet in ``../shared/data/handbook/``, or any supported
source), maps it to the canonical record, computes the features over the whole history, runs one
protocol of :mod:`model.protocols` (A-strict, A-extended, A-feedback or B), prints our figures next to the
published ones, logs one MLflow run per protocol (a child run per model) and, with ``json_out``,
writes the results atomically as JSON (``xgboost`` and ``logistic_regression`` at the top, each
with ``auc``, ``ap``, ``cp_at_100`` and more).

On the handbook file with the published anchors the run checks the published test set: 58,264
transactions with 385 frauds and a perfect-ranker CP@100 of 0.397; a mismatch stops the run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.table import Table

from config.machine import machine
from config.settings import Settings
from data.labels import as_label_events, dataset_labels
from data.lake import write_atomic
from data.profiles import Profile
from data.sources import read_table, resolve_profile, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from model.anchors import ANCHORS
from model.protocols import (
    A_TRAIN_START,
    MODELS,
    PROTOCOLS,
    PUBLISHED_PERFECT_CP_AT_100,
    PUBLISHED_TEST_FRAUDS,
    PUBLISHED_TEST_TRANSACTIONS,
    SUMMARY_METRICS,
    Anchors,
    ProtocolResult,
    build_protocol,
    go_live_day,
    investigator_labels,
    run_protocol,
)
from model.training import TrainingConfig

T = TypeVar("T")

#: Published results on the handbook data (``model/anchors.py``, one table shared with the UI), by
#: protocol letter and model name. Facts about published work, kept for comparison only.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    letter: {a.model: {"auc": a.auc, "ap": a.ap, "cp_at_100": a.cp_at_100} for a in ANCHORS if a.protocol == letter}
    for letter in ("A", "B")
}
#: Which published table each protocol is compared with (A-extended keeps protocol A's test set).
PUBLISHED_TABLE = {"A-strict": "A", "A-extended": "A", "A-feedback": "A", "B": "B"}
#: Label delay of the published protocols, in days.
PUBLISHED_DELAY_DAYS = 7
#: The handbook file's first and last days (the count check applies to exactly this coverage).
HANDBOOK_DAYS = (date(2018, 4, 1), date(2018, 8, 31))
#: Default wall-clock budget of the hyperparameter search, per protocol run.
DEFAULT_BUDGET_SECONDS = 300.0
MODEL_LABELS = {"xgboost": "XGBoost", "logistic_regression": "logistic regression"}
_REQUIRED = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")


def load_transactions(path: Path) -> tuple[pl.DataFrame, Profile, int]:
    """Read ``path``, map it to the canonical record; (labelled parseable rows, detected profile, rows dropped).

    Evaluation needs every required value and a label: rows missing one (or with a parse error)
    are dropped and counted, never guessed.
    """
    raw = read_table(path)
    fmt = resolve_profile(raw.columns)
    frame = to_canonical_frame(raw, fmt)
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in _REQUIRED) & pl.col("parse_errors").is_null()
    kept = frame.filter(complete)
    return kept, fmt, frame.height - kept.height


def check_published_counts(result: ProtocolResult) -> dict[str, Any]:
    """Raise unless the fold on protocol A's test week has the published size and perfect-ranker CP@100.

    Applies to the handbook file with the published anchors (A-strict, A-extended, and B's oldest fold).
    """
    fold = next((f for f in result.folds if f["known_from"] == A_TRAIN_START.isoformat()), None)
    if fold is None:
        raise RuntimeError(f"{result.protocol.name}: no fold tests protocol A's week")
    found = (fold["test_transactions"], fold["test_frauds"], round(fold["perfect_cp_at_100"], 3))
    expected = (PUBLISHED_TEST_TRANSACTIONS, PUBLISHED_TEST_FRAUDS, PUBLISHED_PERFECT_CP_AT_100)
    if found != expected:
        raise RuntimeError(
            f"protocol A's test set does not reproduce: {found[0]:,} transactions, {found[1]} frauds, "
            f"perfect CP@100 {found[2]} (published {expected[0]:,}, {expected[1]}, {expected[2]})"
        )
    return {"test_transactions": found[0], "test_frauds": found[1], "perfect_cp_at_100": found[2], "reproduced": True}


def results_table(protocol: str, payload: dict[str, Any]) -> Table:
    """Our models (means over the folds for B) above the published rows of the protocol's table."""
    test_set = payload["test_set"]
    folds = test_set["folds"]
    table = Table(
        title=(
            f"{protocol}, {payload['feature_set']} features: {test_set['transactions']:,} test transactions, "
            f"{test_set['frauds']} frauds" + (f", mean of {folds} folds" if folds > 1 else "")
        ),
        caption=f"perfect ranker CP@100 {test_set['perfect_cp_at_100']:.3f}; recall@1%: top 1% of transactions",
    )
    table.add_column("model", no_wrap=True)
    for column in ("AUC", "AP", "CP@100", "recall@1%", "cost"):
        table.add_column(column, justify="right")
    for model in MODELS:
        m = payload[model]
        figures = (f"{m[k]:.3f}" for k in ("auc", "ap", "cp_at_100", "recall_at_budget"))
        table.add_row(f"ours: {MODEL_LABELS[model]}", *figures, f"{m['cost']:,.0f}")
    letter = PUBLISHED_TABLE[protocol]
    for name, published in PUBLISHED[letter].items():
        table.add_row(f"published {letter}: {name}", *(f"{published[k]:.3f}" for k in ("auc", "ap", "cp_at_100")))
    return table


def log_to_mlflow(payload: dict[str, Any], protocol: str) -> str:
    """One parent run per protocol (params, metrics per model, counts, the JSON), a child run per model."""
    import mlflow

    from model.registry import Registry

    Registry.connect(Settings())
    search = payload["search"]
    with mlflow.start_run(run_name=f"evaluate-{protocol}") as run:
        mlflow.set_tags({"fraudops.stage": "evaluate", "fraudops.protocol": protocol})
        mlflow.log_params(
            {
                "protocol": protocol,
                "data": payload["data"],
                "feature_set": payload["feature_set"],
                "label_delay_days": payload["label_delay_days"],
                "search_budget_seconds": search["budget_seconds"],
                "search_trials": search["n_trials"],
                "seed": payload["seed"],
                **{f"xgb_{k}": v for k, v in search["best_params"].items()},
            }
        )
        test_set = payload["test_set"]
        mlflow.log_metrics(
            _finite(
                {
                    "test_transactions": test_set["transactions"],
                    "test_frauds": test_set["frauds"],
                    "perfect_cp_at_100": test_set["perfect_cp_at_100"],
                    "search_best_valid_ap": search["best_ap"],
                    "search_base_valid_ap": search["base_ap"],
                    **{f"{k}_seconds": v for k, v in payload["seconds"].items()},
                    **{f"{m}_{k}": v for m in MODELS for k, v in _model_metrics(payload[m]).items()},
                }
            )
        )
        for step, fold in enumerate(payload["folds"]):
            fold_metrics = {
                "fold_test_transactions": fold["test_transactions"],
                "fold_test_frauds": fold["test_frauds"],
            }
            fold_metrics |= {f"{m}_fold_{k}": fold[m][k] for m in MODELS for k in ("auc", "ap", "cp_at_100")}
            mlflow.log_metrics(_finite(fold_metrics), step=step)
        mlflow.log_dict(payload, "evaluation.json")
        for model in MODELS:
            with mlflow.start_run(run_name=f"evaluate-{protocol}-{model}", nested=True):
                mlflow.set_tags({"fraudops.stage": "evaluate", "fraudops.protocol": protocol, "model": model})
                mlflow.log_param("model", model)
                if model == "xgboost":
                    mlflow.log_params({f"recipe_{k}": v for k, v in payload["xgboost_recipe"].items()})
                mlflow.log_metrics(_finite(_model_metrics(payload[model])))
        return run.info.run_id


def _model_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The flat metrics of one model, with per-scenario recall and AP as ``scenario<k>_<metric>``."""
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for scenario, values in metrics.get("scenarios", {}).items():
        flat |= {f"scenario{scenario}_{k}": v for k, v in values.items()}
    return flat


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as null (strict JSON), dates as ISO strings."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date):
        return value.isoformat()
    return value


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` as indented strict JSON, atomically."""
    text = json.dumps(_json_ready(payload), indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda fh: fh.write(text.encode()))


def _evaluate(
    protocol: str,
    data: str | Path,
    json_out: str | Path | None,
    feature_set: str,
    budget_seconds: float,
    seed: int,
    max_trials: int | None,
    anchors: Anchors | None,
    step: Callable[[Callable[..., T]], Callable[..., T]],
    console: Console,
) -> dict[str, Any]:
    """Shared body of :func:`run_evaluation` and :func:`evaluate_flow`; ``step`` wraps each heavy step."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    Settings().apply_environment()
    started = time.perf_counter()
    path = Path(data)
    spec = FeatureSpec(label_delay_days=PUBLISHED_DELAY_DAYS, feature_set=feature_set)
    transactions, fmt, dropped = step(load_transactions)(path)
    days = transactions["tx_datetime"].dt.date()
    first_day, last_day = days.min(), days.max()
    assert isinstance(first_day, date) and isinstance(last_day, date)
    plan = build_protocol(protocol, first_day, last_day, spec, anchors)
    labels, investigations = None, None
    if protocol == "A-feedback":
        labels, investigations = step(feedback_labels)(transactions, spec, first_day, anchors or Anchors())
    t0 = time.perf_counter()
    features = step(compute_features)(transactions, spec, None, labels)
    features_seconds = time.perf_counter() - t0
    del transactions
    result = step(run_protocol)(features, plan, spec, TrainingConfig(), budget_seconds, seed, max_trials)
    handbook = fmt.name == "handbook" and (first_day, last_day) == HANDBOOK_DAYS
    published_check = check_published_counts(result) if handbook and (anchors or Anchors()).is_published() else None
    payload: dict[str, Any] = {
        **result.to_dict(),
        "data": str(path),
        "source_format": fmt.name,
        "rows": features.height,
        "rows_dropped": dropped,
        "data_days": {"first": first_day.isoformat(), "last": last_day.isoformat()},
        "feature_set": feature_set,
        "feature_names": spec.feature_names,
        "label_delay_days": spec.label_delay_days,
        "seed": seed,
        "published_test_set_check": published_check,
        "investigations": investigations,
        "published": PUBLISHED[PUBLISHED_TABLE[protocol]],
    }
    payload["seconds"] |= {"features": round(features_seconds, 3), "runtime": round(time.perf_counter() - started, 3)}
    payload["mlflow_run_id"] = log_to_mlflow(_json_ready(payload), protocol)
    console.print(results_table(protocol, payload))
    xgb, lr = payload["xgboost"], payload["logistic_regression"]
    print(
        f"{protocol}: XGBoost AUC {xgb['auc']:.3f} AP {xgb['ap']:.3f} CP@100 {xgb['cp_at_100']:.3f}; "
        f"logistic regression AUC {lr['auc']:.3f} AP {lr['ap']:.3f} CP@100 {lr['cp_at_100']:.3f} "
        f"({payload['seconds']['runtime']:.0f} s, {payload['search']['n_trials']} search trials)"
    )
    if json_out is not None:
        payload |= {
            "source_note": f"{path.name} ({fmt.name} profile), protocol {protocol}, {feature_set} features",
            "figures": {
                **{f"{m}_{k}": payload[m][k] for m in MODELS for k in SUMMARY_METRICS[:4]},
                "test_transactions": payload["test_set"]["transactions"],
                "test_frauds": payload["test_set"]["frauds"],
                "runtime_s": payload["seconds"]["runtime"],
            },
            "machine": machine(),
        }
        write_json(payload, Path(json_out))
    return payload


def feedback_labels(
    transactions: pl.DataFrame, spec: FeatureSpec, first_day: date, anchors: Anchors
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A-feedback's label stream: ``dataset`` events after the delay, plus next-day ``analyst`` labels.

    The production model that chooses the investigations is XGBoost with the default recipe and the
    extended features, trained once on the labelled history before the go-live (early-stopped on its
    last week); from the go-live on, it ranks each day's cards (``model.protocols.investigator_labels``).
    """
    from model.training import fit_xgboost, matrix, predict

    production_spec = FeatureSpec(label_delay_days=spec.label_delay_days, feature_set="extended")
    production = compute_features(transactions, production_spec)
    go_live = go_live_day(first_day, spec, anchors.go_live_weeks)
    history_start = first_day + timedelta(days=spec.history_days)
    train_end = go_live - timedelta(days=spec.label_delay_days + 1)
    day = pl.col("tx_datetime").dt.date()
    train = production.filter(day.is_between(history_start, train_end - timedelta(days=7)))
    stop = production.filter(day.is_between(train_end - timedelta(days=6), train_end))
    booster = fit_xgboost(train, stop, production_spec, TrainingConfig())
    live = production.filter(day >= go_live)
    scored = live.select("transaction_id", "tx_datetime", "customer_id", "is_fraud").with_columns(
        score=pl.Series(predict(booster, matrix(live, production_spec)), dtype=pl.Float64)
    )
    investigated, summary = investigator_labels(scored, go_live)
    events = pl.concat([dataset_labels(transactions, spec.label_delay_days), investigated], how="diagonal_relaxed")
    summary["production_model"] = {
        "train": f"{history_start}..{train_end - timedelta(days=7)}",
        "early_stopping": f"{train_end - timedelta(days=6)}..{train_end}",
        "rounds": int(booster.best_iteration) + 1,
        "features": production_spec.feature_set,
    }
    print(
        f"A-feedback investigations from {go_live}: {summary['cards']:,} cards, {summary['transactions']:,} "
        f"transactions, {summary['frauds_found']:,} of {summary['frauds_from_go_live']:,} frauds labelled the next day"
    )
    return as_label_events(events), summary


def run_evaluation(
    protocol: str,
    data: str | Path,
    json_out: str | Path | None = None,
    feature_set: str = "extended",
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    seed: int = 42,
    max_trials: int | None = None,
    anchors: Anchors | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate ``protocol`` (A-strict, A-extended, A-feedback or B) on the file ``data``, without Prefect.

    Prints the table, logs to MLflow, writes ``json_out`` (atomically) when given and returns the
    results (``payload["xgboost"]["ap"]`` ...). ``budget_seconds`` bounds the hyperparameter search
    on the validation folds (``max_trials`` caps it); ``anchors`` moves the protocol dates (tests).
    """
    return _evaluate(
        protocol,
        data,
        json_out,
        feature_set,
        budget_seconds,
        seed,
        max_trials,
        anchors,
        lambda fn: fn,
        console or Console(),
    )


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    protocol: str,
    data: str,
    json_out: str | None = None,
    feature_set: str = "extended",
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    seed: int = 42,
    max_trials: int | None = None,
    anchors: Anchors | None = None,
) -> dict[str, Any]:
    """:func:`run_evaluation` as a Prefect flow: loading, features and the protocol run are tasks."""
    return _evaluate(
        protocol,
        data,
        json_out,
        feature_set,
        budget_seconds,
        seed,
        max_trials,
        anchors,
        lambda fn: task(fn, cache_policy=NO_CACHE),
        Console(),
    )
