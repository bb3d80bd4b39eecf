"""A minimal BentoML 1.4 service: the framework ceiling for ``/score`` in bench/bench_latency.py.

It parses and validates the same request body as ``/score`` (``TransactionIn``), then runs the raw
booster's ``inplace_predict`` on one prepared feature row (no online features, no contributions, no
monitoring, no middleware, no mounted UI) and answers a small JSON object.

Routes: ``/predict`` (one transaction, like ``/score``); ``/predict_async`` (the same as an ``async def``
API: BentoML runs it on the event loop, without the thread hop of a sync API); ``/predict_list`` and
``/predict_batched`` (body ``{"transactions": [...]}``; the same API without and with adaptive batching, one
``inplace_predict`` call per batch).

The benchmark serves it with ``bentoml serve bench.minimal_service:MinimalService`` and the environment
``BENCH_BOOSTER`` (a saved XGBoost model), ``BENCH_ROW`` (``.npy``, shape ``(1, n_features)``) and
``BENCH_ITERATIONS`` (trees to use, as ``best_iteration + 1``).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import xgboost as xgb

from data.contract import TransactionIn


@bentoml.service(name="minimal_service", traffic={"timeout": 60}, http={"host": "127.0.0.1"})
class MinimalService:
    """Validate, predict one prepared row, answer."""

    def __init__(self) -> None:
        self.booster = xgb.Booster()
        self.booster.load_model(os.environ["BENCH_BOOSTER"])
        self.booster.set_param({"nthread": 1})
        self.row = np.load(os.environ["BENCH_ROW"])
        self.iteration_range = (0, int(os.environ["BENCH_ITERATIONS"]))

    def _predict(self, n: int) -> np.ndarray:
        rows = self.row if n == 1 else np.repeat(self.row, n, axis=0)
        return self.booster.inplace_predict(rows, iteration_range=self.iteration_range)

    @bentoml.api(route="/predict", input_spec=TransactionIn)
    def predict(self, **transaction: Any) -> dict[str, Any]:
        """One transaction, as ``/score`` receives it."""
        p = float(self._predict(1)[0])
        return {"transaction_id": transaction["transaction_id"], "fraud_probability": p}

    @bentoml.api(route="/predict_async", input_spec=TransactionIn)
    async def predict_async(self, **transaction: Any) -> dict[str, Any]:
        """:meth:`predict` on the event loop (lever: no thread hop)."""
        p = float(self._predict(1)[0])
        return {"transaction_id": transaction["transaction_id"], "fraud_probability": p}

    @bentoml.api(route="/predict_list")
    def predict_list(self, transactions: list[TransactionIn]) -> list[dict[str, Any]]:
        """A list of transactions, one request at a time (no batching)."""
        return self._answer(transactions)

    # max_latency_ms is generous: with a tight bound BentoML answers 503 "process is overloaded" on a busy machine.
    @bentoml.api(route="/predict_batched", batchable=True, max_batch_size=64, max_latency_ms=500)
    def predict_batched(self, transactions: list[TransactionIn]) -> list[dict[str, Any]]:
        """The same as ``/predict_list``, with BentoML's adaptive batching across concurrent requests."""
        return self._answer(transactions)

    def _answer(self, transactions: list[TransactionIn]) -> list[dict[str, Any]]:
        probabilities = self._predict(len(transactions))
        return [
            {"transaction_id": tx.transaction_id, "fraud_probability": float(p)}
            for tx, p in zip(transactions, probabilities, strict=True)
        ]
