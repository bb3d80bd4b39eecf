"""The BentoML 1.4 service: real-time and batch scoring, with the Gradio UI mounted at /ui."""

from __future__ import annotations

import gc
import os
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import gradio as gr
import pydantic_core
from bentoml.exceptions import BentoMLException, UnprocessableEntity
from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from pydantic import Field
from starlette.responses import Response

from features.contract import TransactionIn
from features.feedback import FeedbackLog, default_feedback_path
from features.online import FeatureStore
from model.bundle import Bundle, read_bundle
from service.gateway import Gateway
from service.scoring import (
    MAX_BATCH_ROWS,
    MAX_FEEDBACK_LABELS,
    BatchRequest,
    BatchResponse,
    FeedbackItem,
    FeedbackResponse,
    Scorer,
    ScoreResponse,
    TransactionConflict,
    hash_id,
)
from service.ui import build_ui
from service.uploads import TooManyRows, UploadError, read_upload

#: Which BentoML model to serve; inside a built Bento, ``latest`` is the one it packages.
MODEL_TAG = os.environ.get("FRAUDOPS_MODEL_TAG", "fraud_detector:latest")

#: ``sqlite`` (default: one state file shared by every worker process) or ``memory`` (per process).
ONLINE_STORE = os.environ.get("FRAUDOPS_ONLINE_STORE", "sqlite")

#: Rows per synchronous file upload (``/score_file``); larger files go through the ``/score_job`` task.
MAX_FILE_ROWS = int(os.environ.get("FRAUDOPS_MAX_FILE_ROWS", "200000"))
#: Rows per ``/score_job`` task.
MAX_JOB_ROWS = int(os.environ.get("FRAUDOPS_MAX_JOB_ROWS", "5000000"))
#: Where ``bentoml.monitor`` writes prediction logs (JSON lines per worker) for the monitor flow.
MONITOR_DIR = os.environ.get("FRAUDOPS_MONITOR_DIR") or str(
    Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "monitoring"
)
MONITOR_NAME = "fraud_predictions"

_loaded: list[Scorer] = []

# Business metrics next to BentoML's request metrics on /metrics (the Grafana dashboard plots both).
DECISIONS = Counter("fraud_decisions", "Scored transactions by decision", ["decision", "model_version"])
SCORES = Histogram(
    "fraud_score",
    "Fraud probability of scored transactions",
    ["model_version"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
)


def open_store(bundle: Bundle, model_name: str) -> FeatureStore | None:
    """The online store the workers share: a SQLite file per model version, loaded once from the snapshot.

    Location: ``FRAUDOPS_STATE_DB``, else ``$BENTOML_HOME/online_state/<model>-v<version>.sqlite`` (the
    version from the model card: a tag like ``fraud_detector:latest`` would share one file across versions).
    ``FRAUDOPS_ONLINE_STORE=memory`` returns None (the scorer keeps its own in-process state).
    """
    if ONLINE_STORE == "memory":
        return None
    if ONLINE_STORE != "sqlite":
        raise ValueError(f"FRAUDOPS_ONLINE_STORE must be 'sqlite' or 'memory', not {ONLINE_STORE!r}")
    from features.sqlite_store import SQLiteFeatureStore

    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    default = home / "online_state" / f"{model_name}-v{bundle.version}.sqlite"
    store = SQLiteFeatureStore(Path(os.environ.get("FRAUDOPS_STATE_DB") or default), bundle.spec)
    store.load_snapshot(bundle.state)
    return store


def _scorer() -> Scorer:
    if not _loaded:
        raise gr.Error("the model is still loading")
    return _loaded[0]


# Gradio 6 + BentoML: mount through FastAPI, not bentoml.gradio (its /ui/ answers 500 there).
ui_app = gr.mount_gradio_app(FastAPI(), build_ui(_scorer), path="/")


def _model_info() -> dict[str, Any] | None:
    return _loaded[0].summary() if _loaded else None


def _monitor(results: list[dict[str, Any]], txs: list[TransactionIn]) -> None:
    """Log predictions for the monitor flow (customer ids only as salted hashes) and count them for /metrics."""
    if not results:
        return
    probabilities = [r["fraud_probability"] for r in results]
    decisions = [r["decision"] for r in results]
    version = results[0]["model_version"]  # one scorer, one model version per call
    alerts = decisions.count("alert")
    if alerts:
        DECISIONS.labels("alert", version).inc(alerts)
    if alerts < len(decisions):
        DECISIONS.labels("approve", version).inc(len(decisions) - alerts)
    histogram = SCORES.labels(version)
    for p in probabilities:
        histogram.observe(p)
    # One call per column (not 7 per row); "feature"/"prediction" are the roles BentoML knows (another
    # role writes a warning per call).
    with bentoml.monitor(MONITOR_NAME) as mon:
        mon.log_batch([r["transaction_id"] for r in results], "transaction_id", "feature", "categorical")
        mon.log_batch([tx.tx_datetime.isoformat() for tx in txs], "tx_datetime", "feature", "categorical")
        mon.log_batch([hash_id(tx.customer_id) for tx in txs], "customer_hash", "feature", "categorical")
        mon.log_batch([tx.amount for tx in txs], "amount", "feature", "numerical")
        mon.log_batch(probabilities, "fraud_probability", "prediction", "numerical")
        mon.log_batch(decisions, "decision", "prediction", "categorical")
        mon.log_batch([version] * len(results), "model_version", "feature", "categorical")


def _json(body: bytes) -> Response:
    """An answer encoded by us (pydantic-core), so BentoML does not build and re-check a model per row."""
    return Response(content=body, media_type="application/json")


def _batch_rows(count: int, limit: int, where: str) -> None:
    if count == 0:
        raise UnprocessableEntity(f"no transactions in {where}; send 1 to {limit}")
    if count > limit:
        raise UnprocessableEntity(f"{count} rows in {where}; at most {limit} per request")


@bentoml.service(
    name="fraud_service",
    traffic={"timeout": 60},
    http={"host": "127.0.0.1"},
    monitoring={
        "enabled": True,
        "type": "service.monitoring.JsonLinesMonitor",  # the default layout, one write per call
        "options": {"log_path": MONITOR_DIR},
    },
)
@bentoml.asgi_app(ui_app, path="/ui")
class FraudService:
    """Scores raw card transactions with the packaged champion model."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        bundle = read_bundle(Path(self.bento_model.path))
        self.scorer = Scorer(bundle, store=open_store(bundle, self.bento_model.tag.name))
        self.feedback_log = FeedbackLog(default_feedback_path())
        _loaded[:] = [self.scorer]
        # The loaded model, state and libraries are long-lived: keep them out of every later GC pass
        # (measured: /score p99 at concurrency 32 fell from 653 to 185 ms, bench/results/service.json).
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/score", input_spec=TransactionIn, output_spec=ScoreResponse)
    async def score(self, **transaction: Any) -> Response:
        """Score one raw transaction: probability, decision at the model's threshold, reasons.

        ``async``: BentoML runs it on the event loop, skipping a sync API's thread hop (measured on the
        minimal service, bench/results/service.md ``lever_async_api``); the work is ~0.5 ms of CPU.
        """
        tx = TransactionIn.model_construct(**transaction)  # BentoML validated it against input_spec
        try:
            result = self.scorer.score_one(tx)
        except TransactionConflict as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from None
        _monitor([result], [tx])
        return _json(pydantic_core.to_json(result))  # output_spec documents it

    @bentoml.api(route="/score_batch", input_spec=BatchRequest, output_spec=BatchResponse)
    def score_batch(self, transactions: list[Any]) -> Response:
        """Score a JSON list of transactions (at most 10,000); invalid rows come back by index with a reason."""
        _batch_rows(len(transactions), MAX_BATCH_ROWS, "the batch")
        return self._scored(transactions)

    @bentoml.api(route="/score_file", output_spec=BatchResponse)
    def score_file(self, file: Path) -> Response:
        """Score an uploaded CSV or Parquet file of raw transactions (multipart field ``file``)."""
        return self._scored(*self._read(file, MAX_FILE_ROWS))

    @bentoml.task(route="/score_job", output_spec=BatchResponse)
    def score_job(self, file: Path) -> Response:
        """Large files as a task: ``/score_job/submit`` → ``/score_job/status`` → ``/score_job/get``."""
        return self._scored(*self._read(file, MAX_JOB_ROWS))

    @bentoml.api(route="/feedback", output_spec=FeedbackResponse)
    def feedback(
        self, labels: Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK_LABELS)]
    ) -> FeedbackResponse:
        """Labels for earlier transactions: update the online state, store them for retraining."""
        known = self.scorer.apply_labels(labels)
        stored = self.feedback_log.record(
            ((item.transaction_id, item.is_fraud, k) for item, k in zip(labels, known, strict=True)),
            self.scorer.version,
        )
        unknown = [item.transaction_id for item, k in zip(labels, known, strict=True) if not k]
        return FeedbackResponse(
            received=len(labels),
            applied=len(labels) - len(unknown),
            unknown=len(unknown),
            stored=stored,
            unknown_ids=unknown[:100],
        )

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """Model card: version, metrics, data window, threshold, features (also ``GET /model``)."""
        return self.scorer.summary()

    def _read(self, file: Path, max_rows: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
        try:
            upload = read_upload(file, max_rows)
        except TooManyRows as exc:
            raise BentoMLException(f"{exc} (use /score_job)", error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
        except UploadError as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.UNPROCESSABLE_ENTITY) from None
        return upload.records, upload.unreadable

    def _scored(self, records: list[dict[str, Any]], unreadable: dict[int, str] | None = None) -> Response:
        batch = self.scorer.score_batch(records, unreadable)
        _monitor(batch.results, batch.transactions)
        return _json(batch.to_json())  # output_spec documents it


FraudService.add_asgi_middleware(Gateway, model_info=_model_info)
