"""A thin runner over Great Expectations 1.x contexts.

GX has no Polars backend: frames are converted to pandas at this boundary only.

Without Data Docs a run uses one in-memory (ephemeral) context and writes nothing. With a docs
directory (``run_suite(docs_dir=...)`` or inside :func:`recording_data_docs`) the run goes
through a context whose expectation and validation-result stores are JSON files under
``<docs_dir>/.gx_store``, as a ``Checkpoint`` with an ``UpdateDataDocsAction``: the result is stored,
its HTML page rendered and the site index rebuilt. The stores live on disk because the index only
lists results its context can still read, so runs from earlier processes (ingest, then train) stay on
the site.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl

from config.settings import quiet_environment

ROW_INDEX = "_row"
DOCS_SITE = "fraudops"
STORE_DIR = ".gx_store"

_docs_dir: ContextVar[Path | None] = ContextVar("gx_docs_dir", default=None)


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
    """A suite run over a frame; ``docs_pages`` are the Data Docs HTML pages of its validation results."""

    suite: str
    success: bool
    outcomes: tuple[ExpectationOutcome, ...]
    docs_pages: tuple[Path, ...] = ()

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The expectations that failed."""
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (failed row indices left out; rejected rows are quarantined with reasons)."""
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": len(self.outcomes),
            "failed": len(self.failures),
            "outcomes": [
                {
                    "expectation": o.expectation,
                    "column": o.column,
                    "success": o.success,
                    "reason": o.reason,
                    "failed_rows": len(o.failed_rows),
                    "observed": {k: v for k, v in o.observed.items() if isinstance(v, int | float | str | None)},
                }
                for o in self.outcomes
            ],
            "data_docs": [p.as_uri() for p in self.docs_pages],
        }


def _quiet_context(project_config: Any = None) -> Any:
    quiet_environment()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral") if project_config is None else gx.get_context(project_config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def _context() -> Any:
    return _quiet_context()


@cache
def _docs_context(docs_dir: Path) -> Any:
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    defaults = InMemoryStoreBackendDefaults()
    folders = {defaults.expectations_store_name: "expectations", defaults.validation_results_store_name: "validations"}
    for store, folder in folders.items():
        defaults.stores[store]["store_backend"] = {  # type: ignore[index]
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir / STORE_DIR / folder),
        }
    site = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_cta_footer": False},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
    }
    return _quiet_context(
        DataContextConfig(store_backend_defaults=defaults, data_docs_sites={DOCS_SITE: site}, analytics_enabled=False)
    )


def docs_context(docs_dir: Path) -> Any:
    """The (cached) GX context whose Data Docs site is ``docs_dir`` and whose results are stored under it."""
    return _docs_context(Path(docs_dir).resolve())


@contextmanager
def recording_data_docs(docs_dir: Path | None) -> Iterator[None]:
    """Within the block, :func:`run_suite` calls without an explicit ``docs_dir`` record into ``docs_dir``."""
    token = _docs_dir.set(docs_dir)
    try:
        yield
    finally:
        _docs_dir.reset(token)


def _page(context: Any, key: Any) -> Path | None:
    urls = context.get_docs_sites_urls(resource_identifier=key, site_names=[DOCS_SITE])
    url = urls[0]["site_url"] if urls else None
    return Path(unquote(urlparse(url).path)) if url else None


def run_suite(
    name: str,
    expectations: list[tuple[Any, str]],
    frame: pl.DataFrame,
    row_level: bool = True,
    docs_dir: Path | None = None,
) -> SuiteResult:
    """Validate ``frame`` against ``expectations`` ((GX expectation, reason) pairs).

    With ``row_level`` the frame must carry a ``_row`` column; failing rows are reported by it.
    With ``docs_dir`` (or inside :func:`recording_data_docs`) the result is also published to the
    Data Docs site there.
    """
    import great_expectations as gx

    docs_dir = docs_dir or _docs_dir.get()
    context = _context() if docs_dir is None else docs_context(docs_dir)
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
    parameters = {"dataframe": frame.to_pandas()}
    pages: tuple[Path, ...] = ()
    if docs_dir is None:
        result = definition.run(batch_parameters=parameters, result_format=result_format)
    else:
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
                result_format=result_format,
            )
        )
        ((key, result),) = checkpoint.run(batch_parameters=parameters).run_results.items()
        pages = tuple(p for p in [_page(context, key)] if p is not None)
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
    return SuiteResult(name, bool(result.success), tuple(outcomes), pages)
