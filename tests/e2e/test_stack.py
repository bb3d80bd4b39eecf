"""A real Prefect server and worker on loopback: deploy prefect.yaml, run a deployment, check its output."""

import os
from datetime import date
from pathlib import Path

import pytest

from config.settings import QUIET_ENV, Settings
from flows.stack import Stack, free_port

pytestmark = pytest.mark.slow


def test_deployed_ingest_runs_on_a_worker_and_lands_the_next_day(tmp_path: Path) -> None:
    from data.lake import Lake

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FRAUDOPS_", "MLFLOW_"))}
    env |= QUIET_ENV | {
        "FRAUDOPS_HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    with Stack(Settings(home=home), env=env) as stack:
        stack.prefect_server(free_port())
        stack.deploy_all()
        listed = stack.prefect("deployment", "ls")
        for name in ("ingest", "train-and-promote", "batch-score", "monitor", "promote", "rollback", "package"):
            assert name in listed, listed
        stack.worker()
        out = stack.prefect(
            "deployment", "run", "ingest-inbox/ingest",
            "--param", "customers=100", "--param", "terminals=200",
            "--watch", "--watch-timeout", "420",
        )  # fmt: skip
        assert "Completed" in out, out
    lake = Lake(home)
    assert lake.newest_day() == date(2026, 4, 1)  # an empty lake starts the demo world on its first day
    assert lake.read().height > 100
    assert [p.name for p in (home / "inbox" / "done").iterdir()] == ["simulated-2026-04-01-1d-100c-seed42.parquet"]
    assert not stack.services  # every child stopped


def test_fraudops_up_serves_the_uis_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import threading
    import time

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FRAUDOPS_", "MLFLOW_"))}
    env |= QUIET_ENV | {
        "FRAUDOPS_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "COLUMNS": "200",
    }
    prefect_port, mlflow_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "flows.cli", "up", "--prefect-port", str(prefect_port)]
    cmd += ["--mlflow-port", str(mlflow_port), "--no-deploy"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any(line.lstrip("│ ").startswith("logs") for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.5)
        output = "".join(lines)
        assert any(line.lstrip("│ ").startswith("logs") for line in lines), output
        assert f"http://127.0.0.1:{prefect_port}" in output and f"http://127.0.0.1:{mlflow_port}" in output
        assert "no Bento yet" in output
        assert httpx.get(f"http://127.0.0.1:{prefect_port}/api/health", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    for port in (prefect_port, mlflow_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
