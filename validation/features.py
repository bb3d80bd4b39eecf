"""The feature suite: a gate in front of training (nulls, ranges, and shares of the reference)."""

from __future__ import annotations

from typing import Any

import polars as pl

from features.engineering import FeatureSpec
from validation.gx_runner import SuiteResult, run_suite


class FeatureValidationError(RuntimeError):
    """Training refused: the feature table failed its suite."""

    def __init__(self, result: SuiteResult) -> None:
        details = "; ".join(f"{o.reason} (observed {o.observed})" for o in result.failures)
        super().__init__(f"feature suite '{result.suite}' failed: {details}")
        self.result = result


def feature_expectations(spec: FeatureSpec) -> list[tuple[Any, str]]:
    """Null-free features with values inside their defined ranges."""
    import great_expectations as gx

    e = gx.expectations
    suite: list[tuple[Any, str]] = []
    for name in spec.feature_names:
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
    return suite


def validate_features(features: pl.DataFrame, spec: FeatureSpec) -> SuiteResult:
    """Run the feature suite over the training table (aggregate level, no per-row report)."""
    columns = [*spec.feature_names, "is_fraud"]
    return run_suite("features", feature_expectations(spec), features.select(columns), row_level=False)


def require_valid_features(features: pl.DataFrame, spec: FeatureSpec) -> SuiteResult:
    """Raise :class:`FeatureValidationError` when the suite fails; return the result otherwise."""
    result = validate_features(features, spec)
    if not result.success:
        raise FeatureValidationError(result)
    return result
