"""Benchmark the scoring path against its ceiling; writes bench/results/scoring.{json,md} via bench.harness.

Uses simulated data only (no ../shared). Measures, in one run:
- simulation and offline features (Polars) rows/s on a handbook-size simulated world;
- offline batch scoring tx/s: the batch-score flow's task (``flows.scoring.score_days_task``: lake read,
  features over the history the days need, booster ``inplace_predict`` on its default threads) over every
  day of the world, as one task and in the flow's default 7-day chunks (one after another), next to the
  ceiling: the same booster's ``inplace_predict`` alone on the prepared feature matrix of the same rows;
- online features per transaction (the state the service uses);
- the ceiling: raw booster ``inplace_predict`` on one prepared row (1 thread);
- the service's scorer: online features + predict + XGBoost contributions (reasons), per transaction.
Each figure is the median of several repeats (after one warm-up), with min and max.

Run: uv run python bench/bench_scoring.py [--quick] [--customers 5000 --terminals 10000 --days 183]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl
import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_scoring.py`

from bench.harness import Figure, Stat, measure, parse_sizes, per_item, throughput, write_results
from data.contract import TransactionIn
from data.lake import Lake
from data.simulator import SimulatorConfig, simulate_transactions
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from flows.scoring import score_days_task
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import TrainingResult, matrix, predict, train_model
from service.scoring import Scorer

DEFAULTS = {"customers": 5_000, "terminals": 10_000, "days": 183, "repeats": 5, "online_rows": 5_000}
FLOW_CHUNK_DAYS = 7  # batch_score_flow's default chunk_days
QUICK = {"customers": 500, "terminals": 1_000, "days": 60, "repeats": 3, "online_rows": 1_000}


def parse_args() -> argparse.Namespace:
    """Command line; unset sizes come from DEFAULTS, or QUICK with ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parse_sizes(parser, DEFAULTS, QUICK)


def batch_scoring_figures(
    transactions: pl.DataFrame, features: pl.DataFrame, result: TrainingResult, spec: FeatureSpec, repeats: int
) -> list[Figure]:
    """Batch scoring through the flow's own task over a temporary lake, next to raw ``inplace_predict``."""
    rows = transactions.height
    model = bytes(result.booster.save_raw("ubj"))  # what batch_score_flow ships to its tasks
    threshold = result.model_card().threshold
    days = sorted(set(transactions["tx_datetime"].dt.date().to_list()))
    booster = xgb.Booster(model_file=bytearray(model))  # loaded as the task loads it: default threads
    x = matrix(features, spec)
    ceiling = throughput(measure(lambda: predict(booster, x), repeats), rows, "tx/s")

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        lake = Lake(Path(tmp))
        lake.land(transactions)

        def score(chunks: list[list[date]]) -> None:
            scored = sum(
                score_days_task.fn(tmp, chunk, spec.to_dict(), model, threshold, "bench").height for chunk in chunks
            )
            if scored != rows:
                raise RuntimeError(f"scored {scored:,} transactions, expected {rows:,}")

        weekly = [days[i : i + FLOW_CHUNK_DAYS] for i in range(0, len(days), FLOW_CHUNK_DAYS)]
        lake_read = throughput(measure(lambda: lake.read(), repeats), rows)
        one_task = throughput(measure(lambda: score([days]), repeats), rows, "tx/s")
        chunked = throughput(measure(lambda: score(weekly), repeats), rows, "tx/s")
    raw = "raw_inplace_predict_batch"
    return [
        Figure("lake_read", lake_read, note=f"Lake.read of all {len(days)} day partitions (part of each task)"),
        Figure(
            raw,
            ceiling,
            note="ceiling: the same booster's inplace_predict alone on the prepared feature matrix of every row",
        ),
        Figure(
            "batch_score_one_task",
            one_task,
            ceiling_name=raw,
            ceiling=ceiling,
            note=f"score_days_task over all {len(days)} days as one task: lake read + features + inplace_predict",
        ),
        Figure(
            f"batch_score_{FLOW_CHUNK_DAYS}day_chunks",
            chunked,
            ceiling_name=raw,
            ceiling=ceiling,
            note=f"the flow's default chunking: {len(weekly)} tasks of {FLOW_CHUNK_DAYS} days one after another, "
            f"each reading and grouping its {spec.history_days} days of look-back again",
        ),
    ]


def main() -> None:
    """Run the benchmark and write the results."""
    args = parse_args()
    load_before = os.getloadavg()[0]  # other jobs share this machine: say how busy it was
    config = SimulatorConfig.scaled(args.customers, args.terminals, args.days, seed=1, start_date=date(2018, 4, 1))
    started = time.perf_counter()
    transactions = simulate_transactions(config)
    simulate_s = Stat.of([time.perf_counter() - started], "s")
    rows = transactions.height
    spec = FeatureSpec()

    offline_s = measure(lambda: compute_features(transactions, spec), args.repeats)
    features = compute_features(transactions, spec)
    days = features["tx_datetime"].dt.date()
    split = TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days)  # type: ignore[arg-type]
    result = train_model(features, spec, split)

    batch = batch_scoring_figures(transactions, features, result, spec, args.repeats)

    n = args.online_rows
    history = transactions.head(rows - n)
    state_frame = MemoryFeatureStore.from_transactions(history, spec).to_frame()
    card = result.model_card().registered_as("bench", "bench")
    txs = [
        TransactionIn.model_construct(**row)
        for row in transactions.tail(n)
        .select("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
        .to_dicts()
    ]
    x = features.tail(n).select(spec.feature_names).to_numpy()
    booster = result.booster
    booster.set_param({"nthread": 1})
    iteration_range = (0, result.best_iteration + 1)

    def raw_predict() -> None:
        for i in range(len(x)):
            booster.inplace_predict(x[i : i + 1], iteration_range=iteration_range)

    def new_scorer() -> Scorer:  # scoring updates the online state, so every repeat starts afresh
        return Scorer(Bundle(booster, card, state_frame))

    def online_features(scorer: Scorer) -> None:
        for tx in txs:
            scorer.features(tx)

    def scorer_score(scorer: Scorer) -> None:
        for tx in txs:
            scorer.score(tx)

    raw = per_item(measure(raw_predict, args.repeats), len(x), "us/tx")  # one row per transaction
    figures = [
        Figure("simulate", throughput(simulate_s, rows), note="one run (it builds the data)"),
        Figure("offline_features", throughput(offline_s, rows), note="compute_features on the whole world"),
        *batch,
        Figure("raw_inplace_predict", raw, note="ceiling: booster alone, 1 thread, one prepared row per call"),
        Figure(
            "online_features",
            per_item(measure(online_features, args.repeats, setup=new_scorer), n, "us/tx"),
            note="Scorer.features: state lookup + update",
        ),
        Figure(
            "scorer_score",
            per_item(measure(scorer_score, args.repeats, setup=new_scorer), n, "us/tx"),
            ceiling_name="raw_inplace_predict",
            ceiling=raw,
            note="Scorer.score: online features + pred_contribs (probability and reasons)",
        ),
    ]
    size = "--quick smoke size" if args.quick else "handbook size"
    path = write_results(
        "scoring",
        figures,
        extra={
            "rows": rows,
            **{k: getattr(args, k) for k in DEFAULTS},
            "quick": args.quick,
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        source_note=f"simulated ({size}: {args.customers:,} customers, {args.terminals:,} terminals, "
        f"{args.days} days from 2018-04-01, seed 1); no ../shared data",
    )
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
