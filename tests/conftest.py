"""Shared fixtures. State (BentoML store, Prefect, MLflow, lake) lives in one temp dir per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

# Before anything imports bentoml / prefect / mlflow: isolate every store in a temp dir.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="fraudops-tests-"))
for _key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "FRAUDOPS_MODEL_TAG"):
    os.environ.pop(_key, None)
os.environ["FRAUDOPS_HOME"] = str(_SESSION_DIR / "home")
os.environ["BENTOML_HOME"] = str(_SESSION_DIR / "bentoml")
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")

from config.settings import QUIET_ENV  # noqa: E402

os.environ.update(QUIET_ENV)

import polars as pl  # noqa: E402
import pytest  # noqa: E402

from data.simulator import SimulatorConfig, simulate_transactions  # noqa: E402

PIPELINE_SIZE = {"customers": 500, "terminals": 1_000, "days": 90, "start": date(2026, 4, 1), "seed": 7}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def small_transactions() -> pl.DataFrame:
    """About 20k simulated transactions over 60 days (with frauds of all three scenarios)."""
    return simulate_transactions(SimulatorConfig.scaled(200, 400, 60, seed=11, start_date=date(2026, 1, 1)))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness (temporary server + database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def pipeline_result(prefect_harness: None) -> dict[str, Any]:
    """The full pipeline flow, run once: lake, MLflow registry, BentoML model and Bento in the session dir."""
    from flows.pipeline import pipeline_flow

    return pipeline_flow(**PIPELINE_SIZE)


@pytest.fixture(scope="session")
def home() -> Path:
    return Path(os.environ["FRAUDOPS_HOME"])
