"""The BentoML service through its ASGI app (in process), with the model the pipeline packaged."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from features.definitions import FeatureSpec

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
    from _bentoml_impl.tasks.result import Sqlite3Store
    from bentoml._internal.configuration.containers import BentoMLContainer

    from service.service import FraudService

    # `bentoml serve` creates the task result store at start-up (server_on_deployment); in process we do.
    Sqlite3Store.init_db(BentoMLContainer.result_store_file.get())

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
    response = client.get("/model")
    assert response.status_code == 200, response.text
    card = response.json()
    assert card["model_version"] == pipeline_result["package"]["version"]
    assert card["features"] == FeatureSpec().feature_names and 0 < card["threshold"] < 1
    assert card["data_window"] == pipeline_result["train"]["split"]
    assert card["metrics"]["test_ap"] == pytest.approx(pipeline_result["train"]["metrics"]["test_ap"])
    assert {k: v for k, v in client.post("/model", json={}).json().items() if k != "online_state_transactions"} == {
        k: v for k, v in card.items() if k != "online_state_transactions"
    }
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/config").status_code == 200


def test_a_second_worker_sees_what_the_first_scored(client: TestClient, pipeline_result: dict[str, Any]) -> None:
    """A second worker opens the same SQLite online store at start-up and sees the first one's traffic."""
    import os

    import bentoml

    from config.settings import Settings
    from data.contract import TransactionIn
    from features.stores import open_store
    from model.bundle import read_bundle
    from service.scoring import Scorer

    first = client.post("/score", json={**VALID, "transaction_id": "w-1", "customer_id": "worker-x"})
    assert first.status_code == 200
    model = bentoml.models.get(pipeline_result["package"]["model_tag"])
    bundle = read_bundle(Path(model.path))
    settings = Settings()
    store = open_store(
        settings.online_store, bundle.spec, bundle.state, settings.state_path(model.tag.name, bundle.version)
    )
    second_worker = Scorer(bundle, store=store)  # what __init__ does per worker
    assert (Path(os.environ["BENTOML_HOME"]) / "online_state" / f"{model.tag.name}-v{bundle.version}.sqlite").exists()
    later = {**VALID, "transaction_id": "w-2", "customer_id": "worker-x", "tx_datetime": "2026-06-14T12:10:00Z"}
    row = second_worker.features(TransactionIn.model_validate(later))
    names = bundle.spec.feature_names
    assert row[names.index("customer_id_nb_tx_1day_window")] == 2
    assert row[names.index("customer_hours_since_prev_tx")] == pytest.approx(10 / 60)


# --- feedback, limits, API key, uploads, jobs, monitoring ------------------------------------------


def test_feedback_updates_the_terminal_risk_from_its_arrival_and_is_stored(client: TestClient) -> None:
    from config.settings import Settings
    from data.feedback import read_feedback

    # A label posted now is known from now on: a row 7.5 days after the labelled one (past the label
    # delay) sees it in its terminal's 1-day risk window only if the row comes after the label arrived.
    sent = dt.datetime.now(dt.UTC)
    tx_time = sent - dt.timedelta(days=7, hours=12)
    scored = {**VALID, "transaction_id": "fb-1", "terminal_id": "fb-terminal", "tx_datetime": tx_time.isoformat()}
    assert client.post("/score", json=scored).status_code == 200
    labels = [{"transaction_id": "fb-1", "is_fraud": 1}, {"transaction_id": "never-seen", "is_fraud": 0}]
    response = client.post("/feedback", json={"labels": labels})
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "applied": 1, "unknown": 1, "stored": 2, "unknown_ids": ["never-seen"]}
    stored = read_feedback(Settings().feedback_path)
    assert stored.filter(stored["transaction_id"] == "fb-1")["is_fraud"].to_list() == [1]
    names = FeatureSpec().feature_names
    before = {**scored, "transaction_id": "fb-2", "tx_datetime": (sent - dt.timedelta(seconds=1)).isoformat()}
    assert dict(zip(names, _features_of(client, before), strict=True))["terminal_id_risk_1day_window"] == 0.0
    after = {**scored, "transaction_id": "fb-3", "tx_datetime": dt.datetime.now(dt.UTC).isoformat()}
    reasons = client.post("/score_batch", json={"transactions": [after]}).json()["results"][0]
    features = dict(zip(names, _features_of(client, after), strict=True))
    assert features["terminal_id_risk_1day_window"] == 1.0, reasons
    bad = client.post("/feedback", json={"labels": [{"transaction_id": "fb-1", "is_fraud": 2}]})
    assert bad.status_code == 400 and "is_fraud" in bad.text


def _features_of(client: TestClient, tx: dict[str, Any]) -> list[float]:
    """The online features the service computes for ``tx`` (through its scorer, without recording it)."""
    import bentoml

    from data.contract import TransactionIn
    from features.definitions import to_epoch_us

    scorer = bentoml.get_current_service().scorer
    t = TransactionIn.model_validate({**tx, "transaction_id": tx["transaction_id"] + "-probe"})
    row = scorer.state.features(
        t.transaction_id, t.customer_id, t.terminal_id, to_epoch_us(t.tx_datetime), t.amount, t.tx_datetime
    )
    return [float(v) for v in row]


def test_api_key_is_required_when_set(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDOPS_API_KEY", "s3cret")
    assert client.post("/score", json=VALID).status_code == 401
    assert client.post("/score", json=VALID, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/score", json=VALID, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.post("/feedback", json={"labels": []}, headers={"Authorization": "Bearer s3cret"}).status_code == 400
    assert client.post("/feedback", json={"labels": []}).status_code == 401
    # Health stays open; the model card (threshold, metrics) needs the key too.
    assert client.get("/readyz").status_code == 200 and client.get("/model").status_code == 401
    assert client.get("/model", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_oversized_bodies_get_413_and_oversized_batches_422(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDOPS_MAX_BODY_MB", "0.01")  # about 10 kB
    big = client.post("/score_batch", json={"transactions": [VALID] * 200})
    assert big.status_code == 413 and "exceeds the limit" in big.json()["error"]
    monkeypatch.setenv("FRAUDOPS_MAX_BODY_MB", "32")
    many = client.post("/score_batch", json={"transactions": [{"transaction_id": str(i)} for i in range(10_001)]})
    assert many.status_code == 422 and "at most 10000" in many.text
    assert client.get("/readyz").status_code == 200


def _csv(rows: list[str]) -> bytes:
    return ("transaction_id,tx_datetime,customer_id,terminal_id,amount\n" + "\n".join(rows) + "\n").encode()


def test_csv_and_parquet_uploads_score_valid_rows_and_explain_the_rest(client: TestClient, tmp_path: Path) -> None:
    import polars as pl

    body = _csv(
        [
            "up-1,2026-06-14T12:00:00Z,12,40,20.5",
            "up-2,2026-06-14T12:01:00Z,12,40",  # truncated line
            "up-3,2026-06-14T12:02:00Z,12,40,-5",
            "up-4,2026-06-14 12:03:00,13,41,7",
        ]
    )
    response = client.post("/score_file", files={"file": ("batch.csv", body, "text/csv")})
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["received"], out["scored"], out["rejected"]) == (4, 2, 2)
    assert out["received"] == out["scored"] + out["rejected"]
    reasons = {e["index"]: e["reason"] for e in out["errors"]}
    assert "line has 4 fields, the header 5" in reasons[1] and "amount" in reasons[2]

    frame = pl.read_csv(body, infer_schema=False).filter(pl.col("amount").is_not_null())
    frame = frame.with_columns(pl.col("amount").cast(pl.Float64), pl.col("customer_id").cast(pl.Int64))
    frame.write_parquet(tmp_path / "batch.parquet")
    parquet = client.post(
        "/score_file", files={"file": ("x.bin", (tmp_path / "batch.parquet").read_bytes(), "application/octet-stream")}
    )
    assert parquet.status_code == 200, parquet.text
    assert (parquet.json()["scored"], parquet.json()["rejected"]) == (2, 1)

    not_parquet = client.post(
        "/score_file", files={"file": ("x.parquet", b"PAR1 this is not parquet", "application/octet-stream")}
    )
    assert not_parquet.status_code == 422 and "cannot read as parquet" in not_parquet.text
    wrong = client.post("/score_file", files={"file": ("x.csv", b"a;b;c\n1;2;3\n", "text/csv")})
    assert wrong.status_code == 422 and "';'-delimited" in wrong.text
    missing = client.post("/score_file", files={"file": ("x.csv", b"transaction_id,amount\n1,2\n", "text/csv")})
    assert missing.status_code == 422 and "lacks column(s) tx_datetime" in missing.text
    assert client.get("/readyz").status_code == 200


def test_a_file_can_be_answered_as_parquet_with_the_same_results(client: TestClient) -> None:
    """``Accept: application/vnd.apache.parquet``: the same results as the JSON answer; rejects in metadata."""
    import io
    import json

    import polars as pl
    import pyarrow.parquet as pq

    rows = [f"pq-{i},2026-06-15T10:{i:02d}:00Z,pq-card-a,{50 + i % 3},{10 + i}.5" for i in range(12)]
    rows.append("pq-bad,2026-06-15T11:00:00Z,pq-card-a,50,-3")  # a negative amount: rejected
    as_json = client.post("/score_file", files={"file": ("a.csv", _csv(rows), "text/csv")})
    assert as_json.status_code == 200, as_json.text
    expected = as_json.json()
    # The same transactions of another new card (new ids: the first ones are known now): the same features.
    again = [r.replace("pq-", "pq2-") for r in rows]
    response = client.post(
        "/score_file",
        files={"file": ("a.csv", _csv(again), "text/csv")},
        headers={"Accept": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.apache.parquet")
    assert (response.headers["x-rows-received"], response.headers["x-rows-scored"]) == ("13", "12")
    assert response.headers["x-rows-rejected"] == "1"
    table = pq.read_table(io.BytesIO(response.content))
    got = pl.from_arrow(table).to_dicts()
    assert [r["transaction_id"] for r in got] == [
        r["transaction_id"].replace("pq-", "pq2-") for r in expected["results"]
    ]
    for mine, theirs in zip(got, expected["results"], strict=True):  # the same card's history: the same answers
        assert (mine["fraud_probability"], mine["decision"]) == (theirs["fraud_probability"], theirs["decision"])
        assert mine["reasons"] == theirs["reasons"]
    # The rejects are in the file's key-value metadata (Polars writes it there, not in the Arrow schema).
    key_values = pq.ParquetFile(io.BytesIO(response.content)).metadata.metadata
    assert key_values[b"fraudops.received"] == b"13"
    errors = json.loads(key_values[b"fraudops.errors"])
    assert [e["index"] for e in errors] == [e["index"] for e in expected["errors"]] == [12]


def test_large_files_run_as_a_task(client: TestClient) -> None:
    import time

    rows = [f"job-{i},2026-06-14T12:{i % 60:02d}:00Z,{i % 7},{i % 5},{i % 90 + 1}" for i in range(500)]
    submitted = client.post("/score_job/submit", files={"file": ("big.csv", _csv(rows), "text/csv")})
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 60
    while (status := client.get("/score_job/status", params={"task_id": task_id}).json())["status"] in {
        "in_progress",
        "pending",
    }:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "completed", status
    result = client.get("/score_job/get", params={"task_id": task_id}).json()
    assert (result["received"], result["scored"], result["rejected"]) == (500, 500, 0)


def test_predictions_are_logged_for_monitoring_with_hashed_customers(client: TestClient) -> None:
    from config.settings import Settings
    from data.privacy import hash_id
    from service.recording import MONITOR_NAME

    settings = Settings()

    assert (
        client.post("/score", json={**VALID, "transaction_id": "mon-1", "customer_id": "cust-secret"}).status_code
        == 200
    )
    logs = list((settings.monitor_path / MONITOR_NAME / "data").glob("data.*.log"))
    text = "".join(p.read_text() for p in logs)
    assert "mon-1" in text and hash_id("cust-secret", settings.hash_salt()) in text
    assert "cust-secret" not in text
