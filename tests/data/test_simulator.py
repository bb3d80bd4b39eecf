from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from data.contract import CANONICAL_COLUMNS, SCENARIO_COLUMN
from data.simulator import CARD_TESTING_SCENARIO, DRIFT_PRESETS, SimulatorConfig, simulate_transactions


def test_same_seed_same_data_other_seed_other_data() -> None:
    config = SimulatorConfig.scaled(100, 200, 20, seed=1)
    first, again = simulate_transactions(config), simulate_transactions(config)
    other = simulate_transactions(SimulatorConfig.scaled(100, 200, 20, seed=2))
    assert first.equals(again)
    assert not first.equals(other)


def test_canonical_schema_and_sorted_unique_ids(small_transactions: pl.DataFrame) -> None:
    assert list(small_transactions.columns) == [*CANONICAL_COLUMNS, SCENARIO_COLUMN]
    assert small_transactions["transaction_id"].is_unique().all()
    assert small_transactions["tx_datetime"].is_sorted()
    assert small_transactions["amount"].min() >= 0  # type: ignore[operator]
    assert small_transactions["tx_datetime"].dt.date().min() == date(2026, 1, 1)


def test_statistics_match_the_handbook_in_proportion() -> None:
    """At 1/5 of the published size the rates match the published data (0.84% fraud, 1k/9k/4.6k)."""
    frame = simulate_transactions(SimulatorConfig.scaled(1_000, 2_000, 183, seed=5))
    published_rows_per_customer_day = 1_754_155 / (5_000 * 183)
    rows_per_customer_day = frame.height / (1_000 * 183)
    assert abs(rows_per_customer_day / published_rows_per_customer_day - 1) < 0.05
    assert 0.0065 < frame["is_fraud"].mean() < 0.0105  # type: ignore[operator]
    share = frame.filter(pl.col("is_fraud") == 1)[SCENARIO_COLUMN].value_counts(normalize=True)
    by_scenario = dict(share.iter_rows())
    # Published split of 14.7k frauds: ~7% amount, ~63% terminal, ~31% customer compromise.
    assert 0.03 < by_scenario[1] < 0.12
    assert 0.45 < by_scenario[2] < 0.75
    assert 0.2 < by_scenario[3] < 0.45
    assert (frame.filter(pl.col(SCENARIO_COLUMN) == 0)["is_fraud"] == 0).all()


def test_appended_days_continue_the_same_world() -> None:
    """Live mode: simulating day ranges one after another gives the rows of one long simulation."""
    whole = SimulatorConfig.scaled(200, 400, 40, seed=3, start_date=date(2026, 4, 1))
    head = replace(whole, n_days=31)
    tail = replace(whole, n_days=9, start_date=date(2026, 5, 2), origin=date(2026, 4, 1))
    assert pl.concat([simulate_transactions(head), simulate_transactions(tail)]).equals(simulate_transactions(whole))
    # A compromise that started before the appended days still applies to them.
    assert (simulate_transactions(tail)[SCENARIO_COLUMN] == 2).any()
    with pytest.raises(ValueError, match="before the world's origin"):
        simulate_transactions(replace(tail, origin=date(2026, 6, 1)))


def _drifted(preset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    config = SimulatorConfig.scaled(400, 800, 20, seed=4, start_date=date(2026, 6, 1), origin=date(2026, 4, 1))
    return simulate_transactions(config), simulate_transactions(config.with_drift([preset]))


def test_amount_inflation_raises_amounts_by_the_documented_factor() -> None:
    base, drifted = _drifted("amount-inflation")
    genuine = pl.col(SCENARIO_COLUMN) == 0
    ratio = drifted.filter(genuine)["amount"].median() / base.filter(genuine)["amount"].median()  # type: ignore[operator]
    assert 1.2 < ratio < 1.4
    assert (drifted[SCENARIO_COLUMN] == 1).sum() > 2 * (base[SCENARIO_COLUMN] == 1).sum()


def test_terminal_burst_multiplies_compromised_terminals() -> None:
    base, drifted = _drifted("terminal-burst")
    terminals = [f.filter(pl.col(SCENARIO_COLUMN) == 2)["terminal_id"].n_unique() for f in (base, drifted)]
    assert terminals[1] > 4 * terminals[0]


def test_card_testing_adds_a_new_scenario_of_tiny_payments() -> None:
    base, drifted = _drifted("card-testing")
    testing = drifted.filter(pl.col(SCENARIO_COLUMN) == CARD_TESTING_SCENARIO)
    assert (base[SCENARIO_COLUMN] == CARD_TESTING_SCENARIO).sum() == 0
    assert testing.height > 50 and testing["amount"].max() <= 3.0  # type: ignore[operator]
    assert (testing["is_fraud"] == 1).all()
    assert drifted.height == base.height + testing.height
    assert drifted["transaction_id"].is_unique().all()


def test_unknown_drift_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown drift preset 'aliens'.*card-testing"):
        SimulatorConfig().with_drift(["aliens"])
    assert set(DRIFT_PRESETS) == {"amount-inflation", "terminal-burst", "card-testing"}
