"""Benchmark the batch endpoints in process; writes bench/results/batch.{json,md} via bench.harness.

Uses simulated data only (no ../shared): the world of bench/bench_service.py (simulate, train on the first
days, keep the later days as unseen traffic in time order). Measured, each repeat on transactions the state
has not seen (the state grows as served), median of the repeats:
- /score_batch with a 10k-row JSON batch, from request bytes to response bytes as the endpoint does it
  (``BatchRequest`` parsed from the body, as BentoML does; score and record; encode), with the SQLite store
  (as deployed) and the in-memory store;
- /score_file with a 100k-row Parquet file: read_upload, score and record, JSON out and Parquet out;
- the parts (validate, features, booster call, encode, monitor), and the booster's thread count (1 vs 2);
- the ceiling beside each: the raw booster (``inplace_predict``, no contributions) on the same rows.
A cProfile of one 100k-row Parquet run (top functions by own time) goes into the results' ``extra``.

Run: uv run python bench/bench_batch.py [--quick] [--repeats 3 --batch-rows 10000 --file-rows 100000 ...]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_batch.py`

import numpy as np
import xgboost as xgb

from bench.bench_service import World, build_world, records
from bench.harness import Figure, Stat, measure, parse_sizes, throughput, write_results
from config.settings import QUIET_ENV

DEFAULTS = {
    "customers": 5_000,
    "terminals": 10_000,
    "days": 175,
    "serve_days": 115,
    "repeats": 3,
    "batch_rows": 10_000,
    "file_rows": 100_000,
}
QUICK = {
    "customers": 1_000,
    "terminals": 2_000,
    "days": 100,
    "serve_days": 50,
    "repeats": 2,
    "batch_rows": 2_000,
    "file_rows": 10_000,
}
GOAL_JSON_ROWS_S, GOAL_PARQUET_ROWS_S = 150_000.0, 500_000.0


def parse_args() -> argparse.Namespace:
    """Command line; unset sizes come from DEFAULTS, or QUICK with ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_sizes(parser, DEFAULTS, QUICK)
    args.profile_rows = 200  # build_world keeps this many prepared rows (unused here)
    return args


def _rate(name: str, seconds: Stat, rows: int, ceiling: Stat | None, note: str) -> Figure:
    value = throughput(seconds, rows)
    if ceiling is None:
        return Figure(name, value, note=note)
    return Figure(name, value, "raw_inplace_predict", ceiling, note=note)


def measure_all(world: World, args: argparse.Namespace, tmp: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Every figure of the page, and the extra facts (profile, sizes)."""
    import os

    os.environ.update(QUIET_ENV)
    from bentoml._internal.monitoring.api import _MONITOR_INSTANCES

    import service.scoring as scoring
    from features.stores.sqlite import SQLiteFeatureStore
    from model.bundle import Bundle
    from service.monitoring import JsonLinesMonitor
    from service.recording import MONITOR_NAME, RecordingScorer, record_batch
    from service.schemas import BatchRequest
    from service.scoring import Scorer
    from service.uploads import read_upload

    _MONITOR_INSTANCES[MONITOR_NAME] = JsonLinesMonitor(MONITOR_NAME, log_path=str(tmp / "monitor"))
    r, b, f = args.repeats, args.batch_rows, args.file_rows
    bundle = Bundle(world.booster, world.card, world.state)
    sqlite_store = SQLiteFeatureStore(tmp / "state.sqlite", world.spec)
    sqlite_store.load_snapshot(world.state)
    served = RecordingScorer(Scorer(bundle, store=sqlite_store), "bench", tmp / "monitor")
    memory = RecordingScorer(Scorer(bundle), "bench", tmp / "monitor")
    gc.collect()
    gc.freeze()  # as the service does once its model and state are loaded
    figures: list[Figure] = []
    extra: dict[str, Any] = {"state_rows": world.state.height, "batch_threads": scoring.BATCH_THREADS}
    trees = (0, world.iterations)

    def ceiling_of(rows: np.ndarray) -> Stat:
        return measure(lambda: world.booster.inplace_predict(rows, iteration_range=trees), r)

    # --- 10k-row JSON, request bytes to response bytes --------------------------------------------------
    def json_bodies(count: int) -> list[bytes]:
        return [json.dumps({"transactions": records(world.take(b, "json batch"))}).encode() for _ in range(count)]

    for name, recording in (("sqlite", served), ("memory", memory)):
        bodies = iter(json_bodies(r))

        def endpoint(recording: RecordingScorer = recording, bodies: Any = bodies) -> bytes:
            request = BatchRequest.model_validate_json(next(bodies))
            return recording.score_batch(request.transactions).to_json()

        figures.append((name, measure(endpoint, r, warmup=0)))  # type: ignore[arg-type]
    json_timings = dict(figures)  # type: ignore[arg-type]
    figures = []

    # Parts, on fresh traffic (stateful parts never see a transaction twice).
    scorer = served.scorer
    part_records = records(world.take(b, "json parts"))
    request_body = json.dumps({"transactions": part_records}).encode()
    parts: dict[str, Stat] = {}
    parts["json_parse"] = measure(lambda: BatchRequest.model_validate_json(request_body), r)
    parts["json_validate"] = measure(lambda: scorer.validate(part_records), r)
    feature_batches = iter([scorer.validate(records(world.take(b, "json feature parts")))[0] for _ in range(r + 1)])
    rows_box: list[np.ndarray] = []

    def features() -> None:
        txs = next(feature_batches)
        rows_box[:] = [scorer.features_of(txs)[0]]

    parts["json_features"] = measure(features, r, warmup=0)
    rows = rows_box[0]
    ids = [f"x{i}" for i in range(len(rows))]
    parts["json_booster"] = measure(lambda: scorer.result_frame(ids, rows), r)
    batch = scorer.score_batch(records(world.take(b, "json encode part")))
    parts["json_encode"] = measure(batch.to_json, r)
    parts["json_monitor"] = measure(lambda: record_batch(batch, "bench", tmp / "monitor"), r)
    json_ceiling = ceiling_of(rows)
    for name, timing in json_timings.items():
        figures.append(
            _rate(
                f"score_batch_json_{b}_{name}",
                timing,
                b,
                throughput(json_ceiling, b),
                f"/score_batch in process, request bytes to response bytes, {name} store; goal >= "
                f"{GOAL_JSON_ROWS_S:,.0f} rows/s",
            )
        )
    notes = {
        "json_parse": "BatchRequest.model_validate_json of the body (what BentoML does before the API)",
        "json_validate": "Scorer.validate: one TypeAdapter(list[TransactionIn]) call, then columns",
        "json_features": "Scorer.features_of, SQLite store: one pass per 4,096-row chunk (features/stores/batch.py)",
        "json_booster": "Scorer.result_frame: one pred_contribs call + reasons, column-wise",
        "json_encode": "ScoredBatch.to_json (Polars write_json of the results)",
        "json_monitor": "record_batch: counters + JsonLinesMonitor, column-wise",
    }
    for name, note in notes.items():
        figures.append(_rate(f"part_{name}", parts[name], b, None, note))
    figures.append(Figure("raw_inplace_predict_json", throughput(json_ceiling, b), note="ceiling, 1 thread"))

    # --- booster threads ---------------------------------------------------------------------------------
    for threads in (1, 2):
        booster = world.booster.copy()
        booster.set_param({"nthread": threads})

        def contributions(booster: xgb.Booster = booster, threads: int = threads) -> None:
            booster.predict(
                xgb.DMatrix(rows, nthread=threads),
                pred_contribs=True,
                approx_contribs=True,
                iteration_range=trees,
                validate_features=False,
            )

        figures.append(
            _rate(f"contributions_{b}_nthread{threads}", measure(contributions, r), b, None, "DMatrix + pred_contribs")
        )

    # --- 100k-row Parquet file ---------------------------------------------------------------------------
    def parquet_files(count: int, why: str) -> list[Path]:
        paths = []
        for i in range(count):
            path = tmp / f"{why.replace(' ', '-')}-{i}.parquet"
            world.take(f, why).write_parquet(path)
            paths.append(path)
        return paths

    last: list[Any] = []
    for out in ("json", "parquet"):
        files = iter(parquet_files(r, f"file {out}"))

        def upload(out: str = out, files: Any = files) -> bytes:
            read = read_upload(next(files), f + 1)
            scored = served.score_frame(read.frame, read.unreadable)
            last[:] = [scored]
            return scored.to_json() if out == "json" else scored.to_parquet()

        figures.append(
            _rate(
                f"score_file_parquet_{f}_{out}_out",
                measure(upload, r, warmup=0),
                f,
                None,
                f"/score_file in process (read_upload + score + record + encode), SQLite store, {out} out; goal >= "
                f"{GOAL_PARQUET_ROWS_S:,.0f} rows/s",
            )
        )
    path = tmp / "file-parquet-0.parquet"  # already scored: reading and validating need no state
    upload_parts: dict[str, Stat] = {"read_upload": measure(lambda: read_upload(path, f + 1), r)}
    frame = read_upload(path, f + 1).frame
    upload_parts["validate"] = measure(lambda: scoring._plainly_valid(frame), r)
    feature_files = iter(parquet_files(r, "file feature parts"))
    file_rows: list[np.ndarray] = []

    def file_features() -> None:
        read = read_upload(next(feature_files), f + 1)
        txs = scoring.Transactions(
            read.frame["transaction_id"].to_list(),
            read.frame["customer_id"].to_list(),
            read.frame["terminal_id"].to_list(),
            read.frame["tx_datetime"].dt.epoch("us").to_numpy(),
            read.frame["amount"].to_numpy(),
        )
        file_rows[:] = [scorer.features_of(txs)[0]]

    upload_parts["features"] = measure(file_features, r, warmup=0)
    big = file_rows[0]
    big_ids = [f"x{i}" for i in range(len(big))]
    upload_parts["booster"] = measure(lambda: scorer.result_frame(big_ids, big), r)
    scored = last[0]
    upload_parts["encode_json"] = measure(scored.to_json, r)
    upload_parts["encode_parquet"] = measure(scored.to_parquet, r)
    upload_parts["monitor"] = measure(lambda: record_batch(scored, "bench", tmp / "monitor"), r)
    file_ceiling = ceiling_of(big)
    for name, timing in upload_parts.items():
        figures.append(_rate(f"file_part_{name}", timing, f, None, f"{f:,}-row Parquet file, SQLite store"))
    figures.append(Figure("raw_inplace_predict_file", throughput(file_ceiling, f), note="ceiling, 1 thread"))

    # One profiled run of the whole file path (top functions by own time).
    profile_file = tmp / "file-profile.parquet"
    world.take(min(f, world.pool.height - world.cursor), "file profile").write_parquet(profile_file)
    profiler = cProfile.Profile()
    profiler.enable()
    read = read_upload(profile_file, f + 1)
    served.score_frame(read.frame, read.unreadable).to_json()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    extra["profile_file_json_tottime"] = text.getvalue().splitlines()[:60]
    sqlite_store.close()
    return figures, extra


def main() -> None:
    """Build the world, measure, write bench/results/batch.{json,md}."""
    args = parse_args()
    world = build_world(args)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        figures, extra = measure_all(world, args, Path(tmp))
    for figure in figures:
        stat = figure.value
        print(f"{figure.name}: {stat.median:,.0f} {stat.unit} (min {stat.min:,.0f}, max {stat.max:,.0f})", flush=True)
    sizes = {k: getattr(args, k) for k in DEFAULTS}
    path = write_results(
        "batch",
        figures,
        {**extra, "sizes": sizes},
        f"simulated, {args.customers:,} customers, {args.terminals:,} terminals, {args.days} days",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
