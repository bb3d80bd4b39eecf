"""Benchmark the Delta lake: landing transactions and label events, and reading an as-of training set.

Reads ``../shared/data/handbook/transactions_2018-04-01_2018-08-31.parquet`` (1.47 M real external
transactions, with their labels); without it, the simulated handbook-size world stands in and the source
note says so. Writes bench/results/lake.{json,md}.

Figures (seconds, median of several repeats, with min and max), each beside a pure-I/O ceiling:
- land_full: ``Lake.land`` of the whole file (canonical, validated) into an empty lake: the transactions
  merge plus its 1.47 M ``dataset`` label events; ceiling: one ``write_parquet`` of the same frame;
- land_day: one new day (~9.5 k rows, the file's last day moved past the lake's newest) into the full
  lake; ceiling: ``write_parquet`` of that day;
- land_labels_100k: 100 k label events (a chargeback file) into the full lake's 1.47 M events; ceiling:
  ``write_parquet`` of those events;
- read_as_of: the as-of training set (every transaction with ``is_fraud`` as known at a cutoff one week
  before the newest day); ceiling: ``pl.read_parquet`` of the source file.

Goals: land_full <= 5 s, land_day <= 1 s, land_labels_100k <= 1 s, read_as_of <= 5 s.

Run: uv run python bench/bench_lake.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/bench_lake.py`

import polars as pl

from bench.harness import ROOT, Figure, measure, write_results
from data.labels import as_label_events
from data.lake import Lake
from data.simulator import SimulatorConfig, simulate_transactions
from data.sources import read_table, to_canonical_frame
from validation.raw import validate_raw

HANDBOOK = ROOT.parent / "shared" / "data" / "handbook" / "transactions_2018-04-01_2018-08-31.parquet"
GOALS_S = {"land_full": 5.0, "land_day": 1.0, "land_labels_100k": 1.0, "read_as_of": 5.0}
LABEL_EVENTS = 100_000


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="first 200k rows of the file, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; --quick 2)")
    args = parser.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 3)
    return args


def main() -> None:
    """Run the benchmark and write the results."""
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="fraudops-bench-lake-"))
    try:
        if HANDBOOK.exists():
            source, note = HANDBOOK, f"reads ../shared/data/handbook/{HANDBOOK.name} (real external data)"
        else:
            source = work / "simulated.parquet"
            simulate_transactions(SimulatorConfig()).write_parquet(source)
            note = "../shared handbook file not found: the simulated handbook-size world instead"
        accepted = validate_raw(to_canonical_frame(read_table(source))).accepted
        if args.quick:
            accepted = accepted.head(200_000)
            note += ", first 200,000 rows (--quick)"
        rows = accepted.height
        last_day = accepted["tx_datetime"].dt.date().max()
        history, day = accepted.filter(pl.col("tx_datetime").dt.date() < last_day), None

        def fresh(sub: str) -> Lake:
            return Lake(Path(tempfile.mkdtemp(dir=work, prefix=sub)))

        land_full = measure(lambda lake: lake.land(accepted), args.repeats, setup=lambda: fresh("full-"))
        write_full = measure(lambda: accepted.write_parquet(work / "full.parquet"), args.repeats)

        lake = fresh("lake-")
        lake.land(history)
        versions = lake.versions()
        day = accepted.filter(pl.col("tx_datetime").dt.date() == last_day)
        shifts = iter(range(1, 100))

        def new_day() -> pl.DataFrame:
            k = next(shifts)  # a day after the newest each time, with fresh ids
            return day.with_columns(pl.col("transaction_id") + f"-d{k}", pl.col("tx_datetime") + pl.duration(days=k))

        land_day = measure(lambda batch: lake.land(batch), args.repeats, setup=new_day)
        write_day = measure(lambda: day.write_parquet(work / "day.parquet"), args.repeats)

        counter = iter(range(1, 100))
        sample = history.sample(min(LABEL_EVENTS, history.height), seed=7)

        def chargebacks() -> pl.DataFrame:
            k = next(counter)  # distinct label times: every repeat lands new events
            return as_label_events(
                sample.select(
                    "transaction_id",
                    is_fraud=pl.lit(1, pl.Int8),
                    label_time=pl.col("tx_datetime") + pl.duration(days=10, seconds=k),
                    source=pl.lit("chargeback"),
                )
            )

        events = chargebacks()
        land_labels = measure(lambda batch: lake.land_labels(batch), args.repeats, setup=chargebacks)
        write_labels = measure(lambda: events.write_parquet(work / "labels.parquet"), args.repeats)

        cutoff = datetime.combine(last_day - timedelta(days=7), time(), UTC)
        training = lake.read(as_of=cutoff, versions=versions)
        read_as_of = measure(lambda: lake.read(as_of=cutoff, versions=versions), args.repeats)
        read_file = measure(lambda: pl.read_parquet(source), args.repeats)
        assert training.height == history.height, "the as-of read lost rows"
        pending = training["is_fraud"].null_count()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = [
        Figure("write_parquet_full", write_full, note="ceiling: one write_parquet of the validated frame"),
        Figure(
            "land_full",
            land_full,
            "write_parquet_full",
            write_full,
            note=f"{rows:,} rows + their dataset label events into an empty lake (Delta merge, date partitions)",
        ),
        Figure("write_parquet_day", write_day, note="ceiling: write_parquet of one day"),
        Figure(
            "land_day",
            land_day,
            "write_parquet_day",
            write_day,
            note=f"one new day ({day.height:,} rows + labels) into the full lake",
        ),
        Figure("write_parquet_labels", write_labels, note=f"ceiling: write_parquet of {events.height:,} events"),
        Figure(
            "land_labels_100k",
            land_labels,
            "write_parquet_labels",
            write_labels,
            note=f"{events.height:,} chargeback events into the full lake's labels (dedupe merge, contradictions)",
        ),
        Figure("read_parquet_file", read_file, note="ceiling: pl.read_parquet of the source file"),
        Figure(
            "read_as_of",
            read_as_of,
            "read_parquet_file",
            read_file,
            note=f"training set as of {cutoff:%Y-%m-%d}: {training.height:,} rows, labels as known then "
            f"({pending:,} pending), at fixed table versions",
        ),
    ]
    medians = {f.name: round(f.value.median, 3) for f in figures if f.name in GOALS_S}
    path = write_results(
        "lake",
        figures,
        extra={
            "rows": rows,
            "day_rows": day.height,
            "label_events": events.height,
            "seconds_median": medians,
            "goals_s": GOALS_S,
            "within_goals": {k: medians[k] <= v for k, v in GOALS_S.items()},
            "quick": args.quick,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other work on the machine skews figures
        },
        source_note=note,
    )
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
