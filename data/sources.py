"""Source adapters: read a foreign file and map it to the canonical record.

Rows whose values cannot be parsed are kept with nulls so validation can name them; a file that
is not what it claims (unreadable, empty, unknown columns) raises :class:`SourceError`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import polars as pl

from data.contract import CANONICAL_SCHEMA, SCENARIO_COLUMN
from data.labels import LABEL_COLUMNS, REQUIRED_LABEL_COLUMNS

#: Column added by :func:`to_canonical_frame`: why a row's values could not be parsed (or null).
PARSE_ERRORS = "parse_errors"
#: Column added by :func:`read_table` for CSV: a row whose line has the wrong number of fields.
RAGGED = "_ragged_line"
#: Columns added by :func:`to_label_frame`: the raw text of ``is_fraud`` and ``label_time`` (for reasons).
IS_FRAUD_TEXT = "_is_fraud_text"
LABEL_TIME_TEXT = "_label_time_text"
#: Prefix of source columns kept as optional attributes (not used as features).
ATTRIBUTE_PREFIX = "attr_"


class SourceError(ValueError):
    """The input file cannot be read as any supported format."""


class SourceFormat(StrEnum):
    """Supported input formats (``auto`` detects from the header)."""

    auto = "auto"
    canonical = "canonical"
    handbook = "handbook"
    sparkov = "sparkov"
    labels = "labels"


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
# Source columns neither mapped nor kept: derived from mapped ones, or a pandas index.
_DROPPED = {SourceFormat.handbook: {"TX_TIME_SECONDS", "TX_TIME_DAYS"}}
_INDEX_COLUMNS = {"", "Unnamed: 0", "index"}
_OTHER_DELIMITERS = (";", "\t", "|")


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
            df = _read_csv(path)
        else:
            raise SourceError(f"{path}: unsupported extension {suffix!r} (use .csv or .parquet)")
    except SourceError:
        raise
    except Exception as exc:  # polars raises several error types for corrupt input
        raise SourceError(f"{path}: cannot read as {suffix.lstrip('.')} ({exc.__class__.__name__}: {exc})") from exc
    if df.height == 0:
        raise SourceError(f"{path}: no rows")
    return df


def _read_csv(path: Path) -> pl.DataFrame:
    """Comma-separated text; lines with too few or too many fields are flagged in :data:`RAGGED`."""
    df = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    if df.width == 1:
        header = df.columns[0]
        for sep in _OTHER_DELIMITERS:
            if sep in header:
                raise SourceError(
                    f"{path}: the header is one column containing {sep!r}: the file looks {sep!r}-delimited; "
                    "only comma-separated CSV is supported"
                )
    lines = pl.read_csv(
        path, has_header=False, separator="\x1f", quote_char=None, new_columns=["line"], infer_schema=False
    )["line"]
    lines = lines.filter(lines.str.strip_chars() != "")
    if lines.len() - 1 != df.height:  # quoted line breaks: cannot align lines with rows, skip the check
        return df.with_columns(pl.lit(None, dtype=pl.String).alias(RAGGED))
    fields = lines.slice(1).str.replace_all(r'"[^"]*"', "").str.count_matches(",") + 1
    return df.with_columns(
        pl.when(fields != df.width)
        .then(pl.format("line has {} fields, the header {} (truncated or extra separators)", fields, pl.lit(df.width)))
        .alias(RAGGED)
    )


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
    if RAGGED in raw.columns:
        problems.insert(0, pl.col(RAGGED))
    exprs.append(pl.concat_str(problems, separator="; ", ignore_nulls=True).replace("", None).alias(PARSE_ERRORS))
    truth = _GROUND_TRUTH.get(fmt)
    if truth and truth in raw.columns:
        exprs.append(pl.col(truth).cast(pl.Int8, strict=False).alias(SCENARIO_COLUMN))
    skip = set(mapping) | {truth, RAGGED} | _DROPPED.get(fmt, set()) | _INDEX_COLUMNS
    kept: dict[str, str] = {}
    for column in (c for c in raw.columns if c not in skip):
        if (name := attribute_name(column)) in kept:
            raise SourceError(
                f"columns {kept[name]!r} and {column!r} have the same attribute name {name!r}; rename one of them"
            )
        kept[name] = column
    exprs += [pl.col(c).cast(pl.String).alias(name) for name, c in kept.items()]
    return raw.select(exprs)


def attribute_name(column: str) -> str:
    """Lake column for an unmapped source column: ``attr_`` + lower snake case."""
    snake = "".join(ch if ch.isalnum() else "_" for ch in column.strip().lower()).strip("_")
    return ATTRIBUTE_PREFIX + snake


def _parse_datetime(col: pl.Expr, dtype: pl.DataType | None) -> pl.Expr:
    target = CANONICAL_SCHEMA["tx_datetime"]
    if isinstance(dtype, pl.Datetime):
        aware = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return aware.cast(target)
    # One shape for the common spellings: "T" or space, "Z"/"UTC" or an offset, optional seconds.
    text = (
        col.cast(pl.String)
        .str.strip_chars()
        .str.replace(r"^(\d{4}-\d{2}-\d{2})[T ]", r"$1 ")
        .str.replace(r"\s*(Z|UTC)$", "+00:00")
    )
    aware = pl.coalesce(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%d %H:%M%z", strict=False, time_unit="us"),
    )
    naive = pl.coalesce(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us"),
    )
    return pl.coalesce(aware.dt.convert_time_zone("UTC"), naive.dt.replace_time_zone("UTC")).cast(target)


#: Transaction columns whose presence makes a file a transaction file, not a label file.
_TRANSACTION_ONLY = {"tx_datetime", "customer_id", "terminal_id", "amount"}


def is_label_file(columns: list[str]) -> bool:
    """A label file: ``transaction_id`` and ``is_fraud``, no transaction columns (``tx_datetime``, ``amount``, ...)."""
    present = set(columns)
    return set(REQUIRED_LABEL_COLUMNS) <= present and not present & _TRANSACTION_ONLY


def to_label_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Map a label file (``transaction_id, is_fraud[, label_time][, source][, reviewer][, note]``) to typed columns.

    ``transaction_id``, ``source``, ``reviewer`` and ``note`` become stripped text (empty = null);
    ``label_time`` is parsed like ``tx_datetime`` (unparseable = null). :data:`IS_FRAUD_TEXT` and
    :data:`LABEL_TIME_TEXT` keep the raw text so validation can say what a bad value was; ``is_fraud``
    itself is validated there. Raises :class:`SourceError` for missing or unknown columns.
    """
    missing = [c for c in REQUIRED_LABEL_COLUMNS if c not in raw.columns]
    if missing:
        raise SourceError(f"label file: missing columns {missing}")
    unknown = sorted(set(raw.columns) - set(LABEL_COLUMNS) - _INDEX_COLUMNS - {RAGGED})
    if unknown:
        raise SourceError(f"label file: unknown columns {unknown[:12]}; expected {list(LABEL_COLUMNS)}")

    def text(column: str) -> pl.Expr:
        if column not in raw.columns:
            return pl.lit(None, dtype=pl.String)
        return pl.col(column).cast(pl.String).str.strip_chars().replace("", None)

    exprs = [
        text("transaction_id").alias("transaction_id"),
        text("is_fraud").alias(IS_FRAUD_TEXT),
        (
            pl.coalesce(  # a date alone is its midnight UTC
                _parse_datetime(pl.col("label_time"), raw.schema["label_time"]),
                text("label_time")
                .str.to_datetime("%Y-%m-%d", strict=False, time_unit="us", time_zone="UTC")
                .cast(CANONICAL_SCHEMA["tx_datetime"]),
            )
            if "label_time" in raw.columns
            else pl.lit(None, dtype=CANONICAL_SCHEMA["tx_datetime"])
        ).alias("label_time"),
        text("label_time").alias(LABEL_TIME_TEXT),
        text("source").alias("source"),
        text("reviewer").alias("reviewer"),
        text("note").alias("note"),
        (pl.col(RAGGED) if RAGGED in raw.columns else pl.lit(None, dtype=pl.String)).alias(PARSE_ERRORS),
    ]
    return raw.select(exprs)
