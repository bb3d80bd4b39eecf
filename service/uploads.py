"""CSV or Parquet uploads for batch scoring (API and UI): sniffed by content, mapped to raw records.

Whole-file problems raise :class:`UploadError` with a message naming the problem (binary or broken
file, wrong delimiter, missing or repeated columns, ids of the wrong type, no rows, too many rows);
row problems (a CSV line with the wrong number of fields) come back per row, so the rest of the
file is still scored. The scorer validates the values (``Scorer.score_frame``: typed columns are checked
column-wise, and any row that fails goes through the same per-row validation as a JSON batch's).
"""

from __future__ import annotations

import codecs
import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from data.sources import RAGGED, SourceError, read_table

#: The columns a batch file must have (the canonical raw transaction, without the label).
REQUIRED: tuple[str, ...] = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
ID_COLUMNS = ("transaction_id", "customer_id", "terminal_id")
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 64 * 1024


class UploadError(ValueError):
    """The upload cannot be read as a table of raw transactions."""


class TooManyRows(UploadError):
    """More rows than one request may carry."""


@dataclass(frozen=True)
class Upload:
    """An upload's rows as columns (:data:`REQUIRED`, ids as text), unreadable rows' reasons, ignored columns.

    The scorer takes the columns (``Scorer.score_frame``); :attr:`records` are the same rows as dicts.
    """

    frame: pl.DataFrame
    unreadable: dict[int, str]
    ignored_columns: list[str]

    @property
    def records(self) -> list[dict[str, Any]]:
        """The rows as raw records (one dict each), as a JSON batch carries them."""
        return self.frame.to_dicts()


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a character cut at the end of ``head`` is fine)."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _csv_header(head: bytes) -> list[str]:
    """The column names on the first line of a CSV file (``head``: its first bytes)."""
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    return next(csv.reader([first]), [])


def _check_columns(columns: list[str], name: str, require: bool = True, required: tuple[str, ...] = REQUIRED) -> None:
    """No repeated names (after trimming spaces); every ``required`` column present (if ``require``)."""
    stripped = [c.strip() for c in columns]
    repeated = sorted({c for c in stripped if stripped.count(c) > 1})
    if repeated:
        raise UploadError(f"{name} repeats a column name: {', '.join(repeated)} (columns: {', '.join(columns)})")
    missing = [c for c in required if c not in stripped]
    if require and missing:
        found = ", ".join(stripped)[:300] or "none"
        raise UploadError(
            f"{name} lacks column(s) {', '.join(missing)}; a batch file needs {', '.join(required)} (found: {found})"
        )


def read_upload(
    path: Path,
    max_rows: int,
    name: str = "upload",
    required: tuple[str, ...] = REQUIRED,
    optional: tuple[str, ...] = (),
) -> Upload:
    """Read ``path`` (named ``name`` in messages) as CSV or Parquet of raw transactions.

    ``required`` and ``optional`` are the request's columns (the canonical ones by default; a dataset
    profile's for a model served in its own layout): a missing optional column is empty in every row.
    """
    canonical = required == REQUIRED
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    suffix = ".parquet" if head.startswith(PARQUET_MAGIC) else ".csv"
    if suffix == ".csv" and not _looks_like_text(head):
        raise UploadError(f"cannot read {name} as CSV: it is binary, not UTF-8 text (and not Parquet)")
    header = _csv_header(head) if suffix == ".csv" else []
    _check_columns(header, name, require=False)  # before reading: the reader renames repeated columns
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / f"upload{suffix}"  # uploads arrive under temp names: name it by its content
        named.symlink_to(path.resolve())
        try:
            frame = read_table(named)
        except SourceError as exc:
            if header and str(exc).endswith("no rows"):
                _check_columns(header, name, required=required)  # a one-line file: say what its line lacks first
            raise UploadError(str(exc).replace(str(named), name)) from None
    _check_columns([c for c in frame.columns if c != RAGGED], name, required=required)
    frame = frame.rename({c: c.strip() for c in frame.columns})
    if frame.height > max_rows:
        raise TooManyRows(f"{name} has {frame.height:,} rows; at most {max_rows:,} per request")
    for column in ID_COLUMNS if canonical else ():
        dtype = frame.schema[column]
        if not (dtype == pl.String or dtype.is_integer() or dtype == pl.Null):
            raise UploadError(f"column {column} of {name} has type {dtype}; ids must be text or integers")
    unreadable: dict[int, str] = {}
    if RAGGED in frame.columns:
        flagged = frame.with_row_index("_i").filter(pl.col(RAGGED).is_not_null())
        unreadable = dict(zip(flagged["_i"].to_list(), flagged[RAGGED].to_list(), strict=True))
    wanted = (*required, *optional)
    ignored = [c for c in frame.columns if c not in wanted and c != RAGGED]
    if canonical:
        columns = frame.select(*(pl.col(c).cast(pl.String) if c in ID_COLUMNS else pl.col(c) for c in REQUIRED))
    else:
        columns = frame.select(pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in wanted)
    return Upload(columns, unreadable, ignored)
