"""The simulator's live mode (data/live.py): days without labels, label events delivered when they are due.

The champion's ranking is an input here (``scores``); tests/flows/test_simulate_live.py ranks with a real champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from data.contract import SCENARIO_COLUMN
from data.labels import LABEL_COLUMNS
from data.live import (
    LiveDay,
    LiveLabelConfig,
    LiveState,
    alerted_cards,
    begin_live_day,
    day_config,
    day_end,
    emit_live_day,
    live_dir,
    next_live_day,
    next_midnight,
)
from data.simulator import SimulatorConfig, simulate_transactions

FIRST = date(2026, 4, 1)
WORLD = SimulatorConfig.scaled(300, 600, 1, seed=5, start_date=FIRST)
DAY_US = 86_400 * 1_000_000


def ranked_by_amount(truth: pl.DataFrame) -> pl.DataFrame:
    """A stand-in ranking (the amount): the champion's own ranking is checked in the flow test."""
    return truth.select("transaction_id", "tx_datetime", "customer_id", score=pl.col("amount"))


@dataclass
class Run:
    days: list[LiveDay]
    truth: pl.DataFrame  # every simulated day, with is_fraud and the scenario
    files: dict[date, pl.DataFrame]  # label file of each day that had one
    state: LiveState


def run_live(home: Path, n_days: int, config: LiveLabelConfig, ranked: bool = True) -> Run:
    state = LiveState(live_dir(home, WORLD))
    days, truths, files = [], [], {}
    for i in range(n_days):
        day = next_live_day(None, state, FIRST)
        assert day == FIRST + timedelta(days=i)
        truth = simulate_transactions(day_config(WORLD, day))
        scores = ranked_by_amount(truth) if ranked else None
        out = emit_live_day(
            state, truth, day, config, home / f"{day}.parquet", home / f"{day}-labels.parquet", scores, "7"
        )
        days.append(out)
        truths.append(truth)
        if out.labels_path:
            files[day] = pl.read_parquet(out.labels_path)
    return Run(days, pl.concat(truths), files, state)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """30 live days with the default delays and 10 cards investigated a day."""
    return run_live(tmp_path_factory.mktemp("live"), 30, LiveLabelConfig(capacity=10, seed=1))


def test_a_day_file_carries_no_label_and_the_days_are_the_simulators(month: Run, tmp_path: Path) -> None:
    for out in month.days:
        written = pl.read_parquet(out.transactions_path)
        assert written.columns == ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"]
        assert "is_fraud" not in written.columns and SCENARIO_COLUMN not in written.columns
    # Day by day, the same rows as one simulation of the whole month.
    whole = simulate_transactions(SimulatorConfig.scaled(300, 600, 30, seed=5, start_date=FIRST))
    emitted = pl.concat([pl.read_parquet(out.transactions_path) for out in month.days])
    assert emitted.equals(whole.select(emitted.columns))
    assert month.truth.equals(whole)


def test_label_files_hold_only_due_events_and_none_twice(month: Run) -> None:
    assert month.files, "a month of live days delivers labels"
    seen: set[tuple[object, ...]] = set()
    for day, events in month.files.items():
        assert events.columns == list(LABEL_COLUMNS)
        assert (events["label_time"] <= day_end(day)).all()
        keys = set(events.select("transaction_id", "source", "label_time").iter_rows())
        assert len(keys) == events.height and not keys & seen
        seen |= keys
    # Each file holds every event that became due since the previous day's end.
    events = month.state.events()
    for day, file in month.files.items():
        due = events.filter(
            (pl.col("label_time") <= day_end(day)) & (pl.col("label_time") > day_end(day - timedelta(days=1)))
        )
        assert sorted(file["transaction_id"].to_list()) == sorted(due["transaction_id"].to_list())
    assert sum(out.emitted for out in month.days) == len(seen)


def test_investigations_are_the_top_k_cards_transactions_with_a_verdict_1_to_2_days_after_the_day(
    month: Run,
) -> None:
    events = month.state.events().filter(pl.col("source") == "analyst")
    for out in month.days:
        truth = month.truth.filter(pl.col("tx_datetime").dt.date() == out.day)
        cards = alerted_cards(ranked_by_amount(truth), 10)["customer_id"]
        assert cards.len() == out.alerted_cards == 10
        expected = truth.filter(pl.col("customer_id").is_in(cards.implode()))
        got = events.filter(pl.col("tx_datetime").dt.date() == out.day)
        assert sorted(got["transaction_id"].to_list()) == sorted(expected["transaction_id"].to_list())
        verdicts = got.join(expected.select("transaction_id", truth_label="is_fraud"), on="transaction_id")
        assert (verdicts["is_fraud"] == verdicts["truth_label"]).all()  # the truth, genuine ones included
        delay = got["label_time"] - next_midnight(out.day)
        assert delay.min() >= timedelta(days=1) and delay.max() <= timedelta(days=2)  # type: ignore[operator]
        # One verdict time per card: the analysts review a card at once.
        assert got.group_by("customer_id").agg(pl.col("label_time").n_unique())["label_time"].max() == 1
    assert events["is_fraud"].sum() > 0  # the amount ranking catches scenario-1 frauds


def test_chargebacks_come_for_the_other_frauds_only_within_the_delay_range(month: Run) -> None:
    events = month.state.events()
    chargebacks = events.filter(pl.col("source") == "chargeback")
    assert chargebacks.height > 0 and (chargebacks["is_fraud"] == 1).all()
    delay = chargebacks["label_time"] - chargebacks["tx_datetime"]
    assert delay.min() >= timedelta(days=7) and delay.max() <= timedelta(days=45)  # type: ignore[operator]
    frauds = set(month.truth.filter(pl.col("is_fraud") == 1)["transaction_id"])
    investigated = set(events.filter(pl.col("source") == "analyst")["transaction_id"])
    assert set(chargebacks["transaction_id"]) == frauds - investigated
    genuine = set(month.truth.filter(pl.col("is_fraud") == 0)["transaction_id"])
    assert set(events["transaction_id"]) & genuine <= investigated  # genuine ones: only analysts' verdicts


def test_every_fraud_is_eventually_labelled(tmp_path: Path) -> None:
    config = LiveLabelConfig(capacity=3, chargeback_min_days=1, chargeback_max_days=4, seed=2)
    run = run_live(tmp_path, 20, config)
    emitted = pl.concat(run.files.values())
    frauds = run.truth.filter(pl.col("is_fraud") == 1)
    # Frauds older than the longest delay (4 days, or 2 after their day for a verdict) are all labelled.
    settled = frauds.filter(pl.col("tx_datetime") < day_end(FIRST + timedelta(days=20 - 5)))
    assert settled.height > 10
    assert set(settled["transaction_id"]) <= set(emitted.filter(pl.col("is_fraud") == 1)["transaction_id"])
    # Accounting: every fraud is labelled or pending, never both, never twice.
    events = run.state.events()
    assert set(events.filter(pl.col("is_fraud") == 1)["transaction_id"]) == set(frauds["transaction_id"])
    assert events["transaction_id"].is_unique().all()
    assert emitted.height + run.days[-1].pending == events.height
    ledger = run.state.days()
    assert ledger["frauds"].sum() == frauds.height and ledger["emitted"].sum() == emitted.height


def test_without_a_champion_there_are_no_investigations(tmp_path: Path) -> None:
    run = run_live(tmp_path, 12, LiveLabelConfig(seed=1, chargeback_min_days=1, chargeback_max_days=3), ranked=False)
    events = run.state.events()
    assert (events["source"] == "chargeback").all() and (events["is_fraud"] == 1).all()
    assert all(out.model_version is None and out.alerted_cards == out.investigated == 0 for out in run.days)
    assert run.files and all((f["source"] == "chargeback").all() for f in run.files.values())


def test_same_seed_same_labels_another_seed_other_delays(tmp_path: Path) -> None:
    config = LiveLabelConfig(capacity=5, seed=3)
    first, again = (run_live(tmp_path / name, 12, config) for name in ("a", "b"))
    other = run_live(tmp_path / "c", 12, config.model_copy(update={"seed": 4}))
    columns = list(LABEL_COLUMNS)
    assert first.state.events().select(columns).equals(again.state.events().select(columns))
    assert not first.state.events().select(columns).equals(other.state.events().select(columns))
    assert first.files.keys() == again.files.keys()
    assert all(first.files[d].equals(again.files[d]) for d in first.files)


def test_a_day_is_emitted_once_and_a_run_cut_short_is_replayed(tmp_path: Path) -> None:
    config = LiveLabelConfig(capacity=5, seed=1, chargeback_min_days=1, chargeback_max_days=2)
    run = run_live(tmp_path, 6, config)
    state, last = run.state, run.days[-1].day
    truth = simulate_transactions(day_config(WORLD, last))
    with pytest.raises(ValueError, match="already emitted"):
        begin_live_day(state, truth, last, tmp_path / "x.parquet", tmp_path / "y.parquet")
    # A run that wrote its files and stopped before committing leaves the state as it was: the replay is identical.
    following = last + timedelta(days=1)
    truth = simulate_transactions(day_config(WORLD, following))
    before = state.events()
    cut = begin_live_day(state, truth, following, tmp_path / "cut.parquet", tmp_path / "cut-labels.parquet")
    assert state.events().equals(before) and state.newest_day() == last
    replay = emit_live_day(
        state, truth, following, config, tmp_path / "r.parquet", tmp_path / "r-labels.parquet", ranked_by_amount(truth)
    )
    assert cut.labels_path is not None and replay.labels_path is not None
    assert pl.read_parquet(cut.labels_path).equals(pl.read_parquet(replay.labels_path))
    # A crash between the two state files: the events of the unrecorded day are dropped on loading.
    ledger = state.days()
    ledger.head(ledger.height - 1).write_parquet(state.days_path)
    assert state.newest_day() == last
    assert state.events().filter(pl.col("scheduled_on") == following).height == 0
    assert state.events().filter(pl.col("emitted_on") == following).height == 0


def test_next_live_day_follows_the_lake_and_the_days_emitted(tmp_path: Path) -> None:
    state = LiveState(tmp_path)
    assert next_live_day(None, state, FIRST) == FIRST
    assert next_live_day(date(2026, 5, 3), state, FIRST) == date(2026, 5, 4)
    truth = simulate_transactions(day_config(WORLD, date(2026, 5, 10)))
    emit_live_day(state, truth, date(2026, 5, 10), LiveLabelConfig(), tmp_path / "t.parquet", tmp_path / "l.parquet")
    assert next_live_day(date(2026, 5, 3), state, FIRST) == date(2026, 5, 11)
    assert next_live_day(date(2026, 6, 1), state, FIRST) == date(2026, 6, 2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"investigation_min_days": 3}, "investigation delay"),
        ({"chargeback_max_days": 5}, "chargeback delay"),
        ({"chargeback_min_days": 0.5}, "greater than or equal to 1"),
        ({"chargeback_peak_days": 60}, "outside"),
        ({"capacity": -1}, "greater than or equal to 0"),
    ],
)
def test_the_config_refuses_impossible_delays(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LiveLabelConfig(**fields)


def test_a_peaked_chargeback_delay_stays_in_its_range_and_leans_to_its_peak(tmp_path: Path) -> None:
    config = LiveLabelConfig(capacity=0, chargeback_min_days=7, chargeback_max_days=45, chargeback_peak_days=8)
    events = run_live(tmp_path, 15, config).state.events()
    delay = (events["label_time"] - events["tx_datetime"]).dt.total_seconds() / 86_400
    assert events.height > 10 and delay.min() >= 7 and delay.max() <= 45  # type: ignore[operator]
    assert delay.median() < 26  # type: ignore[operator]  # uniform's median; triangular(7, 8, 45)'s is ~20
