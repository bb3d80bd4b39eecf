"""Benchmark the served API against same-run ceilings; writes bench/results/service.{json,md} via bench.harness.

Uses simulated data only (no ../shared). One run:
- simulates a world, trains on its first days, saves a BentoML model (as ``flows.packaging.save_bento_model``
  does) into a temporary ``BENTOML_HOME``, and keeps the later days as request traffic (every request carries a
  transaction not seen before, in time order, so features are computed against real state);
- in-process: the raw booster's ``inplace_predict`` (ceiling) and the scorer's parts per request (validation,
  online features, contributions, response, serialisation, monitoring) and per 10k-row batch;
- served with real ``bentoml serve`` subprocesses (SQLite online store, as deployed) on loopback, loaded by
  bench/loadgen.py (aiohttp) in its own process: ``/score`` p50/p99/req/s/errors at concurrency 1, 8, 32 with
  1 and 2 workers; ``/score_batch`` rows/s for a 10k-row JSON batch; ``/score_file`` rows/s for a 100k-row
  Parquet file;
- ceilings served side by side in the same run and loaded interleaved with ours (repeat 1 of each, repeat 2 of
  each, ...), so a shared machine's drift hits them alike: bench/minimal_service.py (BentoML, same request
  validation, ``inplace_predict`` on one prepared row) and bench/bare_app.py (Starlette under uvicorn, same work);
- levers, each interleaved with its baseline at concurrency 32 on 2 workers: access log off, an ``async def``
  API vs a sync one (on the minimal service), adaptive batching on vs off (on the minimal service: ``/score``
  has no batchable endpoint), httpx vs aiohttp as the load generator (``gc.freeze()`` after the model loads,
  measured as a lever at d92273c: p99 at c32 from 653 to 185 ms, is now in the service); and, to show where
  served time goes, ours with the in-memory store and ours with prediction monitoring off (1 worker,
  concurrency 1 and 8); in-process, in-memory vs SQLite state, BentoML's default monitor vs ours; idle CPU of
  each server.
Each figure is the median of its repeats, with min and max. Latency figures are the p50/p99 of one repeat's
requests; req/s counts 2xx answers per wall second. The load generator shares the 2 cores with the servers.
``--quick``: a small world, fewer requests, 2 workers only, none of the extra servers of ours (levers).

Run: uv run python bench/bench_service.py [--quick] [--requests 2000 --repeats 3 ...] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_service.py`

import httpx
import numpy as np
import polars as pl
import xgboost as xgb
from pydantic import TypeAdapter

from bench.harness import ROOT, Figure, Stat, measure, parse_sizes, per_item, throughput, write_results
from bench.loadgen import run_load
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
    "requests": 2_000,
    "repeats": 3,
    "warmup": 100,
    "max_seconds": 5,
    "batch_rows": 10_000,
    "file_rows": 100_000,
    "profile_rows": 500,
}
QUICK = {
    "customers": 1_000,
    "terminals": 2_000,
    "days": 75,
    "serve_days": 25,
    "requests": 300,
    "repeats": 2,
    "warmup": 30,
    "max_seconds": 5,
    "batch_rows": 2_000,
    "file_rows": 10_000,
    "profile_rows": 200,
}
CONCURRENCY = (1, 8, 32)
WORKERS, QUICK_WORKERS = (1, 2), (2,)  # --quick: one server of each kind, no access-log / gc.freeze servers
LEVER_CONCURRENCY = 32  # levers are measured where the throughput goal is: concurrency 32, 2 workers
LEVER_WORKERS = 2
DECOMPOSE_CONCURRENCY = (1, 8)  # ours without SQLite / without monitoring, beside ours: 1 worker, these concurrencies
BATCH_BUDGET_S = 60.0  # no further batch repeat once the repeats so far took this long
SERVICE_TIMEOUT_S = 60.0  # traffic.timeout of FraudService as shipped
BATCH_TIMEOUT_S = 600.0  # for the server that takes the batches: a 100k-row file may take longer than 60 s here
TX_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
MODEL_NAME, MODEL_VERSION = "fraud_detector", "bench"
START = date(2018, 4, 1)

# Goals from the "Serving" issue: reported beside the figures, never asserted.
GOAL_P50_MS, GOAL_P99_MS = 2.5, 20.0
GOAL_RPS_C32_W2 = 1_000.0
GOAL_SHARE_OF_MINIMAL = 0.9
GOAL_JSON_ROWS_S, GOAL_PARQUET_ROWS_S = 150_000.0, 500_000.0


def parse_args() -> argparse.Namespace:
    """Command line; unset sizes come from DEFAULTS, or QUICK with ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--logs", type=Path, help="keep the servers' logs and the raw measurements (measurements.pickle) here"
    )
    parser.add_argument("--render-from", type=Path, help="write the results from a saved measurements.pickle")
    args = parse_sizes(parser, DEFAULTS, QUICK)
    args.workers = QUICK_WORKERS if args.quick else WORKERS
    return args


def requests_at(concurrency: int, args: argparse.Namespace) -> int:
    """Requests per repeat: a fifth at concurrency 1 (one at a time is slow, and its latency settles fast)."""
    return max(args.requests // 5, 1) if concurrency == 1 else args.requests


def traffic_needed(args: argparse.Namespace) -> int:
    """Unseen transactions the whole run sends (checked before any server starts)."""
    r = args.repeats
    inprocess = (r + 1) * 3 * args.profile_rows + r * args.batch_rows
    per_server = sum(args.warmup + r * requests_at(c, args) for c in CONCURRENCY)
    levers = 0 if args.quick else 2 * (args.warmup + r * requests_at(LEVER_CONCURRENCY, args))
    levers += 0 if args.quick else 2 * sum(args.warmup + r * requests_at(c, args) for c in DECOMPOSE_CONCURRENCY)
    batches = 100 + r * args.batch_rows + 1_000 + r * args.file_rows
    return inprocess + len(args.workers) * per_server + levers + batches


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


# --- servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int) -> dict[int, bytes]:
    """Descendant pids of ``pid`` with their command lines (to recognise them later)."""
    tree, found, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            with contextlib.suppress(OSError):
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
                todo.append(child)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started, then any of its own descendants still alive (by pid)."""
    descendants = _descendants(proc.pid)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid, cmdline in descendants.items():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(
    name: str, cmd: list[str], env: dict[str, str], logs: Path, marker: str, count: int
) -> Iterator[tuple[str, int]]:
    """Start ``cmd --port P``; yield (URL, pid) once ``/readyz`` answers and its log has ``count`` ``marker`` lines."""
    port = free_port()
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    ready = httpx.get(f"{base}/readyz", timeout=2, trust_env=False).status_code == 200
                    if ready and log_path.read_text(errors="replace").count(marker) >= count:
                        break
                if time.monotonic() - started > 300:
                    raise RuntimeError(f"{name} not ready after 300 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            print(f"   {name}: ready in {time.monotonic() - started:.0f} s", flush=True)
            yield base, proc.pid
        finally:
            _stop(proc)


def _cpu_ticks(pids: list[int]) -> int:
    """User + system clock ticks used so far by these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)
    return total


def idle_cpu(pid: int, windows: int = 3, seconds: float = 1.0) -> Stat:
    """CPU a server and its workers use with no requests, in % of one core, per ``seconds`` window."""
    pids, tick = [pid, *_descendants(pid)], os.sysconf("SC_CLK_TCK")
    samples = []
    for _ in range(windows):
        before = _cpu_ticks(pids)
        time.sleep(seconds)
        samples.append(100.0 * (_cpu_ticks(pids) - before) / tick / seconds)
    return Stat.of(samples, "% core")


def base_env(tmp: Path) -> dict[str, str]:
    """The servers' environment: this one without project or BentoML overrides, quiet, stores in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDOPS_", "BENTOML_CONFIG"))}
    env.update(QUIET_ENV)
    env.update({"BENTOML_HOME": str(tmp / "bentoml"), "PYTHONPATH": str(ROOT)})
    return env


def bentoml_config(
    tmp: Path,
    service: str,
    workers: int,
    access_log: bool = True,
    timeout_s: float | None = None,
    monitoring: bool = True,
) -> Path:
    """A BentoML config file (JSON is YAML): workers, access log, traffic timeout, prediction monitoring on/off."""
    name = f"bentoml-{service}-w{workers}{'' if access_log else '-nolog'}{f'-t{timeout_s:g}' if timeout_s else ''}"
    config: dict[str, Any] = {"workers": workers, "logging": {"access": {"enabled": access_log}}}
    if timeout_s:
        config["traffic"] = {"timeout": timeout_s}
    if not monitoring:
        name += "-nomon"
        config["monitoring"] = {"enabled": False}  # bentoml.monitor() then hands out a no-op monitor
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps({"services": {service: config}}))
    return path


def bentoml_cmd(target: str) -> list[str]:
    """``bentoml serve <target>`` on loopback (the port is appended by :func:`serving`)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]


# --- load ----------------------------------------------------------------------------------------------


@dataclass
class Load:
    """Per-repeat results of one load run."""

    repeats: list[dict[str, Any]]
    warmup: dict[str, Any]

    def stat(self, key: str, unit: str) -> Stat:
        """One figure over the repeats (``key`` of each phase)."""
        values = [ph[key] for ph in self.repeats]
        if any(v is None for v in values):
            raise RuntimeError(f"a repeat had no successful request: {self.describe()}")
        return Stat.of(values, unit)

    @property
    def errors(self) -> int:
        """Failed requests over the repeats."""
        return sum(ph["errors"] for ph in self.repeats)

    def describe(self) -> str:
        """Requests sent, phases cut by the time limit, and errors (with a sample), for a figure's note."""
        sent = sum(ph["requests"] for ph in self.repeats)
        cut = sum(ph["stopped_by"] == "time" for ph in self.repeats)
        text = f"{sent:,} requests in {len(self.repeats)} repeats" + (f" ({cut} cut at the time limit)" if cut else "")
        if self.errors:
            kinds: dict[str, int] = {}
            for ph in self.repeats:
                for kind, count in ph["error_kinds"].items():
                    kinds[kind] = kinds.get(kind, 0) + count
            sample = next((ph["error_sample"] for ph in self.repeats if ph["error_sample"]), "")
            text += f"; errors {kinds}: {sample[:120]}"
        return text


@dataclass(frozen=True)
class Target:
    """One thing to load: a route of a server, its bodies, the client."""

    name: str
    url: str
    bodies: Path | list[Path]
    client: str = "aiohttp"

    def spec(self) -> dict[str, Any]:
        """The load generator's view."""
        files = not isinstance(self.bodies, Path)
        return {
            "name": self.name,
            "url": self.url,
            "client": self.client,
            "kind": "file" if files else "json",
            "bodies": [str(p) for p in self.bodies] if files else str(self.bodies),  # type: ignore[union-attr]
        }


def load_many(
    targets: list[Target], concurrency: int, requests: int, args: argparse.Namespace, **extra: Any
) -> dict[str, Load]:
    """Warm up every target, then ``args.repeats`` interleaved rounds of one phase each, in the loadgen process."""
    spec = {
        "targets": [t.spec() for t in targets],
        "concurrency": concurrency,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "requests": requests,
        "max_seconds": args.max_seconds,
        "timeout": 60,
        **extra,
    }
    wall = len(targets) * (spec["repeats"] + 1) * (spec["max_seconds"] + spec["timeout"]) + 120
    result = run_load(spec, wall)["targets"]
    out = {}
    for target in targets:
        res = result[target.name]
        out[target.name] = Load(res["repeats"], res["warmup"])
        phases = ", ".join(
            f"p50 {ph['p50_ms'] or 0:.2f} p99 {ph['p99_ms'] or 0:.2f} ms {ph['rps']:.0f}/s err {ph['errors']}"
            for ph in res["repeats"]
        )
        print(f"   {target.name} c={concurrency} ({res['client']}): {phases}", flush=True)
    return out


# --- served runs ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows/s per request of a batch endpoint, with a note (requests, rows scored, errors)."""

    rows_per_s: Stat
    note: str


@dataclass
class Served:
    """Everything measured over HTTP; keys are (workers, concurrency)."""

    ours: dict[tuple[int, int], Load] = field(default_factory=dict)
    minimal: dict[tuple[int, int], Load] = field(default_factory=dict)
    bare: dict[tuple[int, int], Load] = field(default_factory=dict)
    bare_httpx: Load | None = None
    batching_off: Load | None = None
    batching_on: Load | None = None
    async_api: Load | None = None
    access_log_off: Load | None = None
    idle_cpu: dict[str, Stat] = field(default_factory=dict)  # bare, minimal, ours: first worker count
    memory_store: dict[int, Load] = field(default_factory=dict)  # concurrency -> ours, in-process state, 1 worker
    monitoring_off: dict[int, Load] = field(default_factory=dict)  # concurrency -> ours, monitoring disabled
    batch_json: Batch | None = None
    file_parquet: Batch | None = None


def batch_rate(done: Load, rows: int, what: str) -> Batch:
    """Rows/s of each one-request repeat; a failed request counts its wall time (an upper bound, noted)."""
    rates, failed = [], 0
    for ph in done.repeats:
        seconds = ph["p50_ms"] / 1e3 if ph["ok"] else ph["seconds"]
        failed += 0 if ph["ok"] else 1
        rates.append(rows / seconds)
    scored = [ph["field_sum"] for ph in done.repeats]
    note = f"{rows:,}-row {what} per request; {done.describe()}; rows scored per request {scored}"
    if failed:
        note += f"; {failed} request(s) failed: their rate is rows / time to the error (upper bound)"
    slow = [ph["p50_ms"] / 1e3 for ph in done.repeats if ph["ok"] and ph["p50_ms"] / 1e3 > SERVICE_TIMEOUT_S]
    if slow:
        note += (
            f"; served with traffic.timeout {BATCH_TIMEOUT_S:g} s: a request took {max(slow):.0f} s, so the shipped "
            f"{SERVICE_TIMEOUT_S:g} s timeout would answer 504"
        )
    return Batch(Stat.of(rates, "rows/s"), note)


def batch_loads(url: str, world: World, tmp: Path, args: argparse.Namespace, served: Served) -> None:
    """``/score_batch`` (JSON) and ``/score_file`` (Parquet): one request at a time, a small warm-up first."""
    spec = {"warmup": 1, "count_field": "scored", "max_seconds": BATCH_TIMEOUT_S, "timeout": BATCH_TIMEOUT_S}
    spec["budget_seconds"] = BATCH_BUDGET_S
    sizes = [100] + [args.batch_rows] * args.repeats
    path = tmp / "batches.jsonl"
    write_lines(path, [{"transactions": records(world.take(n, "served /score_batch"))} for n in sizes])
    done = load_many([Target("score_batch", f"{url}/score_batch", path)], 1, 1, args, **spec)
    served.batch_json = batch_rate(done["score_batch"], args.batch_rows, "JSON batch")

    files = []
    for i, n in enumerate([1_000] + [args.file_rows] * args.repeats):
        files.append(tmp / f"upload-{i}.parquet")
        world.take(n, "served /score_file").write_parquet(files[-1])
    done = load_many([Target("score_file", f"{url}/score_file", files)], 1, 1, args, **spec)
    served.file_parquet = batch_rate(done["score_file"], args.file_rows, "Parquet upload")


def run_served(world: World, tag: str, args: argparse.Namespace, tmp: Path) -> Served:
    """Per worker count: start bare, minimal and ours side by side, load them interleaved, stop them."""
    served, logs = Served(), args.logs or tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = base_env(tmp)
    booster_path, row_path = tmp / "booster.ubj", tmp / "row.npy"
    world.booster.save_model(booster_path)
    np.save(row_path, world.prepared[-1:])
    ceiling_env = {
        **env,
        "BENCH_BOOSTER": str(booster_path),
        "BENCH_ROW": str(row_path),
        "BENCH_ITERATIONS": str(world.iterations),
    }
    ours_env = {
        **env,
        "FRAUDOPS_MODEL_TAG": tag,
        "FRAUDOPS_ONLINE_STORE": "sqlite",
        "FRAUDOPS_STATE_DB": str(tmp / "state-served.sqlite"),  # shared by every server of ours, as by workers
        "FRAUDOPS_MONITOR_DIR": str(tmp / "monitoring"),
        "FRAUDOPS_FEEDBACK_DB": str(tmp / "feedback.sqlite"),
    }
    ours_cmd, ours_ready = bentoml_cmd("service.service:FraudService"), "Service fraud_service initialized"
    bare_cmd = [sys.executable, "-m", "bench.bare_app"]
    minimal_cmd = bentoml_cmd("bench.minimal_service:MinimalService")
    # The ceilings keep no state: they all get the same bodies (the next ones our service will get).
    n_max = max(requests_at(c, args) for c in CONCURRENCY)
    ceiling = records(world.pool.slice(world.cursor, args.warmup + args.repeats * n_max))
    ceiling_bodies = write_lines(tmp / "ceiling.jsonl", ceiling)
    wrapped = write_lines(tmp / "ceiling-list.jsonl", [{"transactions": [tx]} for tx in ceiling])

    def unseen(name: str, c: int) -> Path:  # /score bodies never sent before, for one target at one concurrency
        rows = records(world.take(args.warmup + args.repeats * requests_at(c, args), name))
        return write_lines(tmp / f"{name}-c{c}.jsonl", rows)

    for workers in args.workers:
        first = workers == args.workers[0]
        print(f"== {workers} worker(s): bare Starlette app, minimal BentoML service, our service", flush=True)
        with contextlib.ExitStack() as stack:

            def start(name: str, cmd: list[str], env: dict[str, str], ready: str, w: int = workers) -> tuple[str, int]:
                return stack.enter_context(serving(name, cmd, env, logs, ready, w))

            bare, bare_pid = start(
                f"bare-w{workers}", [*bare_cmd, "--workers", str(workers)], ceiling_env, "Application startup complete"
            )
            config = bentoml_config(tmp, "minimal_service", workers)
            minimal, minimal_pid = start(
                f"minimal-w{workers}",
                minimal_cmd,
                {**ceiling_env, "BENTOML_CONFIG": str(config)},
                "minimal_service initialized",
            )
            # The batch endpoints run on the first server, with a long traffic timeout (noted in their figures).
            config = bentoml_config(tmp, "fraud_service", workers, timeout_s=BATCH_TIMEOUT_S if first else None)
            ours, ours_pid = start(
                f"ours-w{workers}", ours_cmd, {**ours_env, "BENTOML_CONFIG": str(config)}, ours_ready
            )
            if first:
                served.idle_cpu = {
                    "bare": idle_cpu(bare_pid),
                    "minimal": idle_cpu(minimal_pid),
                    "ours": idle_cpu(ours_pid),
                }
            # Where the served time goes: ours without the SQLite store, and without prediction monitoring, side by
            # side with ours at the low concurrencies of the first worker count (stopped before the rest).
            decompose = contextlib.ExitStack()
            stack.enter_context(decompose)
            if first and not args.quick:
                memory_env = {**ours_env, "FRAUDOPS_ONLINE_STORE": "memory", "BENTOML_CONFIG": str(config)}
                memory, _ = decompose.enter_context(serving("ours-memory", ours_cmd, memory_env, logs, ours_ready, 1))
                config = bentoml_config(tmp, "fraud_service", workers, monitoring=False)
                nomon_env = {**ours_env, "BENTOML_CONFIG": str(config)}
                nomon, _ = decompose.enter_context(serving("ours-nomon", ours_cmd, nomon_env, logs, ours_ready, 1))
            for c in CONCURRENCY:
                targets = [
                    Target("bare", f"{bare}/predict", ceiling_bodies),
                    Target("minimal", f"{minimal}/predict", ceiling_bodies),
                    Target("ours", f"{ours}/score", unseen(f"ours-w{workers}", c)),
                ]
                if first and not args.quick and c in DECOMPOSE_CONCURRENCY:
                    targets += [
                        Target("ours_memory", f"{memory}/score", unseen("ours-memory", c)),
                        Target("ours_nomon", f"{nomon}/score", unseen("ours-nomon", c)),
                    ]
                if (workers, c) == (LEVER_WORKERS, LEVER_CONCURRENCY):
                    targets += [
                        Target("bare_httpx", f"{bare}/predict", ceiling_bodies, client="httpx"),
                        Target("minimal_list", f"{minimal}/predict_list", wrapped),
                        Target("minimal_batched", f"{minimal}/predict_batched", wrapped),
                        Target("minimal_async", f"{minimal}/predict_async", ceiling_bodies),
                    ]
                    if not args.quick:  # one more server of ours, with one lever
                        config = bentoml_config(tmp, "fraud_service", workers, access_log=False)
                        nolog, _ = start(
                            "ours-nolog", ours_cmd, {**ours_env, "BENTOML_CONFIG": str(config)}, ours_ready
                        )
                        targets += [Target("ours_nolog", f"{nolog}/score", unseen("ours-nolog", c))]
                print(f"   concurrency {c}: {len(targets)} targets, interleaved", flush=True)
                done = load_many(targets, c, requests_at(c, args), args)
                served.bare[workers, c], served.minimal[workers, c] = done["bare"], done["minimal"]
                served.ours[workers, c] = done["ours"]
                served.bare_httpx = done.get("bare_httpx", served.bare_httpx)
                served.batching_off = done.get("minimal_list", served.batching_off)
                served.batching_on = done.get("minimal_batched", served.batching_on)
                served.async_api = done.get("minimal_async", served.async_api)
                served.access_log_off = done.get("ours_nolog", served.access_log_off)
                if "ours_memory" in done:
                    served.memory_store[c], served.monitoring_off[c] = done["ours_memory"], done["ours_nomon"]
                if c == max(DECOMPOSE_CONCURRENCY):
                    decompose.close()
            if first:
                print("   batches", flush=True)
                batch_loads(ours, world, tmp, args, served)
    return served


# --- figures -------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """How a goal reads in the table."""
    return "met" if ok else "MISSED"


PARTS = {
    "part_validate": "TransactionIn.model_validate_json of the request body",
    "part_online_features_sqlite": "Scorer.features, SQLite store (as served): catch up + mirror windows + insert",
    "part_sqlite_refresh": "of which: SQLiteFeatureStore.refresh with nothing new (one read transaction)",
    "part_sqlite_reads": "of which: SQLiteFeatureStore.features (the window queries, on the mirror) alone",
    "part_sqlite_insert": "of which: SQLiteFeatureStore.observe (mirror + one autocommit INSERT) alone",
    "part_dmatrix": "xgb.DMatrix of one row (the scorer builds one per request)",
    "part_predict_dmatrix": "DMatrix + plain predict (no contributions), for comparison",
    "part_contributions": "DMatrix + predict(pred_contribs, approx_contribs): the scorer's booster call",
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
        ceiling = (
            ("raw_inplace_predict", raw) if name in ("part_predict_dmatrix", "part_contributions") else (None, None)
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


def score_figures(served: Served, workers: int, c: int, goals: dict[str, str]) -> list[Figure]:
    """Ours beside the minimal BentoML service, the minimal service beside the bare app, at one setting."""
    ours, minimal, bare = served.ours[workers, c], served.minimal[workers, c], served.bare[workers, c]
    key = f"c{c}_w{workers}"
    p50, p99, rps = ours.stat("p50_ms", "ms"), ours.stat("p99_ms", "ms"), ours.stat("rps", "req/s")
    m_rps = minimal.stat("rps", "req/s")
    notes = {"p50": f"/score; {ours.describe()}", "p99": "/score", "rps": "/score"}
    if c == 1:
        for name, stat, goal in (("p50", p50, GOAL_P50_MS), ("p99", p99, GOAL_P99_MS)):
            goals[f"/score {name} c1 w{workers} <= {goal:g} ms"] = f"{verdict(stat.median <= goal)} ({stat.median:.2f})"
            notes[name] += f"; goal <= {goal:g} ms: {verdict(stat.median <= goal)}"
    share = rps.median / m_rps.median
    goals[f"/score req/s {key} >= {GOAL_SHARE_OF_MINIMAL}x minimal"] = (
        f"{verdict(share >= GOAL_SHARE_OF_MINIMAL)} ({share:.2f}x)"
    )
    notes["rps"] += f"; goal >= {GOAL_SHARE_OF_MINIMAL}x minimal: {verdict(share >= GOAL_SHARE_OF_MINIMAL)}"
    if (workers, c) == (2, 32):
        ok = rps.median >= GOAL_RPS_C32_W2 and ours.errors == 0
        goals[f"/score req/s {key} >= {GOAL_RPS_C32_W2:g} with 0 errors"] = (
            f"{verdict(ok)} ({rps.median:.0f} req/s; {ours.errors} errors)"
        )
        notes["rps"] += f"; goal >= 1,000 req/s with 0 errors: {verdict(ok)}"
    return [
        Figure(f"score_p50_{key}", p50, f"minimal_p50_{key}", minimal.stat("p50_ms", "ms"), note=notes["p50"]),
        Figure(f"score_p99_{key}", p99, f"minimal_p99_{key}", minimal.stat("p99_ms", "ms"), note=notes["p99"]),
        Figure(f"score_rps_{key}", rps, f"minimal_rps_{key}", m_rps, note=notes["rps"]),
        Figure(f"score_errors_{key}", ours.stat("errors", "errors"), note="/score non-2xx + transport errors"),
        Figure(
            f"minimal_p50_{key}",
            minimal.stat("p50_ms", "ms"),
            f"bare_p50_{key}",
            bare.stat("p50_ms", "ms"),
            note=f"minimal BentoML service /predict; {minimal.describe()}",
        ),
        Figure(f"minimal_p99_{key}", minimal.stat("p99_ms", "ms"), f"bare_p99_{key}", bare.stat("p99_ms", "ms")),
        Figure(f"minimal_rps_{key}", m_rps, f"bare_rps_{key}", bare.stat("rps", "req/s")),
        Figure(f"bare_p50_{key}", bare.stat("p50_ms", "ms"), note=f"bare Starlette app /predict; {bare.describe()}"),
        Figure(f"bare_p99_{key}", bare.stat("p99_ms", "ms")),
        Figure(f"bare_rps_{key}", bare.stat("rps", "req/s")),
    ]


def batch_figures(
    local: dict[str, Stat], served: Served, args: argparse.Namespace, goals: dict[str, str]
) -> list[Figure]:
    """/score_batch and /score_file beside the in-process batch scorer, and the booster alone."""
    assert served.batch_json is not None and served.file_parquet is not None
    raw, inprocess = local["raw_inplace_predict_batch"], local["inprocess_score_batch"]
    figures = [
        Figure("raw_inplace_predict_batch", raw, note=f"ceiling: booster alone on {args.batch_rows:,} rows, 1 thread"),
        Figure(
            "inprocess_score_batch",
            inprocess,
            "raw_inplace_predict_batch",
            raw,
            note=f"Scorer.score_batch_with_inputs on {args.batch_rows:,} JSON records (SQLite state), in-process",
        ),
    ]
    for name, batch, goal in (
        ("score_batch_json", served.batch_json, GOAL_JSON_ROWS_S),
        ("score_file_parquet", served.file_parquet, GOAL_PARQUET_ROWS_S),
    ):
        ok = verdict(batch.rows_per_s.median >= goal)
        goals[f"{name} >= {goal:g} rows/s"] = f"{ok} ({batch.rows_per_s.median:.0f})"
        note = f"{batch.note}; goal >= {goal:,.0f} rows/s: {ok}"
        figures.append(Figure(name, batch.rows_per_s, "inprocess_score_batch", inprocess, note=note))
    return figures


def decompose_figures(served: Served) -> list[Figure]:
    """Ours without the SQLite store, and without monitoring, beside ours (1 worker; ceiling column = ours)."""
    figures = []
    for c in DECOMPOSE_CONCURRENCY:
        base = served.ours.get((1, c))
        for name, lever, what in (
            (
                "memory_store",
                served.memory_store.get(c),
                "FRAUDOPS_ONLINE_STORE=memory (per-process state: 1 worker only)",
            ),
            ("monitoring_off", served.monitoring_off.get(c), "BentoML monitoring.enabled false (no prediction log)"),
        ):
            if lever is None or base is None:
                continue
            baseline = f"score_c{c}_w1"
            figures += [
                Figure(
                    f"lever_{name}_p50_c{c}_w1",
                    lever.stat("p50_ms", "ms"),
                    f"{baseline} (as shipped)",
                    base.stat("p50_ms", "ms"),
                    note=f"{what}; ceiling column = ours as shipped, interleaved; {lever.describe()}",
                ),
                Figure(
                    f"lever_{name}_rps_c{c}_w1",
                    lever.stat("rps", "req/s"),
                    f"{baseline} (as shipped)",
                    base.stat("rps", "req/s"),
                ),
            ]
    return figures


def idle_figures(served: Served, workers: int) -> list[Figure]:
    """CPU each server burns while idle (its event loops, background threads)."""
    idle = served.idle_cpu
    if not {"ours", "minimal", "bare"} <= idle.keys():
        return []
    note = f"no requests, {workers} worker(s), server + workers, 1 s windows"
    return [
        Figure(f"idle_cpu_ours_w{workers}", idle["ours"], f"idle_cpu_minimal_w{workers}", idle["minimal"], note=note),
        Figure(f"idle_cpu_minimal_w{workers}", idle["minimal"], f"idle_cpu_bare_w{workers}", idle["bare"], note=note),
        Figure(f"idle_cpu_bare_w{workers}", idle["bare"], note=note),
    ]


def lever_figures(served: Served) -> list[Figure]:
    """Each lever beside its baseline from this run (the ceiling column holds the baseline)."""
    key = f"c{LEVER_CONCURRENCY}_w{LEVER_WORKERS}"
    base = served.ours.get((LEVER_WORKERS, LEVER_CONCURRENCY))
    bare = served.bare.get((LEVER_WORKERS, LEVER_CONCURRENCY))
    levers = [
        (
            "access_log_off",
            served.access_log_off,
            base,
            f"score_{key} (log on)",
            "BentoML logging.access.enabled false",
        ),
        (
            "async_api",
            served.async_api,
            served.minimal.get((LEVER_WORKERS, LEVER_CONCURRENCY)),
            f"minimal_{key} (sync def)",
            "minimal service: async def /predict_async (on the event loop) vs sync /predict (a thread hop)",
        ),
        (
            "batching_on",
            served.batching_on,
            served.batching_off,
            f"minimal_list_{key} (no batching)",
            "minimal service /predict_batched (max_batch_size 64, max_latency_ms 500) vs /predict_list",
        ),
        ("loadgen_httpx", served.bare_httpx, bare, f"bare_{key} (aiohttp)", "the bare app loaded with httpx's pool"),
    ]
    figures = []
    for name, lever, baseline, baseline_name, what in levers:
        if lever is None or baseline is None:
            continue
        figures += [
            Figure(
                f"lever_{name}_rps_{key}",
                lever.stat("rps", "req/s"),
                baseline_name,
                baseline.stat("rps", "req/s"),
                note=f"{what}; ceiling column = baseline; {lever.describe()}",
            ),
            Figure(f"lever_{name}_p50_{key}", lever.stat("p50_ms", "ms"), baseline_name, baseline.stat("p50_ms", "ms")),
            Figure(f"lever_{name}_p99_{key}", lever.stat("p99_ms", "ms"), baseline_name, baseline.stat("p99_ms", "ms")),
        ]
    return figures


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the run (in-process, then served), with the run's facts."""
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
        tag = save_model(world)
        print(
            f"   {world.history_rows:,} rows of history, {world.state.height:,} in the state snapshot, "
            f"{world.pool.height:,} to send ({needed:,} needed)",
            flush=True,
        )
        print("== in-process", flush=True)
        local = profile_inprocess(world, args, tmp)
        served = run_served(world, tag, args, tmp)
    meta = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "transactions_sent": world.cursor,
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - started),
    }
    return {"args": vars(args), "local": local, "served": served, "meta": meta}


def report(saved: dict[str, Any]) -> Path:
    """Figures and goal verdicts from the measurements; writes bench/results/service.{json,md}."""
    args, local, served = argparse.Namespace(**saved["args"]), saved["local"], saved["served"]
    goals: dict[str, str] = {}
    figures = inprocess_figures(local, args)
    for workers in args.workers:
        for c in CONCURRENCY:
            figures += score_figures(served, workers, c, goals)
    figures += batch_figures(local, served, args, goals) + lever_figures(served)
    figures += decompose_figures(served) + idle_figures(served, args.workers[0])
    size = "--quick smoke size" if args.quick else "default size"
    return write_results(
        "service",
        figures,
        extra={
            **{k: getattr(args, k) for k in DEFAULTS},
            "workers": ",".join(map(str, args.workers)),
            "quick": args.quick,
            **saved["meta"],
            **{f"goal {k}": v for k, v in goals.items()},
        },
        source_note=f"simulated ({size}: {args.customers:,} customers, {args.terminals:,} terminals, {args.days} days "
        f"from {START}, seed 1; trained on the first {args.days - args.serve_days} days, the last {args.serve_days} "
        "days sent as requests, each transaction once); servers are real `bentoml serve` / uvicorn subprocesses on "
        "loopback, loaded interleaved by bench/loadgen.py (aiohttp, own process) on the same 2 cores; no ../shared "
        "data",
    )


def main() -> None:
    """Measure (or reload saved measurements) and write the results."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    if args.render_from:
        saved = pickle.loads(args.render_from.read_bytes())
    else:
        saved = measure_all(args)
        if args.logs:
            (args.logs / "measurements.pickle").write_bytes(pickle.dumps(saved))
    print(report(saved).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
