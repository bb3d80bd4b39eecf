"""Offline batch scoring: lake partitions scored by the champion into ``scored/``, with an alert list.

Each scored day is ``scored/date=YYYY-MM-DD/part.parquet`` (transaction_id, tx_datetime, customer_id,
terminal_id, amount, score, decision, model_version) plus ``_source.json`` naming the lake day's files
(a SHA-256 of its Delta file list) and the model version it was scored from. A day is rescored only when
either changed, so the hourly deployment is idempotent and cheap; both files are written atomically (the
manifest last, so a crash in between means "not scored yet"). Features are computed by the same offline code
as training, over the history the windows need before the first day scored; only the scored days' rows get feature
vectors and scores (:func:`score_period`; ``bench/bench_scoring.py`` measures the task end to end).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from config.settings import current_settings
from data.labels import LABEL_COLUMNS
from data.lake import Lake, write_atomic, write_parquet_atomic
from data.privacy import pseudonymise
from features.definitions import FeatureSpec, compute_features

if TYPE_CHECKING:
    import xgboost as xgb

MANIFEST = "_source.json"
ALERTS_SHOWN = 50


def scored_dir(home: Path) -> Path:
    """Where scored partitions live under the home."""
    return home / "scored"


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def write_scored_day(frame: pl.DataFrame, target: Path, manifest: dict[str, Any]) -> None:
    """Write one day's scores, then its manifest (both atomic)."""
    write_parquet_atomic(frame, target / "part.parquet")
    write_atomic(target / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def score_period(
    history: pl.DataFrame,
    days: list[date],
    spec: FeatureSpec,
    booster: xgb.Booster,
    threshold: float,
    version: str,
    labels: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Score the transactions of ``days``; ``history`` also holds the days their windows look back on.

    Terminal risk reads ``labels`` (label events, each from its own label time; ``data.labels``), else
    the history's ``is_fraud`` as dataset labels known a delay after each transaction.

    Features are computed from the first scored day on (earlier rows only feed the windows), then the
    native booster scores the scored days' rows with ``inplace_predict`` on its own threads (all cores
    unless its ``nthread`` is set). Returns one row per scored transaction, in (time, transaction id) order.
    """
    from model.training import matrix, predict

    start = datetime.combine(min(days), time(), UTC)
    features = compute_features(history, spec, start=start, labels=labels).filter(
        pl.col("tx_datetime").dt.date().is_in(days)
    )
    scores = pl.Series("score", predict(booster, matrix(features, spec)), dtype=pl.Float64)
    return features.select("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount").with_columns(
        scores,
        decision=pl.when(scores >= threshold).then(pl.lit("alert")).otherwise(pl.lit("approve")),
        model_version=pl.lit(version),
    )


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def score_days_task(
    lake_root: str, days: list[date], spec: dict[str, Any], model: bytes, threshold: float, version: str
) -> pl.DataFrame:
    """Score some lake days: read them with the history their windows need, then :func:`score_period`.

    Self-contained (paths, a spec dict, the booster's bytes) so it can run on a Dask worker.
    """
    import xgboost as xgb

    feature_spec = FeatureSpec.from_dict(spec)
    lake = Lake(Path(lake_root), feature_spec.label_delay_days)
    history = lake.read_transactions(min(days) - timedelta(days=feature_spec.history_days), max(days))
    labels = history_labels(lake, history)
    booster = xgb.Booster(model_file=bytearray(model))
    return score_period(history, days, feature_spec, booster, threshold, version, labels)


def history_labels(lake: Lake, history: pl.DataFrame) -> pl.DataFrame:
    """The lake's label events of the ``history`` transactions (each applies from its own label time)."""
    ids = history.select("transaction_id").lazy()
    return lake.scan_labels().join(ids, on="transaction_id", how="semi").select(LABEL_COLUMNS).collect()


@flow(name="batch-score", log_prints=True)
def batch_score_flow(
    start: date | None = None, end: date | None = None, only_new: bool = True, chunk_days: int = 7
) -> dict[str, Any]:
    """Score lake days ``start..end`` (default: all) with the champion.

    ``only_new`` skips days already scored from the same partition bytes by the same model version.
    Days are scored in chunks of ``chunk_days`` as separate tasks: with the default thread runner they
    share this process; ``batch_score_flow.with_options(task_runner=DaskTaskRunner(...))`` spreads them
    over a Dask cluster (see :func:`dask_batch_score`). Returns the model version, the days scored,
    the row count and the alert count.
    """
    from model.registry import Registry, load_booster, load_model_card

    settings = current_settings()
    champion = Registry.connect(settings).champion()
    card = load_model_card(champion)
    threshold = card.threshold
    lake, out_dir = Lake(settings.home_dir), scored_dir(settings.home_dir)
    todo = []
    for day, files_sha256 in lake.partition_digests(start, end).items():
        source = {"partition": day, "lake_sha256": files_sha256, "model_version": champion.version}
        if not only_new or _manifest(out_dir / f"date={day}") != source:
            todo.append(source)
    if not todo:
        print(f"nothing to score in {start or 'start'}..{end or 'end'}: every day is scored by v{champion.version}")
        return {"model_version": champion.version, "days": [], "scored": 0, "alerts": 0}
    days = [date.fromisoformat(s["partition"]) for s in todo]
    model = bytes(load_booster(champion).save_raw("ubj"))
    chunks = [days[i : i + chunk_days] for i in range(0, len(days), chunk_days)]
    futures = [
        score_days_task.submit(str(lake.root), chunk, card.spec.to_dict(), model, threshold, champion.version)
        for chunk in chunks
    ]
    scored = pl.concat([f.result() for f in futures]).sort("tx_datetime", "transaction_id")
    for source in todo:
        day = scored.filter(pl.col("tx_datetime").dt.date() == date.fromisoformat(source["partition"]))
        write_scored_day(day, out_dir / f"date={source['partition']}", source)
    alerts = scored.filter(pl.col("decision") == "alert").sort("score", descending=True)
    create_table_artifact(
        key="batch-score-alerts",
        table=pseudonymise(alerts.head(ALERTS_SHOWN), settings.hash_salt())
        .with_columns(pl.col("tx_datetime").cast(pl.String))
        .to_dicts(),
        description=(
            f"Top {min(ALERTS_SHOWN, alerts.height)} of {alerts.height} alerts over {len(days)} day(s) scored by "
            f"v{champion.version} (threshold {threshold:.4f}); full lists in {out_dir}"
        ),
    )
    print(f"scored {scored.height} transactions on {len(days)} day(s) with v{champion.version}: {alerts.height} alerts")
    return {
        "model_version": champion.version,
        "days": [d.isoformat() for d in days],
        "scored": scored.height,
        "alerts": alerts.height,
        "out": str(out_dir),
    }


def read_scored(home: Path, start: date | None = None, end: date | None = None) -> pl.DataFrame:
    """Scored rows of ``start..end`` (all days by default) from ``scored/``."""
    paths = sorted(scored_dir(home).glob("date=*/part.parquet"))
    keep = [
        p
        for p in paths
        if (start is None or date.fromisoformat(p.parent.name[5:]) >= start)
        and (end is None or date.fromisoformat(p.parent.name[5:]) <= end)
    ]
    return pl.concat([pl.read_parquet(p) for p in keep]) if keep else pl.DataFrame()


def dask_batch_score(
    start: date | None = None, end: date | None = None, only_new: bool = True, workers: int = 2, **cluster: Any
) -> dict[str, Any]:
    """:func:`batch_score_flow` with its day chunks on a local Dask cluster (``workers`` processes).

    The same flow on a real cluster: pass ``address=`` of a Dask scheduler instead (docs/operations.md).
    """
    from prefect_dask import DaskTaskRunner

    if "address" in cluster:
        runner = DaskTaskRunner(address=cluster["address"])
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, **cluster})
    return batch_score_flow.with_options(task_runner=runner)(start, end, only_new)
