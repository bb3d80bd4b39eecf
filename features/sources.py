"""Source adapters: read a foreign file and map it to the canonical record.

Rows whose values cannot be parsed are kept with nulls so validation can name them; a file that
is not what it claims (unreadable, empty, unknown columns) raises :class:`SourceError`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import polars as pl

from features.contract import CANONICAL_SCHEMA, SCENARIO_COLUMN

#: Column added by :func:`to_canonical_frame`: why a row's values could not be parsed (or null).
PARSE_ERRORS = "parse_errors"


class SourceError(ValueError):
    """The input file cannot be read as any supported format."""


class SourceFormat(StrEnum):
    """Supported input formats (``auto`` detects from the header)."""

    auto = "auto"
    canonical = "canonical"
    handbook = "handbook"
    sparkov = "sparkov"


# Foreign column -> canonical column.
_MAPPINGS: dict[SourceFormat, dict[str, str]] = {
    SourceFormat.canonical: {c: c for c in CANONICAL_SCHEMA},
    SourceFormat.handbook: {
        "TRANSACTION_ID": "transaction_id",
        "TX_DATETIME": "tx_datetime",
        "CUSTOMER_ID": "customer_id",
        "TERMINAL_ID": "terminal_id",
        "TX_AMOUNT": "amount",
        "TX_FRAUD": "is_fraud",
    },
    SourceFormat.sparkov: {
        "trans_num": "transaction_id",
        "trans_date_trans_time": "tx_datetime",
        "cc_num": "customer_id",
        "merchant": "terminal_id",
        "amt": "amount",
        "is_fraud": "is_fraud",
    },
}
_OPTIONAL = {"is_fraud"}
_GROUND_TRUTH = {SourceFormat.handbook: "TX_FRAUD_SCENARIO", SourceFormat.canonical: SCENARIO_COLUMN}


def read_table(path: Path) -> pl.DataFrame:
    """Read CSV or Parquet as strings-or-native columns, with a clear error for bad files."""
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            df = pl.read_parquet(path)
        elif suffix in {".csv", ".txt"}:
            df = pl.read_csv(path, infer_schema=False)
        else:
            raise SourceError(f"{path}: unsupported extension {suffix!r} (use .csv or .parquet)")
    except SourceError:
        raise
    except Exception as exc:  # polars raises several error types for corrupt input
        raise SourceError(f"{path}: cannot read as {suffix.lstrip('.')} ({exc.__class__.__name__}: {exc})") from exc
    if df.height == 0:
        raise SourceError(f"{path}: no rows")
    return df


def detect_format(columns: list[str]) -> SourceFormat:
    """The first format whose required columns are all present."""
    present = set(columns)
    for fmt, mapping in _MAPPINGS.items():
        if {c for c, canon in mapping.items() if canon not in _OPTIONAL} <= present:
            return fmt
    closest = ", ".join(
        f"{fmt.value} needs {sorted(set(m) - present - {k for k, v in m.items() if v in _OPTIONAL})}"
        for fmt, m in _MAPPINGS.items()
    )
    raise SourceError(f"unrecognised columns {sorted(present)[:12]}; missing: {closest}")


def to_canonical_frame(raw: pl.DataFrame, fmt: SourceFormat = SourceFormat.auto) -> pl.DataFrame:
    """Map a foreign frame to canonical columns; unparseable values become nulls for validation."""
    if fmt is SourceFormat.auto:
        fmt = detect_format(raw.columns)
    mapping = _MAPPINGS[fmt]
    missing = [c for c, canon in mapping.items() if c not in raw.columns and canon not in _OPTIONAL]
    if missing:
        raise SourceError(f"{fmt.value} format: missing columns {missing}")
    exprs: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    for src, canon in mapping.items():
        if src not in raw.columns:
            exprs.append(pl.lit(None, dtype=CANONICAL_SCHEMA[canon]).alias(canon))
            continue
        text = pl.col(src).cast(pl.String).str.strip_chars().replace("", None)
        if canon == "tx_datetime":
            parsed = _parse_datetime(pl.col(src), raw.schema[src])
        else:
            parsed = text.cast(CANONICAL_SCHEMA[canon], strict=False)
        exprs.append(parsed.alias(canon))
        problems.append(
            pl.when(text.is_not_null() & parsed.is_null()).then(
                pl.lit(f"{canon}: cannot parse value '") + text.str.slice(0, 40) + pl.lit("'")
            )
        )
    exprs.append(pl.concat_str(problems, separator="; ", ignore_nulls=True).replace("", None).alias(PARSE_ERRORS))
    truth = _GROUND_TRUTH.get(fmt)
    if truth and truth in raw.columns:
        exprs.append(pl.col(truth).cast(pl.Int8, strict=False).alias(SCENARIO_COLUMN))
    return raw.select(exprs)


def _parse_datetime(col: pl.Expr, dtype: pl.DataType | None) -> pl.Expr:
    target = CANONICAL_SCHEMA["tx_datetime"]
    if isinstance(dtype, pl.Datetime):
        aware = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return aware.cast(target)
    text = col.cast(pl.String).str.strip_chars()
    return (
        pl.coalesce(
            text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us").dt.replace_time_zone(None),
        )
        .dt.replace_time_zone("UTC")
        .cast(target)
    )
