"""Served latency and throughput under sustained load, beside same-run ceilings, from two load generators.

Writes bench/results/latency.{json,md} via bench.harness. Simulated data only (no ../shared): a world is
simulated, a model trained on its first days and saved into a temporary ``BENTOML_HOME`` (as
bench/bench_service.py does); its later days are the request traffic, each transaction sent once, in time
order, so ``/score`` computes features against real, growing state (SQLite store, as shipped).

Points (the "Serving speed" issue's goals; every point is at least 30 s of load after a warm-up):
- ``c1_w1``: concurrency 1, one worker, ``--seconds-c1`` (default 60 s);
- ``c32_w2``: concurrency 32, two workers, ``--seconds-c32`` (default 30 s).
At each point three servers run side by side: ours (``bentoml serve service.service:FraudService``), the
minimal BentoML service (bench/minimal_service.py ``/predict_async``: the same request validation, an
``async`` API, ``inplace_predict`` on one prepared row: the fair ceiling for an async ``/score``) and the bare
Starlette app (bench/bare_app.py under uvicorn: the web-stack ceiling), each with the point's worker count.
Each is loaded by our generator (bench/loadgen.py, aiohttp, keep-alive, its own process) and by Debian's wrk
(``bench/wrk_post.lua``; ``make bench`` installs it through bench/setup.sh), one target at a time, in the order
generator x (bare, minimal, ours). Every latency point reports p50, p90, p99, p99.9 and max, requests per
second and errors. The load generator shares the 2 cores with the servers.

Batch endpoints, on ours with one worker: ``/score_batch`` with a 10k-row JSON body and ``/score_file`` with a
100k-row Parquet upload (``--batch-repeats`` requests each, one at a time), in rows/s, beside the raw booster
(``inplace_predict``, one thread, in this process) on as many rows.

Run: uv run python bench/bench_latency.py [--quick] [--seconds-c1 60] [--seconds-c32 30] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_latency.py`

import numpy as np

from bench.bench_service import START, World, build_world, records, save_model, write_lines
from bench.harness import ROOT, Figure, Stat, measure, parse_sizes, throughput, write_results
from bench.loadgen import run_load
from bench.servers import base_env, bentoml_cmd, bentoml_config, serving
from config.settings import QUIET_ENV

DEFAULTS = {
    "customers": 5_000,
    "terminals": 10_000,
    "days": 140,
    "serve_days": 80,
    "seconds_c1": 60,
    "seconds_c32": 30,
    "warmup_seconds": 5,
    "batch_rows": 10_000,
    "file_rows": 100_000,
    "batch_repeats": 3,
}
QUICK = {**DEFAULTS, "seconds_c1": 30, "batch_repeats": 2}  # a latency point never runs shorter than 30 s
MIN_SECONDS = 30
WRK_LUA = ROOT / "bench" / "wrk_post.lua"
TARGETS = ("bare", "minimal", "ours")
GENERATORS = ("loadgen", "wrk")
#: Highest request rates to size each run's unseen bodies for (a run that sends them all is flagged).
MAX_RPS = {1: 1_000, 32: 2_500}
CEILING_RPS = 6_000

# Goals from the "Serving speed" issue: reported beside the figures, never asserted.
GOAL_C1 = {"p99_ms": 5.0, "p999_ms": 20.0, "max_ms": 50.0}
GOAL_C32_RPS, GOAL_C32_SHARE, GOAL_C32_P99_MS = 1_200.0, 0.95, 100.0
GOAL_JSON_ROWS_S, GOAL_PARQUET_ROWS_S = 150_000.0, 500_000.0
LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def parse_args() -> argparse.Namespace:
    """Command line; unset sizes come from DEFAULTS, or QUICK with ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=Path, help="keep the servers' logs here (default: a temporary directory)")
    args = parse_sizes(parser, DEFAULTS, QUICK)
    if min(args.seconds_c1, args.seconds_c32) < MIN_SECONDS:
        parser.error(f"a latency point runs at least {MIN_SECONDS} s")
    return args


def points(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(name, workers, concurrency, seconds) of each latency point."""
    return [("c1_w1", 1, 1, args.seconds_c1), ("c32_w2", 2, 32, args.seconds_c32)]


# --- load ------------------------------------------------------------------------------------------------


def with_loadgen(url: str, bodies: Path, concurrency: int, seconds: float, warmup: int) -> dict[str, Any]:
    """One bench/loadgen.py phase of ``seconds`` after ``warmup`` requests (one body per request)."""
    spec = {
        "targets": [{"name": "t", "url": url, "kind": "json", "bodies": str(bodies)}],
        "concurrency": concurrency,
        "warmup": warmup,
        "repeats": 1,
        "requests": 10**9,  # the phase ends at its time limit (or when the bodies run out: flagged)
        "max_seconds": seconds,
        "timeout": 30,
    }
    result = run_load(spec, wall_timeout_s=seconds * 3 + 300)["targets"]["t"]
    phase = result["repeats"][0]
    return {
        **{k: phase[k] for k in LATENCY_KEYS},
        "rps": phase["rps"],
        "requests": phase["requests"],
        "errors": phase["errors"],
        "error_sample": phase["error_sample"],
        "seconds": phase["seconds"],
        "ran_out": phase["stopped_by"] == "count",
    }


def with_wrk(url: str, bodies: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """One wrk run (1 thread, ``concurrency`` connections) posting the lines of ``bodies``."""
    env = {**os.environ, "BODIES": str(bodies), "THREADS": "1"}
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "-s", str(WRK_LUA), url]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds * 3 + 120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    ok = raw["requests"] - raw["errors_status"]
    return {
        **{k: raw[k] for k in LATENCY_KEYS},
        "rps": ok / raw["seconds"],
        "requests": raw["requests"],
        "errors": errors,
        "error_sample": None if not errors else {k: v for k, v in raw.items() if k.startswith("errors_") and v},
        "seconds": raw["seconds"],
        "ran_out": raw["wrapped"] > 0,
    }


def bodies_for(world: World, tmp: Path, name: str, concurrency: int, seconds: float) -> Path:
    """Unseen transactions for one run at up to :data:`MAX_RPS` requests a second."""
    count = int(MAX_RPS[concurrency] * seconds)
    return write_lines(tmp / f"{name}.jsonl", records(world.take(count, name)))


def run_point(
    world: World, tag: str, args: argparse.Namespace, tmp: Path, logs: Path, point: tuple[str, int, int, int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Start the three servers with the point's workers; load each with both generators; results[gen][target]."""
    name, workers, concurrency, seconds = point
    env = base_env(tmp)
    ceiling_env = {
        **env,
        "BENCH_BOOSTER": str(tmp / "booster.ubj"),
        "BENCH_ROW": str(tmp / "row.npy"),
        "BENCH_ITERATIONS": str(world.iterations),
    }
    ours_env = {
        **env,
        "FRAUDOPS_MODEL_TAG": tag,
        "FRAUDOPS_ONLINE_STORE": "sqlite",
        "FRAUDOPS_WORKERS": str(workers),
        "FRAUDOPS_STATE_DB": str(tmp / f"state-{name}.sqlite"),
        "FRAUDOPS_MONITOR_DIR": str(tmp / f"monitoring-{name}"),
        "FRAUDOPS_FEEDBACK_DB": str(tmp / f"feedback-{name}.sqlite"),
        # The batch endpoints run on the first point's server: a slow 100k-row file must not time out.
        "BENTOML_CONFIG": str(bentoml_config(tmp, "fraud_service", workers, timeout_s=600)),
    }
    warm = int(MAX_RPS[concurrency] * args.warmup_seconds)
    # The ceilings are faster than ours and keep no state: plenty of (any) bodies, sent once each by loadgen.
    ceiling = write_lines(tmp / f"ceiling-{name}.jsonl", records(world.pool.slice(0, CEILING_RPS * seconds)))
    out: dict[str, dict[str, dict[str, Any]]] = {gen: {} for gen in GENERATORS}
    print(f"== {name}: {workers} worker(s), concurrency {concurrency}, {seconds} s per run", flush=True)
    with contextlib.ExitStack() as stack:
        bare_cmd = [sys.executable, "-m", "bench.bare_app", "--workers", str(workers)]
        minimal_config = bentoml_config(tmp, "minimal_service", workers)
        urls = {
            "bare": stack.enter_context(
                serving(f"bare-{name}", bare_cmd, ceiling_env, logs, "Application startup complete", workers)
            )[0]
            + "/predict",
            "minimal": stack.enter_context(
                serving(
                    f"minimal-{name}",
                    bentoml_cmd("bench.minimal_service:MinimalService"),
                    {**ceiling_env, "BENTOML_CONFIG": str(minimal_config)},
                    logs,
                    "minimal_service initialized",
                    workers,
                )
            )[0]
            + "/predict_async",
        }
        ours_base, _ = stack.enter_context(
            serving(
                f"ours-{name}",
                bentoml_cmd("service.service:FraudService"),
                ours_env,
                logs,
                "Service fraud_service initialized",
                workers,
            )
        )
        urls["ours"] = ours_base + "/score"
        for gen in GENERATORS:
            for target in TARGETS:
                fresh = target == "ours"  # the ceilings keep no state: they may all get the same bodies
                warm_bodies = (
                    bodies_for(world, tmp, f"warm-{gen}-{name}", concurrency, args.warmup_seconds) if fresh else ceiling
                )
                run_bodies = bodies_for(world, tmp, f"{gen}-{name}", concurrency, seconds) if fresh else ceiling
                with_loadgen(urls[target], warm_bodies, concurrency, args.warmup_seconds, warmup=min(warm, 200))
                if gen == "loadgen":
                    result = with_loadgen(urls[target], run_bodies, concurrency, seconds, warmup=0)
                else:
                    result = with_wrk(urls[target], run_bodies, concurrency, seconds)
                out[gen][target] = result
                print(
                    f"   {gen:7} {target:7} "
                    + " ".join(f"{k.removesuffix('_ms')} {result[k]:.2f}" for k in LATENCY_KEYS)
                    + f" ms  {result['rps']:.0f} req/s  errors {result['errors']}"
                    + ("  RAN OUT OF BODIES" if result["ran_out"] else ""),
                    flush=True,
                )
        if name == "c1_w1":
            out["batch"] = batch_loads(ours_base, world, tmp, args)
    return out


def batch_loads(url: str, world: World, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``/score_batch`` (JSON) and ``/score_file`` (Parquet), one request at a time, after a small one."""
    spec: dict[str, Any] = {"warmup": 1, "count_field": "scored", "max_seconds": 600, "timeout": 600}
    spec |= {"concurrency": 1, "repeats": args.batch_repeats, "requests": 1}
    json_path = tmp / "batches.jsonl"
    sizes = [100] + [args.batch_rows] * args.batch_repeats
    write_lines(json_path, [{"transactions": records(world.take(n, "/score_batch"))} for n in sizes])
    files = []
    for i, n in enumerate([1_000] + [args.file_rows] * args.batch_repeats):
        files.append(tmp / f"upload-{i}.parquet")
        world.take(n, "/score_file").write_parquet(files[-1])
    out = {}
    for name, target, rows in (
        ("score_batch_json", {"url": f"{url}/score_batch", "kind": "json", "bodies": str(json_path)}, args.batch_rows),
        ("score_file_parquet", {"url": f"{url}/score_file", "kind": "file", "bodies": [str(f) for f in files]}, 0),
    ):
        rows = rows or args.file_rows
        result = run_load({**spec, "targets": [{"name": name, **target}]}, wall_timeout_s=3_600)["targets"][name]
        phases = result["repeats"]
        failed = [ph for ph in phases if not ph["ok"]]
        rates = [rows / (ph["p50_ms"] / 1e3) for ph in phases if ph["ok"]]
        out[name] = {
            "rows_per_s": rates,
            "scored": [ph["field_sum"] for ph in phases],
            "failed": len(failed),
            "error_sample": next((ph["error_sample"] for ph in failed), None),
            "rows": rows,
        }
        print(f"   {name}: {[round(r) for r in rates]} rows/s, scored {out[name]['scored']}", flush=True)
    return out


# --- figures ---------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """How a goal reads in the table."""
    return "met" if ok else "MISSED"


def point_figures(name: str, runs: dict[str, dict[str, Any]], goals: dict[str, str], seconds: int) -> list[Figure]:
    """Ours beside the minimal BentoML service, the minimal beside the bare app: every percentile, req/s, errors."""
    figures = []
    for gen in GENERATORS:
        ours, minimal, bare = runs[gen]["ours"], runs[gen]["minimal"], runs[gen]["bare"]
        key = f"{name}_{gen}"
        for k in (*LATENCY_KEYS, "rps"):
            unit = "req/s" if k == "rps" else "ms"
            label = k.removesuffix("_ms")
            note = ""
            if name == "c1_w1" and k in GOAL_C1:
                ok = ours[k] <= GOAL_C1[k]
                goals[f"/score {label} {key} <= {GOAL_C1[k]:g} ms"] = f"{verdict(ok)} ({ours[k]:.2f})"
                note = f"goal <= {GOAL_C1[k]:g} ms: {verdict(ok)}"
            if name == "c32_w2" and k == "p99_ms":
                ok = ours[k] <= GOAL_C32_P99_MS
                goals[f"/score p99 {key} <= {GOAL_C32_P99_MS:g} ms"] = f"{verdict(ok)} ({ours[k]:.1f})"
                note = f"goal <= {GOAL_C32_P99_MS:g} ms: {verdict(ok)}"
            if name == "c32_w2" and k == "rps":
                share = ours["rps"] / minimal["rps"]
                ok = ours["rps"] >= GOAL_C32_RPS and ours["errors"] == 0 and share >= GOAL_C32_SHARE
                goals[f"/score req/s {key} >= {GOAL_C32_RPS:g}, 0 errors, >= {GOAL_C32_SHARE}x minimal"] = (
                    f"{verdict(ok)} ({ours['rps']:.0f} req/s, {ours['errors']} errors, {share:.2f}x)"
                )
                note = f"goal >= {GOAL_C32_RPS:,.0f} req/s, 0 errors, >= {GOAL_C32_SHARE}x minimal: {verdict(ok)}"
            if k == "p50_ms":
                note = f"{ours['requests']:,} requests in {ours['seconds']:.0f} s" + (f"; {note}" if note else "")
            figures.append(
                Figure(
                    f"score_{label}_{key}",
                    Stat.of([ours[k]], unit),
                    f"minimal_{label}_{key}",
                    Stat.of([minimal[k]], unit),
                    note=note,
                )
            )
        figures.append(
            Figure(
                f"score_errors_{key}",
                Stat.of([ours["errors"]], "errors"),
                note="non-2xx + transport errors"
                + (f"; sample {ours['error_sample']}"[:120] if ours["errors"] else ""),
            )
        )
        for k in (*LATENCY_KEYS, "rps"):
            unit = "req/s" if k == "rps" else "ms"
            label = k.removesuffix("_ms")
            figures.append(
                Figure(
                    f"minimal_{label}_{key}",
                    Stat.of([minimal[k]], unit),
                    f"bare_{label}_{key}",
                    Stat.of([bare[k]], unit),
                    note="minimal BentoML service, async /predict_async; ceiling column: the bare Starlette app"
                    if k == "p50_ms"
                    else "",
                )
            )
    return figures


def batch_figures(batch: dict[str, Any], raw: dict[str, Stat], goals: dict[str, str]) -> list[Figure]:
    """Batch endpoints in rows/s beside the raw booster on as many rows."""
    figures = []
    for name, goal, ceiling in (
        ("score_batch_json", GOAL_JSON_ROWS_S, "raw_inplace_predict_batch"),
        ("score_file_parquet", GOAL_PARQUET_ROWS_S, "raw_inplace_predict_file"),
    ):
        done = batch[name]
        if not done["rows_per_s"]:
            goals[f"{name} >= {goal:g} rows/s"] = f"MISSED (every request failed: {done['error_sample']})"
            continue
        stat = Stat.of(done["rows_per_s"], "rows/s")
        ok = stat.median >= goal
        goals[f"{name} >= {goal:g} rows/s"] = f"{verdict(ok)} ({stat.median:,.0f})"
        note = f"{done['rows']:,} rows per request; rows scored {done['scored']}; goal >= {goal:,.0f}: {verdict(ok)}"
        figures.append(Figure(name, stat, ceiling, raw[ceiling], note=note))
    figures += [Figure(k, v, note="the booster alone, inplace_predict, 1 thread, in-process") for k, v in raw.items()]
    return figures


def raw_ceilings(world: World, args: argparse.Namespace) -> dict[str, Stat]:
    """The booster's ``inplace_predict`` on as many (real) feature rows as each batch request carries."""
    trees = (0, world.iterations)
    world.booster.set_param({"nthread": 1})
    out = {}
    for name, rows in (("raw_inplace_predict_batch", args.batch_rows), ("raw_inplace_predict_file", args.file_rows)):
        x = np.resize(world.prepared, (rows, world.prepared.shape[1]))
        out[name] = throughput(measure(lambda x=x: world.booster.inplace_predict(x, iteration_range=trees), 3), rows)
    return out


def main() -> None:
    """Build the world, measure every point and the batches, write the results."""
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run bench/setup.sh (apt-get install wrk, Debian)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    goals: dict[str, str] = {}
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp_dir:
        tmp = Path(tmp_dir)
        logs = args.logs or tmp / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        os.environ.update(QUIET_ENV)
        os.environ["BENTOML_HOME"] = str(tmp / "bentoml")  # before anything imports bentoml
        print("== world, model", flush=True)
        world = build_world(argparse.Namespace(**vars(args), profile_rows=500))
        tag = save_model(world)
        world.booster.save_model(tmp / "booster.ubj")
        np.save(tmp / "row.npy", world.prepared[-1:])
        raw = raw_ceilings(world, args)
        results: dict[str, Any] = {}
        for point in points(args):
            results[point[0]] = run_point(world, tag, args, tmp, logs, point)
            figures += point_figures(point[0], results[point[0]], goals, point[3])
        figures += batch_figures(results["c1_w1"]["batch"], raw, goals)
    extra = {
        **{k: getattr(args, k) for k in DEFAULTS},
        "quick": args.quick,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_1m_before": round(load_before, 2),
        "seconds": round(time.perf_counter() - started),
        "transactions_sent": world.cursor,
        **{f"goal {k}": v for k, v in goals.items()},
    }
    path = write_results(
        "latency",
        figures,
        extra,
        source_note=f"simulated ({args.customers:,} customers, {args.terminals:,} terminals, {args.days} days from "
        f"{START}, seed 1; trained on the first {args.days - args.serve_days} days, the rest sent as requests, each "
        "transaction once); real `bentoml serve` / uvicorn subprocesses on loopback, loaded by bench/loadgen.py "
        "(aiohttp) and wrk on the same 2 cores; no ../shared data",
    )
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
