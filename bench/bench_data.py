"""Benchmark the data stage: simulator at handbook size, and ingest of the handbook Parquet by stage.

Reads ``../shared/data/handbook/transactions_2018-04-01_2018-08-31.parquet`` (1.47 M real external
transactions) when it exists; without it, the ingest figures use the simulated world instead and
the source note says so. Writes bench/results/data.{json,md}.

Figures (median of several repeats, with min and max):
- simulate: handbook-size world (5,000 customers, 10,000 terminals, 183 days), rows/s;
- ingest stages on the same rows: read + map to canonical, GX raw suite, landing in a fresh lake;
- features: all offline features on the ingested rows, next to one sort + cumulative sum pass;
  online parity (the last 10,000 transactions scored one at a time vs the offline vectors);
- ingest total (the three stages in one call, what the ingest flow does minus Prefect bookkeeping),
  next to its ceiling: Polars reading the file and writing it once as Parquet (pure I/O).

Run: uv run python bench/bench_data.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_data.py`

import numpy as np
import polars as pl

from bench.harness import ROOT, Figure, measure, throughput, write_results
from data.lake import Lake
from data.simulator import SimulatorConfig, simulate_transactions
from data.sources import read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features, to_epoch_us
from features.stores.memory import MemoryFeatureStore
from validation.raw import validate_raw

HANDBOOK = ROOT.parent / "shared" / "data" / "handbook" / "transactions_2018-04-01_2018-08-31.parquet"


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small world, 60k-row ingest sample, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; --quick 2)")
    args = parser.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 3)
    return args


def online_parity(transactions: pl.DataFrame, spec: FeatureSpec, n: int) -> dict[str, float]:
    """Score the last ``n`` transactions one at a time online; max abs difference to the offline vectors."""
    ordered = transactions.sort("tx_datetime", "transaction_id")
    expected = compute_features(ordered, spec).tail(n).select(spec.feature_names).to_numpy()
    state = MemoryFeatureStore.from_transactions(ordered.head(ordered.height - n), spec)
    worst = 0.0
    cols = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")
    for i, (tid, when, cust, term, amount, label) in enumerate(ordered.tail(n).select(cols).iter_rows()):
        t_us = to_epoch_us(when)
        worst = max(worst, float(np.abs(state.features(tid, cust, term, t_us, amount, when) - expected[i]).max()))
        state.observe(tid, cust, term, t_us, amount)
        state.add_label(tid, label, t_us + spec.label_delay_days * 86_400_000_000, "dataset")
    return {"transactions": n, "max_abs_diff": worst}


def main() -> None:
    """Run the benchmark and write the results."""
    args = parse_args()
    world = SimulatorConfig.scaled(500, 1_000, 60) if args.quick else SimulatorConfig()
    rows_sim = simulate_transactions(world).height
    simulate_s = measure(lambda: simulate_transactions(world), args.repeats)

    work = Path(tempfile.mkdtemp(prefix="fraudops-bench-data-"))
    try:
        if HANDBOOK.exists():
            source = HANDBOOK
            note = f"ingest reads ../shared/data/handbook/{HANDBOOK.name} (real external data)"
            if args.quick:
                source = work / "handbook-sample.parquet"
                pl.read_parquet(HANDBOOK, n_rows=60_000).write_parquet(source)
                note += ", first 60,000 rows (--quick)"
        else:
            source = work / "simulated.parquet"
            simulate_transactions(world).write_parquet(source)
            note = "../shared handbook file not found: ingest uses the simulated world instead"
        mapped = to_canonical_frame(read_table(source))
        rows = mapped.height
        validated = validate_raw(mapped)
        assert validated.received == rows, "validation lost rows"

        def fresh_lake() -> Lake:
            target = Path(tempfile.mkdtemp(dir=work))
            return Lake(target)

        def land(lake: Lake) -> None:
            report = lake.land(validated.accepted)
            assert report.landed + report.duplicates == validated.accepted.height

        def ingest(lake: Lake) -> None:
            checked = validate_raw(to_canonical_frame(read_table(source)))
            lake.land(checked.accepted)

        def copy_io() -> None:
            pl.read_parquet(source).write_parquet(work / "copy.parquet")

        transactions = validated.accepted
        spec = FeatureSpec()
        features_s = measure(lambda: compute_features(transactions, spec), args.repeats)
        cumsum_s = measure(
            lambda: transactions.sort("tx_datetime").select(pl.col("amount").cum_sum().over("customer_id")),
            args.repeats,
        )
        parity = online_parity(transactions, spec, 2_000 if args.quick else 10_000)
        read_s = measure(lambda: to_canonical_frame(read_table(source)), args.repeats)
        validate_s = measure(lambda: validate_raw(mapped), args.repeats)
        land_s = measure(land, args.repeats, setup=fresh_lake)
        ingest_s = measure(ingest, args.repeats, setup=fresh_lake)
        ceiling = throughput(measure(copy_io, args.repeats), rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cumsum = throughput(cumsum_s, rows)
    figures = [
        Figure("cumsum_pass", cumsum, note="ceiling: one sort + one per-customer cumulative sum"),
        Figure(
            "features_offline",
            throughput(features_s, rows),
            ceiling_name="cumsum_pass",
            ceiling=cumsum,
            note=f"compute_features, all {len(FeatureSpec().feature_names)} features (baseline 15 + behavioural)",
        ),
        Figure("simulate", throughput(simulate_s, rows_sim), note=f"{rows_sim:,} rows, handbook design"),
        Figure("ingest_read_map", throughput(read_s, rows), note="read_table + to_canonical_frame"),
        Figure("ingest_gx_validate", throughput(validate_s, rows), note="raw GX suite incl. Polars->pandas"),
        Figure("ingest_land", throughput(land_s, rows), note="dedupe + date partitions, atomic writes, fresh lake"),
        Figure("io_copy", ceiling, note="ceiling: Polars read + one Parquet write of the same file"),
        Figure(
            "ingest_total",
            throughput(ingest_s, rows),
            ceiling_name="io_copy",
            ceiling=ceiling,
            note="read + map + GX + land into a fresh lake (the ingest flow without Prefect)",
        ),
    ]
    total = ingest_s.median
    path = write_results(
        "data",
        figures,
        extra={
            "simulated_rows": rows_sim,
            "ingest_rows": rows,
            "rejected": validated.rejected.height,
            "ingest_seconds_median": round(total, 2),
            "features_seconds_median": round(features_s.median, 2),
            "online_parity": parity,
            "targets": {"ingest_seconds": 20, "simulate_seconds": 30, "features_seconds": 10, "parity_max_abs": 1e-6},
            "quick": args.quick,
        },
        source_note=f"simulator: {world.n_customers:,} customers, {world.n_terminals:,} terminals, "
        f"{world.n_days} days; {note}",
    )
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
