"""A thin runner over an ephemeral Great Expectations 1.x context.

GX has no Polars backend: frames are converted to pandas at this boundary only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import polars as pl

ROW_INDEX = "_row"


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result: which rows failed it (by ``_row``) and a human-readable reason."""

    expectation: str
    column: str | None
    success: bool
    reason: str
    failed_rows: tuple[int, ...] = ()
    observed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteResult:
    """A suite run over a frame."""

    suite: str
    success: bool
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The expectations that failed."""
        return [o for o in self.outcomes if not o.success]


@cache
def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_suite(
    name: str, expectations: list[tuple[Any, str]], frame: pl.DataFrame, row_level: bool = True
) -> SuiteResult:
    """Validate ``frame`` against ``expectations`` ((GX expectation, reason) pairs).

    With ``row_level`` the frame must carry a ``_row`` column; failing rows are reported by it.
    """
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_or_update_pandas(f"{name}_source")
    asset = source.add_dataframe_asset(f"{name}_batch")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name))
    suite.expectations = []
    for expectation, _ in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    result_format: dict[str, Any] = (
        {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_INDEX]}
        if row_level
        else {"result_format": "SUMMARY"}
    )
    result = definition.run(batch_parameters={"dataframe": frame.to_pandas()}, result_format=result_format)
    reasons = {e.id: reason for e, reason in expectations}
    outcomes = []
    for res in result.results:
        config = res.expectation_config
        failed: tuple[int, ...] = ()
        if row_level and not res.success:
            failed = tuple(int(r[ROW_INDEX]) for r in res.result.get("unexpected_index_list") or [])
        observed = {k: v for k, v in res.result.items() if k in {"observed_value", "unexpected_count", "element_count"}}
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=config.kwargs.get("column"),
                success=bool(res.success),
                reason=reasons.get(config.id, config.type),
                failed_rows=failed,
                observed=observed,
            )
        )
    source.delete_asset(asset.name)
    return SuiteResult(name, bool(result.success), tuple(outcomes))
