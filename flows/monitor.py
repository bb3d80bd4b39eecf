"""The monitoring loop: drift, performance on arrived labels, data quality; retrain when a threshold is crossed.

The computations live in ``monitoring/`` (pure); this flow reads the lake and the registry, publishes
the artifacts (`drift-report` table and summary, `monitor-summary` markdown with links to the champion's
MLflow run and the Data Docs) and, when a check fails and ``retrain`` allows it, starts the
`train-and-promote` deployment with ``run_deployment`` (or, without a Prefect server or that
deployment, runs the flow in process with ``retrain="auto"``), and the summary says why.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from config.settings import current_settings
from data.feedback import read_label_events
from data.labels import data_clock, labels_as_of, with_labels_as_of
from data.lake import Lake
from features.definitions import compute_features
from monitoring.drift import DriftReport, drift_report
from monitoring.performance import (
    MonitorResult,
    labelled_performance,
    rejected_share,
)
from monitoring.thresholds import MonitorThresholds

RETRAIN_DEPLOYMENT = "train-and-promote/train-and-promote"
RetrainMode = Literal["auto", "deployment", "inline", "off"]


def publish_drift_report(report: DriftReport, key: str = "drift-report") -> None:
    """Publish the report as Prefect artifacts: a table under ``key`` and a markdown summary under ``key-summary``.

    Keys must be lowercase letters, digits and dashes (Prefect's rule).
    """
    description = report.description()
    create_table_artifact(key=key, table=report.to_rows(), description=description)
    create_markdown_artifact(key=f"{key}-summary", markdown=report.markdown(), description=description)


@flow(name="monitor", log_prints=True)
def monitor_flow(
    days: int = 7,
    thresholds: MonitorThresholds = MonitorThresholds(),  # noqa: B008 (a frozen model: a safe default)
    retrain: RetrainMode = "auto",
    retrain_deployment: str = RETRAIN_DEPLOYMENT,
    search_budget_s: float = 120.0,
) -> dict[str, Any]:
    """Compare the newest ``days`` with the champion's training window; retrain when a threshold is crossed.

    ``thresholds`` says when (PSI, AP drop, rejected share). ``retrain``: ``auto`` (the deployment if
    it exists, else the flow in process), ``deployment``, ``inline`` or ``off``. An in-process retrain
    searches around the champion's recipe for ``search_budget_s`` seconds (a deployment run uses its
    own parameters).
    """
    from model.registry import Registry, load_booster, load_model_card
    from model.training import matrix, predict

    if retrain not in ("auto", "deployment", "inline", "off"):
        raise ValueError(f"retrain={retrain!r}: expected auto, deployment, inline or off")
    settings = current_settings()
    champion = Registry.connect(settings).champion("nothing to monitor")
    card = load_model_card(champion)
    spec = card.spec
    lake = Lake(settings.home_dir, spec.label_delay_days)
    newest = lake.newest_day()
    if newest is None:
        raise ValueError("the lake is empty")
    ref_start, ref_end = card.split.train_start, card.split.train_end
    ref_from = ref_start + timedelta(days=spec.history_days)  # after the warm-up, as the reference profile
    cur_start = newest - timedelta(days=days - 1)
    booster = load_booster(champion)
    # Labels as known now: the lake's events plus those the service was told and ingest has not drained yet.
    as_of = datetime.now(UTC)
    labels = pl.concat([lake.read_labels(as_of=as_of), read_label_events(settings.feedback_path)])
    labels = labels.filter(pl.col("label_time") <= as_of)
    matured_at = data_clock(lake.newest_time(), as_of)  # a world that ends in the past matures by its own clock

    def window(first: date, last: date, history_from: date) -> pl.DataFrame:
        read = lake.read_transactions(history_from, last)
        known = with_labels_as_of(read, labels, as_of, spec.label_delay_days, matured_at)
        frame = compute_features(known, spec, labels=labels)
        frame = frame.filter(pl.col("tx_datetime").dt.date().is_between(first, last))
        return frame.with_columns(score=pl.Series(predict(booster, matrix(frame, spec)), dtype=pl.Float64))

    reference = window(min(ref_from, ref_end), ref_end, ref_start)
    if card.split.bounds is not None:  # an hourly split: its training hours, not the whole days they fall on
        train_from, train_until = card.split.bounds[0]
        reference = reference.filter(pl.col("tx_datetime").is_between(train_from, train_until, closed="left"))
    current = window(cur_start, newest, cur_start - timedelta(days=spec.history_days))
    report = drift_report(
        reference,
        current,
        spec.feature_names,
        thresholds.drift,
        score_column="score",
        reference_window=(min(ref_from, ref_end), ref_end),
        current_window=(cur_start, newest),
    )
    publish_drift_report(report, key="drift-report")

    # Performance only on labels known now (an event, or genuine by maturity); the rest are pending.
    frauds, current_ap, interval = labelled_performance(current, thresholds.min_labelled_frauds)
    sources = labels_as_of(labels, as_of).join(current.select("transaction_id"), on="transaction_id", how="semi")
    from_feedback = sources.filter(pl.col("source").is_in(["feedback", "analyst"])).height
    result = MonitorResult(
        champion_version=champion.version,
        reference_window=(min(ref_from, ref_end).isoformat(), ref_end.isoformat()),
        current_window=(cur_start.isoformat(), newest.isoformat()),
        drifted_features=[d.feature for d in report.drifted],
        score_psi=report.score.psi if report.score else None,
        current_ap=current_ap,
        current_ap_interval=interval,
        champion_test_ap=card.test_ap,
        labelled_frauds=frauds,
        feedback_labels=from_feedback,
        pending_labels=current["is_fraud"].null_count(),
        rejected_share=rejected_share(lake, cur_start, newest, current.height),
    )
    result.judge(report, thresholds)
    if result.reasons and retrain != "off":
        result.retrain = _trigger_retrain(retrain, retrain_deployment, search_budget_s)
    elif result.reasons:
        result.retrain = "needed, but retrain='off'"
    links = {
        "Champion's MLflow run": f"{settings.tracking_uri} run {champion.run_id}",
        "Data Docs": settings.data_docs_dir.joinpath("index.html").as_uri(),
    }
    create_markdown_artifact(key="monitor-summary", markdown=result.markdown(links))
    print(result.markdown(links))
    return asdict(result)


def _trigger_retrain(mode: str, deployment: str, search_budget_s: float) -> str:
    """Start the retrain; return what happened (for the summary)."""
    from prefect.deployments import run_deployment

    if mode in ("auto", "deployment"):
        try:
            run = run_deployment(name=deployment, timeout=0)
            return f"started deployment {deployment} (flow run {run.name}, id {run.id})"
        except Exception as exc:  # no server / no such deployment: Prefect raises several types
            if mode == "deployment":
                raise
            get_run_logger().info("deployment %s unavailable (%s): retraining in process", deployment, exc)
    from flows.pipeline import train_and_promote_flow

    out = train_and_promote_flow(search_budget_s=search_budget_s)
    promoted = out["promote"]["promote"]
    version = out["train"]["version"]
    return f"retrained in process: v{version} {'promoted to champion' if promoted else 'not promoted'}"
