"""ASGI middleware in front of the BentoML app: API key, request size, and ``GET /model``.

- When ``FRAUDOPS_API_KEY`` is set, the protected routes (scoring, feedback, jobs) need it in an
  ``X-API-Key`` header or as ``Authorization: Bearer <key>``; otherwise 401. Compared in constant time.
- A body over ``FRAUDOPS_MAX_BODY_MB`` (default 32) gets 413 before it is read; a POST to a protected
  route without ``Content-Length`` gets 411 (the limit could not be enforced before reading).
- A multipart/form-data body to a protected route must parse (else 400 naming the problem: BentoML
  would answer 500); on the upload routes the ``file`` field must be a file, and any other content type
  is refused (BentoML would fetch a text value or a JSON string as a URL).
- ``GET /model`` answers the model card summary (BentoML APIs are POST only).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from config.settings import LiveSettings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES = ("/score", "/feedback", "/score_job")
UPLOAD_ROUTES = ("/score_file", "/score_job/submit")


async def _json(send: Send, status: int, body: dict[str, Any], *extra: tuple[bytes, bytes]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Gateway:
    """The middleware; ``model_info`` returns the ``GET /model`` body (None while the model loads)."""

    def __init__(self, app: ASGIApp, model_info: Callable[[], dict[str, Any] | None]) -> None:
        self.app = app
        self.model_info = model_info

    @property
    def api_key(self) -> str | None:
        """``FRAUDOPS_API_KEY``, read per request so a rotated key applies without a restart."""
        return LiveSettings.api_key()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``GET /model`` and the refusals here; pass everything else to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        if path == "/model" and method == "GET":
            info = self.model_info()
            if info is None:
                await _json(send, 503, {"error": "the model is still loading"})
            else:
                await _json(send, 200, info)
            return
        protected = method == "POST" and path.startswith(PROTECTED_PREFIXES)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if protected and self.api_key is not None and not self._authorised(headers):
            error = {"error": "missing or invalid API key (X-API-Key header)"}
            await _json(send, 401, error, (b"www-authenticate", b"ApiKey"))
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _json(send, 400, {"error": f"Content-Length {length!r} is not a number"})
                return
            limit = LiveSettings.max_body_bytes()
            if size > limit:
                await _json(send, 413, {"error": f"request body of {size} bytes exceeds the limit of {limit} bytes"})
                return
        elif protected and "chunked" in headers.get("transfer-encoding", ""):
            await _json(send, 411, {"error": "Content-Length required (the body size limit is enforced up front)"})
            return
        if protected:
            content_type = headers.get("content-type", "")
            multipart = content_type.lower().startswith("multipart/form-data")
            if path in UPLOAD_ROUTES and not multipart:
                error = (
                    "Invalid file type: upload a CSV or Parquet file as multipart/form-data field 'file' "
                    f"(the request's content type is {content_type or 'missing'!r})"
                )
                await _json(send, 400, {"error": error})
                return
            if multipart:
                body = await _read_body(receive)
                if body is None:
                    return  # the client went away
                problem = await _form_problem(scope, body, upload=path in UPLOAD_ROUTES)
                if problem is not None:
                    await _json(send, 400, {"error": problem})
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key")
        if given is None and headers.get("authorization", "").lower().startswith("bearer "):
            given = headers["authorization"][7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.api_key.encode())  # type: ignore[union-attr]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (its size is already checked against the limit); None on disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then defers to the client's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed


async def _form_problem(scope: Scope, body: bytes, upload: bool) -> str | None:
    """Why ``body`` is not an acceptable multipart form (None if it is)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    boundary = _boundary(scope)
    if not boundary:
        return "malformed multipart/form-data body: the content type names no boundary"
    if not body.rstrip(b"\r\n").endswith(b"--" + boundary + b"--"):
        return "malformed multipart/form-data body: it does not end with its closing boundary (truncated?)"
    request = Request(scope, _replay(body, _disconnected))
    try:
        form = await request.form()
    except Exception as exc:  # Starlette raises HTTPException / MultiPartException with a detail
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        return f"malformed multipart/form-data body: {detail}"
    try:
        if upload and "file" in form and not isinstance(form["file"], UploadFile):
            return "field 'file' must be an uploaded CSV or Parquet file, not a text value"
    finally:
        await form.close()
    return None


async def _disconnected() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _boundary(scope: Scope) -> bytes | None:
    """The ``boundary`` parameter of the request's multipart content type."""
    from starlette.datastructures import Headers

    _, _, params = Headers(scope=scope).get("content-type", "").partition(";")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value.strip('"'):
            return value.strip('"').encode("latin-1")
    return None
