"""service/traffic.py: BentoML's traffic timeout without the per-request timer it never cancelled."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from service import traffic

Message = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]


def _pending_timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]


async def _call(app: Any, timeout: float) -> list[Message]:
    """One request through the patched middleware; the messages the client got."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await TimeoutMiddleware(app, timeout=timeout)({"type": "http"}, receive, send)
    return sent


async def _answers(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def _patched() -> Any:
    traffic.install()
    yield
    traffic.install()  # the service module installs it at import: leave it installed


def test_answered_requests_leave_no_timer_and_no_garbage() -> None:
    async def many() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(2_000):
            assert [m["type"] for m in await _call(_answers, timeout=60)] == [
                "http.response.start",
                "http.response.body",
            ]
        return _pending_timers(loop), len(gc.get_objects()) - before

    pending, grown = asyncio.run(many())
    assert pending == 0
    # Upstream kept ~20 tracked objects per request for the whole timeout: 40,000 here.
    assert grown < 2_000


def test_upstream_keeps_what_the_fix_releases() -> None:
    """The same 2,000 requests through upstream's method keep 2,000 timers (the reason for the fix)."""

    async def many() -> int:
        traffic.uninstall()
        try:
            for _ in range(2_000):
                await _call(_answers, timeout=60)
            return _pending_timers(asyncio.get_running_loop())
        finally:
            traffic.install()

    assert asyncio.run(many()) == 2_000


def test_a_slow_app_still_gets_upstreams_504() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    sent = asyncio.run(_call(slow, timeout=0.05))
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "Not able to process the request in 0.05 seconds"}


def test_an_app_that_ends_without_answering_does_not_wait_out_the_timeout() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    # Upstream waited the whole timeout (an hour here), then sent nothing either: wait_for would give up.
    assert asyncio.run(asyncio.wait_for(_call(silent, timeout=3_600), timeout=60)) == []


def test_an_app_error_reaches_the_caller() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(_call(broken, timeout=30))


def test_the_service_installs_it(tmp_path: Path) -> None:
    """Importing the service module (as every BentoML worker does before building its app) installs the fix."""
    code = (
        "import service.service\n"
        "from bentoml._internal.server.http.traffic import TimeoutMiddleware\n"
        "from service.traffic import _call\n"
        "assert TimeoutMiddleware.__call__ is _call\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
