"""GX Data Docs: a static HTML site of the suites and their validation results, and a link to it.

Runs are published as they happen (``run_suite(docs_dir=...)``, or any suite run inside
``recording_data_docs(docs_dir)``, e.g. ``validate_raw``); :func:`build_data_docs` re-renders the whole
site from the stored results. Results are kept as JSON under ``<docs_dir>/.gx_store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from validation.gx_runner import DOCS_SITE, SuiteResult, docs_context, recording_data_docs

__all__ = ["build_data_docs", "data_docs_index", "data_docs_markdown", "recording_data_docs"]


def data_docs_index(docs_dir: Path) -> Path:
    """Where the site's ``index.html`` is (whether or not it was built yet)."""
    return Path(docs_dir).resolve() / "index.html"


def build_data_docs(docs_dir: Path) -> Path:
    """(Re)build the whole site under ``docs_dir`` from the results stored there; return ``index.html``."""
    docs_context(docs_dir).build_data_docs(site_names=[DOCS_SITE])
    return data_docs_index(docs_dir)


def data_docs_markdown(index: Path, results: Sequence[SuiteResult] = ()) -> str:
    """Markdown for a Prefect artifact: a ``file://`` link to the site, then one line per suite run given."""
    lines = ["## Great Expectations Data Docs", "", f"[Open the Data Docs]({Path(index).resolve().as_uri()})"]
    if results:
        lines.append("")
    for r in results:
        status = "passed" if r.success else f"**failed** ({len(r.failures)} of {len(r.outcomes)} expectations)"
        # Pages are <docs>/validations/<suite>/<run name>/<run time>/<batch>.html.
        links = ", ".join(f"[{p.parents[2].name}]({p.as_uri()})" for p in r.docs_pages)
        lines.append(f"- `{r.suite}`: {status}" + (f" — {links}" if links else ""))
    return "\n".join(lines) + "\n"
