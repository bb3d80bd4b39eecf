"""ASGI middleware in front of the BentoML app: API key, request size, and ``GET /model``.

- When ``FRAUDOPS_API_KEY`` is set, every route needs it (``X-API-Key`` header or ``Authorization:
  Bearer <key>``; compared in constant time), whatever the method, except a short allowlist
  (:data:`PUBLIC_ROUTES`: health, metrics, the OpenAPI document and its Swagger UI at ``/``, the
  UI's login form). A new route is protected without anyone remembering to. Browsers reach the
  Gradio UI at ``/ui`` through a login form (``/ui/login``) that sets an HttpOnly, SameSite=Strict
  session cookie derived from the key; the cookie counts only under ``/ui`` (so a page elsewhere
  cannot make a browser score or label with it) and stops working when the key is rotated.
  Websockets are closed (1008) without the key. ``FRAUDOPS_UI_DEMO`` opens ``/ui`` without the
  key, and the UI then scores read-only.
- A body over ``FRAUDOPS_MAX_BODY_MB`` (default 32) gets 413 before it is read; a POST to a protected
  route without ``Content-Length`` gets 411 (the limit could not be enforced before reading).
- A multipart/form-data body must parse, on any route (else 400 naming the problem: BentoML
  would answer 500); on the upload routes the ``file`` field must be a file, and any other content type
  is refused (BentoML would fetch a text value or a JSON string as a URL).
- ``GET /model`` answers the model card summary (BentoML APIs are POST only).
- ``GET /docs.json`` serves BentoML's OpenAPI document completed with every status the service
  really answers (:mod:`service.openapi`); ``/score_job/cancel`` is a 404 (BentoML's local server
  marks the task cancelled without stopping it); a ``get``/``retry`` of an unfinished task is a 409;
  error answers are ``{"error": ...}`` objects (BentoML sends some as one-element arrays).
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

UI_PREFIX = "/ui"
UI_LOGIN = "/ui/login"
UI_COOKIE = "fraudops_ui"
#: (method, path) pairs that answer without the API key: health, metrics, the OpenAPI document, the UI login.
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/livez"),
        ("GET", "/readyz"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/"),  # BentoML's Swagger UI for the OpenAPI document
        ("GET", "/docs.json"),
        ("GET", UI_LOGIN),
        ("POST", UI_LOGIN),
    }
)
#: GET path prefixes that answer without the key: the Swagger UI's static files.
PUBLIC_GET_PREFIXES = ("/static_content/",)
LOGIN_BODY_LIMIT = 4096
#: POST routes whose bodies the gateway checks (size known up front, multipart forms that parse).
DATA_PREFIXES = ("/score", "/feedback", "/score_job", "/alerts/verdicts")
UPLOAD_ROUTES = ("/score_file", "/score_job", "/score_job/submit")
#: Task routes BentoML answers with 400 while the task runs (the gateway makes it 409).
UNFINISHED_TASK_ROUTES = ("/score_job/get", "/score_job/retry")


async def _json(send: Send, status: int, body: dict[str, Any], *extra: tuple[bytes, bytes]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Gateway:
    """The middleware; ``model_info`` returns the ``GET /model`` body (None while the model loads)."""

    def __init__(
        self,
        app: ASGIApp,
        model_info: Callable[[], dict[str, Any] | None],
        summary_schema: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.model_info = model_info
        self.summary_schema = summary_schema or {"type": "object"}
        self._openapi: bytes | None = None  # the completed document, built once

    @property
    def api_key(self) -> str | None:
        """``FRAUDOPS_API_KEY``, read per request so a rotated key applies without a restart."""
        return LiveSettings.api_key()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what lacks the key or breaks the limits, answer ``GET /model``; pass the rest to the app."""
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key, ui = self.api_key, is_ui_path(path)
        open_ui = ui and LiveSettings.ui_demo()  # the read-only demo UI answers without the key
        if key is not None and not open_ui and not is_public(method, path) and not self._authorised(headers, ui, key):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            elif ui:
                await _html(send, 401, login_page(scope))
            else:
                error = {"error": "missing or invalid API key (X-API-Key header)"}
                await _json(send, 401, error, (b"www-authenticate", b"ApiKey"))
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if path == UI_LOGIN:
            await self._login(scope, receive, send, method, key)
            return
        if path == "/docs.json" and method == "GET":
            await self._openapi_document(scope, receive, send)
            return
        if path == "/score_job/cancel":
            error = "cancelling a task is not supported here; wait for it to finish (/score_job/status)"
            await _json(send, 404, {"error": error})
            return
        if path == "/model" and method not in ("GET", "POST"):
            await _json(
                send, 405, {"error": f"Method Not Allowed: {method} /model (use GET or POST)"}, (b"allow", b"GET, POST")
            )
            return
        send = _documented_errors(send, path)  # BentoML's own error rendering (e.g. a 415) on any route
        if path == "/model" and method == "GET":
            info = self.model_info()
            if info is None:
                await _json(send, 503, {"error": "the model is still loading"})
            else:
                await _json(send, 200, info)
            return
        protected = method == "POST" and path.startswith(DATA_PREFIXES)
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
        content_type = headers.get("content-type", "")
        multipart = method == "POST" and content_type.lower().startswith("multipart/form-data")
        if protected and path in UPLOAD_ROUTES and not multipart:
            error = (
                "Invalid file type: upload a CSV or Parquet file as multipart/form-data field 'file' "
                f"(the request's content type is {content_type or 'missing'!r})"
            )
            await _json(send, 400, {"error": error})
            return
        if multipart:  # on any route: BentoML answers 500 to a form it cannot parse
            body = await _read_body(receive)
            if body is None:
                return  # the client went away
            problem = await _form_problem(scope, body, upload=path in UPLOAD_ROUTES)
            if problem is not None:
                await _json(send, 400, {"error": problem})
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _openapi_document(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's document, completed with what the service really answers (service/openapi.py)."""
        if self._openapi is None:
            status, body = await _capture(self.app, scope, receive)
            if status != 200:
                await _json(send, status, {"error": "the OpenAPI document could not be generated"})
                return
            from service.openapi import complete_openapi

            self._openapi = json.dumps(complete_openapi(json.loads(body), self.summary_schema)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._openapi)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._openapi})

    def _authorised(self, headers: dict[str, str], ui: bool, key: str) -> bool:
        given = headers.get("x-api-key")
        if given is None and headers.get("authorization", "").lower().startswith("bearer "):
            given = headers["authorization"][7:].strip()
        if given is not None:
            return hmac.compare_digest(given.encode(), key.encode())
        if ui:
            cookie = _cookies(headers.get("cookie", "")).get(UI_COOKIE)
            return cookie is not None and hmac.compare_digest(cookie.encode(), ui_session(key).encode())
        return False

    async def _login(self, scope: Scope, receive: Receive, send: Send, method: str, key: str | None) -> None:
        """``GET /ui/login``: the form; ``POST``: check the key, set the session cookie, back to the UI."""
        root = scope.get("root_path", "")
        if key is None:  # nothing to log in to
            await _redirect(send, f"{root}{UI_PREFIX}/")
            return
        if method != "POST":
            await _html(send, 200, login_page(scope))
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if not length.isdigit() or int(length) > LOGIN_BODY_LIMIT:
            await _html(send, 413, login_page(scope, error="The login form is a short form post."))
            return
        body = await _read_body(receive)
        if body is None:
            return
        from urllib.parse import parse_qs

        given = (parse_qs(body.decode("utf-8", "replace")).get("api_key") or [""])[0]
        if not hmac.compare_digest(given.encode(), key.encode()):
            await _html(send, 401, login_page(scope, error="That is not the API key."))
            return
        cookie = f"{UI_COOKIE}={ui_session(key)}; Path={root}{UI_PREFIX}; HttpOnly; SameSite=Strict"
        await _redirect(send, f"{root}{UI_PREFIX}/", (b"set-cookie", cookie.encode("latin-1")))


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, bytes]:
    """Run ``app`` for this request and return its status and whole body (for small answers only)."""
    status, chunks = 500, []

    async def keep(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return status, b"".join(chunks)


def _documented_errors(send: Send, path: str) -> Send:
    """Error answers in the documented shape.

    BentoML renders an exception raised in an API as a one-element JSON array (``({"error": ...},)``
    in its source: a stray comma); that becomes the object. It answers 400 to ``get``/``retry`` of a
    task that has not finished; that is a 409 (try later). Only 4xx answers are held back (they are small).
    """
    held: list[dict[str, Any]] = []

    async def fixed(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held.append(message)
            return
        if not held or message["type"] != "http.response.body" or message.get("more_body"):
            if held and message["type"] == "http.response.body":  # a streamed 4xx: pass it on as it is
                await send(held.pop())
            await send(message)
            return
        start, body = held.pop(), message.get("body", b"")
        status = start["status"]
        if body.startswith(b"[{"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and len(parsed) == 1 and isinstance(parsed[0], dict):
                body = json.dumps(parsed[0]).encode()
        if status == 400 and path in UNFINISHED_TASK_ROUTES and b"is not completed yet" in body:
            status = 409
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "status": status, "headers": headers})
        await send({**message, "body": body})

    return fixed


def is_ui_path(path: str) -> bool:
    """Whether ``path`` (without its trailing slash) belongs to the Gradio UI mounted at ``/ui``."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def is_public(method: str, path: str) -> bool:
    """Whether ``method path`` answers without the API key (``path`` without its trailing slash)."""
    return (method, path) in PUBLIC_ROUTES or (method == "GET" and path.startswith(PUBLIC_GET_PREFIXES))


def ui_session(key: str) -> str:
    """The UI session cookie's value for ``key`` (rotating the key ends every session)."""
    return hmac.new(key.encode(), b"fraudops-ui-session", "sha256").hexdigest()


def _cookies(header: str) -> dict[str, str]:
    from http.cookies import SimpleCookie

    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header authorises nothing
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def login_page(scope: Scope, error: str = "") -> str:
    """The UI's login form (the API key as the password)."""
    from html import escape

    action = escape(f"{scope.get('root_path', '')}{UI_LOGIN}")
    note = f'<p role="alert">{escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudops: log in</title></head><body>"
        "<h1>fraudops</h1><p>This service needs its API key.</p>"
        f"{note}<form method='post' action='{action}'>"
        "<label>API key <input type='password' name='api_key' autocomplete='current-password' autofocus></label>"
        " <button type='submit'>Log in</button></form></body></html>"
    )


async def _html(send: Send, status: int, page: str) -> None:
    payload = page.encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _redirect(send: Send, location: str, *extra: tuple[bytes, bytes]) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), *extra]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


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
        if upload and "file" not in form:
            return "multipart field 'file' is missing: upload a CSV or Parquet file as field 'file'"
        if upload and not isinstance(form["file"], UploadFile):
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
