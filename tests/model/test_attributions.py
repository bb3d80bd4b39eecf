"""PathAttributions against XGBoost's own ``approx_contribs``, bit for bit, on real trained boosters."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import model.attributions
from model.attributions import PathAttributions

N_FEATURES = 6


def _data(seed: int = 1, rows: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """Features with missing values, heavy tails, repeated values; a label that needs interactions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES))
    x[:, 1] = np.exp(x[:, 1] * 3)  # heavy tail
    x[:, 2] = rng.integers(0, 4, rows)  # few distinct values
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 2]) * np.nan_to_num(x[:, 3]) + rng.normal(size=rows)) > 1
    return x, y.astype(int)


def _train(params: dict, rounds: int) -> xgb.Booster:
    x, y = _data()
    base = {"objective": "binary:logistic", "nthread": 1, "eta": 0.3, "seed": 0}
    booster = xgb.train({**base, **params}, xgb.DMatrix(x, label=y), rounds)
    booster.set_param({"nthread": 1})
    return booster


def _xgboost(booster: xgb.Booster, rows: np.ndarray, iteration_range: tuple[int, int]) -> np.ndarray:
    return booster.predict(
        xgb.DMatrix(rows, nthread=1), pred_contribs=True, approx_contribs=True, iteration_range=iteration_range
    )


def _ours(attributions: PathAttributions, rows: np.ndarray) -> np.ndarray:
    return np.vstack([attributions.contributions(row) for row in rows.astype(np.float32)])


@pytest.fixture(scope="module")
def boosters() -> dict[str, xgb.Booster]:
    return {
        "depth 6": _train({"max_depth": 6}, 40),
        "depth 10, subsampled": _train({"max_depth": 10, "subsample": 0.7, "colsample_bytree": 0.6}, 25),
        "stumps": _train({"max_depth": 1}, 30),
        "base score 0.3, weighted": _train({"max_depth": 4, "base_score": 0.3, "scale_pos_weight": 5}, 20),
    }


@pytest.mark.parametrize("name", ["depth 6", "depth 10, subsampled", "stumps", "base score 0.3, weighted"])
def test_equal_to_xgboost_bit_for_bit(boosters: dict[str, xgb.Booster], name: str) -> None:
    booster = boosters[name]
    rounds = booster.num_boosted_rounds()
    x, _ = _data(seed=2, rows=500)
    for iteration_range in ((0, rounds), (0, rounds // 2 + 1)):  # all trees, and a best iteration's prefix
        attributions = PathAttributions.of(booster, iteration_range)
        assert attributions is not None, name
        got, want = _ours(attributions, x), _xgboost(booster, x, iteration_range)
        assert got.dtype == want.dtype == np.float32
        assert got.shape == want.shape == (len(x), N_FEATURES + 1)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), np.argwhere(got != want)[:5]
        with pytest.raises(ValueError, match="a row of 5 values for a model of 6 features"):
            attributions.contributions(x[0, :-1])
        # and they add up to XGBoost's margin
        margin = booster.predict(xgb.DMatrix(x, nthread=1), output_margin=True, iteration_range=iteration_range)
        np.testing.assert_allclose(got.sum(axis=1, dtype=np.float64), margin, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rows_on_the_thresholds(boosters: dict[str, xgb.Booster], data: st.DataObject) -> None:
    """Rows made of split thresholds, their neighbours one ulp away, missing values and extremes."""
    booster = boosters["depth 10, subsampled"]
    attributions = PathAttributions.of(booster, (0, booster.num_boosted_rounds()))
    assert attributions is not None
    inner = np.isfinite(attributions.threshold)
    cuts = attributions.threshold[inner]
    near = np.concatenate([cuts, np.nextafter(cuts, np.float32(-np.inf)), np.nextafter(cuts, np.float32(np.inf))])
    value = st.one_of(
        st.sampled_from(sorted(set(near.tolist()))),
        st.just(float("nan")),
        st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
    rows = data.draw(arrays(np.float32, (8, N_FEATURES), elements=value))
    got, want = _ours(attributions, rows), _xgboost(booster, rows, (0, booster.num_boosted_rounds()))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_models_it_does_not_cover_keep_xgboost(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data()
    dart = xgb.train({"booster": "dart", "objective": "binary:logistic", "rate_drop": 0.1}, xgb.DMatrix(x, label=y), 5)
    assert PathAttributions.of(dart, (0, 5)) is None
    forest = xgb.train({"num_parallel_tree": 3, "objective": "binary:logistic"}, xgb.DMatrix(x, label=y), 2)
    assert PathAttributions.of(forest, (0, 2)) is None
    classes = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(x, label=y + (y > 0)), 3)
    assert PathAttributions.of(classes, (0, 3)) is None
    codes = np.nan_to_num(x[:, 2]).astype(int)
    categorical = xgb.DMatrix(
        np.column_stack([codes, x[:, :2]]), label=y, feature_types=["c", "q", "q"], enable_categorical=True
    )
    with_categories = xgb.train({"objective": "binary:logistic", "max_cat_to_onehot": 1}, categorical, 5)
    assert PathAttributions.of(with_categories, (0, 5)) is None
    plain = _train({"max_depth": 3}, 5)
    assert PathAttributions.of(plain, (0, 5)) is not None
    monkeypatch.setattr(model.attributions, "MAX_TABLE_VALUES", 10)  # a model too big for the leaf table
    assert PathAttributions.of(plain, (0, 5)) is None


def test_a_model_whose_arithmetic_differs_is_refused(
    boosters: dict[str, xgb.Booster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up check compares with XGBoost: inner node means one ulp off make it refuse the model."""
    booster = boosters["depth 6"]
    exact = model.attributions._node_means

    def one_ulp_off(*args: np.ndarray) -> np.ndarray:
        mean, leaf = exact(*args), args[-1]
        return np.where(leaf, mean, np.nextafter(mean, np.float32(np.inf)))

    monkeypatch.setattr(model.attributions, "_node_means", one_ulp_off)
    assert PathAttributions.of(booster, (0, booster.num_boosted_rounds())) is None
