"""Source adapters: read a foreign file and map it to the canonical record.

A :mod:`data.profiles` profile says how a layout's columns map; rows whose values cannot be parsed are
kept with nulls so validation can name them; a file that is not what it claims (unreadable, empty, no
profile fits) raises :class:`SourceError`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from pathlib import Path

import polars as pl

from data.contract import CANONICAL_SCHEMA, SCENARIO_COLUMN
from data.labels import LABEL_COLUMNS, REQUIRED_LABEL_COLUMNS
from data.profiles import INDEX_COLUMNS, Profile, ProfileError, detect_profile, load_profile

#: Column added by :func:`to_canonical_frame`: why a row's values could not be parsed (or null).
PARSE_ERRORS = "parse_errors"
#: Column added by :func:`read_table` for CSV: a row whose line has the wrong number of fields.
RAGGED = "_ragged_line"
#: Columns added by :func:`to_label_frame`: the raw text of ``is_fraud`` and ``label_time`` (for reasons).
IS_FRAUD_TEXT = "_is_fraud_text"
LABEL_TIME_TEXT = "_label_time_text"
#: Prefix of the source columns kept as text attributes (model features only where the profile says so).
ATTRIBUTE_PREFIX = "attr_"


class SourceError(ValueError):
    """The input file cannot be read as any supported format."""


#: ``--profile`` values that are not profiles: detect from the header, or a label file.
AUTO = "auto"
LABELS = "labels"
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


def resolve_profile(columns: list[str], profile: str | Profile = AUTO) -> Profile:
    """The profile to read a file with: ``profile`` (a shipped name, a file, or a :class:`Profile`) or detected."""
    if isinstance(profile, Profile):
        return profile
    if profile == AUTO:
        return detect_profile([c for c in columns if c != RAGGED])
    return load_profile(profile)


def to_canonical_frame(raw: pl.DataFrame, profile: str | Profile = AUTO, numbers_checked: bool = False) -> pl.DataFrame:
    """Map a source frame to canonical columns through a profile; unparseable values become nulls for validation.

    Each row's problems (a value that does not parse, a key column that is empty, a ragged CSV line) are
    named in :data:`PARSE_ERRORS` by their source column. Every unmapped source column (the profile's
    numeric, categorical and derived inputs included) is kept as text in ``attr_<name>``. Without a
    customer (terminal) key each transaction is its own customer (terminal): those window features are off.
    ``numbers_checked``: the extra number columns were already checked to be finite numbers (a scoring
    request's model did), so their parse checks are skipped (what a single request's mapping costs).
    """
    try:
        profile = resolve_profile(raw.columns, profile)
    except ProfileError as exc:
        raise SourceError(str(exc)) from None
    missing = profile.missing(raw.columns)
    if missing:
        raise SourceError(f"profile {profile.name!r}: missing columns {missing}")
    return raw.select(canonical_plan(profile, dict(raw.schema), numbers_checked))


def canonical_plan(profile: Profile, schema: dict[str, pl.DataType], numbers_checked: bool = False) -> list[pl.Expr]:
    """The expressions :func:`to_canonical_frame` selects from a frame of ``schema`` (built once, reusable).

    The service builds them once per model for its requests' schema: building them costs about as much
    as running them on one row.
    """
    columns = list(schema)

    def text(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String).str.strip_chars().replace("", None)

    problems: list[pl.Expr] = [pl.col(RAGGED)] if RAGGED in columns else []

    def unparsed(column: str, parsed: pl.Expr) -> None:
        problems.append(
            pl.when(text(column).is_not_null() & parsed.is_null()).then(
                pl.lit(f"{column}: cannot parse value '") + text(column).str.slice(0, 40) + pl.lit("'")
            )
        )

    def empty(columns: tuple[str, ...], role: str) -> None:
        for column in columns:
            problems.append(pl.when(text(column).is_null()).then(pl.lit(f"{column}: missing ({role})")))

    exprs: dict[str, pl.Expr] = {}
    if profile.transaction_id.column:
        exprs["transaction_id"] = text(profile.transaction_id.column)
    else:
        exprs["transaction_id"] = _content_hash(profile, profile.required_columns)
    when = _event_time(pl.col(profile.event_time.column), schema[profile.event_time.column], profile)
    unparsed(profile.event_time.column, when)
    exprs["tx_datetime"] = when
    for role, key in (("customer_id", profile.customer), ("terminal_id", profile.terminal)):
        if key is None:
            exprs[role] = exprs["transaction_id"]
        elif key.column is not None and profile.strip_quotes:
            exprs[role] = _unquoted(text(key.column)).replace("", None)
        elif key.column is not None:
            exprs[role] = text(key.column)
        else:
            empty(key.columns, role.removesuffix("_id") + " key")
            # Named by its columns, not the profile: a renamed copy of the profile keys holders the same way.
            exprs[role] = _content_hash(profile, key.columns, prefix=",".join(key.columns) + ":")
    exprs["amount"] = _finite(text(profile.amount))
    unparsed(profile.amount, exprs["amount"])
    if profile.label and profile.label in columns:
        exprs["is_fraud"] = text(profile.label).cast(pl.Int8, strict=False)
        unparsed(profile.label, exprs["is_fraud"])
    else:
        exprs["is_fraud"] = pl.lit(None, dtype=pl.Int8)
    for column in () if numbers_checked else profile.numeric:
        unparsed(column, _finite(text(column)))
    if (age := profile.derived.age_from) is not None:
        unparsed(age.column, text(age.column).str.to_date(age.format, strict=False))
    for column in () if numbers_checked else profile.derived.distance_km or ():
        unparsed(column, _finite(text(column)))
    out = [exprs[c].cast(CANONICAL_SCHEMA[c]).alias(c) for c in CANONICAL_SCHEMA]
    out.append(pl.concat_str(problems, separator="; ", ignore_nulls=True).replace("", None).alias(PARSE_ERRORS))
    if profile.scenario and profile.scenario in columns:
        out.append(pl.col(profile.scenario).cast(pl.Int8, strict=False).alias(SCENARIO_COLUMN))
    skip = {
        profile.transaction_id.column,
        profile.event_time.column,
        profile.amount,
        profile.label,
        profile.scenario,
        RAGGED,
        *profile.ignore,
        *INDEX_COLUMNS,
        *((profile.customer.column,) if profile.customer and profile.customer.column else ()),
        *((profile.terminal.column,) if profile.terminal and profile.terminal.column else ()),
    }
    kept: dict[str, str] = {}
    for column in (c for c in columns if c not in skip):
        if (name := attribute_name(column)) in kept:
            raise SourceError(
                f"columns {kept[name]!r} and {column!r} have the same attribute name {name!r}; rename one of them"
            )
        kept[name] = column
    out += [pl.col(c).cast(pl.String).alias(name) for name, c in kept.items()]
    return out


def _content_hash(profile: Profile, columns: tuple[str, ...], prefix: str = "") -> pl.Expr:
    """A stable id from the columns' values (SHA-256, 32 hex characters; the same values, the same id).

    Numbers count as numbers (``1``, ``1.0`` and `` 1.00`` are one value), so a file's row and the same
    transaction sent as JSON get one id; other values as their stripped text (without the surrounding
    quotes a profile's ``strip_quotes`` removes).
    """

    def value(column: str) -> pl.Expr:
        text = pl.col(column).cast(pl.String).str.strip_chars()
        if column in profile.number_columns:
            text = text.cast(pl.Float64, strict=False).cast(pl.String).fill_null(text)
        elif profile.strip_quotes:
            text = _unquoted(text)
        return text.fill_null("")

    joined = pl.concat_str([value(c) for c in columns], separator="\x1f")
    return joined.map_elements(
        lambda v: hashlib.sha256((prefix + v).encode()).hexdigest()[:32], return_dtype=pl.String, skip_nulls=False
    )


def _finite(text: pl.Expr) -> pl.Expr:
    """A number from text; null when it does not parse or is not finite (``inf``, ``nan``, ``1e999``)."""
    number = text.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def _unquoted(text: pl.Expr) -> pl.Expr:
    """Text without one pair of surrounding double quotes (an export that quoted its text twice)."""
    return text.str.replace(r'^"(.*)"$', "$1").str.strip_chars()


#: The largest offset a relative event time may have (about 290 years in microseconds fit an int64).
_MAX_OFFSET_S = 100 * 366 * 86_400


def _event_time(col: pl.Expr, dtype: pl.DataType | None, profile: Profile) -> pl.Expr:
    role = profile.event_time
    if role.unit is not None and role.origin is not None:
        scale = 1_000_000 if role.unit == "s" else 1_000
        number = _finite(col.cast(pl.String).str.strip_chars())
        in_range = number.abs() <= _MAX_OFFSET_S * (1 if role.unit == "s" else 1_000)
        offset = pl.when(in_range).then(number * scale).round().cast(pl.Int64, strict=False)
        origin = role.origin if role.origin.tzinfo else role.origin.replace(tzinfo=UTC)
        return pl.lit(origin).dt.convert_time_zone("UTC").cast(CANONICAL_SCHEMA["tx_datetime"]) + pl.duration(
            microseconds=offset
        )
    if role.format is not None and not isinstance(dtype, pl.Datetime):
        naive = col.cast(pl.String).str.strip_chars().str.to_datetime(role.format, strict=False, time_unit="us")
        return naive.dt.replace_time_zone("UTC").cast(CANONICAL_SCHEMA["tx_datetime"])
    return _parse_datetime(col, dtype)


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
    unknown = sorted(set(raw.columns) - set(LABEL_COLUMNS) - INDEX_COLUMNS - {RAGGED})
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
