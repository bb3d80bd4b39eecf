"""Bring your own data, end to end: `fraudops demo --data FILE --profile NAME`, then `bentoml serve`.

Subprocesses with a home of their own (lake, MLflow, Prefect, BentoML store): the CLI runs the whole
lifecycle on a generated file in the Sparkov extract's layout (day windows) and in ULB's creditcard.csv
layout (two days: hourly windows), and the built Bento, served for real, takes requests in that layout
on /score, /score_batch, /score_file and the UI's form.
"""

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_bento_serve import served_bento
from tests.samples import sparkov_extract_rows, ulb_rows, write_sparkov_extract, write_ulb

pytestmark = pytest.mark.slow

_FOREIGN = ("FRAUDOPS_", "BENTOML_", "PREFECT_", "MLFLOW_")


def _own_environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    home = root / "home"
    return env | {
        "FRAUDOPS_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "BENTOML_DO_NOT_TRACK": "true",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "COLUMNS": "240",  # rich wraps its output at the terminal width
    }


@pytest.fixture(scope="module", params=["sparkov-extract", "ulb-creditcard"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    name = request.param
    root = tmp_path_factory.mktemp(name)
    if name == "sparkov-extract":
        # Dates inside the profile's split end (2019-01-21): a month of traffic ending on 20 January 2019.
        rows = sparkov_extract_rows(1500, seed=21, start=datetime(2018, 12, 20))
        rows[40]["is_fraud"] = '1"2020-12-24 16:56:24"'  # one of the extract's malformed labels
        data = write_sparkov_extract(root / "fraud_data.csv", rows)
        label = "is_fraud"
    else:
        rows = ulb_rows(6000, seed=5, index_column=True)
        rows[40]["Class"] = "2"  # not a label
        data = write_ulb(root / "creditcard.csv", rows)
        label = "Class"
    env = _own_environment(root)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--data", str(data), "--profile", name, "--no-serve"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    requests = [{k: v for k, v in r.items() if k not in (label, "")} for r in rows]
    return {"name": name, "root": root, "env": env, "out": done.stdout, "rows": len(rows), "requests": requests}


def test_the_demo_runs_the_lifecycle_on_the_file_with_its_profile(demo: dict[str, object]) -> None:
    out, n = str(demo["out"]), int(demo["rows"])  # type: ignore[call-overload]
    assert f"read with the {demo['name']} profile" in out
    assert f"read {n:,}: accepted {n - 1:,}, duplicates 0, rejected 1" in out
    assert "fraud_service:v1" in out
    if demo["name"] == "ulb-creditcard":
        assert "(UTC)" in out  # hourly windows
    recorded = (Path(str(demo["root"])) / "home" / "lake" / "profile.yaml").read_text()
    assert f"name: {demo['name']}" in recorded


def test_the_served_bento_takes_the_layouts_requests(demo: dict[str, object]) -> None:
    root, env = Path(str(demo["root"])), dict(demo["env"])  # type: ignore[call-overload]
    requests: list[dict[str, str]] = demo["requests"]  # type: ignore[assignment]
    ulb = demo["name"] == "ulb-creditcard"
    id_column, amount, when = ("", "Amount", "Time") if ulb else ("trans_num", "amt", "trans_date_trans_time")
    serve_env = {k: env[k] for k in ("FRAUDOPS_HOME", "BENTOML_HOME", "PREFECT_HOME")}

    def fresh(i: int, **change: object) -> dict[str, object]:
        """A file row as a new request: a new id (ULB ids derive from the values: a new amount)."""
        row: dict[str, object] = dict(requests[-1 - i])
        row |= {id_column: f"live-{i}"} if id_column else {amount: 1000 + i / 100}
        return row | change

    with served_bento("fraud_service:v1", root, **serve_env) as base:
        schema = httpx.get(f"{base}/docs.json").json()["components"]["schemas"]
        title = "UlbCreditcardTransaction" if ulb else "SparkovExtractTransaction"
        request = next(v for k, v in schema.items() if k.startswith(title))
        expected = {"Time", "V1", "V28", "Amount"} if ulb else {"trans_num", "trans_date_trans_time", "amt", "dob"}
        assert expected <= set(request["properties"])
        assert not {"Class", "is_fraud", "transaction_id"} & set(request["properties"])

        answer = httpx.post(f"{base}/score", json=fresh(1))
        assert answer.status_code == 200, answer.text
        assert 0 <= answer.json()["fraud_probability"] <= 1
        if id_column:
            assert answer.json()["transaction_id"] == "live-1"

        bad = httpx.post(f"{base}/score", json=fresh(2, **{when: "yesterday"}))
        assert bad.status_code == 400 and when in bad.text
        extra = httpx.post(f"{base}/score", json=fresh(3, cc_num="1"))
        assert extra.status_code == 400 and "cc_num" in extra.text

        batch = httpx.post(f"{base}/score_batch", json={"transactions": [fresh(4), fresh(5, **{amount: "x"})]}).json()
        assert (batch["received"], batch["scored"], batch["rejected"]) == (2, 1, 1)
        assert batch["errors"][0]["reason"].startswith(f"{amount}:")

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(requests[0]))
        writer.writeheader()
        for i in range(6, 11):
            writer.writerow(fresh(i))
        upload = httpx.post(f"{base}/score_file", files={"file": ("batch.csv", text.getvalue().encode(), "text/csv")})
        assert upload.status_code == 200, upload.text
        assert upload.json()["scored"] == 5

        from gradio_client import Client

        ui = Client(f"{base}/ui/", verbose=False)
        info = ui.view_api(return_format="dict", print_info=False)
        parameters = [p["label"] for p in info["named_endpoints"]["/score_one"]["parameters"]]
        assert set(parameters) == set(request["properties"])
        sent = fresh(11)
        summary, _, payload = ui.predict(*[sent.get(name) for name in parameters], api_name="/score_one")
        assert "fraud probability" in summary and 0 <= payload["fraud_probability"] <= 1
        examples = json.loads(next((root / "home" / "bentoml").rglob("examples.json")).read_text())
        assert set(examples) == {"recent", "genuine", "fraud"}
        assert set(request["required"]) <= set(examples["fraud"]) <= set(request["properties"])
        assert not {"city", "state"} & set(examples["fraud"])  # kept columns (names, places) are not shown
