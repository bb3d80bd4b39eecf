"""Bring your own data, end to end: `fraudops demo --data FILE --profile sparkov-extract`, then `bentoml serve`.

Subprocesses with a home of their own (lake, MLflow, Prefect, BentoML store): the CLI runs the whole
lifecycle on a generated file in the Sparkov extract's layout, and the built Bento, served for real,
takes requests in that layout on /score, /score_batch, /score_file and the UI's form.
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
from tests.samples import sparkov_extract_rows, write_sparkov_extract

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("profile-demo")
    # Dates inside the profile's split end (2019-01-21): a month of traffic ending on 20 January 2019.
    rows = sparkov_extract_rows(1500, seed=21, start=datetime(2018, 12, 20))
    rows[40]["is_fraud"] = '1"2020-12-24 16:56:24"'  # one of the extract's malformed labels
    data = write_sparkov_extract(root / "fraud_data.csv", rows)
    env = _own_environment(root)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--data", str(data), "--profile", "sparkov-extract", "--no-serve"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return {"root": root, "env": env, "out": done.stdout, "rows": rows}


def test_the_demo_runs_the_lifecycle_on_the_file_with_its_profile(demo: dict[str, object]) -> None:
    out = str(demo["out"])
    assert "read with the sparkov-extract profile" in out
    assert "read 1,500: accepted 1,499, duplicates 0, rejected 1" in out
    assert "fraud_service:v1" in out
    recorded = (Path(str(demo["root"])) / "home" / "lake" / "profile.yaml").read_text()
    assert "name: sparkov-extract" in recorded


def test_the_served_bento_takes_the_layouts_requests(demo: dict[str, object]) -> None:
    root, env = Path(str(demo["root"])), dict(demo["env"])  # type: ignore[call-overload]
    rows: list[dict[str, str]] = demo["rows"]  # type: ignore[assignment]
    serve_env = {k: env[k] for k in ("FRAUDOPS_HOME", "BENTOML_HOME", "PREFECT_HOME")}
    with served_bento("fraud_service:v1", root, **serve_env) as base:
        schema = httpx.get(f"{base}/docs.json").json()["components"]["schemas"]
        request = next(v for k, v in schema.items() if k.startswith("SparkovExtractTransaction"))
        assert {"trans_num", "trans_date_trans_time", "amt", "dob", "job", "merch_lat"} <= set(request["properties"])
        assert "is_fraud" not in request["properties"]

        sent = {k: v for k, v in rows[-1].items() if k != "is_fraud"} | {"trans_num": "live-1", "amt": 250.0}
        answer = httpx.post(f"{base}/score", json=sent)
        assert answer.status_code == 200, answer.text
        assert answer.json()["transaction_id"] == "live-1" and 0 <= answer.json()["fraud_probability"] <= 1

        bad = httpx.post(f"{base}/score", json=sent | {"trans_num": "live-2", "trans_date_trans_time": "yesterday"})
        assert bad.status_code == 400 and "trans_date_trans_time: cannot parse value 'yesterday'" in bad.text
        extra = httpx.post(f"{base}/score", json=sent | {"trans_num": "live-3", "cc_num": "1"})
        assert extra.status_code == 400 and "cc_num" in extra.text

        batch = httpx.post(
            f"{base}/score_batch",
            json={"transactions": [sent | {"trans_num": "b-1"}, sent | {"trans_num": "b-2", "amt": "x"}]},
        ).json()
        assert (batch["received"], batch["scored"], batch["rejected"]) == (2, 1, 1)
        assert batch["errors"][0]["reason"].startswith("amt:")

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=[c for c in rows[0] if c != "is_fraud"])
        writer.writeheader()
        writer.writerows(
            {k: v for k, v in r.items() if k != "is_fraud"} | {"trans_num": f"f-{i}"} for i, r in enumerate(rows[-5:])
        )
        upload = httpx.post(f"{base}/score_file", files={"file": ("batch.csv", text.getvalue().encode(), "text/csv")})
        assert upload.status_code == 200, upload.text
        assert upload.json()["scored"] == 5

        from gradio_client import Client

        ui = Client(f"{base}/ui/", verbose=False)
        info = ui.view_api(return_format="dict", print_info=False)
        parameters = [p["label"] for p in info["named_endpoints"]["/score_one"]["parameters"]]
        assert parameters[:3] == ["trans_date_trans_time", "amt", "trans_num"]
        values = [sent.get(name) for name in parameters]
        values[parameters.index("trans_num")] = "ui-1"
        summary, _, payload = ui.predict(*values, api_name="/score_one")
        assert payload["transaction_id"] == "ui-1" and "fraud probability" in summary
        examples = json.loads(next((root / "home" / "bentoml").rglob("examples.json")).read_text())
        assert set(examples) == {"recent", "genuine", "fraud"}
        assert examples["fraud"]["trans_num"] == "example-fraud" and "is_fraud" not in examples["fraud"]
