"""Published protocols (windows, known-defrauded exclusion), the budgeted search and the evaluate flow.

Everything runs on constructed or simulated data: nothing here reads ../shared.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from data.simulator import SimulatorConfig, simulate_transactions
from features.definitions import FeatureSpec, compute_features
from model.protocols import (
    MODELS,
    PROTOCOLS,
    Anchors,
    Fold,
    Protocol,
    Window,
    build_protocol,
    exclude_known_defrauded,
    investigator_labels,
    perfect_card_precision,
    run_protocol,
)
from model.search import SEARCHED, neighbour, search
from model.training import TrainingConfig

SPEC = FeatureSpec(label_delay_days=7)
HANDBOOK_DAYS = (date(2018, 4, 1), date(2018, 8, 31))
FAST = TrainingConfig(n_estimators=30, early_stopping_rounds=10, max_depth=4, n_threads=1)


def _row(tx: str, customer: str, day: date, fraud: int, hour: int = 12) -> dict[str, Any]:
    when = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return {"transaction_id": tx, "tx_datetime": when, "customer_id": customer, "is_fraud": fraud}


def test_known_defrauded_cards_leave_the_test_set_once_their_label_is_known() -> None:
    known_from, test = date(2018, 7, 25), Window(date(2018, 8, 8), date(2018, 8, 14))
    frauds = {
        "train-week": date(2018, 7, 27),  # known before the first test day: every test row excluded
        "delay-gap": date(2018, 8, 1),  # label known from 08-09 (8 days later): kept on 08-08 only
        "test-week": date(2018, 8, 8),  # label arrives after the test week: always kept
        "before-train": date(2018, 7, 20),  # before the known period: ignored
        "late-gap": date(2018, 8, 5),  # known from 08-13: kept 08-08 .. 08-12
    }
    rows = [_row(f"f-{c}", c, d, 1, hour=3) for c, d in frauds.items()]
    for offset in range(7):
        day = test.start + timedelta(days=offset)
        rows += [_row(f"{c}-{day}", c, day, 0) for c in [*frauds, "genuine"]]
    frame = pl.DataFrame(rows)
    kept = exclude_known_defrauded(frame, test, known_from, delay_days=7)

    days = [test.start + timedelta(days=i) for i in range(7)]
    expected = {f"genuine-{d}" for d in days} | {f"test-week-{d}" for d in days} | {"f-test-week"}
    expected |= {f"before-train-{d}" for d in days} | {"delay-gap-2018-08-08"}
    expected |= {f"late-gap-{d}" for d in days if d <= date(2018, 8, 12)}
    assert set(kept["transaction_id"]) == expected
    assert kept.height == len(expected)


def test_exclusion_matches_a_day_by_day_reading_of_the_rule(small_transactions: pl.DataFrame) -> None:
    first = small_transactions["tx_datetime"].min().date()  # type: ignore[union-attr]
    known_from = first + timedelta(days=20)
    test = Window.days_from(known_from + timedelta(days=14))
    kept = exclude_known_defrauded(small_transactions, test, known_from, delay_days=7)

    day = pl.col("tx_datetime").dt.date()
    expected = []
    for offset in range(test.days):
        d = test.start + timedelta(days=offset)
        known = small_transactions.filter(
            (pl.col("is_fraud") == 1) & (day >= known_from) & (day <= d - timedelta(days=8))
        )["customer_id"].unique()
        expected.append(small_transactions.filter((day == d) & ~pl.col("customer_id").is_in(known.implode())))
    assert sorted(kept["transaction_id"]) == sorted(pl.concat(expected)["transaction_id"])
    assert 0 < kept.height < test.select(small_transactions).height


def test_perfect_ranker_card_precision_counts_compromised_cards_per_day() -> None:
    rows = [_row(f"t{i}", f"c{i}", date(2018, 8, 8), int(i < 3)) for i in range(10)]
    assert perfect_card_precision(pl.DataFrame(rows), k=5) == pytest.approx(3 / 5)


def test_published_windows() -> None:
    strict = build_protocol("A-strict", *HANDBOOK_DAYS, SPEC)
    (fold,) = strict.test_folds
    assert (fold.train, fold.test) == (
        Window(date(2018, 7, 25), date(2018, 7, 31)),
        Window(date(2018, 8, 8), date(2018, 8, 14)),
    )
    assert fold.stop == Window(date(2018, 7, 18), date(2018, 7, 24)) and fold.known_from == date(2018, 7, 25)

    extended = build_protocol("A-extended", *HANDBOOK_DAYS, SPEC)
    (ext,) = extended.test_folds
    assert ext.test == fold.test and ext.known_from == fold.known_from and extended.refit
    assert ext.train == Window(date(2018, 4, 1) + timedelta(days=SPEC.history_days), date(2018, 7, 31))
    assert extended.valid_folds[-1].test == Window(date(2018, 7, 25), date(2018, 7, 31))
    assert extended.valid_folds[-1].train.end == date(2018, 7, 17)

    b = build_protocol("B", *HANDBOOK_DAYS, SPEC)
    assert [f.train.start for f in b.test_folds] == [date(2018, 7, 25) + timedelta(days=7 * i) for i in range(4)]
    assert [f.test.start for f in b.test_folds] == [date(2018, 8, 8) + timedelta(days=7 * i) for i in range(4)]
    oldest = b.test_folds[0]  # B's oldest fold is protocol A
    assert (oldest.train, oldest.stop, oldest.test) == (fold.train, fold.stop, fold.test)
    assert oldest.known_from == fold.known_from
    assert b.test_folds[-1].test == Window(date(2018, 8, 29), date(2018, 8, 31))  # the file ends on 08-31
    assert [f.train.start for f in b.valid_folds] == [date(2018, 6, 20) + timedelta(days=7 * i) for i in range(4)]
    assert b.valid_folds[-1].test == Window(date(2018, 7, 25), date(2018, 7, 31))
    assert strict.valid_folds == b.valid_folds


@pytest.mark.parametrize("name", PROTOCOLS)
def test_validation_precedes_every_test_window_under_the_delay(name: str) -> None:
    protocol = build_protocol(name, *HANDBOOK_DAYS, SPEC)
    delay = SPEC.label_delay_days
    first_test = min(f.test.start for f in protocol.test_folds)
    for fold in protocol.valid_folds:
        for window in (fold.train, fold.test, *([fold.stop] if fold.stop else [])):
            assert window.gap_before(Window(first_test, first_test)) >= delay, (fold.name, window)
            for test_fold in protocol.test_folds:
                assert window.end < test_fold.test.start
    for fold in protocol.test_folds:
        assert fold.train.gap_before(fold.test) >= delay
        if fold.stop is not None:
            assert fold.stop.gap_before(fold.test) >= delay and fold.stop.end < fold.train.start
        assert fold.known_from <= fold.train.end < fold.test.start


@pytest.mark.parametrize("kind", ["test_folds", "valid_folds"])
def test_prequential_folds_shift_by_a_week(kind: str) -> None:
    folds = getattr(build_protocol("B", *HANDBOOK_DAYS, SPEC), kind)
    assert len(folds) == 4
    for older, newer in itertools.pairwise(folds):
        for part in ("train", "stop"):
            assert (getattr(newer, part).start - getattr(older, part).start).days == 7
        assert (newer.test.start - older.test.start).days == 7
    for fold in folds:
        assert fold.train.days == 7 and (fold.test.start - fold.train.end).days == 8


def test_a_leaking_protocol_is_refused() -> None:
    fold = Fold("test", Window.days_from(date(2018, 7, 25)), Window.days_from(date(2018, 8, 8)), date(2018, 7, 25))
    leaky = Fold("valid", Window.days_from(date(2018, 7, 18)), Window.days_from(date(2018, 8, 3)), date(2018, 7, 18))
    with pytest.raises(ValueError, match="within the delay"):
        Protocol("leaky", 7, (fold,), (leaky,)).check(*HANDBOOK_DAYS)
    with pytest.raises(ValueError, match="outside the data"):
        build_protocol("B", date(2018, 4, 1), date(2018, 8, 20), SPEC)
    with pytest.raises(ValueError, match="unknown protocol"):
        build_protocol("C", *HANDBOOK_DAYS, SPEC)


@pytest.fixture(scope="module")
def small_features(small_transactions: pl.DataFrame) -> pl.DataFrame:
    return compute_features(small_transactions, SPEC)


def _split(features: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    first = features["tx_datetime"].min().date()  # type: ignore[union-attr]
    train = Window(first + timedelta(days=7), first + timedelta(days=37))
    return train.select(features), Window.days_from(train.end + timedelta(days=8), 14).select(features)


def test_search_evaluates_base_first_and_respects_max_trials(small_features: pl.DataFrame) -> None:
    train, valid = _split(small_features)
    result = search(train, valid, SPEC, FAST, budget_seconds=1e9, seed=3, max_trials=3)
    assert len(result.trials) == 3
    assert result.trials[0].config == FAST and result.trials[0].changed == ()
    assert all(t.config != FAST for t in result.trials[1:])
    assert result.best_ap == max(t.ap for t in result.trials) >= result.base_ap
    assert result.best_trial.config == result.best and len(result.boosters) == 1
    again = search(train, valid, SPEC, FAST, budget_seconds=1e9, seed=3, max_trials=3)
    assert [(t.config, t.ap) for t in again.trials] == [(t.config, t.ap) for t in result.trials]


def test_search_stops_at_the_budget_but_always_runs_base(small_features: pl.DataFrame) -> None:
    train, valid = _split(small_features)
    result = search(train, valid, SPEC, FAST, budget_seconds=0.0, seed=3)
    assert len(result.trials) == 1 and result.best == FAST
    timed = search(train, valid, SPEC, FAST, budget_seconds=2.0, seed=3, max_trials=200)
    assert 1 <= len(timed.trials) < 200
    assert timed.seconds < 2.0 + 2 * max(t.seconds for t in timed.trials)


def test_neighbours_stay_in_range_and_change_at_most_three_parameters() -> None:
    rng = np.random.default_rng(0)
    config = TrainingConfig()
    for _ in range(300):
        candidate, changed = neighbour(config, rng)
        assert set(changed) <= set(SEARCHED) and len(changed) <= 3
        assert 2 <= candidate.max_depth <= 12 and 0.01 <= candidate.learning_rate <= 0.5
        assert 0.4 <= candidate.subsample <= 1 and 0.4 <= candidate.colsample_bytree <= 1
        assert candidate.scale_pos_weight >= 1 and 50 <= candidate.n_estimators <= 2_000
        config = candidate


# A small world whose first day is day 0; the anchors put every protocol inside its 80 days.
WORLD_START = date(2026, 1, 5)
WORLD = SimulatorConfig.scaled(250, 500, 80, seed=5, start_date=WORLD_START)
SMALL_ANCHORS = Anchors(
    train_start=WORLD_START + timedelta(days=50),
    test_anchor=WORLD_START + timedelta(days=57),
    valid_anchor=WORLD_START + timedelta(days=36),
    folds=2,
    valid_folds=2,
    extended_valid_folds=1,
    go_live_weeks=2,  # A-feedback's investigations start on day 59, before the test (day 64)
)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_small_anchors_make_valid_protocols(name: str) -> None:
    protocol = build_protocol(name, WORLD_START, WORLD_START + timedelta(days=79), SPEC, SMALL_ANCHORS)
    assert protocol.test_folds and protocol.valid_folds


@pytest.fixture(scope="module")
def simulated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evaluate") / "simulated.parquet"
    simulate_transactions(WORLD).write_parquet(path)
    return path


@pytest.mark.slow
def test_run_protocol_reports_both_models_on_every_fold(simulated_file: Path) -> None:
    features = compute_features(pl.read_parquet(simulated_file), SPEC)
    protocol = build_protocol("B", WORLD_START, WORLD_START + timedelta(days=79), SPEC, SMALL_ANCHORS)
    result = run_protocol(features, protocol, SPEC, FAST, budget_seconds=0, max_trials=1)
    assert len(result.folds) == 2
    for fold in result.folds:
        assert fold["test_frauds"] > 0 and 0 < fold["perfect_cp_at_100"] <= 1
        for model in MODELS:
            assert set(fold[model]["scenarios"]) <= {"1", "2", "3"}
    assert result.models["xgboost"]["ap"] == pytest.approx(np.mean([f["xgboost"]["ap"] for f in result.folds]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["A-extended", "A-feedback", "B"])
def test_evaluate_flow_writes_the_results_json_and_an_mlflow_run(
    prefect_harness: None, simulated_file: Path, tmp_path: Path, name: str
) -> None:
    import mlflow

    from config.settings import Settings
    from flows.evaluate import evaluate_flow

    out = tmp_path / "quality.json"
    feature_set = "labels" if name == "A-feedback" else "extended"
    returned = evaluate_flow(
        name,
        str(simulated_file),
        json_out=str(out),
        feature_set=feature_set,
        budget_seconds=0,
        max_trials=2,
        anchors=SMALL_ANCHORS,
    )
    written = json.loads(out.read_text())
    for model in MODELS:
        for key in ("auc", "ap", "cp_at_100"):
            value = written[model][key]
            assert isinstance(value, float) and math.isfinite(value) and 0 <= value <= 1, (model, key, value)
    assert written["protocol"] == name and written["published_test_set_check"] is None
    assert written["test_set"]["transactions"] > 0 and written["search"]["n_trials"] <= 2
    assert returned["xgboost"]["ap"] == pytest.approx(written["xgboost"]["ap"])
    if name == "A-feedback":  # investigations from the go-live: 100 cards a day at most, frauds among them
        investigations = written["investigations"]
        assert investigations["start"] == (WORLD_START + timedelta(days=59)).isoformat()
        assert 0 < investigations["cards"] <= 100 * investigations["days"]
        assert 0 < investigations["frauds_found"] <= investigations["frauds_from_go_live"]
    else:
        assert written["investigations"] is None

    run = mlflow.MlflowClient(Settings().tracking_uri).get_run(written["mlflow_run_id"])
    assert run.data.params["protocol"] == name
    assert run.data.metrics["xgboost_ap"] == pytest.approx(written["xgboost"]["ap"])
    assert run.data.metrics["test_frauds"] == written["test_set"]["frauds"]


def test_investigators_label_each_days_top_cards_the_next_day() -> None:
    """Top-k cards per day by their highest score; all their transactions of the day, known the next day."""
    day0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    rows = [
        # (id, time, card, truth, score): day 0 ranks c1 (0.9) over c2 (0.8) over c3; day 1 ranks c3 first.
        ("a", day0, "c1", 1, 0.9),
        ("b", day0 + timedelta(hours=2), "c1", 0, 0.1),  # c1's other transaction that day comes along
        ("c", day0, "c2", 0, 0.8),
        ("d", day0, "c3", 1, 0.2),
        ("e", day0 + timedelta(days=1), "c3", 1, 0.7),
        ("f", day0 + timedelta(days=1), "c1", 0, 0.3),
        ("g", day0 - timedelta(days=1), "c9", 1, 0.99),  # before the go-live: never investigated
    ]
    scored = pl.DataFrame(
        rows, schema=["transaction_id", "tx_datetime", "customer_id", "is_fraud", "score"], orient="row"
    )
    events, summary = investigator_labels(scored, day0.date(), capacity=2)
    got = {r["transaction_id"]: (r["is_fraud"], r["label_time"], r["source"]) for r in events.to_dicts()}
    next_day = datetime(2026, 3, 3, tzinfo=UTC)
    assert got == {
        "a": (1, next_day, "analyst"),
        "b": (0, next_day, "analyst"),
        "c": (0, next_day, "analyst"),
        "e": (1, next_day + timedelta(days=1), "analyst"),
        "f": (0, next_day + timedelta(days=1), "analyst"),
    }
    assert (summary["cards"], summary["transactions"], summary["frauds_found"], summary["frauds_from_go_live"]) == (
        4,
        5,
        2,
        3,
    )
