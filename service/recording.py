"""The one score-and-record path: the API routes and the UI score through :class:`RecordingScorer`.

Every answer is logged through ``bentoml.monitor`` (customer ids only as salted hashes) for the
monitor flow, and counted on ``/metrics`` next to BentoML's request metrics (the Grafana dashboard
plots both). Every observed transaction also goes to the service's durable log
(:class:`data.feedback.FeedbackLog`, raw ids: the lake's ingest drains it). The scorer's conflict
rules (a reused id with other values) apply to both surfaces.

:class:`AlertDesk` is the analysts' side: the day's alert queue from that log (``GET /alerts``, the
UI's Alerts tab) and their verdicts, which become ``analyst`` label events and reach the online
state through the scorer's label path, as ``/feedback`` labels do.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import polars as pl
import pydantic_core
from prometheus_client import Counter, Gauge, Histogram

from data.contract import TransactionIn
from data.feedback import FeedbackLog, LabelEvent, QueueFigures, utc_now
from data.privacy import hash_id
from features.definitions import to_epoch_us
from service.schemas import FeedbackItem, ScoreResponse, Verdict
from service.scoring import ScoredBatch, Scorer

#: The ``bentoml.monitor`` name of the prediction log (files under ``<monitor dir>/<name>/data/``).
MONITOR_NAME = "fraud_predictions"
#: BentoML's default layout, one write per call (the service's ``monitoring`` config names it too).
MONITOR_CLASS = "service.monitoring.JsonLinesMonitor"

DECISIONS = Counter("fraud_decisions", "Scored transactions by decision", ["decision", "model_version"])
SCORES = Histogram(
    "fraud_score",
    "Fraud probability of scored transactions",
    ["model_version"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
)
# The newest scored day's alert queue ("today"), set when alerts are listed or verdicts posted; with several
# workers /metrics shows the most recent value any of them set.
QUEUE_ALERTS = Gauge(
    "fraud_alert_queue_alerts",
    "Alerts in today's queue (one per card, at most the capacity k)",
    multiprocess_mode="mostrecent",
)
QUEUE_REVIEWED = Gauge(
    "fraud_alert_queue_reviewed", "Alerts of today's queue with a verdict", multiprocess_mode="mostrecent"
)
QUEUE_PRECISION = Gauge(
    "fraud_alert_queue_precision",
    "Frauds among today's reviewed alerts / reviewed (realised CP@k; NaN before the first verdict)",
    multiprocess_mode="mostrecent",
)
QUEUE_BACKLOG = Gauge(
    "fraud_alert_queue_backlog", "Alerts of today's queue not reviewed yet", multiprocess_mode="mostrecent"
)


def record_predictions(
    results: list[dict[str, Any]],
    txs: list[TransactionIn],
    salt: str,
    monitor_dir: Path,
    log: FeedbackLog | None = None,
) -> None:
    """Log scored transactions for the monitor flow and count them for /metrics (``results`` align with ``txs``).

    The log goes to ``monitor_dir`` (``Settings.monitor_path``; inside the service its ``monitoring``
    config says the same, and BentoML keeps one monitor per name for the process). With ``log``, the
    transactions are also recorded in the service's durable log (one INSERT per call).
    """
    if not results:
        return
    if log is not None:
        log.record_scored(
            [r["transaction_id"] for r in results],
            [tx.tx_datetime.isoformat() for tx in txs],
            [tx.customer_id for tx in txs],
            [tx.terminal_id for tx in txs],
            [tx.amount for tx in txs],
            [r["fraud_probability"] for r in results],
            [r["decision"] for r in results],
            results[0]["model_version"],
            [pydantic_core.to_json(r["reasons"]).decode() for r in results],
        )
    _record(
        [r["transaction_id"] for r in results],
        [tx.tx_datetime.isoformat() for tx in txs],
        [hash_id(tx.customer_id, salt) for tx in txs],
        [tx.amount for tx in txs],
        np.array([r["fraud_probability"] for r in results], dtype=np.float64),
        [r["decision"] for r in results],
        results[0]["model_version"],  # one scorer, one model version per call
        monitor_dir,
    )


def record_batch(batch: ScoredBatch, salt: str, monitor_dir: Path, log: FeedbackLog | None = None) -> None:
    """:func:`record_predictions` for a scored batch, column by column (no Python object per row but the values).

    With ``log``, the batch goes to the service's durable log in one ``executemany`` (one transaction).
    """
    frame = batch.frame
    if frame.height == 0:
        return
    txs = batch.columns
    times = txs.iso_times().to_list()
    if log is not None:
        reasons = frame.select(
            pl.concat_str(
                pl.lit("["), pl.col("reasons").list.eval(pl.element().struct.json_encode()).list.join(","), pl.lit("]")
            )
        ).to_series()
        log.record_scored(
            frame["transaction_id"].to_list(),
            times,
            txs.customer_id,
            txs.terminal_id,
            txs.amount.tolist(),
            frame["fraud_probability"].to_list(),
            frame["decision"].to_list(),
            frame["model_version"][0],
            reasons.to_list(),
            txs.attributes,
        )
    customers = pl.Series(txs.customer_id, dtype=pl.String)
    distinct = customers.unique()
    hashes = pl.Series([hash_id(c, salt) for c in distinct.to_list()], dtype=pl.String)
    _record(
        frame["transaction_id"].to_list(),
        times,
        customers.replace_strict(distinct, hashes).to_list(),
        txs.amount.tolist(),
        frame["fraud_probability"].to_numpy(),
        frame["decision"].to_list(),
        frame["model_version"][0],
        monitor_dir,
    )


def _record(
    ids: list[str],
    times: list[str],
    customer_hashes: list[str],
    amounts: list[float],
    probabilities: np.ndarray,
    decisions: list[str],
    version: str,
    monitor_dir: Path,
) -> None:
    """Count the answers (decisions, score histogram) and log them, one ``log_batch`` per column."""
    alerts = int(np.count_nonzero(np.asarray(decisions, dtype=object) == "alert"))
    if alerts:
        DECISIONS.labels("alert", version).inc(alerts)
    if alerts < len(decisions):
        DECISIONS.labels("approve", version).inc(len(decisions) - alerts)
    _observe_all(SCORES.labels(version), probabilities)
    # One call per column (not 7 per row); "feature"/"prediction" are the roles BentoML knows (another
    # role writes a warning per call).
    with bentoml.monitor(MONITOR_NAME, MONITOR_CLASS, {"log_path": str(monitor_dir)}) as mon:
        mon.log_batch(ids, "transaction_id", "feature", "categorical")
        mon.log_batch(times, "tx_datetime", "feature", "categorical")
        mon.log_batch(customer_hashes, "customer_hash", "feature", "categorical")
        mon.log_batch(amounts, "amount", "feature", "numerical")
        mon.log_batch(probabilities.tolist(), "fraud_probability", "prediction", "numerical")
        mon.log_batch(decisions, "decision", "prediction", "categorical")
        mon.log_batch([version] * len(ids), "model_version", "feature", "categorical")


def _observe_all(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, as one increment per bucket and one of the sum.

    prometheus_client has no batch observe; this does what its ``observe`` does (each value counts in the
    first bucket whose bound is >= it) through the same value objects, so /metrics reads the same.
    """
    if len(values) < 8:
        for value in values.tolist():
            histogram.observe(value)
        return
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for bucket, count in zip(histogram._buckets, counts[: len(bounds)].tolist(), strict=True):
        if count:
            bucket.inc(count)


class RecordingScorer:
    """A :class:`~service.scoring.Scorer` whose every answer is recorded (prediction log and counters).

    ``read_only`` (the UI's demo mode, open without the API key) scores against the state without
    adding to it and records nothing: an anonymous visitor cannot write into any card's windows.
    With ``log`` (the service's :class:`~data.feedback.FeedbackLog`), every observed transaction is
    recorded there too (a read-only scorer records nothing).
    """

    def __init__(
        self,
        scorer: Scorer,
        id_hash_salt: str,
        monitor_dir: Path,
        read_only: bool = False,
        log: FeedbackLog | None = None,
    ) -> None:
        self.scorer = scorer
        self.salt = id_hash_salt
        self.monitor_dir = monitor_dir
        self.read_only = read_only
        self.log = log

    def score_one(self, tx: TransactionIn) -> dict[str, Any]:
        """Score and record one transaction (plain data); raises ``TransactionConflict`` for a reused id."""
        result = self.scorer.score_one(tx, observe=not self.read_only)
        if not self.read_only:
            record_predictions([result], [tx], self.salt, self.monitor_dir, self.log)
        return result

    def score(self, tx: TransactionIn) -> ScoreResponse:
        """:meth:`score_one` as a checked :class:`ScoreResponse`."""
        return ScoreResponse.model_validate(self.score_one(tx))

    def score_batch(self, records: list[Any], unreadable: dict[int, str] | None = None) -> ScoredBatch:
        """Score and record a batch; invalid rows come back by index with a reason."""
        batch = self.scorer.score_batch(records, unreadable, observe=not self.read_only)
        if not self.read_only:
            record_batch(batch, self.salt, self.monitor_dir, self.log)
        return batch

    def score_frame(self, frame: pl.DataFrame, unreadable: dict[int, str] | None = None) -> ScoredBatch:
        """Score and record an upload's columns (``service.uploads.Upload.frame``); bad rows come back by index."""
        batch = self.scorer.score_frame(frame, unreadable, observe=not self.read_only)
        if not self.read_only:
            record_batch(batch, self.salt, self.monitor_dir, self.log)
        return batch


#: Why a verdict on a transaction the log does not hold is refused.
UNKNOWN_TRANSACTION = "unknown transaction id: the service has not scored it (not in its scored log)"


class AlertDesk:
    """The analysts' alert queue over the service's log, and their verdicts.

    ``capacity`` is the daily investigation capacity k (``Settings.alert_capacity``, the handbook's
    CP@k): a day's queue holds at most k cards. Verdicts reach the online state through
    :meth:`Scorer.apply_labels`, the path ``/feedback`` labels take.
    """

    def __init__(self, scorer: Scorer, log: FeedbackLog, capacity: int) -> None:
        self.scorer = scorer
        self.log = log
        self.capacity = capacity

    def queue(self, day: date | None = None, limit: int | None = None) -> dict[str, Any]:
        """``day``'s alerts (default: the newest scored day), at most ``min(limit, capacity)`` of them.

        The answer has :class:`~service.schemas.AlertsResponse`'s shape: the day, the capacity, the limit
        applied, the queue's figures and the alerts ranked by score.
        """
        today = self.log.newest_day()
        day = day or today
        limit = min(limit or self.capacity, self.capacity)
        if day is None:  # nothing scored yet
            figures, alerts = QueueFigures(None, self.capacity, 0, 0, 0), []
        else:
            figures, alerts = self.log.alert_queue(day, self.capacity, limit)
        self._publish(figures if day == today else self.figures(today))
        return {"date": day, "capacity": self.capacity, "limit": limit, "figures": figures.to_dict(), "alerts": alerts}

    def figures(self, day: date | None = None) -> QueueFigures:
        """The figures of ``day``'s queue (default: the newest scored day)."""
        day = day or self.log.newest_day()
        if day is None:
            return QueueFigures(None, self.capacity, 0, 0, 0)
        return self.log.alert_queue(day, self.capacity, limit=0)[0]

    def review(self, verdicts: list[Verdict]) -> dict[str, Any]:
        """Record analysts' verdicts as ``analyst`` label events (label_time = now) and apply them to the state.

        A verdict on a transaction the log does not hold is refused with a reason (by its index in the
        request); ``accepted + rejected == received``. ``applied`` counts the accepted verdicts the online
        state knew the transaction of. The answer has :class:`~service.schemas.VerdictsResponse`'s shape,
        with the figures of today's queue after the verdicts.
        """
        now = utc_now()
        known = self.log.scored_ids(v.transaction_id for v in verdicts)
        accepted = [v for v in verdicts if v.transaction_id in known]
        errors = [
            {"index": i, "transaction_id": v.transaction_id, "reason": UNKNOWN_TRANSACTION}
            for i, v in enumerate(verdicts)
            if v.transaction_id not in known
        ]
        in_state = self.scorer.apply_labels(
            [FeedbackItem(transaction_id=v.transaction_id, is_fraud=v.is_fraud) for v in accepted],
            label_us=to_epoch_us(now),
            source="analyst",
        )
        self.log.record_events(
            (
                LabelEvent(v.transaction_id, v.is_fraud, now, "analyst", k, reviewer=v.reviewer, note=v.note)
                for v, k in zip(accepted, in_state, strict=True)
            ),
            self.scorer.version,
        )
        figures = self.figures()
        self._publish(figures)
        return {
            "received": len(verdicts),
            "accepted": len(accepted),
            "rejected": len(errors),
            "applied": sum(in_state),
            "label_time": now,
            "errors": errors,
            "figures": figures.to_dict(),
        }

    @staticmethod
    def _publish(figures: QueueFigures) -> None:
        """Today's queue figures on /metrics."""
        QUEUE_ALERTS.set(figures.alerts)
        QUEUE_REVIEWED.set(figures.reviewed)
        QUEUE_PRECISION.set(float("nan") if figures.precision is None else figures.precision)
        QUEUE_BACKLOG.set(figures.backlog)
