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
from model.bundle import read_bundle
from service.scoring import MAX_BATCH_ROWS, BatchResponse, Scorer, ScoreResponse
from service.ui import build_ui

#: Which BentoML model to serve; inside a built Bento, ``latest`` is the one it packages.
MODEL_TAG = os.environ.get("FRAUDOPS_MODEL_TAG", "fraud_detector:latest")

_loaded: list[Scorer] = []


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
        self.scorer = Scorer(read_bundle(Path(self.bento_model.path)))
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
