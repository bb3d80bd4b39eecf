"""Labels as their own stream, end to end: late label files and /feedback labels reach training; maturity, the monitor.

A real lake (Delta tables), real Prefect flows and MLflow on SQLite, in a home of its own. The world ends
yesterday, so the newest week's labels are not known yet (they are a delay old only next week).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

pytestmark = pytest.mark.slow

WORLD = {"n_customers": 300, "n_terminals": 600, "seed": 11}
DAYS = 70


@pytest.fixture(scope="module")
def world(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """70 simulated days ending yesterday, ingested with their labels (dataset events a week after each)."""
    from data.lake import write_parquet_atomic
    from data.simulator import SimulatorConfig, simulate_transactions
    from tests.helpers import use_own_home

    tmp = tmp_path_factory.mktemp("labels")
    start = datetime.now(UTC).date() - timedelta(days=DAYS)
    with pytest.MonkeyPatch.context() as mp:
        use_own_home(mp, tmp)
        mp.setenv("FRAUDOPS_FEEDBACK_DB", str(tmp / "feedback.sqlite"))
        from flows.pipeline import ingest_flow

        frame = simulate_transactions(SimulatorConfig.scaled(**WORLD, n_days=DAYS, start_date=start, origin=start))
        write_parquet_atomic(frame, tmp / "world.parquet")
        ingest_flow(str(tmp / "world.parquet"))
        yield {"home": tmp / "home", "tmp": tmp, "frame": frame, "start": start}


def _run(run_id: str) -> Any:
    import mlflow

    from config.settings import Settings

    return mlflow.MlflowClient(Settings().tracking_uri).get_run(run_id)


def _genuine_rows(frame: pl.DataFrame, first: date, last: date, n: int) -> pl.DataFrame:
    day = pl.col("tx_datetime").dt.date()
    return frame.filter((pl.col("is_fraud") == 0) & day.is_between(first, last)).sort("transaction_id").head(n)


def test_a_late_label_file_changes_the_next_training_set_and_an_old_one_reproduces(world: dict[str, Any]) -> None:
    from flows.pipeline import ingest_flow, train_flow

    first = train_flow(seed=3)
    before = _run(first["run_id"])
    assert "fraudops.labels.chargeback" not in before.data.tags
    dataset_before = int(before.data.tags["fraudops.labels.dataset"])
    snapshot = before.data.tags["fraudops.as_of_version"]

    # Chargebacks for 30 transactions the dataset called genuine, in the training window, arriving now.
    split_start = date.fromisoformat(first["split"]["train_start"])
    late = _genuine_rows(world["frame"], split_start + timedelta(days=10), split_start + timedelta(days=12), 30)
    labels = late.select("transaction_id", is_fraud=pl.lit(1), source=pl.lit("chargeback"))
    labels.write_csv(world["tmp"] / "chargebacks.csv")
    landed = ingest_flow(str(world["tmp"] / "chargebacks.csv"))
    assert landed["kind"] == "labels" and landed["accepted"] == 30 and landed["contradictions"] == 30

    second = train_flow(seed=3)
    after = _run(second["run_id"])
    assert after.data.tags["fraudops.labels.chargeback"] == "30"
    assert int(after.data.tags["fraudops.labels.dataset"]) == dataset_before - 30
    inputs = after.inputs.dataset_inputs
    assert inputs and "chargeback=30" in {t.key: t.value for t in inputs[0].tags}["label_sources"]

    # The first run's snapshot reads its table versions with its labels: the same training set again.
    again = _run(train_flow(seed=3, snapshot=snapshot)["run_id"])
    assert "fraudops.labels.chargeback" not in again.data.tags
    assert again.data.tags["fraudops.labels.dataset"] == str(dataset_before)
    assert again.data.metrics["test_auc"] == pytest.approx(before.data.metrics["test_auc"], abs=1e-12)


def test_feedback_labels_reach_the_next_training_run_through_the_ingest_drain(world: dict[str, Any]) -> None:
    from config.settings import Settings
    from data.feedback import FeedbackLog
    from flows.pipeline import ingest_flow, train_flow

    first = train_flow(seed=4)
    split_start = date.fromisoformat(first["split"]["train_start"])
    told = _genuine_rows(world["frame"], split_start + timedelta(days=14), split_start + timedelta(days=16), 12)
    FeedbackLog(Settings().feedback_path).record([(t, 1, True) for t in told["transaction_id"]], "test")
    # Any ingest drains the service's log; the world file again lands nothing new.
    drained = ingest_flow(str(world["tmp"] / "world.parquet"))
    assert drained["accepted"] == 0 and drained["service_log"]["labels_landed"] == 12
    run = _run(train_flow(seed=4)["run_id"])
    assert run.data.tags["fraudops.labels.feedback"] == "12"


def test_the_monitor_judges_only_known_labels_and_counts_the_pending_ones(world: dict[str, Any]) -> None:
    from flows.monitor import monitor_flow
    from flows.pipeline import promote_flow, train_flow
    from model.policies import PromotionPolicy

    train_flow(seed=5)
    promote_flow(policy=PromotionPolicy(min_ap=0, min_auc=0))  # a small world's model: the floors are not the point
    before = datetime.now(UTC)
    out = monitor_flow(retrain="off", days=7)
    after = datetime.now(UTC)
    # Transactions younger than the delay have no known label yet (their dataset labels come a week after
    # them) and are not mature: pending. The monitor reads "now" between before and after.
    pending = [world["frame"].filter(pl.col("tx_datetime") > t - timedelta(days=7)).height for t in (after, before)]
    assert pending[0] <= out["pending_labels"] <= pending[1] and out["pending_labels"] > 0
    # AP is judged on the window's known labels only: at most the frauds older than the delay.
    window_start = datetime.now(UTC).date() - timedelta(days=7)
    known = world["frame"].filter(
        (pl.col("tx_datetime").dt.date() >= window_start) & (pl.col("tx_datetime") <= after - timedelta(days=7))
    )
    assert out["labelled_frauds"] <= int(known["is_fraud"].sum())


def test_label_snapshot_text_is_checked(tmp_path: Path) -> None:
    from flows.pipeline import LakeSnapshot

    text = "transactions=3,labels=5,as_of=2026-06-01T00:00:00+00:00"
    assert str(LakeSnapshot.parse(text)) == text
    for bad in ("transactions=3,labels=5", "transactions=x,labels=5,as_of=2026-06-01", "labels=1,as_of=now"):
        with pytest.raises(ValueError, match="transactions=N,labels=M,as_of"):
            LakeSnapshot.parse(bad)
