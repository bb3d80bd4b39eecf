"""Soak the online state: millions of transactions over simulated months; the store and the RSS stay flat.

A simulated world (no ../shared data) of about ``--transactions`` rows over ``--days`` days is scored day by
day through the service's scorer (``service.scoring.Scorer``) on the SQLite online store, in batches of
10,000 rows (the ``/score_batch`` path without HTTP). After each simulated day: events in the store,
the SQLite file size (with its WAL), this process's RSS, and the day's scoring rate. The state keeps
only the features' horizon (the longest window plus the label delay, plus a day of slack), so after the
first horizon the store size, the file and the RSS level off; the figures compare the last day with
the first day after the horizon.

Run: uv run python bench/bench_state.py [--quick] [--transactions 2000000 --days 60]
Writes bench/results/state.{json,md} and the per-day series to bench/results/state-per-day.csv.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_state.py`

import polars as pl
from rich.progress import Progress

from bench.harness import Figure, Stat, write_results
from data.simulator import SimulatorConfig, simulate_transactions
from features.definitions import FeatureSpec, compute_features
from features.stores.base import STATE_SCHEMA
from features.stores.sqlite import SQLiteFeatureStore
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import TrainingConfig, train_model
from service.scoring import Scorer

BATCH = 10_000
START = date(2026, 1, 1)
PER_DAY = Path(__file__).resolve().parent / "results" / "state-per-day.csv"


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=2_000_000, help="about this many rows in all")
    parser.add_argument("--days", type=int, default=60, help="simulated days (more than the 38-day horizon)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows over 60 days")
    args = parser.parse_args()
    if args.quick:
        args.transactions = 200_000
    return args


def rss_mb() -> float:
    """This process's resident set size in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def file_mb(path: Path) -> float:
    """The SQLite file and its WAL, in MB."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()) / 2**20


def trained_scorer(world: pl.DataFrame, spec: FeatureSpec, store: SQLiteFeatureStore) -> Scorer:
    """A small XGBoost model trained on the world's first 45 days, scoring through ``store``."""
    history = world.filter(pl.col("tx_datetime").dt.date() < date(2026, 2, 15))
    features = compute_features(history, spec)
    days = features["tx_datetime"].dt.date()
    split = TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days, 3, 3)  # type: ignore[arg-type]
    result = train_model(features, spec, split, TrainingConfig(n_estimators=60))
    card = result.model_card().registered_as("soak", "bench")
    return Scorer(Bundle(result.booster, card, pl.DataFrame(schema=STATE_SCHEMA)), store=store)


def main() -> None:
    """Soak and report."""
    args = parse_args()
    customers = max(100, round(args.transactions / (2 * args.days)))
    config = SimulatorConfig.scaled(customers, 2 * customers, args.days, start_date=START, seed=5)
    world = simulate_transactions(config).sort("tx_datetime", "transaction_id")
    spec = FeatureSpec()
    horizon_days = spec.history_days + 1
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        path = Path(tmp) / "state.sqlite"
        store = SQLiteFeatureStore(path, spec)
        scorer = trained_scorer(world, spec, store)
        gc.collect()
        rows: list[dict[str, float | int | str]] = []
        scored = 0
        days = [START.fromordinal(START.toordinal() + i) for i in range(args.days)]
        with Progress() as progress:
            task = progress.add_task("soaking the online state", total=world.height)
            for day in days:
                today = world.filter(pl.col("tx_datetime").dt.date() == day).sort("tx_datetime", "transaction_id")
                records = today.select(
                    "transaction_id",
                    pl.col("tx_datetime").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"),
                    "customer_id",
                    "terminal_id",
                    "amount",
                ).to_dicts()
                started = time.perf_counter()
                for i in range(0, len(records), BATCH):
                    batch = scorer.score_batch(records[i : i + BATCH])
                    assert batch.received == len(batch.results) + len(batch.errors) and not batch.errors
                seconds = time.perf_counter() - started
                scored += len(records)
                progress.advance(task, len(records))
                rows.append(
                    {
                        "day": day.isoformat(),
                        "scored_total": scored,
                        "store_events": len(store),
                        "file_mb": round(file_mb(path), 1),
                        "rss_mb": round(rss_mb(), 1),
                        # Live Python objects (pymalloc blocks): flat while RSS still moves means the
                        # allocator keeps freed memory, not that the state grows.
                        "python_blocks": sys.getallocatedblocks(),
                        "rows_per_s": round(len(records) / seconds),
                    }
                )
    settled = rows[horizon_days:]  # after the first horizon: what must stay flat
    first, last = settled[0], settled[-1]

    def stat(key: str, unit: str) -> Stat:
        return Stat.of([float(r[key]) for r in settled], unit)

    figures = [
        Figure("store_events_after_horizon", stat("store_events", "events"), note="min..max over the settled days"),
        Figure("sqlite_file_after_horizon", stat("file_mb", "MB"), note="file + WAL; freed pages are reused"),
        Figure("rss_after_horizon", stat("rss_mb", "MB"), note="this process (the scorer and its mirror)"),
        Figure("python_blocks_after_horizon", stat("python_blocks", "blocks"), note="live Python objects"),
        Figure(
            "scoring_rate", Stat.of([float(r["rows_per_s"]) for r in rows], "rows/s"), note="per day, batches of 10k"
        ),
    ]
    extra = {
        "transactions": scored,
        "days": args.days,
        "customers": customers,
        "horizon_days": horizon_days,
        "growth_after_horizon": {
            "store_events": int(last["store_events"]) - int(first["store_events"]),
            "file_mb": round(float(last["file_mb"]) - float(first["file_mb"]), 1),
            "rss_mb": round(float(last["rss_mb"]) - float(first["rss_mb"]), 1),
            "python_blocks": int(last["python_blocks"]) - int(first["python_blocks"]),
        },
        "per_day": "bench/results/state-per-day.csv",
    }
    note = f"simulated world, {customers:,} customers, {args.days} days, {scored:,} transactions (no ../shared data)"
    pl.DataFrame(rows).write_csv(PER_DAY)  # one row per simulated day: the curve behind the figures
    write_results("state", figures, extra, note)
    print(f"scored {scored:,} transactions over {args.days} days; after day {horizon_days}:")
    for key in ("store_events", "file_mb", "rss_mb", "python_blocks"):
        values = [float(r[key]) for r in settled]
        print(f"  {key}: {first[key]} -> {last[key]} (min {min(values)}, max {max(values)})")


if __name__ == "__main__":
    main()
