"""The GX feature gate in front of training, in a home of its own: broken data fails the run, registers nothing."""

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from data.lake import write_parquet_atomic
from data.simulator import SimulatorConfig, simulate_transactions
from tests.helpers import use_own_home

pytestmark = pytest.mark.slow

START = date(2026, 2, 1)
WORLD = {"n_customers": 300, "n_terminals": 600, "seed": 5}


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> Iterator[Path]:
    """A fresh home with its own MLflow SQLite store (the session's registry is left alone)."""
    yield use_own_home(monkeypatch, tmp_path)


def _versions() -> list[str]:
    import mlflow

    from config.settings import Settings

    client = mlflow.MlflowClient(Settings().tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{Settings().registered_model}'"))


def _artifact(key: str, flow_run_id: object) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    return str(artifact.data)


def test_broken_amounts_fail_the_training_run_and_register_nothing(own_home: Path, tmp_path: Path) -> None:
    from flows.pipeline import ingest_flow, promote_flow, train_flow
    from validation.features import FeatureValidationError

    first = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=90, start_date=START, origin=START))
    write_parquet_atomic(first, tmp_path / "first.parquet")
    ingest_flow(str(tmp_path / "first.parquet"))
    trained = train_flow()
    assert promote_flow()["promote"]  # the first model becomes the champion; its card holds the reference

    # Two more weeks arrive from an upstream that switched to cents.
    later = SimulatorConfig.scaled(**WORLD, n_days=14, start_date=START + timedelta(days=90), origin=START)
    cents = simulate_transactions(later).with_columns(pl.col("amount") * 100)
    write_parquet_atomic(cents, tmp_path / "cents.parquet")
    landed = ingest_flow(str(tmp_path / "cents.parquet"))
    assert landed["accepted"] == cents.height  # plausible amounts one by one: only the distribution is wrong

    state = train_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(FeatureValidationError) as failure:
        state.result()
    message = str(failure.value)
    assert "tx_amount: mean" in message and "outside reference bounds" in message
    assert _versions() == [trained["version"]]

    # The failed gate still published its Data Docs, with a page for this run.
    docs = _artifact("data-docs", state.state_details.flow_run_id)
    assert "[Open the Data Docs](file://" in docs and "`features`: **failed**" in docs
    index = own_home / "gx" / "data_docs" / "index.html"
    assert index.is_file() and index.as_uri() in docs

    # An operator who confirms the shift is real can train past the reference bounds.
    again = train_flow(check_reference=False)
    assert _versions() == sorted([trained["version"], again["version"]])


def test_training_saves_its_reference_profile_and_gx_result(own_home: Path, tmp_path: Path) -> None:
    import json

    import mlflow

    from config.settings import Settings
    from flows.pipeline import ingest_flow, train_flow
    from validation.features import ReferenceProfile

    frame = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=90, start_date=START, origin=START))
    write_parquet_atomic(frame, tmp_path / "world.parquet")
    ingest = ingest_flow(str(tmp_path / "world.parquet"), return_state=True)
    assert "`raw_transactions`: passed" in _artifact("data-docs", ingest.state_details.flow_run_id)

    trained = train_flow()
    client = mlflow.MlflowClient(Settings().tracking_uri)
    card = json.loads(Path(client.download_artifacts(trained["run_id"], "model_card.json")).read_text())
    reference = ReferenceProfile.from_dict(card["reference"])
    split = trained["split"]
    # The profile covers the training rows after the 30-day warm-up, and every feature of the model.
    assert reference.names == card["feature_names"]
    assert reference.start is not None and reference.end is not None
    assert reference.start.date() >= START + timedelta(days=30) and reference.end.date() <= date.fromisoformat(
        split["train_end"]
    )
    gate = json.loads(Path(client.download_artifacts(trained["run_id"], "validation/feature_gate.json")).read_text())
    assert gate["success"] and gate["failed"] == 0 and gate["evaluated"] >= 2 * len(card["feature_names"])
    assert client.get_run(trained["run_id"]).data.metrics["feature_gate_success"] == 1.0


def test_scheduled_retrain_searches_around_the_champions_recipe(own_home: Path, tmp_path: Path) -> None:
    import mlflow

    from config.settings import Settings
    from flows.pipeline import ingest_flow, promote_flow, train_flow

    frame = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=90, start_date=START, origin=START))
    write_parquet_atomic(frame, tmp_path / "world.parquet")
    ingest_flow(str(tmp_path / "world.parquet"))
    first = train_flow()
    assert promote_flow()["promote"] and first["recipe_source"] == "default recipe"
    searched = train_flow(search_budget_s=20)
    assert searched["recipe_source"].startswith(f"champion v{first['version']}'s recipe, searched (")
    tags = mlflow.MlflowClient(Settings().tracking_uri).get_run(searched["run_id"]).data.tags
    assert int(tags["fraudops.search_trials"]) >= 1 and tags["fraudops.recipe_source"].startswith("champion v")


def test_unreachable_mlflow_fails_training_clearly_and_registers_nothing(
    own_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import ingest_flow, train_flow
    from model.registry import TrackingUnavailable

    frame = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=60, start_date=START, origin=START))
    write_parquet_atomic(frame, tmp_path / "world.parquet")
    ingest_flow(str(tmp_path / "world.parquet"))
    registry = os.environ["FRAUDOPS_MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    state = train_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(TrackingUnavailable, match=r"MLflow tracking at http://127.0.0.1:9 is unreachable"):
        state.result()
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", registry)  # this test's own registry: still empty
    assert _versions() == []
