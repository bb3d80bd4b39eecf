"""A fix for BentoML's traffic timeout, which kept every request alive for the whole timeout.

BentoML 1.4's ``TimeoutMiddleware`` (``bentoml._internal.server.http.traffic``, checked up to 1.4.40)
schedules ``loop.call_later(timeout, ...)`` for every request and never cancels it. The timer handle
holds the request's waiter and a copy of its context (the OpenTelemetry span, BentoML's request
context), about 20 objects per request, for ``traffic.timeout`` seconds (60 here). At 500 requests a
second that is 600,000 objects the garbage collector walks in every full collection: measured on
``/score`` at concurrency 1, a 100-290 ms pause every 1-2 s (before the fix; bench/results/latency.md has the
figures after).

:func:`install` replaces the middleware's ``__call__`` with one that answers exactly as upstream does
(504 ``{"error": "Not able to process the request in N seconds"}`` when no response started in time)
but cancels its timer when the request ends, schedules it with an empty context, and also stops
waiting when the app ends without sending anything (upstream then waited out the whole timeout).
The service module calls it at import, before BentoML builds the app in each worker.
``tests/stack/test_version_traps.py`` checks that upstream still needs it; upstream report:
docs/architecture.md, "Version constraints".
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

#: Upstream's method, kept for the canary test and for :func:`uninstall`.
UPSTREAM_CALL = traffic.TimeoutMiddleware.__call__


async def _call(self: traffic.TimeoutMiddleware, scope: Any, receive: Any, send: Any) -> None:
    """Upstream's behaviour without the leak: the timer is cancelled once the request is answered."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    started = loop.create_future()  # done when the response starts (or the app ends without one)

    def time_out() -> None:
        if not started.done():
            started.set_exception(TimeoutError())

    async def send_started(message: Any) -> None:
        if not started.done():
            started.set_result(None)
        await send(message)

    timer = loop.call_later(self.timeout, time_out, context=contextvars.Context())
    task = asyncio.ensure_future(self.app(scope, receive, send_started))
    task.add_done_callback(lambda _: started.done() or started.set_result(None))
    try:
        await started
    except TimeoutError:
        if task.cancel():
            body = {"error": f"Not able to process the request in {self.timeout} seconds"}
            await JSONResponse(body, status_code=504)(scope, receive, send)
            return
    finally:
        timer.cancel()
    await task


def install() -> None:
    """Patch BentoML's ``TimeoutMiddleware`` (idempotent)."""
    traffic.TimeoutMiddleware.__call__ = _call  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore upstream's ``__call__`` (tests)."""
    traffic.TimeoutMiddleware.__call__ = UPSTREAM_CALL  # type: ignore[method-assign]
