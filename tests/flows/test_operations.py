"""Batch scoring and the monitoring loop on a real lake and registry, in a home of their own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest

if TYPE_CHECKING:
    from model.card import ModelCard

pytestmark = pytest.mark.slow

START = date(2026, 2, 1)
WORLD = {"n_customers": 300, "n_terminals": 600, "seed": 9}


@pytest.fixture(scope="module")
def world(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """100 simulated days in the lake and a champion trained on them."""
    from data.lake import write_parquet_atomic
    from data.simulator import SimulatorConfig, simulate_transactions
    from tests.helpers import use_own_home

    tmp = tmp_path_factory.mktemp("operations")
    with pytest.MonkeyPatch.context() as mp:
        use_own_home(mp, tmp)
        mp.setenv("FRAUDOPS_FEEDBACK_DB", str(tmp / "feedback.sqlite"))
        from flows.pipeline import ingest_flow, promote_flow, train_flow

        frame = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=100, start_date=START, origin=START))
        write_parquet_atomic(frame, tmp / "world.parquet")
        ingest_flow(str(tmp / "world.parquet"))
        trained = train_flow()
        assert promote_flow()["promote"]
        yield {"home": tmp / "home", "tmp": tmp, "rows": frame.height, "version": trained["version"]}


def test_batch_score_writes_every_day_once_and_reruns_are_idempotent(world: dict[str, Any]) -> None:
    from config.settings import Settings
    from flows.scoring import batch_score_flow, read_scored

    first = batch_score_flow()
    assert first["scored"] == world["rows"] and len(first["days"]) == 100
    scored = read_scored(world["home"])
    assert scored.height == world["rows"] and scored["transaction_id"].n_unique() == world["rows"]
    threshold = _champion_card().threshold
    assert (scored["decision"] == "alert").to_list() == (scored["score"] >= threshold).to_list()
    assert first["alerts"] == int((scored["decision"] == "alert").sum()) > 0
    # The alert list artifact carries pseudonyms, never the raw customer ids.
    shown = _artifact_rows("batch-score-alerts")
    assert shown and "customer_id" not in shown[0] and len(shown[0]["customer_hash"]) == 16
    raw = set(scored.filter(pl.col("decision") == "alert")["customer_id"].to_list())
    assert not raw & {row["customer_hash"] for row in shown}
    before = {p: p.stat().st_mtime_ns for p in (Settings().home_dir / "scored").rglob("part.parquet")}
    again = batch_score_flow()
    assert again["scored"] == 0 and again["days"] == []
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rewritten


def test_score_command_scores_an_explicit_range(world: dict[str, Any], tmp_path: Path) -> None:
    from flows import cli

    cli.app(["score", "--from", "2026-03-01", "--to", "2026-03-03"], standalone_mode=False)
    from flows.scoring import read_scored

    days = read_scored(world["home"], date(2026, 3, 1), date(2026, 3, 3))["tx_datetime"].dt.date().unique()
    assert sorted(days.to_list()) == [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def test_monitor_is_quiet_on_a_steady_world_and_retrains_after_drift(world: dict[str, Any]) -> None:
    from data.lake import write_parquet_atomic
    from data.simulator import SimulatorConfig, simulate_transactions
    from flows.monitor import monitor_flow
    from flows.pipeline import ingest_flow

    steady = monitor_flow(retrain="off")
    assert steady["reasons"] == [] and steady["retrain"] == "not needed", steady["reasons"]
    assert steady["drifted_features"] == [] and steady["rejected_share"] == 0.0
    # ~15 frauds a week in this small world: too few to judge AP (the default needs 50).
    assert steady["current_ap"] is None and 0 < steady["labelled_frauds"] < 50

    later = SimulatorConfig.scaled(**WORLD, n_days=14, start_date=START + timedelta(days=100), origin=START)
    drifted = simulate_transactions(later.with_drift(("amount-inflation", "terminal-burst", "card-testing")))
    write_parquet_atomic(drifted, world["tmp"] / "drifted.parquet")
    ingest_flow(str(world["tmp"] / "drifted.parquet"))

    alarmed = monitor_flow(search_budget_s=5)  # no Prefect deployment here: "auto" retrains in process
    assert any(r.startswith("drift: ") for r in alarmed["reasons"]), alarmed
    assert alarmed["retrain"].startswith("retrained in process: v"), alarmed["retrain"]
    assert int(alarmed["retrain"].split(" v")[1].split()[0]) == int(world["version"]) + 1


def test_labels_from_feedback_drive_the_performance_check(world: dict[str, Any]) -> None:
    from config.settings import Settings
    from data.feedback import FeedbackLog
    from flows.monitor import monitor_flow
    from flows.scoring import batch_score_flow, read_scored
    from monitoring.thresholds import MonitorThresholds

    batch_score_flow()  # the newest days, with the current champion
    # Analysts report the 40 highest-scored transactions of the newest week as genuine and 40 of the
    # lowest-scored as fraud: on those labels the champion ranks badly.
    newest = read_scored(world["home"])["tx_datetime"].max().date()  # type: ignore[union-attr]
    week = read_scored(world["home"], newest - timedelta(days=6), newest).sort("score", descending=True)
    flipped = [(t, 0, True) for t in week.head(40)["transaction_id"]]
    flipped += [(t, 1, True) for t in week.tail(40)["transaction_id"]]
    FeedbackLog(Settings().feedback_path).record(flipped, "test")
    out = monitor_flow(retrain="off", thresholds=MonitorThresholds(min_labelled_frauds=10))
    assert out["feedback_labels"] == 80 and out["current_ap"] is not None and out["current_ap"] < 0.3
    assert any(r.startswith("performance: AP") for r in out["reasons"]), out["reasons"]
    assert out["retrain"] == "needed, but retrain='off'"


def _artifact_rows(key: str) -> list[dict[str, Any]]:
    """The newest table artifact under ``key`` (Prefect stores a table as JSON)."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def _champion_card() -> ModelCard:
    from config.settings import Settings
    from model.registry import Registry, load_model_card

    return load_model_card(Registry.connect(Settings()).champion())


def test_inbox_quarantines_a_corrupt_file_and_still_lands_the_next(world: dict[str, Any]) -> None:
    from data.lake import Lake
    from flows.inbox import inbox_dir, ingest_inbox_flow

    inbox = inbox_dir(world["home"])
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "a-corrupt.parquet").write_bytes(b"PAR1 truncated")
    lake = Lake(world["home"])
    newest, rows = lake.newest_day(), lake.read().height
    state = ingest_inbox_flow(
        simulate_next_day=True, customers=300, terminals=600, seed=9, origin=START, return_state=True
    )
    assert state.is_failed()  # red in the UI: one file failed ...
    assert lake.newest_day() == newest + timedelta(days=1) and lake.read().height > rows  # ... the good one landed
    failed = inbox / "failed" / "a-corrupt.parquet"
    assert failed.exists() and "cannot read as parquet" in failed.with_name(failed.name + ".reason.txt").read_text()
    assert [p.name for p in (inbox / "done").iterdir()] and not list(inbox.glob("*.parquet"))


def test_batch_scoring_on_a_dask_local_cluster_equals_the_single_process_path(world: dict[str, Any]) -> None:
    from flows.scoring import batch_score_flow, dask_batch_score, read_scored

    window = (date(2026, 3, 2), date(2026, 3, 20))
    single = batch_score_flow(*window, only_new=False)
    local = read_scored(world["home"], *window).sort("transaction_id")
    spread = dask_batch_score(*window, only_new=False, workers=2)
    assert spread["days"] == single["days"] and spread["scored"] == single["scored"] > 0
    on_dask = read_scored(world["home"], *window).sort("transaction_id")
    assert on_dask.equals(local)
