"""Online = offline for every shipped profile: window families that apply, passthrough, encoded and derived features.

Each layout's sample goes through its profile (``to_canonical_frame``); offline features come from
``compute_features`` on the whole frame, online ones from a state built on the history, one held-out
transaction at a time in arrival order (same-instant rows included), plus ``row_features`` of the row.
"""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.profiles import load_profile
from data.sources import read_table, to_canonical_frame
from features.definitions import US_PER_DAY, FeatureSpec, compute_features, row_features, to_epoch_us
from features.stores.memory import MemoryFeatureStore
from tests.samples import sparkov_extract_rows, ulb_rows, write_sparkov_extract, write_ulb


def _sparkov_full(path: Path) -> Path:
    """The full Sparkov layout: the extract's rows plus a card number, ISO times and ISO dates of birth."""
    from datetime import datetime

    rows = sparkov_extract_rows(500, seed=3)
    out = []
    for row in rows:
        when = datetime.strptime(row["trans_date_trans_time"], "%d-%m-%Y %H:%M")
        born = datetime.strptime(row["dob"], "%d-%m-%Y")
        out.append(
            {
                **row,
                "trans_date_trans_time": when.strftime("%Y-%m-%d %H:%M:%S"),
                "dob": born.strftime("%Y-%m-%d"),
                "cc_num": str(abs(hash((row["dob"], row["job"]))) % 10**16),
                "merchant": "fraud_" + row["merchant"].strip('"'),
            }
        )
    pl.DataFrame(out).write_csv(path)
    return path


def _handbook(path: Path) -> Path:
    rng = np.random.default_rng(5)
    n = 800
    seconds = np.sort(rng.integers(0, 40 * 86_400, size=n))
    seconds[11] = seconds[10]
    pl.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n),
            "TX_DATETIME": (pl.Series(seconds * 1_000_000).cast(pl.Datetime("us"))).dt.offset_by("48y"),
            "CUSTOMER_ID": rng.integers(0, 30, size=n),
            "TERMINAL_ID": rng.integers(0, 20, size=n),
            "TX_AMOUNT": np.round(rng.uniform(1, 300, size=n), 2),
            "TX_FRAUD": (rng.random(n) < 0.1).astype(int),
            "TX_FRAUD_SCENARIO": 0,
        }
    ).write_parquet(path)
    return path


SAMPLES = {
    "handbook": lambda tmp: _handbook(tmp / "handbook.parquet"),
    "sparkov": lambda tmp: _sparkov_full(tmp / "fraudTrain.csv"),
    "sparkov-extract": lambda tmp: write_sparkov_extract(tmp / "fraud_data.csv", sparkov_extract_rows(500)),
    "ulb-creditcard": lambda tmp: write_ulb(tmp / "creditcard.csv", ulb_rows(600, index_column=True)),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_online_features_match_offline_for_each_shipped_profile(tmp_path: Path, name: str) -> None:
    path = SAMPLES[name](tmp_path)
    raw = read_table(path)
    mapped = to_canonical_frame(raw)
    profile = load_profile(name)
    assert to_canonical_frame(raw, profile).equals(mapped)  # detection picked this profile
    spec = FeatureSpec.for_profile(profile, label_delay_days=1, feature_set="labels")
    assert set(spec.row_names) == set(profile.numeric_features) | {n for n, _ in profile.categorical_features}
    offline = compute_features(mapped, spec)
    held_out = offline.tail(150)
    cut = held_out["tx_datetime"].min()
    history = mapped.filter(
        (pl.col("tx_datetime") < cut)
        | ((pl.col("tx_datetime") == cut) & ~pl.col("transaction_id").is_in(held_out["transaction_id"].implode()))
    )
    state = MemoryFeatureStore.from_transactions(history, spec)
    state = MemoryFeatureStore.from_frame(state.to_frame(), spec)  # through the shipped snapshot format
    expected = held_out.select(spec.feature_names).to_numpy()
    rows = row_features(held_out, spec).to_numpy() if spec.row_names else np.empty((held_out.height, 0))
    cols = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")
    for i, (tid, when, customer, terminal, amount, label) in enumerate(held_out.select(cols).iter_rows()):
        t_us = to_epoch_us(when)
        got = np.concatenate([state.features(tid, customer, terminal, t_us, amount, when), rows[i]])
        assert got.shape == expected[i].shape
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-6, err_msg=f"{name} row {i}")
        state.observe(tid, customer, terminal, t_us, amount)
        if label is not None:  # the dataset's label, known a delay after its transaction (as offline)
            state.add_label(tid, label, t_us + spec.label_delay_days * US_PER_DAY, "dataset")
    # The row features say something: not all missing, and the one-row path gives the batch's values.
    if spec.row_names:
        assert not np.isnan(rows).all()
        one = row_features(held_out.slice(3, 1), spec).to_numpy()
        np.testing.assert_array_equal(one[0], rows[3])


def test_families_follow_the_profiles_keys() -> None:
    ulb = FeatureSpec.for_profile(load_profile("ulb-creditcard"))
    assert not any(n.startswith(("customer", "terminal")) for n in ulb.feature_names)
    # Its times count from an assumed origin: the weekday and the night flags would be made up.
    assert ulb.feature_names[0] == "tx_amount" and "tx_during_weekend" not in ulb.feature_names
    assert ulb.history_days == 0  # no window reads the past: no warm-up, no state to keep
    assert ulb.row_names == [f"v{i}" for i in range(1, 29)]
    extract = FeatureSpec.for_profile(load_profile("sparkov-extract"))
    assert extract.row_names == ["city_pop", "age_years", "distance_km", "category_code"]
    assert FeatureSpec.from_dict(extract.to_dict()) == extract  # what the model card keeps
    assert FeatureSpec.for_profile(load_profile("handbook")) == FeatureSpec()  # the default product is unchanged


def test_derived_and_encoded_features_follow_their_definitions() -> None:
    spec = FeatureSpec.for_profile(load_profile("sparkov-extract"))
    frame = pl.DataFrame(
        {
            "tx_datetime": pl.Series(["2020-03-01T00:00:00Z"] * 3).str.to_datetime(time_unit="us"),
            "attr_dob": ["01-03-1990", "", "31-02-1990"],
            "attr_lat": ["0", "0", "x"],
            "attr_long": ["0", "0", "0"],
            "attr_merch_lat": ["0", "1", "0"],
            "attr_merch_long": ["1", "0", "0"],
            "attr_city_pop": ["145", None, "12"],
            "attr_category": ["grocery_pos", "no_such_category", None],
        }
    )
    out = row_features(frame, spec)
    age = out["age_years"].to_list()
    assert age[0] == pytest.approx((30 * 365 + 8) / 365.25)  # 30 years and their 8 leap days
    assert np.isnan(age[1]) and np.isnan(age[2])  # missing; 31 February
    # One degree of arc on a 6,371 km sphere, along the equator and along a meridian.
    assert out["distance_km"].to_list()[:2] == pytest.approx([111.195, 111.195], abs=1e-3)
    assert np.isnan(out["distance_km"][2])
    assert out["category_code"].to_list() == [1.0, -1.0, -1.0]  # grocery_pos is the vocabulary's second
    assert out["city_pop"].to_list()[0] == 145.0 and np.isnan(out["city_pop"][1])
