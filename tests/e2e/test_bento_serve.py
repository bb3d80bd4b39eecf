"""The built Bento under a real `bentoml serve` subprocess on a free loopback port."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_bento(bento: str, cwd: Path, **env: str) -> Iterator[str]:
    """`bentoml serve` of ``bento`` on a free loopback port, from ``cwd``; yields the base URL once ready."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("FRAUDOPS_MODEL_TAG", "FRAUDOPS_API_KEY")}
    cmd = [sys.executable, "-m", "bentoml", "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
    log = cwd / "bentoml-serve.log"  # a file, not a pipe: a long load would fill a pipe and stall the server
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=environment | env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "bentoml serve did not become ready"
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_bentoml_serve_scores_over_http(pipeline_result: dict[str, Any], tmp_path: Path) -> None:
    monitor_dir = tmp_path / "monitoring"
    # Run from an empty dir: the Bento must not need the source tree.
    with served_bento(pipeline_result["package"]["bento_tag"], tmp_path, FRAUDOPS_MONITOR_DIR=str(monitor_dir)) as base:
        tx = {
            "transaction_id": "http-1",
            "tx_datetime": "2026-06-01T10:00:00Z",
            "customer_id": "3",
            "terminal_id": "9",
            "amount": 42.0,
        }
        response = httpx.post(f"{base}/score", json=tx, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == pipeline_result["package"]["version"]
        bad = httpx.post(f"{base}/score", json={**tx, "amount": -1}, timeout=10)
        assert bad.status_code == 400 and "amount" in bad.text
        assert httpx.get(f"{base}/ui/", timeout=10).status_code == 200
        # The Gradio UI's callbacks reach the loaded scorer in the served process.
        from gradio_client import Client

        ui = Client(f"{base}/ui/", verbose=False)
        summary, _, payload = ui.predict("ui-1", "2026-06-01T10:05:00Z", "3", "9", 42.0, api_name="/score_one")
        assert payload["transaction_id"] == "ui-1" and payload["decision"] in {"alert", "approve"}
        assert f"model v{pipeline_result['package']['version']}" in summary
        # /metrics carries every metric the provisioned Grafana dashboard plots (with the served worker's data).
        from tests.flows.test_deploy_files import dashboard_metrics

        exposed = httpx.get(f"{base}/metrics", timeout=10).text
        for name in dashboard_metrics():
            assert f"\n{name}" in exposed, name
        assert 'fraud_decisions_total{decision="' in exposed
        # The served monitor (service.monitoring.JsonLinesMonitor) logged the prediction, customer hashed.
        logged = [json.loads(line) for f in monitor_dir.glob("fraud_predictions/data/data.*.log") for line in f.open()]
        mine = [r for r in logged if r["transaction_id"] == "http-1"]
        assert len(mine) == 1 and mine[0]["customer_hash"] != "3" and mine[0]["decision"] in {"alert", "approve"}
        assert {"timestamp", "request_id", "fraud_probability", "model_version"} <= set(mine[0])
        # GET /model answers without a body.
        assert httpx.get(f"{base}/model", timeout=10).json()["model_version"] == pipeline_result["package"]["version"]


def test_schemathesis_finds_no_contract_failure_against_the_served_bento(
    pipeline_result: dict[str, Any], tmp_path: Any
) -> None:
    """`st run --checks all` (coverage, fuzzing and stateful phases) against `bentoml serve`: the document is true.

    schemathesis.toml at the repository root holds the two allowances JSON Schema cannot express, with reasons.
    """
    root = Path(__file__).resolve().parents[2]
    env = {"FRAUDOPS_MONITOR_DIR": str(tmp_path / "monitoring"), "FRAUDOPS_STATE_DIR": str(tmp_path / "state")}
    with served_bento(pipeline_result["package"]["bento_tag"], tmp_path, **env) as base:
        st = [str(Path(sys.executable).with_name("st")), "--config-file", str(root / "schemathesis.toml"), "run"]
        st += [f"{base}/docs.json", "--checks", "all", "--max-examples", "25", "--seed", "1", "--no-color"]
        run = subprocess.run(st, cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Stateful" in summary and "passed" in summary, summary


def test_fraudops_serve_workers_starts_that_many_workers_sharing_the_state(
    pipeline_result: dict[str, Any], tmp_path: Path
) -> None:
    """`fraudops serve --workers 2`: two worker processes; a transaction scored by either is in both's windows."""
    import psutil

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("FRAUDOPS_MODEL_TAG", "FRAUDOPS_API_KEY")}
    env |= {"FRAUDOPS_STATE_DB": str(tmp_path / "state.sqlite"), "FRAUDOPS_MONITOR_DIR": str(tmp_path / "monitoring")}
    cmd = [sys.executable, "-m", "flows.cli", "serve", "--bento", pipeline_result["package"]["bento_tag"]]
    cmd += ["--port", str(port), "--workers", "2"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while "serving" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        assert "(2 workers)" in log.read_text()
        tree = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in tree if "_bentoml_impl.worker.service" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in tree]
        # Same customer, one second apart, 40 times over keep-alive and fresh connections: whichever worker
        # answers, each transaction sees every earlier one (the 1-day window counts them all).
        counts = []
        for i in range(40):
            tx = {
                "transaction_id": f"workers-{i}",
                "tx_datetime": f"2026-06-01T10:00:{i:02d}Z",
                "customer_id": "workers-customer",
                "terminal_id": "9",
                "amount": 10.0,
            }
            with httpx.Client() as client:  # a new connection each time: the kernel spreads them over the workers
                response = client.post(f"{base}/score", json=tx, timeout=10)
            assert response.status_code == 200, response.text
        model = httpx.get(f"{base}/model", timeout=10).json()
        assert "customer_id_nb_tx_1day_window" in model["features"]
        probe = {**tx, "transaction_id": "workers-probe", "tx_datetime": "2026-06-01T10:00:59Z"}
        for _ in range(6):  # several answers, from both workers in all likelihood: all agree
            with httpx.Client() as client:
                counts.append(client.post(f"{base}/score", json=probe, timeout=10).json()["fraud_probability"])
        assert len(set(counts)) == 1
    finally:
        os.killpg(proc.pid, 2)  # Ctrl-C, as a user stops it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
