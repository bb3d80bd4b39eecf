"""Performance and data-quality checks of the monitor, and its verdict (pure; the monitor flow publishes it).

Reference = the champion's training window (after the feature warm-up); current = the newest days of
the lake. Performance is judged only on labels known now (``data.labels``: the newest label event of a
transaction, from the lake or the service's log, else genuine once the label delay old); younger rows
without a label are pending and counted as such. AP is judged only with enough labelled frauds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from data.lake import Lake
from model.metrics import bootstrap_ap_interval, ranking_metrics
from monitoring.drift import DriftReport
from monitoring.thresholds import MonitorThresholds


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
    pending_labels: int = 0
    reasons: list[str] = field(default_factory=list)
    retrain: str = "not needed"

    def judge(self, report: DriftReport, limits: MonitorThresholds) -> None:
        """Add one reason per crossed threshold: drift, a performance drop, too many rejected rows."""
        if report.is_drift:
            self.reasons += [f"drift: {r}" for r in report.reasons()]
        interval = self.current_ap_interval
        if interval is not None and interval[1] < self.champion_test_ap - limits.max_ap_drop:
            self.reasons.append(
                f"performance: AP {self.current_ap:.4f} on the current window (80 % interval up to {interval[1]:.4f}) "
                f"is below the champion's test AP {self.champion_test_ap:.4f} by more than {limits.max_ap_drop}"
            )
        if self.rejected_share > limits.max_rejected_share:
            self.reasons.append(
                f"data quality: {self.rejected_share:.2%} of received rows were quarantined "
                f"(limit {limits.max_rejected_share:.0%}); see the quarantine and the Data Docs"
            )

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
            f"(champion's test AP {self.champion_test_ap:.4f}; {self.feedback_labels} labels came from "
            f"/feedback or analysts; {self.pending_labels} transactions still pending: no label, not mature yet)",
            f"- rejected at ingestion: {self.rejected_share:.2%} of received rows",
            "",
            "### Verdict",
            *(f"- {r}" for r in self.reasons or ["all checks within thresholds"]),
            f"- retrain: {self.retrain}",
            "",
            *(f"[{name}]({url})" for name, url in links.items()),
        ]
        return "\n".join(lines) + "\n"


def labelled_performance(
    scored: pl.DataFrame, min_labelled_frauds: int
) -> tuple[int, float | None, tuple[float, float] | None]:
    """Labelled frauds in ``scored`` (``is_fraud``, ``score``); with enough of them, the AP and its 80 % interval."""
    labelled = scored.filter(pl.col("is_fraud").is_not_null())
    frauds = int(labelled["is_fraud"].sum()) if labelled.height else 0
    if frauds < min_labelled_frauds:
        return frauds, None, None
    y, p = labelled["is_fraud"].to_numpy(), labelled["score"].to_numpy()
    return frauds, ranking_metrics(y, p)["ap"], bootstrap_ap_interval(y, p)


def rejected_share(lake: Lake, start: date, end: date, received: int) -> float:
    """Quarantined rows whose event date is in the window, over all rows received for it."""
    rejected = 0
    for path in sorted(lake.quarantine_dir.glob("*.parquet")):
        q = pl.read_parquet(path, columns=["tx_datetime"])
        rejected += int(q.filter(pl.col("tx_datetime").dt.date().is_between(start, end)).height)
    total = received + rejected
    return rejected / total if total else 0.0
