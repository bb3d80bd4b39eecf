"""What scoring in a dataset profile's own layout costs, in process, next to the canonical request and the booster.

Generated files in the layouts of ``sparkov-extract`` and ``ulb-creditcard`` (tests/samples.py; no
../shared): a model is trained on each (as tests/service/test_profiled.py does), then the scorer the service
runs scores the held-out rows one request at a time, sent as the file spells them. Per request: the
profile's mapping (``service.profiled.ProfiledRequests``: request model, ``to_canonical_frame``, checks,
``row_features``), online features, predict and reasons. Beside it, in the same run: the canonical
``TransactionIn`` request of a canonical-profile model (the product's hot path) and the ceiling, the raw
booster's ``inplace_predict`` on one prepared row. In-process calls, no HTTP: this is the mapping's cost,
not a latency point of the service (bench/bench_latency.py measures those under load).

Each path is called for ``--seconds`` (30 by default) after a warm-up, reporting p50, p90, p99, p99.9 and max.
Writes bench/results/profiled.{json,md}. Run: uv run python bench/bench_profiled.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/...`

import numpy as np
import polars as pl

from bench.harness import ROOT
from data.contract import TransactionIn
from data.profiles import load_profile
from data.sources import read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import train_model
from service.scoring import Scorer
from tests.samples import sparkov_extract_rows, ulb_rows, write_sparkov_extract, write_ulb

RESULTS = ROOT / "bench" / "results"
QUANTILES = (50, 90, 99, 99.9)


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="held-out rows per layout (sent in turn)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of calls per path (after a warm-up)")
    return parser.parse_args()


def _served(name: str, path: Path, held: int, canonical: bool = False) -> tuple[Scorer, list[Any], np.ndarray]:
    profile = load_profile(name)
    raw = read_table(path)
    mapped = to_canonical_frame(raw, profile)
    spec = FeatureSpec.for_profile(load_profile("canonical") if canonical else profile, label_delay_days=1)
    features = compute_features(mapped, spec)
    days = features["tx_datetime"].dt.date()
    result = train_model(features, spec, TimeSplit.ending_at(days.max(), days.min(), 1, 3, 3))
    card = result.model_card().registered_as("b", "run-b")
    if not canonical:
        card = card.model_copy(update={"profile": profile.model_dump(mode="json")})
    tail = features.tail(held)
    history = mapped.filter(~pl.col("transaction_id").is_in(tail["transaction_id"].implode()))
    scorer = Scorer(Bundle(result.booster, card, MemoryFeatureStore.from_transactions(history, spec).to_frame()))
    matrix = tail.select(spec.feature_names).to_numpy()
    if canonical:
        cols = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"]
        return scorer, [TransactionIn.model_construct(**r) for r in tail.select(cols).to_dicts()], matrix
    keyed = raw.with_columns(mapped["transaction_id"].alias("_id"))
    order = pl.DataFrame({"_id": tail["transaction_id"]}).with_row_index("_at")
    rows = keyed.join(order, on="_id").sort("_at").drop("_id", "_at", "_ragged_line", profile.label or "")
    return scorer, [{k: v for k, v in r.items() if k != ""} for r in rows.to_dicts()], matrix


def _timed(call: Any, items: list[Any], seconds: float) -> dict[str, float]:
    """Call on the items in turn, round after round, for ``seconds`` after a warm-up; per-call quantiles (ms).

    From the second round on, a request is one the state already knows: scored as of its own arrival,
    the same work but the state's insert (so later rounds are no slower than the first).
    """
    for item in items[:50]:
        call(item)
    spent: list[float] = []
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        for item in items:
            started = time.perf_counter_ns()
            call(item)
            spent.append((time.perf_counter_ns() - started) / 1e6)
            if len(spent) % 256 == 0 and time.perf_counter() >= ends:
                break
    values = np.array(spent)
    quantiles = {f"p{q:g}": float(np.percentile(values, q)) for q in QUANTILES}
    return quantiles | {"max": float(values.max()), "n": len(values), "seconds": seconds}


def main() -> None:
    """Measure and write the results."""
    args = parse_args()
    n = args.requests
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        extract = write_sparkov_extract(Path(tmp) / "x.csv", sparkov_extract_rows(n + 3000, seed=3))
        ulb = write_ulb(Path(tmp) / "u.csv", ulb_rows(n + 5000, seed=4, days=30, index_column=True))
        scorer, items, _ = _served("sparkov-extract", extract, n, canonical=True)
        figures["canonical request (TransactionIn), sparkov-extract data"] = _timed(
            scorer.score_one, items, args.seconds
        )
        for name, path in (("sparkov-extract", extract), ("ulb-creditcard", ulb)):
            scorer, items, matrix = _served(name, path, n)
            figures[f"{name} layout request"] = _timed(lambda r, s=scorer: s.score_batch([r]), items, args.seconds)
            booster = scorer.booster
            figures[f"{name}: ceiling, raw booster, one row"] = _timed(
                lambda row, b=booster: b.inplace_predict(row[None, :]), list(matrix), args.seconds
            )
    lines = [
        "# Scoring in a profile's layout, in process (bench/bench_profiled.py)",
        "",
        f"{args.seconds:g} s of calls per row (after a warm-up), one at a time, over {n:,} held-out requests sent "
        "in turn, on generated files (tests/samples.py); milliseconds per call.",
        "",
        "| path | calls | p50 | p90 | p99 | p99.9 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['n']:,.0f} | "
            + " | ".join(f"{f[k]:.3f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
            + " |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profiled.json").write_text(
        json.dumps({"requests": n, "seconds": args.seconds, "figures_ms": figures}, indent=2) + "\n"
    )
    (RESULTS / "profiled.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
