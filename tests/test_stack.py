"""A real Prefect server and worker on loopback: deploy prefect.yaml, run a deployment, check its output."""

import os
from datetime import date
from pathlib import Path

import pytest

from flows.settings import QUIET_ENV, Settings
from flows.stack import Stack, free_port

pytestmark = pytest.mark.slow


def test_deployed_ingest_runs_on_a_worker_and_lands_the_next_day(tmp_path: Path) -> None:
    from features.lake import Lake

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
