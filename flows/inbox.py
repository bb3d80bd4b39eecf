"""The scheduled ingest: optionally simulate the next day, then ingest every file waiting in the inbox.

Files are taken oldest first. A file that lands moves to ``inbox/done/``; a file that cannot be read at
all moves to ``inbox/failed/`` next to a ``<name>.reason.txt`` saying why, and the next file is still
processed. The flow fails at the end if any file failed, so the run shows red in the UI while the good
files have landed. Rows rejected inside a readable file go to the lake's quarantine as usual.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from config.settings import current_settings
from data.sources import SourceError

SUFFIXES = {".csv", ".parquet", ".pq", ".txt"}


def inbox_dir(home: Path) -> Path:
    """The folder watched by the ingest deployment."""
    return home / "inbox"


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    os.replace(path, target)  # same filesystem: atomic
    return target


@flow(name="ingest-inbox", log_prints=True)
def ingest_inbox_flow(
    simulate_next_day: bool = True,
    customers: int = 1_000,
    terminals: int = 2_000,
    seed: int = 42,
    origin: date | None = None,
) -> dict[str, Any]:
    """Demo world: append the next simulated day to the inbox; then ingest every inbox file.

    The simulated world is the demo's (``origin`` defaults to its first day, 2026-04-01).
    """
    from flows.pipeline import DEMO_START, ingest_flow, simulate_flow

    settings = current_settings()
    inbox = inbox_dir(settings.home_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    if simulate_next_day:
        simulate_flow(customers, terminals, 1, None, seed, origin or DEMO_START)
    files = sorted((p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES), key=os.path.getmtime)
    report: list[dict[str, Any]] = []
    for path in files:
        try:
            summary = ingest_flow(str(path))
        except SourceError as exc:
            moved = _move(path, inbox / "failed")
            moved.with_name(moved.name + ".reason.txt").write_text(f"{exc}\n")
            get_run_logger().error("%s could not be ingested: %s", path.name, exc)
            report.append({"file": path.name, "status": "failed", "reason": str(exc)})
            continue
        _move(path, inbox / "done")
        counts = {k: summary.get(k) for k in ("kind", "read", "accepted", "duplicates", "rejected")}
        report.append({"file": path.name, "status": "landed", **counts})
    if report:
        create_table_artifact(key="inbox-report", table=report, description="Files ingested from the inbox")
    failed = [r for r in report if r["status"] == "failed"]
    print(f"inbox: {len(report) - len(failed)} file(s) landed, {len(failed)} failed")
    if failed:
        raise RuntimeError(f"{len(failed)} inbox file(s) failed, moved to {inbox / 'failed'}: {failed}")
    return {"files": report}
