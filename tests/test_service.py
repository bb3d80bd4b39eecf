"""The BentoML service through its ASGI app (in process), with the model the pipeline packaged."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from features.engineering import FeatureSpec

pytestmark = pytest.mark.slow

VALID = {
    "transaction_id": "svc-1",
    "tx_datetime": "2026-06-14T12:00:00Z",
    "customer_id": "12",
    "terminal_id": "40",
    "amount": 250.5,
}


@pytest.fixture(scope="module")
def client(pipeline_result: dict[str, Any]) -> Iterator[TestClient]:
    import os

    os.environ["FRAUDOPS_MODEL_TAG"] = pipeline_result["package"]["model_tag"]
    from service.service import FraudService

    with TestClient(FraudService.to_asgi()) as test_client:
        yield test_client
    os.environ.pop("FRAUDOPS_MODEL_TAG", None)


def test_score_returns_probability_decision_version_and_reasons(
    client: TestClient, pipeline_result: dict[str, Any]
) -> None:
    response = client.post("/score", json=VALID)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 <= body["fraud_probability"] <= 1
    assert body["decision"] == ("alert" if body["fraud_probability"] >= body["threshold"] else "approve")
    assert body["model_version"] == pipeline_result["package"]["version"]
    assert len(body["reasons"]) == 3 and {"feature", "value", "contribution"} <= set(body["reasons"][0])


def test_same_transaction_scored_twice_gets_the_same_answer(client: TestClient) -> None:
    tx = {**VALID, "transaction_id": "svc-repeat"}
    first, second = client.post("/score", json=tx).json(), client.post("/score", json=tx).json()
    assert first["fraud_probability"] == second["fraud_probability"]


def test_customer_history_changes_the_features(client: TestClient) -> None:
    tx = {**VALID, "customer_id": "new-customer-x", "amount": 10.0}
    first = client.post("/score", json={**tx, "transaction_id": "h1"}).json()
    second = client.post("/score", json={**tx, "transaction_id": "h2", "amount": 900.0}).json()
    reasons = {r["feature"]: r["value"] for r in second["reasons"]}
    assert second["fraud_probability"] > first["fraud_probability"]
    assert reasons.get("customer_id_avg_amount_1day_window", 455.0) == 455.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"tx_datetime": "not a date"}, "tx_datetime"),
        ({"tx_datetime": "2999-01-01T00:00:00Z"}, "tx_datetime"),
        ({"customer_id": None}, "customer_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_transactions_get_a_4xx_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    response = client.post("/score", json={**VALID, **change})
    assert 400 <= response.status_code < 500
    assert field in response.text


def test_missing_field_and_malformed_json_are_4xx(client: TestClient) -> None:
    missing = client.post("/score", json={k: v for k, v in VALID.items() if k != "terminal_id"})
    assert missing.status_code == 400 and "terminal_id" in missing.text
    malformed = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= malformed.status_code < 500
    assert client.get("/readyz").status_code == 200


def test_batch_scores_valid_rows_and_reports_invalid_ones_by_index(client: TestClient) -> None:
    rows = [
        {**VALID, "transaction_id": "b-1"},
        {"transaction_id": "b-2", "amount": 3},
        {**VALID, "transaction_id": "b-3", "amount": -1},
        {**VALID, "transaction_id": "b-4"},
    ]
    response = client.post("/score_batch", json={"transactions": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["scored"], body["rejected"]) == (4, 2, 2)
    assert [r["transaction_id"] for r in body["results"]] == ["b-1", "b-4"]
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert "customer_id" in body["errors"][0]["reason"] and "amount" in body["errors"][1]["reason"]


def test_model_card_and_ui_are_served(client: TestClient, pipeline_result: dict[str, Any]) -> None:
    card = client.post("/model", json={}).json()
    assert card["model_version"] == pipeline_result["package"]["version"]
    assert card["feature_names"] == FeatureSpec().feature_names and 0 < card["threshold"] < 1
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/config").status_code == 200


def test_a_second_worker_sees_what_the_first_scored(client: TestClient, pipeline_result: dict[str, Any]) -> None:
    """A second worker opens the same SQLite online store at start-up and sees the first one's traffic."""
    import os

    import bentoml

    from features.contract import TransactionIn
    from model.bundle import read_bundle
    from service.scoring import Scorer
    from service.service import open_store

    first = client.post("/score", json={**VALID, "transaction_id": "w-1", "customer_id": "worker-x"})
    assert first.status_code == 200
    model = bentoml.models.get(pipeline_result["package"]["model_tag"])
    bundle = read_bundle(Path(model.path))
    second_worker = Scorer(bundle, store=open_store(bundle, model.tag.name))  # what __init__ does per worker
    assert (Path(os.environ["BENTOML_HOME"]) / "online_state" / f"{model.tag.name}-v{bundle.version}.sqlite").exists()
    later = {**VALID, "transaction_id": "w-2", "customer_id": "worker-x", "tx_datetime": "2026-06-14T12:10:00Z"}
    row = second_worker.features(TransactionIn.model_validate(later))
    names = bundle.spec.feature_names
    assert row[names.index("customer_id_nb_tx_1day_window")] == 2
    assert row[names.index("customer_hours_since_prev_tx")] == pytest.approx(10 / 60)
