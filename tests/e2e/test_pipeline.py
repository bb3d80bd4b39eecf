"""The pipeline flow on real Prefect (test harness), MLflow on SQLite, GX, and the BentoML store."""

from datetime import date
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_pipeline_registers_a_champion_that_loads_and_scores(pipeline_result: dict[str, Any]) -> None:
    import mlflow
    import numpy as np

    from config.settings import Settings
    from features.definitions import FeatureSpec

    settings = Settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    assert settings.tracking_uri.startswith("sqlite:///") and settings.home_dir.exists()
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(settings.registered_model, "champion")
    assert str(champion.version) == pipeline_result["package"]["version"] == pipeline_result["train"]["version"]
    assert client.get_model_version_by_alias(settings.registered_model, "challenger").version == champion.version
    booster = mlflow.xgboost.load_model(f"models:/{settings.registered_model}@champion")
    scores = booster.inplace_predict(np.zeros((3, len(FeatureSpec().feature_names))))
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    run = client.get_run(champion.run_id)
    assert run.data.metrics["test_auc"] > 0.8
    assert "baseline_test_ap" in run.data.metrics and "test_cost" in run.data.metrics
    assert int(run.data.params["label_delay_days"]) == 7
    assert run.data.params["recipe_max_depth"] == "6" and run.data.tags["fraudops.recipe_source"] == "default recipe"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == {f"plots/{n}.png" for n in ("pr_curve", "score_distribution", "feature_importance")}
    # The version's tags carry the metrics, the data window and the threshold.
    tags = champion.tags
    split = pipeline_result["train"]["split"]
    assert tags["data_window"] == f"{split['train_start']}..{split['test_end']}"
    assert float(tags["threshold"]) == pytest.approx(pipeline_result["train"]["threshold"], abs=1e-6)
    assert float(tags["test_ap"]) == pytest.approx(run.data.metrics["test_ap"], rel=1e-5)
    # The model carries a signature and a real input example.
    info = mlflow.models.get_model_info(f"models:/{settings.registered_model}@champion")
    assert info.signature is not None and len(info.signature.inputs.input_names()) == len(FeatureSpec().feature_names)
    assert info.saved_input_example_info is not None


def test_training_run_names_the_lake_partitions_it_used(pipeline_result: dict[str, Any], home: Path) -> None:
    import hashlib
    import json

    import mlflow

    from config.settings import Settings
    from data.lake import Lake

    client = mlflow.MlflowClient(Settings().tracking_uri)
    run = client.get_run(pipeline_result["train"]["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    split = pipeline_result["train"]["split"]
    lineage = Lake(home).lineage(*(date.fromisoformat(split[k]) for k in ("train_start", "test_end")))
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "lineage.json")).read_text())["tables"]
    # The tables and versions read, and, on the labels table, when the labels were known and their sources.
    assert [{k: t[k] for k in lineage[i]} for i, t in enumerate(logged)] == lineage
    assert [t["table"] for t in lineage] == ["transactions", "labels"]
    assert logged[1]["label_sources"].startswith("dataset=") and "labels_as_of" in logged[1]
    digest = hashlib.sha256(json.dumps(logged, sort_keys=True).encode()).hexdigest()
    assert dataset_input.dataset.digest == digest[:32]
    assert json.loads(dataset_input.dataset.source)["uri"].endswith("lake/transactions")
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["label_sources"] == logged[1]["label_sources"]
    # 90 days landed; labels are known up to the 7-day delay before the newest day: an 83-day window.
    window = date.fromisoformat(lineage[0]["end"]) - date.fromisoformat(lineage[0]["start"])
    assert window.days + 1 == 90 - 7


def test_pipeline_accounts_for_every_row_and_builds_the_bento(pipeline_result: dict[str, Any]) -> None:
    import bentoml

    ingest = pipeline_result["ingest"]
    assert ingest["read"] == ingest["accepted"] + ingest["duplicates"] + ingest["rejected"]
    assert ingest["accepted"] > 10_000 and ingest["rejected"] == 0
    bento = bentoml.bentos.get(pipeline_result["package"]["bento_tag"])
    assert str(bento.tag) == f"fraud_service:v{pipeline_result['package']['version']}"
    model = bentoml.models.get(pipeline_result["package"]["model_tag"])
    assert model.info.labels["mlflow_version"] == pipeline_result["package"]["version"]


def test_reingesting_the_same_file_is_idempotent(
    pipeline_result: dict[str, Any], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data.lake import Lake
    from flows.pipeline import ingest_flow

    # The file alone: a service log of its own (empty), so that what other tests scored is not drained here.
    monkeypatch.setenv("FRAUDOPS_FEEDBACK_DB", str(tmp_path / "no-service-log.sqlite"))
    lake_rows, versions = Lake(home).read().height, Lake(home).versions()
    again = ingest_flow(pipeline_result["ingest"]["source"])
    assert (again["accepted"], again["duplicates"]) == (0, again["read"])
    assert Lake(home).read().height == lake_rows and Lake(home).versions() == versions


def test_rerun_train_and_promote_makes_a_new_version_and_moves_champion(pipeline_result: dict[str, Any]) -> None:
    from flows.pipeline import promote_flow, train_flow

    state = train_flow(seed=7, return_state=True)
    trained = state.result()
    assert int(trained["version"]) == int(pipeline_result["train"]["version"]) + 1
    # Same lake window, spec and feature code: the feature table comes from the persisted cache.
    assert _task_state("build_features_task", state.state_details.flow_run_id) == "Cached"
    assert trained["recipe_source"] == f"champion v{pipeline_result['train']['version']}'s recipe"
    assert trained["recipe"] == pipeline_result["train"]["recipe"]
    decision = promote_flow()
    # Same data and seed: the same quality, so the newer model is promoted (within tolerance).
    assert decision["promote"] and decision["champion_version"] == pipeline_result["train"]["version"]
    assert decision["challenger_ap"] == pytest.approx(decision["champion_ap"], abs=1e-9)
    again = promote_flow()
    assert not again["promote"] and "already is the champion" in again["reasons"][0]


def test_training_refuses_an_empty_window(prefect_harness: None, pipeline_result: dict[str, Any]) -> None:
    from datetime import date

    from flows.pipeline import train_flow

    with pytest.raises(ValueError, match="no transactions"):
        train_flow(start=date(2001, 1, 1), end=date(2001, 1, 31))


def _task_state(task_name: str, flow_run_id: object) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        (run,) = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=task_name)),
        )
    assert run.state is not None
    return run.state.name
