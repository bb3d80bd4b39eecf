"""The monitoring loop: drift, performance on arrived labels, data quality; retrain when a threshold is crossed.

Reference = the champion's training window (after the feature warm-up); current = the newest ``days``
days of the lake. Published as Prefect artifacts (`drift-report` table and summary, `monitor-summary`
markdown with links to the champion's MLflow run and the Data Docs). When a check fails and ``retrain``
allows it, the `train-and-promote` deployment is started with ``run_deployment`` (or, without a
Prefect server or that deployment, the flow runs in process with ``retrain="auto"``), and the summary
says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from features.drift import DriftThresholds, drift_report, publish_drift_report
from features.engineering import FeatureSpec, compute_features
from features.lake import Lake
from flows.settings import current_settings
from model.metrics import bootstrap_ap_interval, ranking_metrics

RETRAIN_DEPLOYMENT = "train-and-promote/train-and-promote"


@dataclass(frozen=True)
class MonitorThresholds:
    """When the monitor asks for a retrain."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    # The current window's AP is judged by its 80 % bootstrap interval: a drop is flagged when even the
    # interval's upper end is below the champion's test AP by more than this.
    max_ap_drop: float = 0.1
    # Fewer labelled frauds in the window and performance is not judged: with 10-30 frauds a steady week's
    # AP was seen anywhere between 0.3 and 0.8 on the simulated world.
    min_labelled_frauds: int = 50
    max_rejected_share: float = 0.05  # quarantined / received rows in the window


@dataclass
class MonitorResult:
    """What the monitor found and did."""

    champion_version: str
    reference_window: tuple[str, str]
    current_window: tuple[str, str]
    drifted_features: list[str]
    score_psi: float | None
    current_ap: float | None
    current_ap_interval: tuple[float, float] | None
    champion_test_ap: float
    labelled_frauds: int
    feedback_labels: int
    rejected_share: float
    reasons: list[str] = field(default_factory=list)
    retrain: str = "not needed"

    def markdown(self, links: dict[str, str]) -> str:
        """The `monitor-summary` artifact."""
        ap = "n/a" if self.current_ap is None else f"{self.current_ap:.4f}"
        if self.current_ap_interval is not None:
            ap += f" (80 % interval {self.current_ap_interval[0]:.3f} .. {self.current_ap_interval[1]:.3f})"
        psi = "n/a" if self.score_psi is None else f"{self.score_psi:.3f}"
        lines = [
            f"## Monitor: champion v{self.champion_version}",
            "",
            f"- reference (training) window {self.reference_window[0]} .. {self.reference_window[1]}; "
            f"current window {self.current_window[0]} .. {self.current_window[1]}",
            f"- drifted features: {', '.join(self.drifted_features) or 'none'}; score PSI {psi}",
            f"- AP on {self.labelled_frauds} labelled frauds of the current window: {ap} "
            f"(champion's test AP {self.champion_test_ap:.4f}; {self.feedback_labels} labels came through /feedback)",
            f"- rejected at ingestion: {self.rejected_share:.2%} of received rows",
            "",
            "### Verdict",
            *(f"- {r}" for r in self.reasons or ["all checks within thresholds"]),
            f"- retrain: {self.retrain}",
            "",
            *(f"[{name}]({url})" for name, url in links.items()),
        ]
        return "\n".join(lines) + "\n"


def _labels_with_feedback(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Lake labels overridden by labels that arrived through /feedback (newest wins); and how many did."""
    from features.feedback import read_feedback

    feedback = read_feedback()
    if feedback.height == 0:
        return frame, 0
    latest = feedback.unique("transaction_id", keep="last").select("transaction_id", fb=pl.col("is_fraud"))
    joined = frame.join(latest, on="transaction_id", how="left")
    used = int(joined["fb"].is_not_null().sum())
    return joined.with_columns(is_fraud=pl.coalesce("fb", "is_fraud")).drop("fb"), used


def _rejected_share(lake: Lake, start: date, end: date, received: int) -> float:
    """Quarantined rows whose event date is in the window, over all rows received for it."""
    rejected = 0
    for path in sorted(lake.quarantine_dir.glob("*.parquet")):
        q = pl.read_parquet(path, columns=["tx_datetime"])
        rejected += int(q.filter(pl.col("tx_datetime").dt.date().is_between(start, end)).height)
    total = received + rejected
    return rejected / total if total else 0.0


@flow(name="monitor", log_prints=True)
def monitor_flow(
    days: int = 7,
    psi_warn: float = 0.1,
    psi_drift: float = 0.25,
    max_ap_drop: float = 0.1,
    max_rejected_share: float = 0.05,
    min_labelled_frauds: int = 50,
    retrain: str = "auto",
    retrain_deployment: str = RETRAIN_DEPLOYMENT,
    search_budget_s: float = 120.0,
) -> dict[str, Any]:
    """Compare the newest ``days`` with the champion's training window; retrain when a threshold is crossed.

    ``retrain``: ``auto`` (the deployment if it exists, else the flow in process), ``deployment``,
    ``inline`` or ``off``. An in-process retrain searches around the champion's recipe for
    ``search_budget_s`` seconds (a deployment run uses its own parameters).
    """
    from model.registry import CHAMPION, alias_version, configure_mlflow, load_booster, load_model_card
    from model.training import matrix, predict

    if retrain not in ("auto", "deployment", "inline", "off"):
        raise ValueError(f"retrain={retrain!r}: expected auto, deployment, inline or off")
    limits = MonitorThresholds(psi_warn, psi_drift, max_ap_drop, min_labelled_frauds, max_rejected_share)
    settings = current_settings()
    configure_mlflow(settings.tracking_uri, settings.experiment, settings.artifact_root)
    champion = alias_version(settings.registered_model, CHAMPION)
    if champion is None:
        raise ValueError(f"no '{CHAMPION}' alias on {settings.registered_model}: nothing to monitor")
    card = load_model_card(champion)
    spec = FeatureSpec.from_dict(card["feature_spec"])
    lake = Lake(settings.home_dir)
    newest = lake.newest_day()
    if newest is None:
        raise ValueError("the lake is empty")
    split = card["split"]
    ref_start, ref_end = date.fromisoformat(split["train_start"]), date.fromisoformat(split["train_end"])
    ref_from = ref_start + timedelta(days=spec.history_days)  # after the warm-up, as the reference profile
    cur_start = newest - timedelta(days=days - 1)
    booster = load_booster(champion)

    def window(first: date, last: date, history_from: date) -> pl.DataFrame:
        frame = compute_features(lake.read(history_from, last), spec)
        frame = frame.filter(pl.col("tx_datetime").dt.date().is_between(first, last))
        return frame.with_columns(score=pl.Series(predict(booster, matrix(frame, spec)), dtype=pl.Float64))

    reference = window(min(ref_from, ref_end), ref_end, ref_start)
    current = window(cur_start, newest, cur_start - timedelta(days=spec.history_days))
    report = drift_report(
        reference,
        current,
        spec.feature_names,
        DriftThresholds(warn=limits.psi_warn, drift=limits.psi_drift),
        score_column="score",
        reference_window=(min(ref_from, ref_end), ref_end),
        current_window=(cur_start, newest),
    )
    publish_drift_report(report, key="drift-report")

    labelled, from_feedback = _labels_with_feedback(current)
    labelled = labelled.filter(pl.col("is_fraud").is_not_null())
    frauds = int(labelled["is_fraud"].sum()) if labelled.height else 0
    current_ap, interval = None, None
    if frauds >= limits.min_labelled_frauds:
        y, p = labelled["is_fraud"].to_numpy(), labelled["score"].to_numpy()
        current_ap, interval = ranking_metrics(y, p)["ap"], bootstrap_ap_interval(y, p)
    test_ap = float(card["metrics"]["test_ap"])
    result = MonitorResult(
        champion_version=champion.version,
        reference_window=(min(ref_from, ref_end).isoformat(), ref_end.isoformat()),
        current_window=(cur_start.isoformat(), newest.isoformat()),
        drifted_features=[d.feature for d in report.drifted],
        score_psi=report.score.psi if report.score else None,
        current_ap=current_ap,
        current_ap_interval=interval,
        champion_test_ap=test_ap,
        labelled_frauds=frauds,
        feedback_labels=from_feedback,
        rejected_share=_rejected_share(lake, cur_start, newest, current.height),
    )
    if report.is_drift:
        result.reasons += [f"drift: {r}" for r in report.reasons()]
    if interval is not None and interval[1] < test_ap - limits.max_ap_drop:
        result.reasons.append(
            f"performance: AP {current_ap:.4f} on the current window (80 % interval up to {interval[1]:.4f}) is "
            f"below the champion's test AP {test_ap:.4f} by more than {limits.max_ap_drop}"
        )
    if result.rejected_share > limits.max_rejected_share:
        result.reasons.append(
            f"data quality: {result.rejected_share:.2%} of received rows were quarantined "
            f"(limit {limits.max_rejected_share:.0%}); see the quarantine and the Data Docs"
        )
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
