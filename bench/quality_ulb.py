"""Quality on ULB's creditcard.csv (Kaggle): our model and a logistic regression on a time split.

Needs the file (284,807 rows: ``Time``, ``V1``..``V28``, ``Amount``, ``Class``; some copies carry an
unnamed index column first): ``--data PATH``; it is not in ../shared and cannot be downloaded on the
development machine (network limited to package registries), so bench/results holds no figure from it yet.
Read through the shipped ``ulb-creditcard`` profile (exact duplicate rows count once, as the ingest counts
them). Writes bench/results/quality-ulb.{json,md} (``--out`` elsewhere).

Split by ``Time``: the first 70 % of the time range to learn (its last fifth as the validation window
for early stopping and the threshold), the last 30 % to test. Labels are the file's, known at once
(the profile's delay 0: the file has no later label stream). Compared on the test window (AUC ROC, AP):
XGBoost on the profile's features (``V1``..``V28``, amount, weekend/night flags) and our logistic-regression
baseline on the same features (standardised).

Run: uv run python bench/quality_ulb.py --data creditcard.csv [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/...`

import polars as pl

from bench.harness import ROOT, seed_summary
from data.profiles import load_profile
from data.sources import read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from model.splits import TimeSplit
from model.training import TrainingConfig, train_model
from validation.raw import validate_raw

TRAIN_SHARE, VALID_SHARE_OF_TRAIN = 0.7, 0.2


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="creditcard.csv in ULB's layout")
    parser.add_argument("--seeds", type=int, default=3, help="XGBoost seeds (mean and range reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    return parser.parse_args()


def time_split(times: pl.Series) -> TimeSplit:
    """Train | valid | test by shares of the time range (no gap: labels are known at once)."""
    first, last = times.min(), times.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    span = last - first
    test_from = first + span * TRAIN_SHARE
    valid_from = first + span * TRAIN_SHARE * (1 - VALID_SHARE_OF_TRAIN)
    end = last + timedelta(microseconds=1)
    bounds = ((first, valid_from), (valid_from, test_from), (test_from, end))
    days = [b.date() for pair in bounds for b in pair]
    return TimeSplit(days[0], days[1], days[2], days[3], days[4], days[5], bounds)  # type: ignore[arg-type]


def main() -> None:
    """Run the comparison and write the results."""
    args = parse_args()
    profile = load_profile("ulb-creditcard")
    mapped = to_canonical_frame(read_table(args.data), profile)
    first_rows = mapped.filter(pl.col("transaction_id").is_first_distinct())
    accepted = validate_raw(first_rows).accepted
    spec = FeatureSpec.for_profile(profile, label_delay_days=0)
    features = compute_features(accepted, spec)
    split = time_split(features["tx_datetime"])
    runs: dict[str, list[dict[str, float]]] = {"xgboost": [], "logistic": []}
    for seed in range(args.seeds):
        result = train_model(features, spec, split, TrainingConfig(seed=seed))
        runs["xgboost"].append({"auc": result.metrics["test_auc"], "ap": result.metrics["test_ap"]})
        runs["logistic"].append({"auc": result.baseline_metrics["test_auc"], "ap": result.baseline_metrics["test_ap"]})
    test = split.select(features, "test")
    payload: dict[str, Any] = {
        "data": str(args.data),
        "rows": {"read": mapped.height, "duplicates": mapped.height - first_rows.height, "accepted": accepted.height},
        "split": split.to_dict(),
        "test": {"rows": test.height, "frauds": int(test["is_fraud"].sum())},
        "seeds": args.seeds,
        "models": {name: seed_summary(rs) for name, rs in runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality-ulb.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Quality on ULB's creditcard.csv (bench/quality_ulb.py)",
        "",
        f"{payload['data']}: {mapped.height:,} rows read, {payload['rows']['duplicates']:,} duplicates; test "
        f"{split.to_dict()['test_from'][:16]}.. ({test.height:,} rows, {payload['test']['frauds']} frauds).",
        "",
        "| model | AUC ROC | AP |",
        "|---|---|---|",
    ]
    for name, m in payload["models"].items():
        lines.append(
            f"| {name} | {m['auc']['mean']:.3f} ({m['auc']['min']:.3f}..{m['auc']['max']:.3f}) | "
            f"{m['ap']['mean']:.3f} ({m['ap']['min']:.3f}..{m['ap']['max']:.3f}) |"
        )
    (args.out / "quality-ulb.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
