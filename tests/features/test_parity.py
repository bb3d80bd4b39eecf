from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.contract import CANONICAL_SCHEMA
from features.definitions import FeatureSpec, compute_features, to_epoch_us
from features.stores.memory import MemoryFeatureStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon


def frame(rows: list[tuple[str, datetime, str, str, float, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=list(CANONICAL_SCHEMA), orient="row").cast(CANONICAL_SCHEMA)  # type: ignore[arg-type]


def test_baseline_set_is_the_handbook_15_and_extended_adds_four_behavioural() -> None:
    baseline = FeatureSpec(feature_set="baseline").feature_names
    assert len(baseline) == 15 and baseline[:3] == ["tx_amount", "tx_during_weekend", "tx_during_night"]
    assert FeatureSpec().feature_names == [*baseline, *FeatureSpec().behavioural_names]
    assert FeatureSpec.from_dict({"windows_days": [1, 7, 30], "label_delay_days": 7, "night_end_hour": 6}) == (
        FeatureSpec(feature_set="baseline")  # model cards from before the behavioural features
    )
    with pytest.raises(ValueError, match="feature_set"):
        FeatureSpec(feature_set="everything")


def test_behavioural_features_follow_their_definitions() -> None:
    rows = [
        ("a", T0, "c1", "t1", 9.0, 0),
        ("b", T0 + timedelta(minutes=30), "c1", "t1", 19.0, 0),
        ("c", T0 + timedelta(hours=3), "c1", "t2", 99.0, 0),
        ("d", T0 + timedelta(days=31), "c1", "t1", 9.0, 0),
    ]
    out = compute_features(frame(rows)).sort("transaction_id")
    # (amount + 1) / (mean of earlier amounts in 30 days + 1); 1 without history.
    assert out["customer_amount_ratio_30day"].to_list() == pytest.approx([1.0, 2.0, 100 / 15, 1.0])
    assert out["customer_hours_since_prev_tx"].to_list() == pytest.approx([720, 0.5, 2.5, 720])
    assert out["customer_terminal_first_visit_30day"].to_list() == [1, 0, 1, 1]
    assert out["customer_nb_tx_1hour_window"].to_list() == [1, 2, 1, 1]


def test_customer_windows_count_the_current_and_earlier_transactions_only() -> None:
    rows = [
        ("a", T0, "c1", "t1", 10.0, 0),
        ("b", T0 + timedelta(hours=1), "c1", "t1", 30.0, 0),
        ("c", T0 + timedelta(days=2), "c1", "t2", 50.0, 0),
        ("d", T0 + timedelta(hours=1), "c2", "t1", 99.0, 0),
    ]
    out = compute_features(frame(rows)).filter(pl.col("customer_id") == "c1")
    assert out["customer_id_nb_tx_1day_window"].to_list() == [1, 2, 1]
    assert out["customer_id_avg_amount_1day_window"].to_list() == [10, 20, 50]
    assert out["customer_id_nb_tx_7day_window"].to_list() == [1, 2, 3]
    assert out["customer_id_avg_amount_7day_window"].to_list() == [10, 20, 30]


def test_same_timestamp_transactions_do_not_see_each_other_ahead_of_order() -> None:
    rows = [("x1", T0, "c1", "t1", 10.0, 0), ("x2", T0, "c1", "t1", 20.0, 0)]
    out = compute_features(frame(rows))
    assert out["customer_id_nb_tx_1day_window"].to_list() == [1, 2]


def test_terminal_risk_uses_only_labels_older_than_the_delay() -> None:
    spec = FeatureSpec(label_delay_days=7)
    fraud = ("f", T0, "c1", "t1", 10.0, 1)
    probes = [(f"p{d}", T0 + timedelta(days=d, minutes=1), "c2", "t1", 5.0, 0) for d in (1, 6, 7, 8, 13, 14)]
    out = compute_features(frame([fraud, *probes]), spec).filter(pl.col("customer_id") == "c2")
    risk_1d = dict(zip(out["transaction_id"], out["terminal_id_risk_1day_window"], strict=True))
    risk_7d = dict(zip(out["transaction_id"], out["terminal_id_risk_7day_window"], strict=True))
    # The fraud becomes visible exactly `delay` days later, within the 1-day window that follows.
    assert [risk_1d[f"p{d}"] for d in (1, 6, 7, 8)] == [0.0, 0.0, 1.0, 0.0]
    # Its 7-day window (delay-shifted) covers days 7..13 after the fraud, and p7 also counts p1/p6 there.
    assert risk_7d["p1"] == 0.0 and risk_7d["p6"] == 0.0 and risk_7d["p8"] == 1 / 2
    assert risk_7d["p13"] == 1 / 3  # window (t-14d, t-7d] holds the fraud, p1 and p6
    assert risk_7d["p14"] == 0.0  # ... and one minute later the fraud has left it


def test_weekend_and_night_flags() -> None:
    rows = [("w", datetime(2026, 3, 7, 3, 0, tzinfo=UTC), "c", "t", 1.0, 0), ("d", T0, "c", "t", 1.0, 0)]
    out = compute_features(frame(rows)).sort("transaction_id")
    assert out["tx_during_weekend"].to_list() == [0.0, 1.0]
    assert out["tx_during_night"].to_list() == [0.0, 1.0]


events = st.lists(
    st.tuples(
        st.integers(0, 40 * 24),  # hour offset
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["t1", "t2"]),
        st.floats(0, 500, allow_nan=False),
        st.sampled_from([0, 1]),
    ),
    min_size=2,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events, cut_hour=st.integers(0, 40 * 24), flip_seed=st.integers(0, 2**16))
def test_future_rows_and_unripe_labels_never_change_earlier_features(
    events: list[tuple[int, str, str, float, int]], cut_hour: int, flip_seed: int
) -> None:
    """Point-in-time correctness: data after a cut, and labels younger than the delay, are invisible."""
    spec = FeatureSpec()
    rows = [(f"e{i:03d}", T0 + timedelta(hours=h), c, t, a, y) for i, (h, c, t, a, y) in enumerate(events)]
    full = frame(rows)
    cut = T0 + timedelta(hours=cut_hour)
    past = full.filter(pl.col("tx_datetime") <= cut)
    if past.height == 0:
        return
    names = spec.feature_names
    expected = compute_features(past, spec).select("transaction_id", *names)
    # Future rows appended, and every label younger than the delay (as of the cut) scrambled.
    rng = np.random.default_rng(flip_seed)
    unripe = pl.col("tx_datetime") > cut - timedelta(days=spec.label_delay_days)
    scrambled = full.with_columns(
        pl.when(unripe)
        .then(pl.Series(rng.integers(0, 2, full.height), dtype=pl.Int8))
        .otherwise(pl.col("is_fraud"))
        .alias("is_fraud")
    )
    got = compute_features(scrambled, spec).filter(pl.col("tx_datetime") <= cut).select("transaction_id", *names)
    assert got.equals(expected)


@pytest.mark.parametrize(
    "spec",
    # Short windows with the label-aware set: the 7-day known risk looks back further than windows plus delay.
    [FeatureSpec(), FeatureSpec(windows_days=(1, 3), label_delay_days=1, feature_set="labels")],
    ids=["default", "short-labels"],
)
def test_online_features_match_offline_for_10k_consecutive_transactions(
    small_transactions: pl.DataFrame, spec: FeatureSpec
) -> None:
    """Parity: scoring one at a time from a state built on history reproduces the offline vectors."""
    offline = compute_features(small_transactions, spec)
    held_out = offline.tail(10_000)
    cut = held_out["tx_datetime"].min()
    history = small_transactions.filter(
        (pl.col("tx_datetime") < cut)
        | ((pl.col("tx_datetime") == cut) & ~pl.col("transaction_id").is_in(held_out["transaction_id"].implode()))
    )
    state = MemoryFeatureStore.from_transactions(history, spec)
    state = MemoryFeatureStore.from_frame(state.to_frame(), spec)  # through the shipped snapshot format
    expected = held_out.select(spec.feature_names).to_numpy()
    worst = 0.0
    cols = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")
    for i, (tid, when, cust, term, amount, label) in enumerate(held_out.select(cols).iter_rows()):
        t_us = to_epoch_us(when)
        got = state.features(tid, cust, term, t_us, amount, when)
        worst = max(worst, float(np.abs(got - expected[i]).max()))
        state.observe(tid, cust, term, t_us, amount)
        # The label arrives later: known once the transaction is a delay old, as the offline default.
        state.add_label(tid, label, t_us + spec.label_delay_days * 86_400_000_000, "dataset")
    assert held_out.height == 10_000
    assert worst <= 1e-6


def test_scoring_a_known_transaction_again_does_not_double_count(small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    tid, when, cust, term, amount = small_transactions.select(
        "transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"
    ).row(-1)
    state = MemoryFeatureStore.from_transactions(small_transactions.head(-1), spec)
    first = state.features(tid, cust, term, to_epoch_us(when), amount, when)
    state.observe(tid, cust, term, to_epoch_us(when), amount)
    again = state.features(tid, cust, term, to_epoch_us(when), amount, when)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("label", [0, 1])
def test_late_label_updates_terminal_risk_after_the_delay(label: int) -> None:
    spec = FeatureSpec()
    state = MemoryFeatureStore(spec)
    state.observe("a", "c1", "t1", to_epoch_us(T0), 10.0)
    known_at = T0 + timedelta(days=spec.label_delay_days, minutes=30)
    assert state.add_label("a", label, to_epoch_us(known_at))
    names = spec.feature_names
    risk = names.index("terminal_id_risk_1day_window")
    before = known_at - timedelta(minutes=1)  # in the window already, but the label is not known yet
    assert state.features("b", "c2", "t1", to_epoch_us(before), 5.0, before)[risk] == 0.0
    for later in (known_at, known_at + timedelta(minutes=20)):  # known from its label time on, inclusive
        assert state.features("b", "c2", "t1", to_epoch_us(later), 5.0, later)[risk] == float(label)
    assert not state.add_label("unknown", 1, to_epoch_us(known_at))


def test_rescoring_a_transaction_that_shares_its_instant_gives_the_same_vector() -> None:
    spec = FeatureSpec()
    state = MemoryFeatureStore(spec)
    t = to_epoch_us(T0)
    state.observe("first", "c1", "t1", t, 10.0)
    before = state.features("second", "c1", "t1", t, 20.0, T0)
    state.observe("second", "c1", "t1", t, 20.0)
    np.testing.assert_array_equal(before, state.features("second", "c1", "t1", t, 20.0, T0))


# --- labels as their own stream: each known from its own label_time ------------------------------------

#: (hour offset of the label from T0, transaction index, is_fraud, source): labels out of order, before or
#: after their transaction's window, at the same instant as transactions, contradicting each other.
label_events = st.lists(
    st.tuples(
        st.integers(0, 30 * 24),
        st.integers(0, 59),
        st.sampled_from([0, 1]),
        st.sampled_from(["dataset", "chargeback", "feedback", "analyst"]),
    ),
    max_size=80,
)
stream_events = st.lists(
    st.tuples(
        st.integers(0, 26 * 24),  # within the store's horizon: eviction plays no part here
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["t1", "t2"]),
        st.floats(0, 500, allow_nan=False),
    ),
    min_size=2,
    max_size=60,
)


def _stream(
    events: list[tuple[int, str, str, float]], labels: list[tuple[int, int, int, str]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    from data.labels import as_label_events

    rows = [(f"e{i:03d}", T0 + timedelta(hours=h), c, t, a, None) for i, (h, c, t, a) in enumerate(events)]
    label_rows = [(rows[k % len(rows)][0], y, T0 + timedelta(hours=h), source) for h, k, y, source in labels]
    frame_of_labels = pl.DataFrame(
        label_rows, schema=["transaction_id", "is_fraud", "label_time", "source"], orient="row"
    ).cast({"is_fraud": pl.Int8, "label_time": pl.Datetime("us", "UTC")})
    return frame(rows), as_label_events(frame_of_labels)


#: The features that read labels: terminal risk (delayed) and the label-aware set's two (no delay).
LABEL_SPEC = FeatureSpec(label_delay_days=1, feature_set="labels")  # short delay: many labels fall in the windows
TERMINAL_NAMES = [n for n in LABEL_SPEC.feature_names if n.startswith("terminal_id_") or "known" in n]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(events=stream_events, labels=label_events, order_seed=st.integers(0, 2**16))
def test_online_terminal_risk_reads_each_label_as_known_at_the_time_like_offline(
    kind: str, tmp_path_factory: pytest.TempPathFactory, events: list, labels: list, order_seed: int
) -> None:
    """Partial, late, out-of-order, same-instant and contradicting labels: online = offline, bit for bit."""
    from features.stores.sqlite import SQLiteFeatureStore

    spec = LABEL_SPEC
    transactions, label_frame = _stream(events, labels)
    offline = compute_features(transactions, spec, labels=label_frame).sort("transaction_id")
    if kind == "memory":
        store: MemoryFeatureStore | SQLiteFeatureStore = MemoryFeatureStore(spec)
    else:
        store = SQLiteFeatureStore(tmp_path_factory.mktemp("labels") / "state.sqlite", spec)
    rng = np.random.default_rng(order_seed)
    rows = list(transactions.iter_rows())
    for i in rng.permutation(len(rows)):  # transactions arrive out of order
        tid, when, cust, term, amount, _ = rows[i]
        store.observe(tid, cust, term, to_epoch_us(when), amount)
    # Labels in the order they were recorded (out of label_time order: the strategy draws times at random);
    # the recorded order breaks ties between same-time, same-source events, offline as online.
    for tid, y, label_time, source, _, _ in label_frame.iter_rows():
        assert store.add_label(tid, y, to_epoch_us(label_time), source)
    names = spec.feature_names
    for tid, when, cust, term, amount, _ in sorted(rows):
        online = store.features(tid, cust, term, to_epoch_us(when), amount, when)
        want = offline.filter(pl.col("transaction_id") == tid).select(TERMINAL_NAMES).row(0)
        got = tuple(float(online[names.index(n)]) for n in TERMINAL_NAMES)
        assert got == want, (tid, got, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=stream_events, labels=label_events, later=label_events, cut_hour=st.integers(0, 30 * 24))
def test_labels_given_after_t_change_no_feature_and_no_label_as_of_t(
    events: list, labels: list, later: list, cut_hour: int
) -> None:
    """Adding label events with label_time > T changes no feature of a transaction up to T, nor any label as of T."""
    from data.labels import labels_as_of, with_labels_as_of

    spec = LABEL_SPEC
    cut = T0 + timedelta(hours=cut_hour)
    transactions, known = _stream(events, labels)
    _, extra = _stream(events, later)
    extra = extra.with_columns(label_time=pl.col("label_time") + (cut - T0) + timedelta(microseconds=1))
    more = pl.concat([known, extra])
    up_to_cut = pl.col("tx_datetime") <= cut
    names = ["transaction_id", *spec.feature_names]
    assert (
        compute_features(transactions, spec, labels=known)
        .filter(up_to_cut)
        .select(names)
        .equals(compute_features(transactions, spec, labels=more).filter(up_to_cut).select(names))
    )
    # Labels as of the cut (the training split, the monitor, promotion read these) do not move either.
    assert labels_as_of(known, cut).equals(labels_as_of(more, cut))
    assert with_labels_as_of(transactions, known, cut).equals(with_labels_as_of(transactions, more, cut))
    # And building features "as of the cut" ignores the later events whatever the rows' times.
    assert compute_features(transactions, spec, labels=more, labels_as_of=cut).equals(
        compute_features(transactions, spec, labels=pl.concat([known.filter(pl.col("label_time") <= cut)]))
    )


def test_explicit_dataset_label_events_give_the_default_features(small_transactions: pl.DataFrame) -> None:
    """The is_fraud column stands for dataset events known a delay after each transaction: the same features."""
    from data.labels import dataset_labels

    spec = FeatureSpec()
    events = dataset_labels(small_transactions, spec.label_delay_days)
    assert compute_features(small_transactions, spec).equals(compute_features(small_transactions, spec, labels=events))
