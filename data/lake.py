"""Date-partitioned Parquet lake with atomic writes, dedupe on transaction_id, and quarantine."""

from __future__ import annotations

import glob
import hashlib
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import polars as pl

from data.contract import empty_transactions

PARTITION_FILE = "part.parquet"


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temp file in the same directory, fsync, then rename over ``path``.

    The temp file is named after its writer (host and pid). A writer killed before the rename
    (SIGKILL, OOM killer) cannot delete it; the next write to ``path`` does.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temps(path)
    owner = f"{socket.gethostname()}-{os.getpid()}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.{owner}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_orphaned_temps(path: Path) -> None:
    """Delete temp files of earlier writers to ``path`` on this host whose process is gone."""
    prefix = f".tmp-{path.name}.{socket.gethostname()}-"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write ``df`` as Parquet to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, df.write_parquet)


@dataclass(frozen=True)
class LandingReport:
    """Outcome of landing a batch: ``received == landed + duplicates``."""

    received: int
    landed: int
    duplicates: int
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class Lake:
    """The transaction lake under ``root`` (``root/lake/transactions/date=YYYY-MM-DD/part.parquet``)."""

    root: Path

    @property
    def transactions_dir(self) -> Path:
        """Directory holding the date-partitioned transaction files."""
        return self.root / "lake" / "transactions"

    @property
    def quarantine_dir(self) -> Path:
        """Directory where rejected rows are written."""
        return self.root / "quarantine"

    def partition_paths(self) -> list[Path]:
        """Existing partition files, oldest first."""
        return sorted(self.transactions_dir.glob(f"date=*/{PARTITION_FILE}"))

    def newest_day(self) -> date | None:
        """Date of the newest partition, or None for an empty lake."""
        paths = self.partition_paths()
        return _partition_date(paths[-1]) if paths else None

    def read(self, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        """Canonical transactions with ``start <= date <= end`` (inclusive; None = open)."""
        paths = [p for p in self.partition_paths() if _in_range(_partition_date(p), start, end)]
        if not paths:
            return empty_transactions()
        return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")

    def existing_ids(self) -> pl.Series:
        """Transaction ids already landed (all partitions: ids are unique across the lake)."""
        paths = self.partition_paths()
        if not paths:
            return pl.Series("transaction_id", [], dtype=pl.String)
        return pl.concat([pl.read_parquet(p, columns=["transaction_id"]) for p in paths])["transaction_id"]

    def land(self, accepted: pl.DataFrame) -> LandingReport:
        """Append rows not yet in the lake; each touched partition is rewritten atomically.

        Rerunning with the same rows lands nothing (idempotent). Duplicates inside the batch
        keep their first occurrence.
        """
        received = accepted.height
        seen = self.existing_ids()
        new = accepted.unique("transaction_id", keep="first", maintain_order=True).filter(
            ~pl.col("transaction_id").is_in(seen.implode())
        )
        touched: list[str] = []
        for (day,), part in new.with_columns(_date=pl.col("tx_datetime").dt.date()).group_by(
            "_date", maintain_order=True
        ):
            target = self.transactions_dir / f"date={day}" / PARTITION_FILE
            part = part.drop("_date")
            if target.exists():
                part = pl.concat([pl.read_parquet(target), part], how="diagonal_relaxed")
            write_parquet_atomic(part.sort("tx_datetime", "transaction_id"), target)
            touched.append(str(day))
        return LandingReport(received, new.height, received - new.height, tuple(sorted(touched)))

    def quarantine(self, rejected: pl.DataFrame, batch_name: str) -> Path | None:
        """Store rejected rows (with their ``reason``) for inspection; None if there are none."""
        if rejected.height == 0:
            return None
        target = self.quarantine_dir / f"{batch_name}.parquet"
        write_parquet_atomic(rejected, target)
        return target

    def lineage(self, start: date | None = None, end: date | None = None) -> list[dict[str, str]]:
        """Partitions in the window with a SHA-256 of each file (what a training run used)."""
        out = []
        for p in self.partition_paths():
            day = _partition_date(p)
            if _in_range(day, start, end):
                out.append({"partition": str(day), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
        return out


def _partition_date(path: Path) -> date:
    return date.fromisoformat(path.parent.name.removeprefix("date="))


def _in_range(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)
