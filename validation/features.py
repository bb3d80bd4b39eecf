"""The feature suite: a gate in front of training (nulls, ranges, and bounds from a reference window).

Every feature is null-free and inside its defined range. Given a :class:`ReferenceProfile` of the
reference (training) window, two more expectations per feature compare the table with it:

- **mean**: ``ExpectColumnMeanToBeBetween`` with ``reference mean ± max(0.5 · reference std,
  0.05 · max(|reference mean|, 1))``. Half a standard deviation is a "medium" standardised mean
  difference: between two steady-state windows of the simulated world the largest difference is
  about 0.12 std (fraud-risk features of a 200-customer world), while amounts × 3 move the mean by
  about 2.4 std and flipping a 0/1 feature by ``|1 - 2p| / sqrt(p(1 - p))`` std (0.9 for weekend,
  1.7 for night). The floor keeps a constant reference feature (std 0) usable: it may move by 5 %
  of its size, or by 0.05 around zero.
- **tails**: ``ExpectColumnValuesToBeBetween(q_0.001, q_0.999, mostly=0.95)``. By construction
  0.2 % of reference rows fall outside; later steady windows showed at most 1.6 %, so 5 % leaves a
  3x margin. It catches a spread or scale change where the tail is tight (× 3 puts 66 % of
  ``customer_id_avg_amount_30day_window`` past its old 99.9th percentile); heavy tails (``tx_amount``,
  with fraud amounts in it) and 0/1 features are left to the mean check.

Windowed features are truncated where the transaction history starts (a 30-day count is low in the
first 30 days), which would move their means by up to 2 std. So the profile and the reference
checks use only rows at least ``spec.history_days`` after the history start (by default the
frame's first transaction, right for ``compute_features`` over a lake window; pass
``history_start`` for a frame cut from features computed over a longer history). The range and
null checks still cover every row. The reference null rate is recorded; the suite itself allows
no nulls at all. Features of the spec missing from the reference (a newer spec) get no reference
checks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from features.definitions import FeatureSpec
from validation.gx_runner import ExpectationOutcome, SuiteResult, run_suite

QUANTILES = (0.001, 0.999)
MEAN_CHECK = "expect_column_mean_to_be_between"
TAIL_CHECK = "expect_column_values_to_be_between"


class FeatureValidationError(RuntimeError):
    """Training refused: the feature table failed its suite."""

    def __init__(self, result: SuiteResult) -> None:
        details = "; ".join(o.reason for o in result.failures)
        super().__init__(f"feature suite '{result.suite}' failed: {details}")
        self.result = result


@dataclass(frozen=True)
class FeatureProfile:
    """One feature over the reference window (null and NaN count as missing; stats skip them)."""

    name: str
    mean: float
    std: float
    q_low: float
    q_high: float
    null_rate: float


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature statistics of the reference (training) window, rows after the feature warm-up."""

    features: tuple[FeatureProfile, ...]
    rows: int
    quantiles: tuple[float, float] = QUANTILES
    start: datetime | None = None
    end: datetime | None = None

    def __getitem__(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """Profiled feature names, in order."""
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows": self.rows,
            "quantiles": list(self.quantiles),
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "features": {f.name: {k: v for k, v in vars(f).items() if k != "name"} for f in self.features},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Inverse of :meth:`to_dict`."""
        lo, hi = data["quantiles"]
        return cls(
            features=tuple(
                FeatureProfile(name, **{k: float(v) for k, v in stats.items()})
                for name, stats in data["features"].items()
            ),
            rows=int(data["rows"]),
            quantiles=(float(lo), float(hi)),
            start=datetime.fromisoformat(data["start"]) if data.get("start") else None,
            end=datetime.fromisoformat(data["end"]) if data.get("end") else None,
        )


@dataclass(frozen=True)
class ReferenceTolerance:
    """How far a window may sit from the reference (see the module docstring for the reasoning)."""

    mean_stds: float = 0.5
    mean_floor: float = 0.05
    outside_share: float = 0.05

    def mean_bounds(self, f: FeatureProfile) -> tuple[float, float]:
        """Allowed range of the window mean: ``mean ± max(mean_stds · std, mean_floor · max(|mean|, 1))``."""
        half = max(self.mean_stds * f.std, self.mean_floor * max(abs(f.mean), 1.0))
        return f.mean - half, f.mean + half


DEFAULT_TOLERANCE = ReferenceTolerance()


def _as_utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def after_warmup(
    features: pl.DataFrame, spec: FeatureSpec, history_start: datetime | date | None = None
) -> pl.DataFrame:
    """Rows whose windows are fully covered: ``tx_datetime >= history_start + spec.history_days``.

    ``history_start`` defaults to the frame's first ``tx_datetime``.
    """
    if features.height == 0:
        return features
    start = _as_utc(history_start) if history_start is not None else features["tx_datetime"].min()
    return features.filter(pl.col("tx_datetime") >= start + timedelta(days=spec.history_days))  # type: ignore[operator]


def reference_profile(
    features: pl.DataFrame,
    spec: FeatureSpec,
    history_start: datetime | date | None = None,
    quantiles: tuple[float, float] = QUANTILES,
) -> ReferenceProfile:
    """Profile the reference window (``compute_features`` output), skipping the warm-up rows."""
    window = after_warmup(features, spec, history_start)
    if window.height == 0:
        raise ValueError(f"no rows {spec.history_days} days after the history start: window too short to profile")
    exprs = []
    for n in spec.feature_names:
        x = pl.col(n).cast(pl.Float64).fill_nan(None)
        exprs += [
            x.mean().alias(f"{n}:mean"),
            x.std().fill_null(0.0).alias(f"{n}:std"),
            x.quantile(quantiles[0], "nearest").alias(f"{n}:q_low"),
            x.quantile(quantiles[1], "nearest").alias(f"{n}:q_high"),
            x.is_null().mean().alias(f"{n}:null_rate"),
        ]
    stats = window.select(exprs).row(0, named=True)
    profiles = []
    for n in spec.feature_names:
        if stats[f"{n}:mean"] is None:
            raise ValueError(f"{n}: no values in the reference window")
        profiles.append(
            FeatureProfile(n, *(float(stats[f"{n}:{k}"]) for k in ("mean", "std", "q_low", "q_high", "null_rate")))
        )
    times = window["tx_datetime"]
    return ReferenceProfile(tuple(profiles), window.height, quantiles, times.min(), times.max())  # type: ignore[arg-type]


def reference_expectations(
    spec: FeatureSpec, reference: ReferenceProfile, tolerance: ReferenceTolerance = DEFAULT_TOLERANCE
) -> list[tuple[Any, str]]:
    """Mean and tail bounds from ``reference`` for the spec's features it profiles."""
    import great_expectations as gx

    e = gx.expectations
    suite: list[tuple[Any, str]] = []
    for name in (n for n in spec.feature_names if n in reference.names):
        f = reference[name]
        lo, hi = tolerance.mean_bounds(f)
        suite.append(
            (
                e.ExpectColumnMeanToBeBetween(column=name, min_value=lo, max_value=hi),
                f"{name}: mean outside reference bounds [{lo:.4g}, {hi:.4g}]",
            )
        )
        suite.append(
            (
                e.ExpectColumnValuesToBeBetween(
                    column=name, min_value=f.q_low, max_value=f.q_high, mostly=1 - tolerance.outside_share
                ),
                f"{name}: more than {tolerance.outside_share:.0%} of rows outside reference range "
                f"[{f.q_low:.4g}, {f.q_high:.4g}]",
            )
        )
    return suite


def feature_expectations(
    spec: FeatureSpec, reference: ReferenceProfile | None = None, tolerance: ReferenceTolerance = DEFAULT_TOLERANCE
) -> list[tuple[Any, str]]:
    """Null-free features with values inside their defined ranges, plus the reference bounds if given.

    :func:`validate_features` runs the reference part on the rows after the warm-up only.
    """
    import great_expectations as gx

    e = gx.expectations
    suite: list[tuple[Any, str]] = []
    # Row features of a dataset profile may be missing (NaN: unknown to the model, as XGBoost reads it);
    # their ranges where they have one. Numeric passthrough columns have none (PCA components are signed).
    vocabularies = {f"{name}_code": len(vocabulary) for name, vocabulary in spec.categorical}
    for name, size in vocabularies.items():
        suite.append(
            (
                e.ExpectColumnValuesToBeBetween(column=name, min_value=-1, max_value=size - 1),
                f"{name}: not a position in its vocabulary (or -1)",
            )
        )
    if spec.age_from:
        suite.append(
            (
                e.ExpectColumnValuesToBeBetween(column="age_years", min_value=0, max_value=130),
                "age_years: outside [0, 130]",
            )
        )
    if spec.distance_from:
        suite.append(
            (
                e.ExpectColumnValuesToBeBetween(column="distance_km", min_value=0, max_value=20_040),
                "distance_km: outside [0, half the Earth's circumference]",
            )
        )
    for name in spec.window_names:
        suite.append((e.ExpectColumnValuesToNotBeNull(column=name), f"{name}: null values"))
        if "risk" in name or name in {"tx_during_weekend", "tx_during_night"}:
            suite.append(
                (e.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=1), f"{name}: outside [0, 1]")
            )
        elif "customer_id_nb_tx" in name:
            # The current transaction is always inside its own customer window.
            suite.append((e.ExpectColumnValuesToBeBetween(column=name, min_value=1), f"{name}: below 1"))
        else:
            suite.append((e.ExpectColumnValuesToBeBetween(column=name, min_value=0), f"{name}: negative"))
    suite.append((e.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[0, 1]), "is_fraud: label outside {0, 1}"))
    if reference is not None:
        suite += reference_expectations(spec, reference, tolerance)
    return suite


def _explain(o: ExpectationOutcome, reference: ReferenceProfile | None, tolerance: ReferenceTolerance) -> str:
    """The reason of a failed outcome with what was observed."""
    seen = o.observed
    if o.expectation == MEAN_CHECK and reference is not None and o.column in reference.names:
        lo, hi = tolerance.mean_bounds(reference[o.column])
        mean = seen.get("observed_value")
        shown = "undefined" if mean is None else f"{mean:.4g}"
        return f"{o.column}: mean {shown} outside reference bounds [{lo:.4g}, {hi:.4g}]"
    if "unexpected_count" in seen and "element_count" in seen:
        return f"{o.reason} ({seen['unexpected_count']} of {seen['element_count']} rows)"
    return o.reason


def validate_features(
    features: pl.DataFrame,
    spec: FeatureSpec,
    reference: ReferenceProfile | None = None,
    *,
    tolerance: ReferenceTolerance = DEFAULT_TOLERANCE,
    history_start: datetime | date | None = None,
    docs_dir: Path | None = None,
) -> SuiteResult:
    """Run the feature suite over the training table (aggregate level, no per-row report).

    With ``reference`` a second suite, ``features_reference``, checks the rows after the warm-up
    against its bounds; the result merges both (suite name ``features``). Failed outcomes' reasons
    carry the observed values.
    """
    base = run_suite(
        "features",
        feature_expectations(spec),
        features.select(*spec.feature_names, "is_fraud"),
        row_level=False,
        docs_dir=docs_dir,
    )
    outcomes, pages = list(base.outcomes), list(base.docs_pages)
    checks = reference_expectations(spec, reference, tolerance) if reference is not None else []
    if checks:
        window = after_warmup(features, spec, history_start)
        if window.height == 0:
            reason = f"reference bounds: no rows {spec.history_days} days after the history start to compare"
            outcomes.append(ExpectationOutcome("reference_window", None, False, reason))
        else:
            ref = run_suite(
                "features_reference",
                checks,
                window.select(*dict.fromkeys(e.column for e, _ in checks)),
                row_level=False,
                docs_dir=docs_dir,
            )
            outcomes += ref.outcomes
            pages += ref.docs_pages
    outcomes = [o if o.success else replace(o, reason=_explain(o, reference, tolerance)) for o in outcomes]
    return SuiteResult("features", all(o.success for o in outcomes), tuple(outcomes), tuple(pages))


def require_valid_features(
    features: pl.DataFrame,
    spec: FeatureSpec,
    reference: ReferenceProfile | None = None,
    *,
    tolerance: ReferenceTolerance = DEFAULT_TOLERANCE,
    history_start: datetime | date | None = None,
    docs_dir: Path | None = None,
) -> SuiteResult:
    """Raise :class:`FeatureValidationError` when the suite fails; return the result otherwise."""
    result = validate_features(
        features, spec, reference, tolerance=tolerance, history_start=history_start, docs_dir=docs_dir
    )
    if not result.success:
        raise FeatureValidationError(result)
    return result
