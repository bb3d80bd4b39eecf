"""The BentoML 1.4 service: real-time and batch scoring, with the Gradio UI mounted at /ui."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import gradio as gr
from fastapi import FastAPI
from pydantic import Field

from features.contract import TransactionIn
from features.online import FeatureStore
from model.bundle import Bundle, read_bundle
from service.scoring import MAX_BATCH_ROWS, BatchResponse, Scorer, ScoreResponse
from service.ui import build_ui

#: Which BentoML model to serve; inside a built Bento, ``latest`` is the one it packages.
MODEL_TAG = os.environ.get("FRAUDOPS_MODEL_TAG", "fraud_detector:latest")

#: ``sqlite`` (default: one state file shared by every worker process) or ``memory`` (per process).
ONLINE_STORE = os.environ.get("FRAUDOPS_ONLINE_STORE", "sqlite")

_loaded: list[Scorer] = []


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


@bentoml.service(name="fraud_service", traffic={"timeout": 60}, http={"host": "127.0.0.1"})
@bentoml.asgi_app(ui_app, path="/ui")
class FraudService:
    """Scores raw card transactions with the packaged champion model."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        bundle = read_bundle(Path(self.bento_model.path))
        self.scorer = Scorer(bundle, store=open_store(bundle, self.bento_model.tag.name))
        _loaded[:] = [self.scorer]

    @bentoml.api(route="/score", input_spec=TransactionIn, output_spec=ScoreResponse)
    def score(self, **transaction: Any) -> ScoreResponse:
        """Score one raw transaction: probability, decision at the model's threshold, reasons."""
        return self.scorer.score(TransactionIn.model_construct(**transaction))

    @bentoml.api(route="/score_batch", output_spec=BatchResponse)
    def score_batch(
        self, transactions: Annotated[list[dict[str, Any]], Field(max_length=MAX_BATCH_ROWS)]
    ) -> BatchResponse:
        """Score a JSON list of transactions; invalid rows come back by index with a reason."""
        return self.scorer.score_batch(transactions)

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """Model card: version, metrics, data window, threshold, features."""
        return self.scorer.model_card()
