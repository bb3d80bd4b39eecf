"""Quality on the Sparkov extract users migrate from: our model against that dataset's existing pipeline.

Reads ``../shared/data/sparkov-extract/fraud_data.csv`` (14,446 rows, the public extract an Airflow +
FastAPI fraud pipeline trains on) through the shipped ``sparkov-extract`` profile. Writes
bench/results/quality-sparkov-extract.{json,md}.

The extract is a sample, not a stream: every transaction of 1-21 January 2019 (63 frauds, each
written twice), then
frauds only (to 11 December 2020), then genuine rows only (24-31 December 2020). Only January 2019
holds both classes, so the honest time split lives there (the profile's split, the one `fraudops
train` uses): train 1-10 January, one day's gap (labels known a day later), validation 12-15 January
(early stopping, threshold), test 17-21 January. Features read only the past: the later months are
never seen.

Compared, all on that test window (AUC ROC, AP; 5 seeds, mean and range):
- ``ours``: XGBoost on the profile's features (the card holder's and the merchant's windows, amount,
  category, city population, age, holder-merchant distance), as `fraudops train` fits it;
- ``ours_their_features``: the same XGBoost on the existing pipeline's four columns only;
- ``existing_on_time_split``: the existing pipeline's recipe (frauds upsampled to 50/50, a random forest
  on amt, age, city_pop, merch_long) fitted on our training window;
- ``existing_as_published``: that recipe as it runs there: the whole file upsampled to 50/50, then a
  random 80/20 split (copies of one fraud land on both sides, and the later months' frauds are in);
- ``logistic``: our logistic-regression baseline on our features.

Run: uv run python bench/quality_sparkov_extract.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/...`

import numpy as np
import polars as pl
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.utils import resample

from bench.harness import ROOT, seed_summary
from data.profiles import load_profile
from data.sources import read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from model.metrics import ranking_metrics
from model.splits import TimeSplit
from model.training import TrainingConfig, fit_xgboost_columns, train_model
from validation.raw import validate_raw

DATA = ROOT.parent / "shared" / "data" / "sparkov-extract" / "fraud_data.csv"
THEIR_FEATURES = ["tx_amount", "age_years", "city_pop", "merch_long"]
RESULTS = ROOT / "bench" / "results"


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the extract (default: ../shared/data/...)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per model (mean and range reported)")
    return parser.parse_args()


def _their_recipe(train: pl.DataFrame, seed: int) -> RandomForestClassifier:
    """Upsample frauds to 50/50, fit a random forest on the four columns (the existing pipeline's recipe)."""
    x, y = train.select(THEIR_FEATURES).to_numpy(), train["is_fraud"].to_numpy()
    fraud, genuine = x[y == 1], x[y == 0]
    more = resample(fraud, replace=True, n_samples=len(genuine), random_state=seed)
    xs = np.vstack([genuine, more])
    ys = np.concatenate([np.zeros(len(genuine)), np.ones(len(more))])
    return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=2).fit(xs, ys)


def main() -> None:
    """Run the comparison and write the results."""
    args = parse_args()
    profile = load_profile("sparkov-extract")
    mapped = to_canonical_frame(read_table(args.data), profile)
    # As the ingest does: a repeated id's first row competes, the copies are duplicates (the extract
    # holds each January 2019 fraud twice, as exact copies: 63 of them).
    first_rows = mapped.filter(pl.col("transaction_id").is_first_distinct())
    accepted = validate_raw(first_rows).accepted
    delay = profile.split.label_delay_days or 1
    spec = FeatureSpec.for_profile(profile, label_delay_days=delay)
    features = compute_features(accepted, spec).with_columns(
        pl.col("attr_merch_long").cast(pl.Float64).alias("merch_long")
    )
    end = profile.split.end or date(2019, 1, 21)
    first = features["tx_datetime"].dt.date().min()
    split = TimeSplit.ending_at(end, first, delay, profile.split.valid_days, profile.split.test_days)  # type: ignore[arg-type]
    train, test = split.select(features, "train"), split.select(features, "test")
    y_test = test["is_fraud"].to_numpy()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("ours", "ours_their_features", "logistic")}
    runs |= {"existing_on_time_split": [], "existing_as_published": []}
    for seed in range(args.seeds):
        ours = train_model(features, spec, split, TrainingConfig(seed=seed))
        runs["ours"].append({"auc": ours.metrics["test_auc"], "ap": ours.metrics["test_ap"]})
        runs["logistic"].append({"auc": ours.baseline_metrics["test_auc"], "ap": ours.baseline_metrics["test_ap"]})
        narrow = _narrow_xgb(split, features, seed)
        runs["ours_their_features"].append(narrow)
        forest = _their_recipe(train, seed)
        runs["existing_on_time_split"].append(
            ranking_metrics(y_test, forest.predict_proba(test.select(THEIR_FEATURES).to_numpy())[:, 1])
        )
        runs["existing_as_published"].append(_as_published(features, seed))
    payload = {
        "data": "../shared/data/sparkov-extract/fraud_data.csv" if args.data == DATA else str(args.data),
        "profile": profile.name,
        "rows": {"read": mapped.height, "accepted": accepted.height},
        "split": split.to_dict(),
        "label_delay_days": delay,
        "test": {"rows": len(y_test), "frauds": int(y_test.sum())},
        "train": {"rows": train.height, "frauds": int(train["is_fraud"].sum())},
        "seeds": args.seeds,
        "models": {name: seed_summary(r) for name, r in runs.items()},
        "features": {"ours": spec.feature_names, "existing": THEIR_FEATURES},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality-sparkov-extract.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "quality-sparkov-extract.md").write_text(_table(payload))
    print(_table(payload))


def _narrow_xgb(split: TimeSplit, features: pl.DataFrame, seed: int) -> dict[str, float]:
    """Our XGBoost recipe on the existing pipeline's four columns only (early-stopped on our validation window)."""
    import xgboost as xgb

    train, valid, test = (split.select(features, part) for part in ("train", "valid", "test"))
    booster = fit_xgboost_columns(train, valid, THEIR_FEATURES, TrainingConfig(seed=seed))
    matrix = xgb.DMatrix(test.select(THEIR_FEATURES).to_numpy(), feature_names=THEIR_FEATURES)
    scores = booster.predict(matrix, iteration_range=(0, booster.best_iteration + 1))
    return ranking_metrics(test["is_fraud"].to_numpy(), scores)


def _as_published(features: pl.DataFrame, seed: int) -> dict[str, float]:
    """The recipe as the existing pipeline runs it: upsample the whole file to 50/50, then a random 80/20 split."""
    labelled = features.filter(pl.col("is_fraud").is_not_null())
    x, y = labelled.select(THEIR_FEATURES).to_numpy(), labelled["is_fraud"].to_numpy()
    fraud, genuine = x[y == 1], x[y == 0]
    more = resample(fraud, replace=True, n_samples=len(genuine), random_state=seed)
    xs = np.vstack([genuine, more])
    ys = np.concatenate([np.zeros(len(genuine)), np.ones(len(more))])
    x_train, x_test, y_train, y_test = train_test_split(xs, ys, test_size=0.2, random_state=seed)
    forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=2).fit(x_train, y_train)
    return ranking_metrics(y_test, forest.predict_proba(x_test)[:, 1])


def _table(payload: dict[str, Any]) -> str:
    rows = [
        "# Quality on the Sparkov extract (bench/quality_sparkov_extract.py)",
        "",
        f"Data: {payload['data']} ({payload['rows']['read']:,} rows read, {payload['rows']['accepted']:,} accepted), "
        f"profile `{payload['profile']}`. "
        f"Time split {payload['split']['train_start']}..{payload['split']['train_end']} "
        f"train ({payload['train']['frauds']} frauds), test {payload['split']['test_start']}.."
        f"{payload['split']['test_end']} ({payload['test']['rows']:,} rows, {payload['test']['frauds']} frauds); "
        f"labels known {payload['label_delay_days']} day later. {payload['seeds']} seeds: mean (min..max).",
        "",
        "| model | test | AUC ROC | AP |",
        "|---|---|---|---|",
    ]
    where = {"existing_as_published": "random 80/20 of the upsampled file"}
    for name, figures in payload["models"].items():
        cells = [f"{figures[k]['mean']:.3f} ({figures[k]['min']:.3f}..{figures[k]['max']:.3f})" for k in ("auc", "ap")]
        rows.append(f"| {name} | {where.get(name, 'time split')} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
