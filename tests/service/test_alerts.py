"""The service's durable log and the analysts' alert queue, through the real service's ASGI app.

The module's service writes to a log file of its own (``FRAUDOPS_FEEDBACK_DB``) with a daily capacity
of 3 alerts (``FRAUDOPS_ALERT_CAPACITY``). It scores rows with the live model; to decide which of them
alert, the scorer's threshold is set very low (everything alerts) or above 1 (nothing does) while they
are scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from data.feedback import FeedbackLog, read_feedback, read_label_events, read_scored
from data.labels import LABEL_SCHEMA
from service.gateway import is_public
from tests.helpers import service_app

pytestmark = pytest.mark.slow

CAPACITY = 3
DAY, NEXT_DAY = "2026-05-20", "2026-05-21"
GAUGES = (
    "fraud_alert_queue_alerts",
    "fraud_alert_queue_reviewed",
    "fraud_alert_queue_precision",
    "fraud_alert_queue_backlog",
)
#: Six cards on DAY, three transactions each (their amounts); the model scores many of them alike.
CARDS = {f"al-card-{c}": [10.0 + 150 * c + 40 * i for i in range(3)] for c in range(6)}


def tx(tid: str, card: str, when: str, amount: float, terminal: str = "al-terminal") -> dict[str, Any]:
    return {"transaction_id": tid, "tx_datetime": when, "customer_id": card, "terminal_id": terminal, "amount": amount}


@contextmanager
def threshold(client: TestClient, value: float) -> Iterator[None]:
    """The live scorer's decision threshold set to ``value`` while the block runs."""
    import bentoml

    scorer = bentoml.get_current_service().scorer
    before, scorer.threshold = scorer.threshold, value
    try:
        yield
    finally:
        scorer.threshold = before


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alerts") / "service-log.sqlite"


@pytest.fixture(scope="module")
def client(pipeline_result: dict[str, Any], log_path: Path) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FRAUDOPS_FEEDBACK_DB", str(log_path))
    mp.setenv("FRAUDOPS_ALERT_CAPACITY", str(CAPACITY))
    mp.delenv("FRAUDOPS_API_KEY", raising=False)
    try:
        with service_app(pipeline_result["package"]["model_tag"]) as app, TestClient(app) as test_client:
            yield test_client
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def scored(client: TestClient) -> dict[str, dict[str, Any]]:
    """Score the module's traffic through /score, /score_batch and /score_file; the answers by transaction id."""
    answers: dict[str, dict[str, Any]] = {}
    rows = [
        tx(f"al-{card}-{i}", card, f"{DAY}T{9 + i:02d}:{c:02d}:00Z", amount)
        for c, (card, amounts) in enumerate(CARDS.items())
        for i, amount in enumerate(amounts)
    ]
    with threshold(client, 1e-9):  # every one of these alerts
        first = client.post("/score", json=rows[0])
        assert first.status_code == 200, first.text
        answers[rows[0]["transaction_id"]] = first.json()
        batch = client.post("/score_batch", json={"transactions": rows[1:12]})
        assert batch.status_code == 200 and batch.json()["scored"] == 11, batch.text
        csv = "transaction_id,tx_datetime,customer_id,terminal_id,amount\n" + "".join(
            f"{r['transaction_id']},{r['tx_datetime']},{r['customer_id']},{r['terminal_id']},{r['amount']}\n"
            for r in rows[12:]
        )
        upload = client.post("/score_file", files={"file": ("rows.csv", csv.encode(), "text/csv")})
        assert upload.status_code == 200 and upload.json()["scored"] == len(rows) - 12, upload.text
        answers |= {r["transaction_id"]: r for r in batch.json()["results"] + upload.json()["results"]}
        late = client.post("/score", json=tx("al-next-0", "al-card-next", f"{NEXT_DAY}T08:00:00Z", 700.0))
        answers["al-next-0"] = late.json()
    with threshold(client, 1.01):  # approved: in the card's history, never an alert
        for card in CARDS:
            quiet = client.post("/score", json=tx(f"al-quiet-{card}", card, f"{DAY}T22:00:00Z", 5000.0))
            assert quiet.status_code == 200 and quiet.json()["decision"] == "approve"
            answers[f"al-quiet-{card}"] = quiet.json()
    assert all(a["decision"] == "alert" for t, a in answers.items() if not t.startswith("al-quiet"))
    times = {r["transaction_id"]: r["tx_datetime"] for r in rows}
    return {tid: {**answer, "tx_datetime": times.get(tid)} for tid, answer in answers.items()}


def expected_queue(scored: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(card, transaction_id) of DAY's alerts: each card's best alert, the cards by it, the top CAPACITY.

    Best: the highest score, then the earlier transaction, then the smaller id (the model gives equal
    scores to many of these rows).
    """
    best: dict[str, tuple[float, str, str]] = {}
    for tid, answer in scored.items():
        if tid.startswith("al-quiet") or tid == "al-next-0":
            continue
        card = tid.rsplit("-", 1)[0].removeprefix("al-")
        key = (-answer["fraud_probability"], answer["tx_datetime"], tid)
        best[card] = min(best.get(card, key), key)
    ranked = sorted(best.items(), key=lambda item: item[1])
    return [(card, key[2]) for card, key in ranked[:CAPACITY]]


# --- the scored log -------------------------------------------------------------------------------------


def test_every_scored_transaction_is_in_the_log_once_with_its_raw_ids(
    client: TestClient, scored: dict[str, dict[str, Any]], log_path: Path
) -> None:
    again = client.post("/score", json=tx("al-al-card-0-0", "al-card-0", f"{DAY}T09:00:00Z", CARDS["al-card-0"][0]))
    assert again.status_code == 200  # the same transaction again: answered, not a new row
    frame = read_scored(log_path)
    assert frame.schema == pl.Schema(
        {
            "transaction_id": pl.String,
            "tx_datetime": pl.Datetime("us", "UTC"),
            "customer_id": pl.String,
            "terminal_id": pl.String,
            "amount": pl.Float64,
            "score": pl.Float64,
            "model_version": pl.String,
        }
    )
    assert sorted(frame["transaction_id"]) == sorted(scored) and frame["transaction_id"].is_unique().all()
    row = frame.filter(pl.col("transaction_id") == "al-next-0").row(0, named=True)
    assert row["customer_id"] == "al-card-next" and row["terminal_id"] == "al-terminal" and row["amount"] == 700.0
    assert row["tx_datetime"] == datetime(2026, 5, 21, 8, tzinfo=UTC)
    by_id = dict(zip(frame["transaction_id"], frame["score"], strict=True))
    assert all(by_id[t] == pytest.approx(a["fraud_probability"], abs=1e-12) for t, a in scored.items())
    assert set(frame["model_version"]) == {scored["al-next-0"]["model_version"]}


def test_the_log_survives_reopening(client: TestClient, scored: dict[str, dict[str, Any]], log_path: Path) -> None:
    """A restart (or a model switch) opens the same file: every row is still there, and the queue the same."""
    before = read_scored(log_path)
    reopened = FeedbackLog(log_path)  # what a new worker does at start-up
    assert read_scored(log_path).equals(before)
    figures, alerts = reopened.alert_queue(datetime.fromisoformat(DAY).date(), CAPACITY)
    assert [(a["customer_id"], a["transaction_id"]) for a in alerts] == expected_queue(scored)
    assert figures.alerts == CAPACITY


# --- GET /alerts ----------------------------------------------------------------------------------------


def test_alerts_are_one_per_card_ranked_by_score_and_capped_at_k(
    client: TestClient, scored: dict[str, dict[str, Any]]
) -> None:
    response = client.get("/alerts", params={"date": DAY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["date"], body["capacity"], body["limit"]) == (DAY, CAPACITY, CAPACITY)
    alerts = body["alerts"]
    assert [(a["customer_id"], a["transaction_id"]) for a in alerts] == expected_queue(scored)
    assert [a["rank"] for a in alerts] == [1, 2, 3]
    scores = [a["score"] for a in alerts]
    assert scores == sorted(scores, reverse=True)
    top = alerts[0]
    answer = scored[top["transaction_id"]]
    assert (
        top["score"] == pytest.approx(answer["fraud_probability"]) and top["model_version"] == answer["model_version"]
    )
    assert [r["feature"] for r in top["reasons"]] == [r["feature"] for r in answer["reasons"]]
    assert top["terminal_id"] == "al-terminal" and top["tx_datetime"].startswith(DAY) and top["verdict"] is None
    # The card's recent transactions, newest first, with their scores: its approved one too.
    recent = top["recent"]
    assert [r["tx_datetime"] for r in recent] == sorted((r["tx_datetime"] for r in recent), reverse=True)
    assert {r["transaction_id"] for r in recent} >= {top["transaction_id"], f"al-quiet-{top['customer_id']}"}
    quiet = next(r for r in recent if r["transaction_id"].startswith("al-quiet"))
    assert quiet["decision"] == "approve" and quiet["score"] == pytest.approx(
        scored[quiet["transaction_id"]]["fraud_probability"]
    )
    assert body["figures"] == {
        "date": DAY,
        "capacity": CAPACITY,
        "alerts": CAPACITY,
        "reviewed": 0,
        "frauds": 0,
        "precision": None,
        "backlog": CAPACITY,
    }

    two = client.get("/alerts", params={"date": DAY, "limit": 2}).json()
    assert [a["transaction_id"] for a in two["alerts"]] == [a["transaction_id"] for a in alerts[:2]]
    assert two["limit"] == 2 and two["figures"]["alerts"] == CAPACITY  # the figures are the whole queue's
    many = client.get("/alerts", params={"date": DAY, "limit": 50}).json()
    assert many["limit"] == CAPACITY and len(many["alerts"]) == CAPACITY


def test_alerts_default_to_the_newest_scored_day_and_other_days_are_empty(
    client: TestClient, scored: dict[str, dict[str, Any]]
) -> None:
    newest = client.get("/alerts").json()
    assert newest["date"] == NEXT_DAY
    assert [a["transaction_id"] for a in newest["alerts"]] == ["al-next-0"]
    empty = client.get("/alerts", params={"date": "2026-05-19"}).json()
    assert empty["alerts"] == [] and empty["figures"]["alerts"] == 0 and empty["figures"]["precision"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date": "2026-13-01"}, "date"),
        ({"date": "yesterday"}, "date"),
        ({"date": "0"}, "date"),  # not 1970-01-01: a day is YYYY-MM-DD text
        ({"limit": 0}, "limit"),
        ({"limit": 1, "day": "2026-05-20"}, "day"),  # an unknown parameter is refused, not ignored
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/alerts", params=params)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


# --- POST /alerts/verdicts --------------------------------------------------------------------------------


def test_verdicts_become_analyst_label_events_and_the_queue_figures(
    client: TestClient, scored: dict[str, dict[str, Any]], log_path: Path
) -> None:
    (_, first), (_, second), _ = expected_queue(scored)
    verdicts = [
        {"transaction_id": first, "is_fraud": 1, "reviewer": "ana", "note": "cardholder denies it"},
        {"transaction_id": second, "is_fraud": 0},
        {"transaction_id": "al-never-scored", "is_fraud": 1},
    ]
    before = datetime.now(UTC)
    response = client.post("/alerts/verdicts", json={"verdicts": verdicts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"], body["rejected"]) == (3, 2, 1)
    assert body["accepted"] + body["rejected"] == body["received"] and body["applied"] == 2
    (error,) = body["errors"]
    assert error["index"] == 2 and error["transaction_id"] == "al-never-scored" and "unknown" in error["reason"]

    events = read_label_events(log_path)
    assert events.schema == pl.Schema(LABEL_SCHEMA)
    analyst = events.filter(pl.col("source") == "analyst")
    assert analyst.select("transaction_id", "is_fraud", "reviewer", "note").rows() == [
        (first, 1, "ana", "cardholder denies it"),
        (second, 0, None, None),
    ]
    label_time = analyst["label_time"][0]
    assert before - timedelta(seconds=1) <= label_time <= datetime.now(UTC)
    assert label_time == datetime.fromisoformat(body["label_time"])
    assert "al-never-scored" not in events["transaction_id"].to_list()

    queue = client.get("/alerts", params={"date": DAY}).json()
    assert queue["figures"] | {"date": None} == {
        "date": None,
        "capacity": CAPACITY,
        "alerts": CAPACITY,
        "reviewed": 2,
        "frauds": 1,
        "precision": 0.5,
        "backlog": 1,
    }
    verdict = queue["alerts"][0]["verdict"]
    assert verdict["is_fraud"] == 1 and verdict["reviewer"] == "ana" and verdict["note"] == "cardholder denies it"
    assert queue["alerts"][1]["verdict"]["is_fraud"] == 0 and queue["alerts"][2]["verdict"] is None


def test_queue_figures_are_gauges_on_metrics(client: TestClient, scored: dict[str, dict[str, Any]]) -> None:
    """Today's queue (the newest scored day): one alert, reviewed as fraud, precision 1, no backlog."""
    response = client.post("/alerts/verdicts", json={"verdicts": [{"transaction_id": "al-next-0", "is_fraud": 1}]})
    assert response.status_code == 200 and response.json()["figures"]["precision"] == 1.0
    # Read from the process's registry: /metrics renders it (in process, BentoML's /metrics wants its
    # multiprocess directory, which only `bentoml serve` sets up).
    values = {name: REGISTRY.get_sample_value(name) for name in GAUGES}
    assert values == {
        "fraud_alert_queue_alerts": 1.0,
        "fraud_alert_queue_reviewed": 1.0,
        "fraud_alert_queue_precision": 1.0,
        "fraud_alert_queue_backlog": 0.0,
    }
    client.get("/alerts", params={"date": "2026-05-19"})  # listing another day leaves today's figures
    assert {name: REGISTRY.get_sample_value(name) for name in GAUGES} == values
    client.get("/alerts", params={"date": DAY})
    assert REGISTRY.get_sample_value("fraud_alert_queue_backlog") == 0.0


@pytest.mark.parametrize(
    "body",
    [
        {"verdicts": []},
        {"verdicts": [{"transaction_id": "al-x", "is_fraud": True}]},
        {"verdicts": [{"transaction_id": "al-x", "is_fraud": 2}]},
        {"verdicts": [{"transaction_id": "al-x", "is_fraud": 1, "extra": 1}]},
    ],
)
def test_malformed_verdicts_are_a_400(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/alerts/verdicts", json=body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()


def test_feedback_labels_are_feedback_events_at_their_arrival(
    client: TestClient, scored: dict[str, dict[str, Any]], log_path: Path
) -> None:
    before = datetime.now(UTC)
    response = client.post("/feedback", json={"labels": [{"transaction_id": "al-next-0", "is_fraud": 0}]})
    assert response.status_code == 200 and response.json()["stored"] == 1
    events = read_label_events(log_path)
    (row,) = events.filter(pl.col("source") == "feedback").rows(named=True)
    assert row["transaction_id"] == "al-next-0" and row["is_fraud"] == 0 and row["label_time"] >= before
    legacy = read_feedback(log_path)  # the monitor's reader: every label, feedback and analyst alike
    assert legacy.height == events.height and legacy["transaction_id"].to_list() == events["transaction_id"].to_list()


# --- the API key ----------------------------------------------------------------------------------------


def test_both_routes_need_the_api_key_when_one_is_set(
    client: TestClient, scored: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not is_public("GET", "/alerts") and not is_public("POST", "/alerts/verdicts")
    monkeypatch.setenv("FRAUDOPS_API_KEY", "al-key")
    verdict = {"verdicts": [{"transaction_id": "al-next-0", "is_fraud": 1}]}
    assert client.get("/alerts").status_code == 401
    assert client.get("/alerts", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/alerts/verdicts", json=verdict).status_code == 401
    assert client.get("/alerts", headers={"X-API-Key": "al-key"}).status_code == 200
    ok = client.post("/alerts/verdicts", json=verdict, headers={"Authorization": "Bearer al-key"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_the_openapi_document_lists_both_routes(client: TestClient) -> None:
    doc = client.get("/docs.json").json()
    listing, verdicts = doc["paths"]["/alerts"]["get"], doc["paths"]["/alerts/verdicts"]["post"]
    assert {p["name"] for p in listing["parameters"]} == {"date", "limit"}
    assert {"200", "400", "401"} <= set(listing["responses"]) and "422" not in listing["responses"]
    assert {"200", "400", "401", "413"} <= set(verdicts["responses"])
    assert listing["security"] == verdicts["security"] and listing["security"]
    assert (
        "AlertsResponse" in doc["components"]["schemas"] and "HTTPValidationError" not in doc["components"]["schemas"]
    )
