from pathlib import Path

import polars as pl
import pytest

from features.lake import Lake, write_parquet_atomic
from features.sources import SourceError, SourceFormat, detect_format, read_table, to_canonical_frame


def test_landing_twice_adds_nothing_and_partitions_by_date(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    batch = small_transactions.head(5_000)
    first = lake.land(batch)
    again = lake.land(batch)
    assert (first.landed, first.duplicates) == (5_000, 0)
    assert (again.landed, again.duplicates, again.partitions) == (0, 5_000, ())
    stored = lake.read()
    assert stored.height == 5_000
    assert stored["transaction_id"].is_unique().all()
    days = batch["tx_datetime"].dt.date().unique().sort().to_list()
    assert [p.parent.name for p in lake.partition_paths()] == [f"date={d}" for d in days]


def test_appending_to_a_partition_keeps_old_rows(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    day = small_transactions.head(400)
    lake.land(day.head(150))
    report = lake.land(day)
    assert (report.landed, report.duplicates) == (250, 150)
    assert lake.read().sort("transaction_id").equals(day.sort("transaction_id"))


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "p" / "part.parquet"
    write_parquet_atomic(pl.DataFrame({"a": [1]}), target)

    class Exploding(pl.DataFrame):
        def write_parquet(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(Exploding({"a": [2]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [1]
    assert [p.name for p in target.parent.iterdir()] == ["part.parquet"]


def test_lineage_digests_change_when_a_partition_changes(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    lake.land(small_transactions.head(100))
    before = lake.lineage()
    lake.land(small_transactions.slice(100, 10))
    after = lake.lineage()
    assert before[0]["partition"] == after[0]["partition"]
    assert before[0]["sha256"] != after[0]["sha256"]


def test_handbook_columns_are_detected_and_mapped() -> None:
    raw = pl.DataFrame(
        {
            "TRANSACTION_ID": [0, 1],
            "TX_DATETIME": ["2018-04-01 00:00:31", "2018-04-01 00:02:10"],
            "CUSTOMER_ID": [596, 4961],
            "TERMINAL_ID": [3156, 3412],
            "TX_AMOUNT": [57.16, 81.51],
            "TX_FRAUD": [0, 1],
            "TX_FRAUD_SCENARIO": [0, 2],
        }
    )
    assert detect_format(raw.columns) is SourceFormat.handbook
    out = to_canonical_frame(raw)
    assert out["customer_id"].to_list() == ["596", "4961"]
    assert out["is_fraud"].to_list() == [0, 1]
    assert out["fraud_scenario"].to_list() == [0, 2]


def test_unknown_columns_name_what_is_missing() -> None:
    with pytest.raises(SourceError, match="missing: canonical needs"):
        detect_format(["foo", "bar"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "file is empty"),
        ("garbage.parquet", b"\x00\x01not parquet at all" * 10, "cannot read as parquet"),
        ("data.json", b"{}", "unsupported extension"),
    ],
)
def test_unreadable_files_fail_clearly(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        read_table(path)
