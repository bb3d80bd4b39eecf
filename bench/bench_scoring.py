"""Benchmark the scoring path against its ceilings; writes bench/results/scoring.json and a table.

Uses simulated data only (no ../shared). Measures, in one run:
- offline features (Polars) rows/s on a handbook-size simulated world;
- online features per transaction (the state the service uses);
- the ceiling: raw booster ``inplace_predict`` on one prepared row;
- the service's scorer: online features + predict + XGBoost contributions (reasons), per transaction.
Each figure is the median of several repeats, with min and max.

Run: uv run python bench/bench_scoring.py [--customers 5000 --terminals 10000 --days 183]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from features.contract import TransactionIn
from features.engineering import FeatureSpec, compute_features
from features.online import OnlineFeatureState
from features.simulator import SimulatorConfig, simulate_transactions
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import train_model
from service.scoring import Scorer

RESULTS = Path(__file__).resolve().parent / "results"


def repeat(fn: Callable[[], float], times: int) -> dict[str, float]:
    """Median, min and max of ``times`` calls of ``fn`` (each returns one measurement)."""
    values = [fn() for _ in range(times)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Run the benchmark and write the JSON and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--online-rows", type=int, default=5_000)
    args = parser.parse_args()

    config = SimulatorConfig.scaled(args.customers, args.terminals, args.days, seed=1, start_date=date(2018, 4, 1))
    started = time.perf_counter()
    transactions = simulate_transactions(config)
    simulate_s = time.perf_counter() - started
    spec = FeatureSpec()

    def offline() -> float:
        t = time.perf_counter()
        compute_features(transactions, spec)
        return transactions.height / (time.perf_counter() - t)

    offline_rows_s = repeat(offline, args.repeats)
    features = compute_features(transactions, spec)
    days = features["tx_datetime"].dt.date()
    split = TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days)  # type: ignore[arg-type]
    result = train_model(features, spec, split)

    held_out = transactions.tail(args.online_rows)
    history = transactions.head(transactions.height - args.online_rows)
    state_frame = OnlineFeatureState.from_transactions(history, spec).to_frame()
    card = {**result.model_card(), "model_version": "bench"}
    txs = [
        TransactionIn.model_construct(**row)
        for row in held_out.select("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount").to_dicts()
    ]
    x = features.tail(args.online_rows).select(spec.feature_names).to_numpy()
    booster = result.booster
    booster.set_param({"nthread": 1})
    iteration_range = (0, result.best_iteration + 1)

    def raw_predict() -> float:
        t = time.perf_counter()
        for i in range(len(x)):
            booster.inplace_predict(x[i : i + 1], iteration_range=iteration_range)
        return (time.perf_counter() - t) / len(x) * 1e6

    def online_features() -> float:
        scorer = Scorer(Bundle(booster, card, state_frame))
        t = time.perf_counter()
        for tx in txs:
            scorer.features(tx)
        return (time.perf_counter() - t) / len(txs) * 1e6

    def scorer_score() -> float:
        scorer = Scorer(Bundle(booster, card, state_frame))
        t = time.perf_counter()
        for tx in txs:
            scorer.score(tx)
        return (time.perf_counter() - t) / len(txs) * 1e6

    figures = {
        "rows": transactions.height,
        "simulate_rows_per_s": transactions.height / simulate_s,
        "offline_features_rows_per_s": offline_rows_s,
        "raw_inplace_predict_us_per_row": repeat(raw_predict, args.repeats),
        "online_features_us_per_tx": repeat(online_features, args.repeats),
        "scorer_score_us_per_tx": repeat(scorer_score, args.repeats),
    }
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "polars": pl.__version__,
        "numpy": np.__version__,
        "xgboost": __import__("xgboost").__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps({"machine": machine, "figures": figures}, indent=2))
    lines = [
        f"Scoring benchmark ({transactions.height:,} simulated rows; "
        f"{machine['cpus']} CPUs, Python {machine['python']})",
        "",
        "| figure | median | min | max |",
        "|---|---|---|---|",
    ]
    for key, value in figures.items():
        if isinstance(value, dict):
            lines.append(f"| {key} | {value['median']:,.1f} | {value['min']:,.1f} | {value['max']:,.1f} |")
        else:
            lines.append(f"| {key} | {value:,.1f} | | |")
    table = "\n".join(lines)
    (RESULTS / "scoring.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
