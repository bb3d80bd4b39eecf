from datetime import date

import polars as pl

from features.contract import CANONICAL_COLUMNS, SCENARIO_COLUMN
from features.simulator import SimulatorConfig, simulate_transactions


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
