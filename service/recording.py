"""The one score-and-record path: the API routes and the UI score through :class:`RecordingScorer`.

Every answer is logged through ``bentoml.monitor`` (customer ids only as salted hashes) for the
monitor flow, and counted on ``/metrics`` next to BentoML's request metrics (the Grafana dashboard
plots both). The scorer's conflict rules (a reused id with other values) apply to both surfaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import polars as pl
from prometheus_client import Counter, Histogram

from data.contract import TransactionIn
from data.privacy import hash_id
from service.schemas import ScoreResponse
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


def record_predictions(results: list[dict[str, Any]], txs: list[TransactionIn], salt: str, monitor_dir: Path) -> None:
    """Log scored transactions for the monitor flow and count them for /metrics (``results`` align with ``txs``).

    The log goes to ``monitor_dir`` (``Settings.monitor_path``; inside the service its ``monitoring``
    config says the same, and BentoML keeps one monitor per name for the process).
    """
    if not results:
        return
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


def record_batch(batch: ScoredBatch, salt: str, monitor_dir: Path) -> None:
    """:func:`record_predictions` for a scored batch, column by column (no Python object per row but the values)."""
    frame = batch.frame
    if frame.height == 0:
        return
    txs = batch.columns
    customers = pl.Series(txs.customer_id, dtype=pl.String)
    distinct = customers.unique()
    hashes = pl.Series([hash_id(c, salt) for c in distinct.to_list()], dtype=pl.String)
    _record(
        frame["transaction_id"].to_list(),
        txs.iso_times().to_list(),
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
    """

    def __init__(self, scorer: Scorer, id_hash_salt: str, monitor_dir: Path, read_only: bool = False) -> None:
        self.scorer = scorer
        self.salt = id_hash_salt
        self.monitor_dir = monitor_dir
        self.read_only = read_only

    def score_one(self, tx: TransactionIn) -> dict[str, Any]:
        """Score and record one transaction (plain data); raises ``TransactionConflict`` for a reused id."""
        result = self.scorer.score_one(tx, observe=not self.read_only)
        if not self.read_only:
            record_predictions([result], [tx], self.salt, self.monitor_dir)
        return result

    def score(self, tx: TransactionIn) -> ScoreResponse:
        """:meth:`score_one` as a checked :class:`ScoreResponse`."""
        return ScoreResponse.model_validate(self.score_one(tx))

    def score_batch(self, records: list[Any], unreadable: dict[int, str] | None = None) -> ScoredBatch:
        """Score and record a batch; invalid rows come back by index with a reason."""
        batch = self.scorer.score_batch(records, unreadable, observe=not self.read_only)
        if not self.read_only:
            record_batch(batch, self.salt, self.monitor_dir)
        return batch

    def score_frame(self, frame: pl.DataFrame, unreadable: dict[int, str] | None = None) -> ScoredBatch:
        """Score and record an upload's columns (``service.uploads.Upload.frame``); bad rows come back by index."""
        batch = self.scorer.score_frame(frame, unreadable, observe=not self.read_only)
        if not self.read_only:
            record_batch(batch, self.salt, self.monitor_dir)
        return batch
