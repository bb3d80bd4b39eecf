"""Property tests of the ingestion adapters (data/sources.py) on generated files.

tests/data/test_lake_and_sources.py pins single examples (one Sparkov file, one handbook frame, a ragged CSV,
seven timestamp spellings); these say the same things for any frame Hypothesis can build: a canonical
frame survives CSV and Parquet unchanged, foreign formats map column by column, every row read is either
accepted or rejected, and every common spelling of an instant is that instant.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from data.contract import CANONICAL_COLUMNS, CANONICAL_SCHEMA, SCENARIO_COLUMN
from data.profiles import detect_profile
from data.sources import (
    ATTRIBUTE_PREFIX,
    PARSE_ERRORS,
    SourceError,
    attribute_name,
    read_table,
    to_canonical_frame,
)

# Printable text of any script (no control characters: those are not ids); commas and quotes included,
# so CSV quoting is exercised.
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"))
# The adapter strips surrounding whitespace (as the real-time contract does): generate values that have none.
ids = st.text(PRINTABLE, min_size=1, max_size=12).filter(lambda s: s == s.strip() and s != "")
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
amounts = st.floats(allow_nan=False, allow_infinity=False)  # any finite float; the suite judges the range
labels = st.sampled_from([0, 1, None])


def _all_source_names() -> set[str]:
    """Every column name some adapter maps, drops or keeps as ground truth (extra columns must avoid them)."""
    names = set(CANONICAL_COLUMNS) | {SCENARIO_COLUMN, PARSE_ERRORS, "", "Unnamed: 0", "index"}
    for raw in (handbook_frame_example(), sparkov_frame_example()):
        names |= set(raw.columns)
    return names


def _with_tmp(write: Callable[[Path], None], suffix: str) -> pl.DataFrame:
    """Write a file with ``write`` in a fresh temp dir, read it back through the adapter."""
    with tempfile.TemporaryDirectory(prefix="adapter-") as tmp:
        path = Path(tmp) / f"batch{suffix}"
        write(path)
        return to_canonical_frame(read_table(path))


@st.composite
def canonical_frames(draw: st.DrawFn, max_rows: int = 25) -> pl.DataFrame:
    """A canonical frame with unique ids and arbitrary (finite) values."""
    n = draw(st.integers(1, max_rows))
    return pl.DataFrame(
        {
            "transaction_id": draw(st.lists(ids, min_size=n, max_size=n, unique=True)),
            "tx_datetime": draw(st.lists(instants, min_size=n, max_size=n)),
            "customer_id": draw(st.lists(ids, min_size=n, max_size=n)),
            "terminal_id": draw(st.lists(ids, min_size=n, max_size=n)),
            "amount": draw(st.lists(amounts, min_size=n, max_size=n)),
            "is_fraud": draw(st.lists(labels, min_size=n, max_size=n)),
        },
        schema=CANONICAL_SCHEMA,
    )


def _write(frame: pl.DataFrame, suffix: str) -> Callable[[Path], None]:
    return frame.write_csv if suffix == ".csv" else frame.write_parquet


@settings(max_examples=80, deadline=None)
@given(frame=canonical_frames(), suffix=st.sampled_from([".csv", ".parquet"]))
def test_any_canonical_frame_round_trips_through_csv_and_parquet_unchanged(frame: pl.DataFrame, suffix: str) -> None:
    out = _with_tmp(_write(frame, suffix), suffix)
    assert out.columns == [*CANONICAL_COLUMNS, PARSE_ERRORS]
    assert out[PARSE_ERRORS].null_count() == out.height, out.filter(pl.col(PARSE_ERRORS).is_not_null())
    assert_frame_equal(out.drop(PARSE_ERRORS), frame, check_exact=True)


extra_names = st.text(st.sampled_from("abcXYZ019 _-./#"), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and s.strip("_ -./#") != ""
)


@settings(max_examples=60, deadline=None)
@given(
    frame=canonical_frames(max_rows=10),
    extras=st.lists(extra_names, max_size=4, unique_by=attribute_name),
    order_seed=st.randoms(use_true_random=False),
    suffix=st.sampled_from([".csv", ".parquet"]),
)
def test_column_order_and_extra_columns_do_not_change_the_canonical_rows(
    frame: pl.DataFrame, extras: list[str], order_seed: Any, suffix: str
) -> None:
    extras = [e for e in extras if e not in _all_source_names()]
    values = {name: [f"{name}-{i}" for i in range(frame.height)] for name in extras}
    wide = frame.with_columns(pl.Series(name, v) for name, v in values.items())
    columns = wide.columns
    order_seed.shuffle(columns)
    out = _with_tmp(_write(wide.select(columns), suffix), suffix)
    assert_frame_equal(out.select(CANONICAL_COLUMNS), frame, check_exact=True)
    # Extra columns are kept as string attributes, in the file's column order, after the canonical ones.
    kept = [c for c in columns if c in values]
    assert out.columns == [*CANONICAL_COLUMNS, PARSE_ERRORS, *(attribute_name(c) for c in kept)]
    for name in kept:
        assert out[attribute_name(name)].to_list() == values[name]


words = st.lists(st.text("abcxyz019", min_size=1, max_size=5), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(
    parts=words,
    spelling=st.sampled_from(["upper", " ", "-", ".", "/"]),
    suffix=st.sampled_from([".csv", ".parquet"]),
)
def test_extra_columns_with_the_same_attribute_name_fail_as_a_source_error(
    parts: list[str], spelling: str, suffix: str
) -> None:
    # "Col A" and "col_a" both become attr_col_a. The file is refused with a SourceError naming both (the
    # inbox moves a SourceError's file to failed/; any other exception stops the whole inbox run).
    first = "x_" + "_".join(parts)
    second = first.upper() if spelling == "upper" else first.replace("_", spelling)
    assert attribute_name(first) == attribute_name(second) and first != second
    frame = pl.DataFrame(
        {
            "transaction_id": ["1"],
            "tx_datetime": ["2026-01-01 00:00:00"],
            "customer_id": ["c"],
            "terminal_id": ["t"],
            "amount": ["1.0"],
            first: ["x"],
            second: ["y"],
        }
    )
    with pytest.raises(SourceError, match="same attribute") as raised:
        _with_tmp(_write(frame, suffix), suffix)
    assert repr(first) in str(raised.value) and repr(second) in str(raised.value)


# --- foreign formats ---------------------------------------------------------------------------------


def handbook_frame_example() -> pl.DataFrame:
    """Column layout of the handbook's simulated data (values irrelevant)."""
    return pl.DataFrame(
        schema=[
            "TRANSACTION_ID",
            "TX_DATETIME",
            "CUSTOMER_ID",
            "TERMINAL_ID",
            "TX_AMOUNT",
            "TX_TIME_SECONDS",
            "TX_TIME_DAYS",
            "TX_FRAUD",
            "TX_FRAUD_SCENARIO",
        ]
    )


@st.composite
def handbook_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Handbook rows: integer ids, naive nanosecond datetimes (as the handbook's pandas frames have)."""
    n = draw(st.integers(1, 20))
    ints = st.integers(0, 2**40)
    naive = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31))
    times = draw(st.lists(naive, min_size=n, max_size=n))
    nanos = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))
    fraud = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    start = datetime(2000, 1, 1)
    return pl.DataFrame(
        {
            "TRANSACTION_ID": draw(st.lists(ints, min_size=n, max_size=n, unique=True)),
            "TX_DATETIME": pl.Series(times, dtype=pl.Datetime("ns")) + pl.Series(nanos, dtype=pl.Duration("ns")),
            "CUSTOMER_ID": draw(st.lists(ints, min_size=n, max_size=n)),
            "TERMINAL_ID": draw(st.lists(ints, min_size=n, max_size=n)),
            "TX_AMOUNT": draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n)),
            "TX_TIME_SECONDS": [int((t - start).total_seconds()) for t in times],
            "TX_TIME_DAYS": [(t - start).days for t in times],
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": [f * draw(st.integers(1, 3)) for f in fraud],
        }
    )


@settings(max_examples=60, deadline=None)
@given(raw=handbook_frames())
def test_handbook_csv_and_parquet_map_every_column_the_same_way(raw: pl.DataFrame) -> None:
    from_parquet = _with_tmp(raw.write_parquet, ".parquet")
    from_csv = _with_tmp(raw.write_csv, ".csv")
    expected = pl.DataFrame(
        {
            "transaction_id": raw["TRANSACTION_ID"].cast(pl.String),
            # Microseconds are the lake's unit: sub-microsecond digits are dropped (not rounded) either way.
            "tx_datetime": raw["TX_DATETIME"].dt.truncate("1us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "customer_id": raw["CUSTOMER_ID"].cast(pl.String),
            "terminal_id": raw["TERMINAL_ID"].cast(pl.String),
            "amount": raw["TX_AMOUNT"],
            "is_fraud": raw["TX_FRAUD"].cast(pl.Int8),
            PARSE_ERRORS: pl.Series([None] * raw.height, dtype=pl.String),
            SCENARIO_COLUMN: raw["TX_FRAUD_SCENARIO"].cast(pl.Int8),
        }
    )
    assert detect_profile(raw.columns).name == "handbook"
    assert_frame_equal(from_parquet, expected, check_exact=True)
    assert_frame_equal(from_csv, expected, check_exact=True)


def sparkov_frame_example() -> pl.DataFrame:
    """Column layout of the Sparkov / Kaggle fraudTrain.csv export (with pandas' unnamed index column)."""
    return pl.DataFrame(schema=SPARKOV_COLUMNS)


SPARKOV_COLUMNS = [
    "",
    "trans_date_trans_time",
    "cc_num",
    "merchant",
    "category",
    "amt",
    "first",
    "last",
    "lat",
    "long",
    "city_pop",
    "dob",
    "trans_num",
    "unix_time",
    "merch_lat",
    "merch_long",
    "is_fraud",
]


@st.composite
def sparkov_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Sparkov rows as the Kaggle CSV has them: card numbers as integers, merchant names with commas."""
    n = draw(st.integers(1, 15))

    def column(values: st.SearchStrategy[Any], unique: bool = False) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n, unique=unique))

    times = column(st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2020, 12, 31)))
    names = st.text(PRINTABLE, min_size=1, max_size=20).filter(lambda s: s == s.strip())
    return pl.DataFrame(
        {
            "": list(range(n)),
            "trans_date_trans_time": [t.strftime("%Y-%m-%d %H:%M:%S") for t in times],
            "cc_num": column(st.integers(10**11, 10**19 - 1)),
            "merchant": column(names.map(lambda s: "fraud_" + s)),
            "category": column(st.sampled_from(["misc_net", "grocery_pos", "gas_transport"])),
            "amt": column(st.floats(0, 30_000).map(lambda a: round(a, 2))),
            "first": column(names),
            "last": column(names),
            "lat": column(st.floats(-90, 90)),
            "long": column(st.floats(-180, 180)),
            "city_pop": column(st.integers(1, 3_000_000)),
            "dob": column(st.dates(date(1900, 1, 1), date(2010, 12, 31)).map(str)),
            "trans_num": column(st.text("0123456789abcdef", min_size=32, max_size=32), unique=True),
            "unix_time": [int(t.replace(tzinfo=UTC).timestamp()) for t in times],
            "merch_lat": column(st.floats(-90, 90)),
            "merch_long": column(st.floats(-180, 180)),
            "is_fraud": column(st.integers(0, 1)),
        }
    )


@settings(max_examples=60, deadline=None)
@given(raw=sparkov_frames(), suffix=st.sampled_from([".csv", ".parquet"]))
def test_sparkov_files_map_keys_and_keep_every_other_column_as_text(raw: pl.DataFrame, suffix: str) -> None:
    out = _with_tmp(_write(raw, suffix), suffix)
    assert detect_profile(raw.columns).name == "sparkov"
    assert out["transaction_id"].to_list() == raw["trans_num"].to_list()
    assert out["tx_datetime"].to_list() == [
        datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for t in raw["trans_date_trans_time"]
    ]
    assert out["customer_id"].to_list() == [str(c) for c in raw["cc_num"]]
    assert out["terminal_id"].to_list() == raw["merchant"].to_list()
    assert out["amount"].to_list() == raw["amt"].to_list()
    assert out["is_fraud"].to_list() == raw["is_fraud"].to_list()
    assert out[PARSE_ERRORS].null_count() == out.height
    attributes = [c for c in out.columns if c.startswith(ATTRIBUTE_PREFIX)]
    unmapped = ["category", "first", "last", "lat", "long", "city_pop", "dob", "unix_time", "merch_lat", "merch_long"]
    assert attributes == [attribute_name(c) for c in unmapped]  # the pandas index column is dropped
    for column in unmapped:
        # Text in a CSV, typed in Parquet: either way the attribute is the value's text.
        assert out[attribute_name(column)].to_list() == raw[column].cast(pl.String).to_list()


# --- good and bad rows -------------------------------------------------------------------------------

HEADER = list(CANONICAL_COLUMNS)
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# How a row can be wrong: (change to the row's fields, whether the adapter itself notes a parse error).
CORRUPTIONS: dict[str, tuple[Callable[[list[str]], list[str]], bool]] = {
    "amount is text": (lambda r: [*r[:4], "twelve", r[5]], True),
    "amount with a decimal comma": (lambda r: [*r[:4], "12,50", r[5]], True),
    "amount negative": (lambda r: [*r[:4], "-3.5", r[5]], False),
    "amount implausible": (lambda r: [*r[:4], "2e6", r[5]], False),
    "date day-first": (lambda r: [r[0], "31/12/2025 10:00", *r[2:]], True),
    "date impossible": (lambda r: [r[0], "2026-02-30 10:00:00", *r[2:]], True),
    "date in the future": (lambda r: [r[0], "2999-01-01 00:00:00", *r[2:]], False),
    "date too old": (lambda r: [r[0], "1999-12-31 23:59:59", *r[2:]], False),
    "id missing": (lambda r: ["", *r[1:]], False),
    "customer blank": (lambda r: [r[0], r[1], "   ", *r[3:]], False),
    "label is text": (lambda r: [*r[:5], "yes"], True),
    "label out of set": (lambda r: [*r[:5], "2"], False),
    "line too short": (lambda r: r[:5], True),
    "line too long": (lambda r: [*r, "surplus"], True),
}
RAGGED_KINDS = {"line too short", "line too long"}


@st.composite
def good_rows(draw: st.DrawFn) -> list[str]:
    """A valid canonical row as CSV fields, with any of the usual timestamp spellings."""
    when = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 5, 1)))
    spelling = draw(st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S+00:00"]))
    return [
        "",  # the id is filled in by the caller (unique per file)
        when.strftime(spelling),
        draw(ids),
        draw(ids),
        repr(draw(st.floats(0, 1e6))),
        draw(st.sampled_from(["0", "1", ""])),
    ]


@st.composite
def mixed_batches(draw: st.DrawFn, ragged: bool) -> tuple[list[list[str]], list[str | None]]:
    """Rows (with unique ids) and, per row, the corruption applied (None for a good row)."""
    n = draw(st.integers(1, 25))
    kinds = [k for k in CORRUPTIONS if ragged or k not in RAGGED_KINDS]
    plan = draw(st.lists(st.one_of(st.none(), st.sampled_from(kinds)), min_size=n, max_size=n))
    rows = []
    for i, kind in enumerate(plan):
        row = draw(good_rows())
        row[0] = f"tx-{i}"
        rows.append(CORRUPTIONS[kind][0](row) if kind else row)
    return rows, plan


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def _string_parquet(rows: list[list[str]]) -> Callable[[Path], None]:
    frame = pl.DataFrame([r + [""] * (len(HEADER) - len(r)) for r in rows], schema=HEADER, orient="row")
    return frame.write_parquet


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), suffix=st.sampled_from([".csv", ".parquet"]))
def test_every_row_read_is_accepted_or_rejected_and_only_good_rows_are_accepted(
    data: st.DataObject, suffix: str
) -> None:
    from validation.raw import validate_raw

    rows, plan = data.draw(mixed_batches(ragged=suffix == ".csv"))
    if suffix == ".csv":
        text = _csv_text(rows)
        out = _with_tmp(lambda p: p.write_text(text, encoding="utf-8"), suffix)
    else:
        out = _with_tmp(_string_parquet(rows), suffix)
    assert out.height == len(rows)  # nothing is dropped while reading
    noted = out[PARSE_ERRORS].is_not_null().to_list()
    assert noted == [kind is not None and CORRUPTIONS[kind][1] for kind in plan]
    checked = validate_raw(out, now=NOW)
    assert checked.accepted.height + checked.rejected.height == len(rows)
    assert checked.accepted["transaction_id"].to_list() == [f"tx-{i}" for i, k in enumerate(plan) if k is None]
    assert checked.rejected["reason"].null_count() == 0
    good = [r for r, k in zip(rows, plan, strict=True) if k is None]
    assert checked.accepted["customer_id"].to_list() == [r[2] for r in good]
    assert checked.accepted["amount"].to_list() == [float(r[4]) for r in good]


# --- timestamps --------------------------------------------------------------------------------------


def _spell(instant: datetime, offset_minutes: int, sep: str, zone: str, fraction: str, seconds: bool) -> str:
    """``instant`` written in the local time of ``offset_minutes`` with the chosen spelling."""
    local = instant + timedelta(minutes=offset_minutes)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M")
    if seconds:
        text += local.strftime(":%S")
        if fraction == "micro":
            text += f".{local.microsecond:06d}"
        elif fraction == "nano":
            text += f".{local.microsecond:06d}000"
        elif fraction == "short" and local.microsecond:
            text += "." + f"{local.microsecond:06d}".rstrip("0")
    sign, minutes = ("+" if offset_minutes >= 0 else "-"), abs(offset_minutes)
    if zone == "naive":
        return text
    if zone == "Z":
        return text + "Z"
    if zone == "UTC":
        return text + " UTC"
    if zone == "colon":
        return text + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text + f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


@settings(max_examples=200, deadline=None)
@given(
    instant=instants,
    offset=st.integers(-14 * 60, 14 * 60),
    sep=st.sampled_from(["T", " "]),
    zone=st.sampled_from(["naive", "Z", "UTC", "colon", "compact"]),
    fraction=st.sampled_from(["none", "micro", "nano", "short"]),
    seconds=st.booleans(),
)
def test_every_common_timestamp_spelling_parses_to_the_same_instant(
    instant: datetime, offset: int, sep: str, zone: str, fraction: str, seconds: bool
) -> None:
    if zone in {"naive", "Z", "UTC"}:
        offset = 0  # these spellings are UTC by definition (naive times are read as UTC)
    if not seconds or fraction == "none":
        instant = instant.replace(second=instant.second if seconds else 0, microsecond=0)
    text = _spell(instant, offset, sep, zone, fraction, seconds)
    raw = pl.DataFrame(
        {"transaction_id": ["1"], "tx_datetime": [text], "customer_id": ["c"], "terminal_id": ["t"], "amount": ["1"]}
    )
    out = to_canonical_frame(raw)
    assert out[PARSE_ERRORS][0] is None, text
    assert out["tx_datetime"][0] == instant, text


def _zones_polars_knows() -> list[str]:
    """The system's IANA zones that Polars (chrono-tz) can represent: a Parquet file can only carry those.

    The system database also has e.g. ``Factory``, which Polars refuses; hypothesis found it.
    """
    import zoneinfo

    known = []
    for zone in sorted(zoneinfo.available_timezones()):
        try:
            pl.Series([datetime(2020, 1, 1)], dtype=pl.Datetime("us", "UTC")).dt.convert_time_zone(zone)
        except pl.exceptions.ComputeError:
            continue
        known.append(zone)
    return known


@settings(max_examples=60, deadline=None)
@given(
    instant=instants,
    zone=st.sampled_from(_zones_polars_knows()),
    unit=st.sampled_from(["ms", "us", "ns"]),
)
def test_a_typed_parquet_timestamp_in_any_zone_or_unit_is_the_same_utc_instant(
    instant: datetime, zone: str, unit: str
) -> None:
    if unit == "ms":
        instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    column = pl.Series([instant], dtype=pl.Datetime(unit, "UTC")).dt.convert_time_zone(zone)
    raw = pl.DataFrame(
        {"transaction_id": ["1"], "tx_datetime": column, "customer_id": ["c"], "terminal_id": ["t"], "amount": [1.0]}
    )
    out = _with_tmp(raw.write_parquet, ".parquet")
    assert out["tx_datetime"].dtype == CANONICAL_SCHEMA["tx_datetime"]
    assert out["tx_datetime"][0] == instant
