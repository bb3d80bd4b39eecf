"""In-process costs of one /score and one batch, part by part; writes bench/results/service.{json,md} via bench.harness.

Uses simulated data only (no ../shared). One run simulates a world, trains on its first days, saves a BentoML
model (as ``flows.packaging.save_bento_model`` does) into a temporary ``BENTOML_HOME`` and keeps the later days
as traffic (each transaction once, in time order, so features are computed against real state). It measures,
in this process: the raw booster's ``inplace_predict`` (ceiling) and the scorer's parts per request (validation,
online features, contributions, response, serialisation, monitoring) and per 10k-row batch; levers: in-memory
vs SQLite state, BentoML's default monitor vs ours. Each figure is the median of ``--repeats`` with min and max.

Served latency and throughput (real ``bentoml serve`` under at least 30 s of load per point, two load
generators, same-run ceilings) are bench/bench_latency.py's; batch scoring end to end is bench/bench_batch.py's.

Run: uv run python bench/bench_service.py [--quick] [--repeats 3 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_service.py`

import numpy as np
import polars as pl
import xgboost as xgb
from pydantic import TypeAdapter

from bench.harness import Figure, Stat, measure, parse_sizes, per_item, throughput, write_results
from config.settings import QUIET_ENV
from data.contract import TransactionIn
from data.simulator import SimulatorConfig, simulate_transactions
from features.definitions import ORDER_COLUMNS, FeatureSpec, compute_features, to_epoch_us
from features.stores.memory import MemoryFeatureStore
from model.bundle import Bundle
from model.card import ModelCard
from model.splits import TimeSplit
from model.training import train_model

DEFAULTS = {
    "customers": 5_000,
    "terminals": 10_000,
    "days": 110,
    "serve_days": 50,
    "repeats": 3,
    "batch_rows": 10_000,
    "file_rows": 100_000,
    "profile_rows": 500,
}
QUICK = {
    "customers": 1_000,
    "terminals": 2_000,
    "days": 75,
    "serve_days": 25,
    "repeats": 2,
    "batch_rows": 2_000,
    "file_rows": 10_000,
    "profile_rows": 200,
}
TX_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
MODEL_NAME, MODEL_VERSION = "fraud_detector", "bench"
START = date(2018, 4, 1)


def parse_args() -> argparse.Namespace:
    """Command line; unset sizes come from DEFAULTS, or QUICK with ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parse_sizes(parser, DEFAULTS, QUICK)


def traffic_needed(args: argparse.Namespace) -> int:
    """Unseen transactions the run uses (checked before it starts)."""
    r = args.repeats
    return (r + 1) * 3 * args.profile_rows + r * args.batch_rows


# --- world and model -----------------------------------------------------------------------------------


@dataclass
class World:
    """The trained model, its online state snapshot, and later transactions to send, in time order."""

    spec: FeatureSpec
    booster: xgb.Booster
    card: ModelCard
    state: pl.DataFrame
    pool: pl.DataFrame
    prepared: np.ndarray  # real feature rows (history), for the ceilings
    history_rows: int
    cursor: int = 0

    def take(self, n: int, why: str) -> pl.DataFrame:
        """The next ``n`` unseen transactions (raises when the simulated traffic runs out)."""
        if self.cursor + n > self.pool.height:
            raise RuntimeError(
                f"out of simulated traffic: {why} needs {n:,} more transactions, {self.pool.height - self.cursor:,} "
                "left; raise --serve-days or --customers"
            )
        self.cursor += n
        return self.pool.slice(self.cursor - n, n)

    @property
    def iterations(self) -> int:
        """Trees the service uses (``best_iteration + 1``)."""
        return self.card.best_iteration + 1


def build_world(args: argparse.Namespace) -> World:
    """Simulate, train on the first ``days - serve_days`` days, keep the rest as traffic."""
    config = SimulatorConfig.scaled(args.customers, args.terminals, args.days, seed=1, start_date=START)
    transactions = simulate_transactions(config)
    cut = START + timedelta(days=args.days - args.serve_days)
    history = transactions.filter(pl.col("tx_datetime").dt.date() < cut)
    pool = transactions.filter(pl.col("tx_datetime").dt.date() >= cut).sort(*ORDER_COLUMNS).select(TX_COLUMNS)
    spec = FeatureSpec()
    features = compute_features(history, spec)
    days = features["tx_datetime"].dt.date()
    split = TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days)  # type: ignore[arg-type]
    result = train_model(features, spec, split)
    state = MemoryFeatureStore.from_transactions(history, spec).to_frame()
    card = result.model_card().registered_as(MODEL_VERSION, "bench")
    prepared = features.tail(args.profile_rows).select(spec.feature_names).to_numpy()
    return World(spec, result.booster, card, state, pool, prepared, history.height)


def save_model(world: World) -> str:
    """Save the bundle into the (temporary) BentoML store, as the package flow does."""
    from flows.packaging import save_bento_model

    return save_bento_model(MODEL_NAME, MODEL_VERSION, world.booster, world.card, world.state, labels={})


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Raw transactions as a client sends them (ISO 8601 times)."""
    out = frame.select(TX_COLUMNS).to_dicts()
    for record in out:
        record["tx_datetime"] = record["tx_datetime"].isoformat()
    return out


def write_lines(path: Path, bodies: list[Any]) -> Path:
    """One JSON body per line (the load generator's input)."""
    with path.open("w") as fh:
        for body in bodies:
            fh.write(json.dumps(body) + "\n")
    return path


# --- in-process measurements ---------------------------------------------------------------------------


def profile_inprocess(world: World, args: argparse.Namespace, tmp: Path) -> dict[str, Stat]:
    """Raw booster ceilings and the scorer's parts, per request and per batch, in this process."""
    import pydantic_core
    from bentoml._internal.monitoring.api import _MONITOR_INSTANCES
    from bentoml._internal.monitoring.base import MonitorBase
    from bentoml._internal.monitoring.default import DefaultMonitor

    from features.stores.sqlite import SQLiteFeatureStore
    from service.monitoring import JsonLinesMonitor
    from service.recording import MONITOR_NAME, record_predictions
    from service.scoring import Scorer
    from service.uploads import read_upload

    # The served monitor writes JSON lines under FRAUDOPS_MONITOR_DIR; do the same here, in the temp dir. Any
    # warnings go to a file too, as a server's go to its log.
    served_monitor = JsonLinesMonitor(MONITOR_NAME, log_path=str(tmp / "monitor-local"))
    default_monitor = DefaultMonitor(MONITOR_NAME, log_path=str(tmp / "monitor-default"))
    _MONITOR_INSTANCES[MONITOR_NAME] = served_monitor
    warnings = logging.getLogger(MonitorBase.__module__)
    warnings.addHandler(logging.FileHandler(tmp / "monitor-warnings.log"))
    warnings.propagate = False

    n, r, spec = args.profile_rows, args.repeats, world.spec
    booster = world.booster
    store = SQLiteFeatureStore(tmp / "state-inprocess.sqlite", spec)
    store.load_snapshot(world.state)
    scorer = Scorer(Bundle(booster, world.card, world.state), store=store)  # sets nthread=1, as served
    memory = Scorer(Bundle(booster, world.card, world.state))
    names, trees = spec.feature_names, (0, world.iterations)
    stats: dict[str, Stat] = {}

    def timed(name: str, fn: Callable[[], object], items: int, unit: str = "us/tx") -> None:
        stats[name] = per_item(measure(fn, r), items, unit)

    def dmatrix(x: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(x, feature_names=names, nthread=1)

    def contributions(x: np.ndarray) -> np.ndarray:  # the scorer's booster call
        return booster.predict(dmatrix(x), pred_contribs=True, approx_contribs=True, iteration_range=trees)

    prepared = [world.prepared[i : i + 1] for i in range(len(world.prepared))]
    timed(
        "raw_inplace_predict",
        lambda: [booster.inplace_predict(x, iteration_range=trees) for x in prepared],
        len(prepared),
    )

    # Per request. Stateful parts get unseen transactions on every call (warm-up included).
    def unseen(why: str, size: int, count: int = r + 1) -> list[list[dict[str, Any]]]:
        return [records(world.take(size, why)) for _ in range(count)]

    chunks = [[TransactionIn.model_validate(d) for d in chunk] for chunk in unseen("in-process parts", n)]
    bodies = [tx.model_dump_json().encode() for tx in chunks[0]]
    timed("part_validate", lambda: [TransactionIn.model_validate_json(b) for b in bodies], n)

    rows: list[np.ndarray] = []
    sqlite_chunks, memory_chunks = iter(chunks), iter(chunks)

    def features_sqlite() -> None:
        rows[:] = [scorer.features(tx)[None, :] for tx in next(sqlite_chunks)]

    timed("part_online_features_sqlite", features_sqlite, n)
    timed("part_online_features_memory", lambda: [memory.features(tx) for tx in next(memory_chunks)], n)
    txs = chunks[-1]  # the transactions of ``rows``

    # The SQLite store's parts, on transactions it has not seen: catching up, the window queries, the insert.
    timed("part_sqlite_refresh", lambda: [store.refresh() for _ in range(n)], n)
    split_chunks = [[TransactionIn.model_validate(d) for d in chunk] for chunk in unseen("in-process parts", n)]
    events = [[(tx, to_epoch_us(tx.tx_datetime)) for tx in chunk] for chunk in split_chunks]
    read_chunks, insert_chunks = iter(events), iter(events)

    def sqlite_reads() -> None:
        for tx, t_us in next(read_chunks):
            store.features(tx.transaction_id, tx.customer_id, tx.terminal_id, t_us, tx.amount, tx.tx_datetime)

    def sqlite_inserts() -> None:
        for tx, t_us in next(insert_chunks):
            store.observe(tx.transaction_id, tx.customer_id, tx.terminal_id, t_us, tx.amount)

    timed("part_sqlite_reads", sqlite_reads, n)
    timed("part_sqlite_insert", sqlite_inserts, n)
    timed("part_dmatrix", lambda: [dmatrix(x) for x in rows], n)
    timed("part_predict_dmatrix", lambda: [booster.predict(dmatrix(x), iteration_range=trees) for x in rows], n)
    timed("part_contributions", lambda: [contributions(x) for x in rows], n)
    if scorer.attributions is not None:
        attributions = scorer.attributions
        timed("part_path_attributions", lambda: [attributions.contributions(x[0]) for x in rows], n)
    results: list[Any] = []

    def score_rows() -> None:
        results[:] = [scorer.results([tx], x)[0] for tx, x in zip(txs, rows, strict=True)]

    timed("part_score_rows", score_rows, n)
    timed("part_serialize", lambda: [pydantic_core.to_json(res) for res in results], n)

    def record_each() -> None:  # what every /score does after scoring: one record call per request
        for res, tx in zip(results, txs, strict=True):
            record_predictions([res], [tx], "bench", tmp / "monitor-local")

    timed("part_monitor", record_each, n)
    _MONITOR_INSTANCES[MONITOR_NAME] = default_monitor
    timed("lever_monitor_default", record_each, n)
    _MONITOR_INSTANCES[MONITOR_NAME] = served_monitor

    request_chunks = iter([[json.dumps(d).encode() for d in chunk] for chunk in unseen("in-process parts", n)])

    def requests() -> None:  # what one /score does past HTTP: validate, score, log, encode
        for body in next(request_chunks):
            tx = TransactionIn.model_validate_json(body)
            result = scorer.score_one(TransactionIn.model_construct(**dict(tx)))
            record_predictions([result], [tx], "bench", tmp / "monitor-local")
            pydantic_core.to_json(result)

    timed("inprocess_request", requests, n)

    # One JSON batch, as /score_batch does it, and its parts (stateless ones on the last batch).
    b = args.batch_rows
    batches = iter(unseen("in-process batch", b, r))
    answer: list[Any] = []

    def score_batch() -> None:
        answer[:] = [scorer.score_batch(next(batches))]

    # No warm-up call here: the per-row paths are warm already, and each 10k-row call costs seconds.
    stats["inprocess_score_batch"] = throughput(measure(score_batch, r, warmup=0), b)
    response = answer[0]
    valid = response.transactions
    adapter = TypeAdapter(TransactionIn)
    raw_batch = [tx.model_dump(mode="json") for tx in valid]
    batch_rows = np.vstack([memory.features(tx) for tx in valid])
    timed("batch_part_validate", lambda: [adapter.validate_python(d) for d in raw_batch], b, "us/row")
    timed("batch_part_contributions", lambda: contributions(batch_rows), b, "us/row")
    timed("batch_part_score_rows", lambda: scorer.results(valid, batch_rows), b, "us/row")
    timed("batch_part_serialize", response.to_json, b, "us/row")
    timed(
        "batch_part_monitor",
        lambda: record_predictions(response.results, valid, "bench", tmp / "monitor-local"),
        b,
        "us/row",
    )
    _MONITOR_INSTANCES[MONITOR_NAME] = default_monitor
    timed(
        "lever_batch_monitor_default",
        lambda: record_predictions(response.results, valid, "bench", tmp / "monitor-local"),
        b,
        "us/row",
    )
    _MONITOR_INSTANCES[MONITOR_NAME] = served_monitor
    stats["raw_inplace_predict_batch"] = throughput(
        measure(lambda: booster.inplace_predict(batch_rows, iteration_range=trees), r), b
    )
    parquet = tmp / "read-upload.parquet"
    world.pool.slice(0, args.file_rows).write_parquet(parquet)  # reading needs no state: any rows do
    timed("batch_part_read_parquet", lambda: read_upload(parquet, args.file_rows + 1), args.file_rows, "us/row")
    store.close()
    for name, stat in stats.items():
        print(f"   {name}: {stat.median:,.1f} {stat.unit} (min {stat.min:,.1f}, max {stat.max:,.1f})", flush=True)
    return stats


# --- figures -------------------------------------------------------------------------------------------


PARTS = {
    "part_validate": "TransactionIn.model_validate_json of the request body",
    "part_online_features_sqlite": "Scorer.features, SQLite store (as served): catch up + mirror windows + insert",
    "part_sqlite_refresh": "of which: SQLiteFeatureStore.refresh with nothing new (one read transaction)",
    "part_sqlite_reads": "of which: SQLiteFeatureStore.features (the window queries, on the mirror) alone",
    "part_sqlite_insert": "of which: SQLiteFeatureStore.observe (mirror + one autocommit INSERT) alone",
    "part_dmatrix": "xgb.DMatrix of one row (what asking XGBoost for one row's contributions costs first)",
    "part_predict_dmatrix": "DMatrix + plain predict (no contributions), for comparison",
    "part_contributions": "DMatrix + predict(pred_contribs, approx_contribs): XGBoost's call (/score's until 78bcb35)",
    "part_path_attributions": "PathAttributions.contributions: the same bits, no DMatrix (what /score uses now)",
    "part_score_rows": "Scorer.results for one row: contributions + top reasons as plain data",
    "part_serialize": "pydantic_core.to_json of the answer (the service encodes it itself)",
    "part_monitor": "service._monitor: counters + bentoml.monitor (JsonLinesMonitor), 7 fields, one line",
    "lever_monitor_default": "lever: the same with BentoML's default monitor (a logging call per row)",
}
BATCH_PARTS = {
    "batch_part_validate": "TypeAdapter(TransactionIn).validate_python per record",
    "batch_part_contributions": "one DMatrix + pred_contribs call for the whole batch",
    "batch_part_score_rows": "Scorer.results: contributions + reasons as plain data",
    "batch_part_serialize": "ScoredBatch.to_json (pydantic-core)",
    "batch_part_monitor": "service._monitor for the batch (JsonLinesMonitor: one write)",
    "lever_batch_monitor_default": "lever: the same with BentoML's default monitor (a logging call per row)",
    "batch_part_read_parquet": "service.uploads.read_upload of the Parquet file (to dicts)",
}


def inprocess_figures(local: dict[str, Stat], args: argparse.Namespace) -> list[Figure]:
    """The in-process ceilings and parts."""
    raw = local["raw_inplace_predict"]
    figures = [
        Figure("raw_inplace_predict", raw, note="ceiling: booster alone, 1 thread, one prepared row per call"),
        Figure(
            "inprocess_request",
            local["inprocess_request"],
            "raw_inplace_predict",
            raw,
            note="one /score past HTTP: validate JSON + Scorer.score (SQLite) + monitor + encode, in-process",
        ),
    ]
    for name, note in PARTS.items():
        if name not in local:  # part_path_attributions: a model PathAttributions refuses
            continue
        ceiling = (
            ("raw_inplace_predict", raw)
            if name in ("part_predict_dmatrix", "part_contributions", "part_path_attributions")
            else (None, None)
        )
        figures.append(Figure(name, local[name], *ceiling, note=note))
    figures.append(
        Figure(
            "lever_online_features_memory",
            local["part_online_features_memory"],
            "part_online_features_sqlite",
            local["part_online_features_sqlite"],
            note="lever: in-process state (FRAUDOPS_ONLINE_STORE=memory, one worker only); ceiling column = baseline",
        )
    )
    rows = {"batch_part_read_parquet": args.file_rows}
    figures += [
        Figure(
            name,
            local[name],
            note=f"{note}; {rows.get(name, args.batch_rows):,} rows; online features: part_online_features_sqlite",
        )
        for name, note in BATCH_PARTS.items()
    ]
    return figures


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the run, with the run's facts."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ.update(QUIET_ENV)
        os.environ["BENTOML_HOME"] = str(tmp / "bentoml")  # before anything imports bentoml
        os.environ["FRAUDOPS_MONITOR_DIR"] = str(tmp / "monitor-local")
        print("== world, model", flush=True)
        world = build_world(args)
        needed = traffic_needed(args)
        if needed > world.pool.height:
            raise SystemExit(f"the run needs {needed:,} unseen transactions, the world has {world.pool.height:,}")
        print(f"   {world.history_rows:,} rows of history, {world.state.height:,} in the state snapshot", flush=True)
        print("== in-process", flush=True)
        local = profile_inprocess(world, args, tmp)
    meta = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "transactions_sent": world.cursor,
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - started),
    }
    return {"args": vars(args), "local": local, "meta": meta}


def report(saved: dict[str, Any]) -> Path:
    """Figures from the measurements; writes bench/results/service.{json,md}."""
    args, local = argparse.Namespace(**saved["args"]), saved["local"]
    size = "--quick smoke size" if args.quick else "default size"
    return write_results(
        "service",
        inprocess_figures(local, args),
        extra={**{k: getattr(args, k) for k in DEFAULTS}, "quick": args.quick, **saved["meta"]},
        source_note=f"simulated ({size}: {args.customers:,} customers, {args.terminals:,} terminals, {args.days} days "
        f"from {START}, seed 1; trained on the first {args.days - args.serve_days} days, later days as traffic, each "
        "transaction once); in-process only; no ../shared data",
    )


def main() -> None:
    """Measure and write the results."""
    print(report(measure_all(parse_args())).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
