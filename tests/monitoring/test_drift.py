"""PSI and the drift report on real samples (no mocks); one slow test publishes to a real Prefect server."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from monitoring.drift import (
    DriftThresholds,
    FeatureDrift,
    drift_report,
    population_stability_index,
)

N = 20_000


def normal(seed: int, shift: float = 0.0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n) + shift


def binary(seed: int, rate: float, n: int = N) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(np.int8)


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reference vs current: `amount` shifts by 1 sd, `flag` and `stable` do not, the score shifts up."""
    rng = np.random.default_rng(0)
    ref = pl.DataFrame(
        {
            "amount": normal(1),
            "stable": normal(2),
            "flag": binary(3, 0.1),
            "score": rng.beta(1, 20, N),
        }
    )
    cur = pl.DataFrame(
        {
            "amount": normal(4, shift=1.0),
            "stable": normal(5),
            "flag": binary(6, 0.1),
            "score": rng.beta(1, 5, N),
        }
    )
    return ref, cur


# --- PSI ---------------------------------------------------------------------------------------


def test_identical_distributions_give_psi_near_zero_and_ok() -> None:
    assert population_stability_index(normal(1), normal(2)) < 0.01
    assert population_stability_index(normal(1), normal(1)) == 0.0
    ref, cur = pl.DataFrame({"x": normal(1)}), pl.DataFrame({"x": normal(2)})
    (x,) = drift_report(ref, cur, ["x"]).features
    assert x.status == "ok" and x.psi < 0.01


def test_mean_shift_of_one_sd_is_drift() -> None:
    psi = population_stability_index(normal(1), normal(2, shift=1.0))
    assert psi > 0.25
    assert DriftThresholds().status(psi) == "drift"


def test_psi_grows_with_the_shift() -> None:
    ref, base = normal(1), normal(2)
    psis = [population_stability_index(ref, base + shift) for shift in (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)]
    assert psis == sorted(psis) and len(set(psis)) == len(psis), psis
    assert psis[0] < 0.01 < psis[-1]


def test_binary_feature_rate_change_is_flagged() -> None:
    assert population_stability_index(binary(1, 0.1), binary(2, 0.1)) < 0.01
    psi = population_stability_index(binary(1, 0.1), binary(2, 0.5))
    # two bins, 0.9/0.1 -> 0.5/0.5: 0.4 ln(0.9/0.5) + 0.4 ln(0.5/0.1)
    assert psi == pytest.approx(0.4 * np.log(0.9 / 0.5) + 0.4 * np.log(5), abs=0.05)
    assert DriftThresholds().status(psi) == "drift"


def test_constant_reference_works_and_a_changed_constant_is_drift() -> None:
    ref = np.full(1_000, 3.0)
    assert population_stability_index(ref, np.full(500, 3.0)) == 0.0
    assert population_stability_index(ref, np.full(500, 4.0)) > 0.25
    assert population_stability_index(ref, np.full(500, 2.0)) > 0.25  # below the reference range too


def test_values_outside_the_reference_range_count() -> None:
    ref = np.arange(1_000, dtype=float)
    assert population_stability_index(ref, np.concatenate([ref, np.full(100, 5_000.0)])) > 0.25
    assert population_stability_index(ref, np.concatenate([ref, np.full(100, -5_000.0)])) > 0.25


def test_nulls_are_their_own_bin() -> None:
    values = normal(1, n=10_000)
    with_nulls = pl.Series(values).scatter(np.arange(0, 10_000, 10), None)  # 10% null
    # Same distribution and null rate: no drift.
    assert population_stability_index(with_nulls, with_nulls) == 0.0
    other = pl.Series(normal(2, n=10_000)).scatter(np.arange(5, 10_000, 10), None)
    assert population_stability_index(with_nulls, other) < 0.01
    # Half the current rows turn null, the rest keep the reference distribution: drift.
    half_null = pl.Series(normal(2, n=10_000)).scatter(np.arange(0, 10_000, 2), None)
    assert population_stability_index(pl.Series(values), half_null) > 0.25
    # NaN counts as missing, exactly like null.
    half_nan = half_null.fill_null(float("nan"))
    assert population_stability_index(pl.Series(values), half_nan) == population_stability_index(
        pl.Series(values), half_null
    )


def test_all_null_columns_do_not_crash() -> None:
    nulls = pl.Series([None] * 100, dtype=pl.Float64)
    assert population_stability_index(nulls, nulls) == 0.0
    assert population_stability_index(nulls, pl.Series(normal(1, n=100))) > 0.25
    assert population_stability_index(pl.Series(normal(1, n=100)), nulls) > 0.25
    report = drift_report(pl.DataFrame({"x": normal(1, n=100)}), pl.DataFrame({"x": nulls}), ["x"])
    (x,) = report.features
    assert (x.cur_mean, x.cur_null_rate, x.ref_null_rate, x.status) == (None, 1.0, 0.0, "drift")


def test_psi_rejects_empty_inputs_and_bad_bins() -> None:
    with pytest.raises(ValueError, match="rows on both sides"):
        population_stability_index(np.array([]), normal(1, n=10))
    with pytest.raises(ValueError, match="bins"):
        population_stability_index(normal(1, n=10), normal(2, n=10), bins=0)


floats = arrays(np.float64, st.integers(1, 300), elements=st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(floats, floats, st.integers(1, 20))
def test_psi_is_non_negative_and_zero_on_itself(x: np.ndarray, y: np.ndarray, bins: int) -> None:
    psi = population_stability_index(x, y, bins)
    assert np.isfinite(psi) and psi >= 0
    assert population_stability_index(x, x, bins) < 1e-9
    assert population_stability_index(x, np.random.default_rng(0).permutation(x), bins) < 1e-9


# --- Thresholds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("warn", "drift", "bins"), [(0.3, 0.2, 10), (0.0, 0.25, 10), (-0.1, 0.25, 10), (0.1, 0.25, 0)])
def test_thresholds_are_validated(warn: float, drift: float, bins: int) -> None:
    with pytest.raises(ValueError):
        DriftThresholds(warn=warn, drift=drift, bins=bins)


def test_thresholds_classify_psi() -> None:
    t = DriftThresholds()
    assert (t.warn, t.drift, t.bins) == (0.1, 0.25, 10)
    assert [t.status(p) for p in (0.0, 0.1, 0.2, 0.25, 0.31)] == ["ok", "ok", "warn", "warn", "drift"]
    assert DriftThresholds(warn=0.2, drift=0.2).status(0.21) == "drift"


# --- Report --------------------------------------------------------------------------------------


def test_report_flags_the_shifted_feature_only(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    report = drift_report(ref, cur, ["amount", "stable", "flag"])
    by_name = {f.feature: f for f in report.features}
    assert [f.feature for f in report.features] == ["amount", "stable", "flag"]
    assert by_name["amount"].status == "drift" and by_name["amount"].psi > 0.25
    assert by_name["stable"].status == "ok" and by_name["flag"].status == "ok"
    assert by_name["amount"].cur_mean - by_name["amount"].ref_mean == pytest.approx(1.0, abs=0.05)
    assert report.drifted == (by_name["amount"],)
    assert report.is_drift and report.score is None
    assert report.reasons() == [f"amount: PSI {by_name['amount'].psi:.3f} > 0.25"]
    assert (report.reference_rows, report.current_rows) == (N, N)


def test_no_drift_report(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    report = drift_report(ref, cur, ["stable", "flag"])
    assert not report.is_drift and report.drifted == () and report.reasons() == []
    assert "no drift" in report.markdown()


def test_score_drift_is_reported(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    report = drift_report(ref, cur, ["stable"], score_column="score")
    assert isinstance(report.score, FeatureDrift)
    assert report.score.feature == "score" and report.score.status == "drift"
    assert report.drifted == ()  # features only...
    assert report.is_drift  # ...but the score counts
    assert report.reasons() == [f"score (model score): PSI {report.score.psi:.3f} > 0.25"]
    assert report.to_rows()[-1]["kind"] == "score"
    assert "score (score)" in report.markdown()


def test_report_serialises(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    ref = ref.with_columns(pl.when(pl.col("stable") > 1).then(None).otherwise(pl.col("stable")).alias("stable"))
    report = drift_report(
        ref,
        cur,
        ["amount", "stable", "flag"],
        score_column="score",
        reference_window=(date(2026, 1, 1), date(2026, 1, 31)),
        current_window=(date(2026, 2, 1), None),
    )
    rows = report.to_rows()
    assert [r["feature"] for r in rows] == ["amount", "stable", "flag", "score"]
    assert list(rows[0]) == ["kind", *FeatureDrift.__dataclass_fields__]
    json.dumps(rows, allow_nan=False)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["reference_window"] == ["2026-01-01", "2026-01-31"]
    assert data["current_window"] == ["2026-02-01", None]
    assert data["is_drift"] is True and data["thresholds"] == {"warn": 0.1, "drift": 0.25, "bins": 10}
    assert data["features"][1]["ref_null_rate"] == pytest.approx(0.16, abs=0.02)  # P(Z > 1)
    assert data["score"]["feature"] == "score"
    md = report.markdown()
    assert "drift detected" in md and "2026-01-01 to 2026-01-31" in md and "2026-02-01 to …" in md
    assert md.count("\n| ") == 1 + 4  # header + one row per column


def test_missing_or_bad_columns_raise(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    with pytest.raises(ValueError, match="missing from the reference frame: nope"):
        drift_report(ref, cur, ["amount", "nope"])
    with pytest.raises(ValueError, match="missing from the current frame: amount"):
        drift_report(ref, cur.drop("amount"), ["amount"])
    with pytest.raises(ValueError, match="missing from the current frame: score"):
        drift_report(ref, cur.drop("score"), ["amount"], score_column="score")
    with pytest.raises(ValueError, match="current frame is empty"):
        drift_report(ref, cur.clear(), ["amount"])
    with pytest.raises(ValueError, match="reference frame is empty"):
        drift_report(ref.clear(), cur, ["amount"])
    with pytest.raises(ValueError, match="not numeric in the reference frame: name"):
        drift_report(ref.with_columns(name=pl.lit("a")), cur.with_columns(name=pl.lit("b")), ["name"])
    with pytest.raises(ValueError, match="no features"):
        drift_report(ref, cur, [])


def test_single_string_feature_is_one_column(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    assert [f.feature for f in drift_report(ref, cur, "amount").features] == ["amount"]


def test_custom_thresholds_apply(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ref, cur = frames
    lenient = drift_report(ref, cur, ["amount"], thresholds=DriftThresholds(warn=0.5, drift=5.0))
    assert lenient.features[0].status == "warn" and not lenient.is_drift


# --- Prefect -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_publish_inside_a_flow_creates_the_artifacts(
    prefect_harness: None, frames: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.monitor import publish_drift_report

    ref, cur = frames
    report = drift_report(ref, cur, ["amount", "flag"], score_column="score")

    @flow(name="drift-publish-test")
    def publish() -> None:
        publish_drift_report(report, key="drift-test")

    publish()

    with get_client(sync_client=True) as client:
        (table,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-test"])))
        (summary,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-test-summary"]))
        )
    assert table.type == "table" and table.flow_run_id is not None
    assert json.loads(table.data) == report.to_rows()  # Prefect stores a table as a JSON string
    assert summary.type == "markdown" and summary.data == report.markdown()
