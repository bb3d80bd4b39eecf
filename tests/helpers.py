"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def use_own_home(mp: pytest.MonkeyPatch, root: Path) -> Path:
    """Point FRAUDOPS_HOME, MLflow (SQLite) and the service's log at ``root`` for a test that needs its own.

    The service log too: every ingest drains it, and the session's other services wrote the shared one.
    """
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp.setenv("FRAUDOPS_HOME", str(root / "home"))
    mp.setenv("FRAUDOPS_FEEDBACK_DB", str(root / "service-log.sqlite"))
    mp.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    return root / "home"


def release_request_metrics() -> None:
    """Unregister the collectors BentoML's HTTP metrics middleware put in the global Prometheus registry.

    The middleware registers them on an app's first request; a second ``FraudService.to_asgi()`` app in
    the same process (another test module's) would then find the names taken and answer every request
    with 500 (``DuplicateTimeseries``). Each module's app releases them when it is done (and before it
    starts, for a module that did not).
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_service_") for name in names):
            REGISTRY.unregister(collector)


@contextmanager
def service_app(model_tag: str) -> Iterator[Any]:
    """The BentoML service as an in-process ASGI app serving ``model_tag`` (built as in service/test_service.py)."""
    import os

    os.environ["FRAUDOPS_MODEL_TAG"] = model_tag
    from _bentoml_impl.tasks.result import Sqlite3Store
    from bentoml._internal.configuration.containers import BentoMLContainer

    from service.service import FraudService

    # `bentoml serve` creates the task result store at start-up (server_on_deployment); in process we do.
    Sqlite3Store.init_db(BentoMLContainer.result_store_file.get())
    release_request_metrics()
    try:
        yield FraudService.to_asgi()
    finally:
        release_request_metrics()
        os.environ.pop("FRAUDOPS_MODEL_TAG", None)
