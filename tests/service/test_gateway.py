"""Route protection: with an API key set, every route of the built app but a short allowlist answers 401.

The routes are enumerated from the app itself (BentoML's, ours, the mounted Gradio UI's), so a route
added later is covered without anyone listing it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.gateway import PUBLIC_ROUTES, UI_COOKIE, is_public
from tests.helpers import service_app

pytestmark = pytest.mark.slow

KEY = "s3cret-key"
VALID = {
    "transaction_id": "gw-1",
    "tx_datetime": "2026-06-14T12:00:00Z",
    "customer_id": "12",
    "terminal_id": "40",
    "amount": 25.0,
}


def routes_of(app: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method or "WEBSOCKET", concrete path) for every route of a Starlette app, into mounts."""
    inner = getattr(app, "app", None)
    if not hasattr(app, "routes") and inner is not None:  # a middleware around the router
        yield from routes_of(inner, prefix)
        return
    for route in getattr(app, "routes", []):
        path = prefix + re.sub(r"\{[^}]+\}", "x", getattr(route, "path", ""))
        if isinstance(route, Mount):
            yield from routes_of(route.app, path)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", path
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                yield method, path or "/"


@pytest.fixture(scope="module")
def keyed_client(pipeline_result: dict[str, Any]) -> Iterator[tuple[TestClient, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FRAUDOPS_API_KEY", KEY)
    try:
        with (
            service_app(pipeline_result["package"]["model_tag"]) as app,
            TestClient(app, raise_server_exceptions=False) as client,
        ):
            yield client, app
    finally:
        mp.undo()


def test_every_route_but_the_public_ones_needs_the_key(keyed_client: tuple[TestClient, Any]) -> None:
    client, app = keyed_client
    routes = sorted(set(routes_of(app)))
    protected = [(m, p) for m, p in routes if not is_public(m, p.rstrip("/") or "/")]
    assert len(protected) > 30 and any(p.startswith("/ui") for _, p in protected), protected
    print(f"{len(routes)} routes, {len(protected)} protected")  # reported in the closing note
    for method, path in protected:
        if method == "WEBSOCKET":
            with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(path):
                pass
            assert closed.value.code == 1008, path
            continue
        if method == "HEAD":
            continue  # Starlette adds HEAD beside GET; GET is checked
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code, response.text[:200])
    for method, path in [("GET", "/not-a-route"), ("DELETE", "/score"), ("PUT", "/score_job/cancel")]:
        assert client.request(method, path).status_code == 401, (method, path)
    for method, path in sorted(PUBLIC_ROUTES):  # no key needed (in process /metrics has no multiprocess dir: 500)
        if method == "GET":
            assert client.get(path).status_code != 401, path
    assert client.get("/").status_code == 200 and client.get("/docs.json").json()["paths"]
    assert client.get("/livez").status_code == 200 and client.get("/ui/login").status_code == 200


def test_the_key_opens_every_kind_of_route(keyed_client: tuple[TestClient, Any]) -> None:
    client, _ = keyed_client
    headers = {"X-API-Key": KEY}
    assert client.post("/score", json=VALID, headers=headers).status_code == 200
    assert client.get("/model", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/ui/", headers=headers).status_code == 200
    assert client.post("/score", json=VALID, headers={"X-API-Key": KEY + "x"}).status_code == 401


def test_browsers_log_in_to_the_ui_and_the_cookie_opens_nothing_else(keyed_client: tuple[TestClient, Any]) -> None:
    client, _ = keyed_client
    page = client.get("/ui/")
    assert page.status_code == 401 and "<form" in page.text and 'name="api_key"' not in page.text
    assert "name='api_key'" in page.text
    wrong = client.post("/ui/login", data={"api_key": "guess"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the API key" in wrong.text
    good = client.post("/ui/login", data={"api_key": KEY}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"].endswith("/ui/")
    cookie = good.cookies.get(UI_COOKIE)
    assert cookie and "HttpOnly" in good.headers["set-cookie"] and "SameSite=Strict" in good.headers["set-cookie"]
    jar = {UI_COOKIE: cookie}
    assert client.get("/ui/", cookies=jar).status_code == 200
    assert client.get("/ui/config", cookies=jar).status_code == 200
    # The session cookie is for the UI only: a page elsewhere cannot make a browser score or read the card.
    assert client.post("/score", json={**VALID, "transaction_id": "gw-csrf"}, cookies=jar).status_code == 401
    assert client.get("/model", cookies=jar).status_code == 401
    huge = client.post("/ui/login", content=b"api_key=" + b"x" * 10_000, follow_redirects=False)
    assert huge.status_code == 413
    client.cookies.clear()


def test_the_ui_demo_mode_opens_only_the_ui(
    keyed_client: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = keyed_client
    monkeypatch.setenv("FRAUDOPS_UI_DEMO", "true")
    assert client.get("/ui/").status_code == 200 and client.get("/ui/config").status_code == 200
    assert client.post("/score", json={**VALID, "transaction_id": "gw-demo"}).status_code == 401
    assert client.get("/model").status_code == 401
    monkeypatch.setenv("FRAUDOPS_UI_DEMO", "false")
    assert client.get("/ui/").status_code == 401
