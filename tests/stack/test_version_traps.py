"""Canaries for the version traps we work around (docs/architecture.md, "Version constraints").

Each test asserts that the upstream behaviour we work around is still there. When an upgrade makes
one fail, the trap is gone: remove the workaround named in the failure message, then this test.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

import pytest


def test_prefect_still_caps_fastapi_itself() -> None:
    requirement = next(r for r in metadata.requires("prefect") or [] if r.startswith("fastapi"))
    assert "<0.151" in requirement, (
        f"Prefect now asks for {requirement!r}: try lifting our fastapi<0.151 pin (pyproject.toml, "
        "bentofile.yaml) and run tests/flows/test_prefect_api.py"
    )


def test_bentoml_traffic_timeout_still_keeps_a_timer_per_request() -> None:
    """BentoML's TimeoutMiddleware schedules a timer per request and never cancels it (it holds the request)."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from service.traffic import UPSTREAM_CALL  # the service patches the class: check upstream's own method

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def one_request() -> int:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            return None

        await UPSTREAM_CALL(TimeoutMiddleware(app, timeout=60), {"type": "http"}, receive, send)
        scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        return sum(1 for h in scheduled if not h.cancelled() and "_set_timer_out" in repr(h))

    assert asyncio.run(one_request()) == 1, (
        "BentoML now cancels the traffic-timeout timer: service/traffic.py (and its install in service/service.py), "
        "tests/service/test_traffic.py and the trap note in docs/architecture.md can go"
    )


def test_mlflow_float32_signature_still_rejects_float64_input() -> None:
    import numpy as np
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature
    from mlflow.models.utils import _enforce_schema

    signature = infer_signature(pd.DataFrame({"amount": np.array([1.0], dtype=np.float32)}))
    with pytest.raises(MlflowException, match="float64 to float32"):
        _enforce_schema(pd.DataFrame({"amount": [1.0]}), signature.inputs)
    # What model/registry.py logs instead: a float64 signature, which takes float64 JSON input.
    wide = infer_signature(pd.DataFrame({"amount": np.array([1.0], dtype=np.float64)}))
    assert _enforce_schema(pd.DataFrame({"amount": [1.0]}), wide.inputs) is not None


@pytest.mark.slow
def test_bentoml_gradio_mount_still_breaks_with_gradio_6() -> None:
    """``bentoml.gradio.mount_gradio_app`` answers 500 on /ui/ with Gradio 6 (service/service.py mounts via FastAPI)."""
    import bentoml
    import gradio as gr
    from starlette.testclient import TestClient

    from tests.helpers import release_request_metrics

    with gr.Blocks() as blocks:
        gr.Markdown("canary")

    @bentoml.service(name="gradio_mount_canary")
    @bentoml.gradio.mount_gradio_app(blocks, path="/ui")
    class Canary:
        @bentoml.api
        def ping(self) -> str:
            return "pong"

    release_request_metrics()
    try:
        with TestClient(Canary.to_asgi(), raise_server_exceptions=False) as client:
            status = client.get("/ui/").status_code
    finally:
        release_request_metrics()
    assert status == 500, (
        f"bentoml.gradio.mount_gradio_app now answers {status} on /ui/: the gr.mount_gradio_app + "
        "@bentoml.asgi_app workaround in service/service.py can go"
    )
