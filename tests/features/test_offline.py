"""The vectorised feature code: its definitions by brute force, its ``start`` cut and its overflow path."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import features.definitions as engineering
from data.contract import CANONICAL_SCHEMA, empty_transactions
from features.definitions import US_PER_DAY, US_PER_HOUR, FeatureSpec, compute_features

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Whole days plus a few minutes: transactions share instants and windows often end exactly on one.
events = st.lists(
    st.tuples(
        st.integers(0, 45).map(lambda d: d * 24 * 60),
        st.sampled_from([0, 0, 30, 60]),
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["t1", "t2"]),
        st.floats(0, 500, allow_nan=False),
        st.sampled_from([0, 1, None]),
    ),
    min_size=1,
    max_size=50,
)


def frame(rows: list[tuple[int, int, str, str, float, int | None]]) -> pl.DataFrame:
    data = [(f"e{i:03d}", T0 + timedelta(minutes=h + m), c, t, a, y) for i, (h, m, c, t, a, y) in enumerate(rows)]
    return pl.DataFrame(data, schema=list(CANONICAL_SCHEMA), orient="row").cast(CANONICAL_SCHEMA)  # type: ignore[arg-type]


def brute_force(transactions: pl.DataFrame, spec: FeatureSpec) -> dict[str, list[float]]:
    """Every feature straight from the module docstring's definitions, one row at a time."""
    rows = transactions.sort("tx_datetime", "transaction_id").with_columns(t=pl.col("tx_datetime").dt.epoch("us"))
    tx = rows.select("t", "customer_id", "terminal_id", "amount", "is_fraud").rows()
    big_w = spec.longest_window_days * US_PER_DAY
    delay = spec.label_delay_days * US_PER_DAY
    out: dict[str, list[float]] = {name: [] for name in spec.feature_names[3:]}
    for i, (t, cust, term, amount, _) in enumerate(tx):
        mine = [j for j in range(i + 1) if tx[j][1] == cust]  # the customer's rows so far, current included
        for w in spec.windows_days:
            inside = [tx[j][3] for j in mine if tx[j][0] > t - w * US_PER_DAY]
            out[f"customer_id_nb_tx_{w}day_window"].append(len(inside))
            out[f"customer_id_avg_amount_{w}day_window"].append(sum(inside) / len(inside))
            ripe = [r for r in tx if r[2] == term and t - delay - w * US_PER_DAY < r[0] <= t - delay]
            frauds = sum(r[4] or 0 for r in ripe)
            out[f"terminal_id_nb_tx_{w}day_window"].append(len(ripe))
            out[f"terminal_id_risk_{w}day_window"].append(frauds / len(ripe) if ripe else 0.0)
        if spec.feature_set == "baseline":
            continue
        earlier = [tx[j] for j in mine[:-1] if tx[j][0] > t - big_w]
        mean = sum(r[3] for r in earlier) / len(earlier) if earlier else None
        out[spec.behavioural_names[0]].append(1.0 if mean is None else (amount + 1) / (mean + 1))
        gap = t - tx[mine[-2]][0] if len(mine) > 1 else big_w
        out[spec.behavioural_names[1]].append(min(gap, big_w) / US_PER_HOUR)
        out[spec.behavioural_names[2]].append(float(not any(r[2] == term for r in earlier)))
        out[spec.behavioural_names[3]].append(sum(1 for j in mine if tx[j][0] > t - US_PER_HOUR))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events, feature_set=st.sampled_from(["extended", "baseline"]))
def test_every_feature_matches_its_definition(
    rows: list[tuple[int, int, str, str, float, int | None]], feature_set: str
) -> None:
    spec = FeatureSpec(windows_days=(1, 7, 30), label_delay_days=7, feature_set=feature_set)
    transactions = frame(rows)
    got = compute_features(transactions, spec)
    for name, expected in brute_force(transactions, spec).items():
        assert got[name].to_list() == pytest.approx(expected, rel=1e-9, abs=1e-9), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events, cut_minutes=st.integers(0, 46 * 24 * 60))
def test_start_returns_the_same_rows_and_bits_as_the_full_table(
    rows: list[tuple[int, int, str, str, float, int | None]], cut_minutes: int
) -> None:
    transactions = frame(rows)
    start = T0 + timedelta(minutes=cut_minutes)
    full = compute_features(transactions)
    assert compute_features(transactions, start=start).equals(full.filter(pl.col("tx_datetime") >= start))
    naive = start.replace(tzinfo=None)  # read as UTC
    assert compute_features(transactions, start=naive).equals(full.filter(pl.col("tx_datetime") >= start))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events, cut_minutes=st.integers(0, 46 * 24 * 60))
def test_the_overflow_path_by_row_gives_the_same_bits(
    rows: list[tuple[int, int, str, str, float, int | None]], cut_minutes: int
) -> None:
    """Keys x time span too large for one int64: the (key, row) search must agree exactly."""
    transactions = frame(rows)
    start = T0 + timedelta(minutes=cut_minutes)
    by_time = compute_features(transactions), compute_features(transactions, start=start)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engineering, "KEYED_TIME_LIMIT", 0)
        by_row = compute_features(transactions), compute_features(transactions, start=start)
    assert by_row[0].equals(by_time[0]) and by_row[1].equals(by_time[1])


def test_empty_input_gives_empty_feature_columns() -> None:
    out = compute_features(empty_transactions())
    assert out.height == 0 and set(FeatureSpec().feature_names) <= set(out.columns)
    assert all(out.schema[name] == pl.Float64 for name in FeatureSpec().feature_names)


def test_missing_ids_are_refused_with_the_column_named() -> None:
    rows = frame([(0, 0, "c1", "t1", 5.0, 0)]).with_columns(terminal_id=pl.lit(None, pl.String))
    with pytest.raises(ValueError, match="terminal_id: 1"):
        compute_features(rows)


def test_amount_sums_are_the_sequential_per_customer_sums() -> None:
    """Means are differences of running sums in time order; fixed here on amounts that round differently."""
    amounts = [0.1, 0.2, 0.3, 1e16, 1.0, -1e16, 0.7]
    rows = frame([(i * 60, 0, "c1", "t1", a, 0) for i, a in enumerate(amounts)])
    running = np.cumsum(amounts)
    got = compute_features(rows)["customer_id_avg_amount_30day_window"].to_list()
    assert got == [running[i] / (i + 1) for i in range(len(amounts))]


def test_windows_exclude_a_transaction_exactly_one_window_old() -> None:
    day = 24 * 60
    rows = frame(
        [(0, 0, "c1", "t1", 10.0, 0), (30 * day, 0, "c1", "t1", 20.0, 0), (60 * day - 1, 0, "c1", "t1", 5.0, 0)]
    )
    out = compute_features(rows)
    assert out["customer_terminal_first_visit_30day"].to_list() == [1.0, 1.0, 0.0]
    assert out["customer_id_nb_tx_30day_window"].to_list() == [1.0, 1.0, 2.0]
    assert out["customer_hours_since_prev_tx"].to_list() == pytest.approx([720, 720, 720 - 1 / 60])
