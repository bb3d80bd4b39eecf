from datetime import date
from pathlib import Path

import polars as pl
import pytest

from data.lake import Lake, write_parquet_atomic
from data.profiles import ProfileError, detect_profile
from data.sources import PARSE_ERRORS, SourceError, read_table, to_canonical_frame


def test_landing_twice_adds_nothing_and_partitions_by_date(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    batch = small_transactions.head(5_000)
    first = lake.land(batch)
    again = lake.land(batch)
    assert (first.landed, first.duplicates, first.labels_landed) == (5_000, 0, 5_000)
    assert (again.landed, again.duplicates, again.partitions, again.labels_landed) == (0, 5_000, (), 0)
    stored = lake.read()
    assert stored.height == 5_000
    assert stored["transaction_id"].is_unique().all()
    days = batch["tx_datetime"].dt.date().unique().sort().to_list()
    assert lake.days() == days and first.partitions == tuple(str(d) for d in days)
    assert sorted({p.name for p in lake.transactions_dir.glob("date=*")}) == [f"date={d}" for d in days]


def test_appending_to_a_partition_keeps_old_rows(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    day = small_transactions.head(400)
    lake.land(day.head(150))
    report = lake.land(day)
    assert (report.landed, report.duplicates) == (250, 150)
    assert lake.read().select(day.columns).sort("transaction_id").equals(day.sort("transaction_id"))


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


def test_lineage_names_the_table_versions_and_partition_digests_change(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    lake.land(small_transactions.head(100))
    before, digests = lake.lineage(), lake.partition_digests()
    lake.land(small_transactions.slice(100, 10))
    after = lake.lineage()
    assert [t["table"] for t in before] == ["transactions", "labels"]
    assert before[0]["uri"].endswith("lake/transactions")
    assert int(after[0]["version"]) == int(before[0]["version"]) + 1
    first_day = next(iter(digests))
    assert lake.partition_digests()[first_day] != digests[first_day]


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
    assert detect_profile(raw.columns).name == "handbook"
    out = to_canonical_frame(raw)
    assert out["customer_id"].to_list() == ["596", "4961"]
    assert out["is_fraud"].to_list() == [0, 1]
    assert out["fraud_scenario"].to_list() == [0, 2]


def test_unknown_columns_name_what_is_missing() -> None:
    with pytest.raises(ProfileError, match=r"the closest is 'canonical', which needs \['tx_datetime'"):
        detect_profile(["foo", "bar", "amount"])
    with pytest.raises(SourceError, match=r"closest is 'ulb-creditcard', which needs \['V1', 'V2'") as raised:
        to_canonical_frame(pl.DataFrame({"Time": ["0"], "Amount": ["1.0"], "Class": ["0"]}))
    assert "_ragged" not in str(raised.value)


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


SPARKOV_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,zip,lat,long,"
    "city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
SPARKOV_ROWS = [
    '0,2019-01-01 00:00:18,2703186189652095,"fraud_Rippin, Kub and Mann",misc_net,4.97,Jennifer,Banks,F,'
    "561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,Psychologist,1988-03-09,"
    "0b242abb623afc578575680df30655b9,1325376018,36.011293,-82.048315,0",
    "1,2019-01-01 00:00:44,630423337322,fraud_Heller,grocery_pos,107.23,Stephanie,Gill,F,43039 Riley Greens,"
    "Orient,WA,99160,48.8878,-118.2105,149,Special educational needs teacher,1978-06-21,"
    "1f76529f8574734946361c461b024d99,1325376044,49.159047,-118.186462,1",
]


def test_sparkov_csv_maps_keys_and_keeps_other_columns_as_attributes(tmp_path: Path) -> None:
    path = tmp_path / "fraudTest.csv"
    path.write_text("\n".join([SPARKOV_HEADER, *SPARKOV_ROWS]) + "\n")
    out = to_canonical_frame(read_table(path))
    assert detect_profile(read_table(path).columns).name == "sparkov"
    assert out["customer_id"].to_list() == ["2703186189652095", "630423337322"]
    assert out["terminal_id"].to_list() == ["fraud_Rippin, Kub and Mann", "fraud_Heller"]
    assert out["amount"].to_list() == [4.97, 107.23]
    assert out["is_fraud"].to_list() == [0, 1]
    assert out[PARSE_ERRORS].is_null().all()
    assert {"attr_category", "attr_city_pop", "attr_merch_lat"} <= set(out.columns)
    assert "attr_" not in out.columns and "attr_unix_time" in out.columns  # the index column is dropped


def test_handbook_csv_and_parquet_give_the_same_canonical_rows(tmp_path: Path) -> None:
    raw = pl.DataFrame(
        {
            "TRANSACTION_ID": [0, 1, 2],
            "TX_DATETIME": ["2018-04-01 00:00:31", "2018-04-01 00:02:10", "2018-04-01 00:07:56"],
            "CUSTOMER_ID": [596, 4961, 2],
            "TERMINAL_ID": [3156, 3412, 1365],
            "TX_AMOUNT": [57.16, 81.51, 146.0],
            "TX_TIME_SECONDS": [31, 130, 476],
            "TX_TIME_DAYS": [0, 0, 0],
            "TX_FRAUD": [0, 0, 1],
            "TX_FRAUD_SCENARIO": [0, 0, 2],
        }
    )
    raw.write_csv(tmp_path / "h.csv")
    raw.with_columns(pl.col("TX_DATETIME").str.to_datetime(time_unit="ns")).write_parquet(tmp_path / "h.parquet")
    from_csv = to_canonical_frame(read_table(tmp_path / "h.csv"))
    from_parquet = to_canonical_frame(read_table(tmp_path / "h.parquet"))
    assert from_csv.drop(PARSE_ERRORS).equals(from_parquet.drop(PARSE_ERRORS))
    assert "attr_tx_time_seconds" not in from_csv.columns  # derived columns are not kept
    assert from_csv["tx_datetime"].dt.to_string("%Y-%m-%dT%H:%M:%S%z").to_list()[0] == "2018-04-01T00:00:31+0000"


def test_ragged_csv_lines_are_rejected_with_a_reason_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        "transaction_id,tx_datetime,customer_id,terminal_id,amount,is_fraud\n"
        "a,2026-01-01 10:00:00,c1,t1,10.0,0\n"
        "b,2026-01-01 10:01:00,c1,t1,12.5\n"
        "c,2026-01-01 10:02:00,c2,t2,9.0,0,surplus\n"
        "d,2026-01-01 10:03:00,c2,t2,1.0,1\n"
    )
    out = to_canonical_frame(read_table(path))
    errors = out[PARSE_ERRORS].to_list()
    assert errors[0] is None and errors[3] is None
    assert "line has 5 fields, the header 6" in errors[1]
    assert "line has 7 fields, the header 6" in errors[2]
    from validation.raw import validate_raw

    checked = validate_raw(out)
    assert checked.accepted["transaction_id"].to_list() == ["a", "d"]
    assert checked.rejected["reason"].str.contains("fields").all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"transaction_id;tx_datetime;amount\na;2026-01-01;3\n", "looks ';'-delimited"),
        (b"transaction_id\tamount\na\t3\n", r"looks '\\t'-delimited"),
    ],
)
def test_wrong_delimiter_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        read_table(path)


def test_truncated_parquet_fails_clearly(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    whole = tmp_path / "whole.parquet"
    small_transactions.write_parquet(whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SourceError, match="cannot read as parquet"):
        read_table(cut)


def test_a_failed_commit_lands_nothing_and_the_rerun_completes(
    tmp_path: Path, small_transactions: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake.table import TableMerger

    lake = Lake(tmp_path)
    day = pl.col("tx_datetime").dt.date()
    first_day = small_transactions.filter(day == date(2026, 1, 1))
    batch = small_transactions.filter(day <= date(2026, 1, 3))
    lake.land(first_day)
    version = lake.versions()

    def power_cut(self: TableMerger) -> dict[str, object]:
        raise OSError("power cut")

    monkeypatch.setattr(TableMerger, "execute", power_cut)
    with pytest.raises(OSError, match="power cut"):
        lake.land(batch)
    monkeypatch.undo()
    assert lake.versions() == version and lake.read().height == first_day.height  # nothing half-landed
    rerun = lake.land(batch)  # the rerun completes the batch without duplicating the first day
    assert (rerun.landed, rerun.duplicates) == (batch.height - first_day.height, first_day.height)
    assert lake.read().select(batch.columns).sort("transaction_id").equals(batch.sort("transaction_id"))


def test_common_timestamp_spellings_parse_to_the_same_utc_instant() -> None:
    spellings = [
        "2026-04-01 04:11:08",
        "2026-04-01T04:11:08",
        "2026-04-01T04:11:08Z",
        "2026-04-01 04:11:08 UTC",
        "2026-04-01 04:11:08.000000+00:00",
        "2026-04-01T06:11:08+0200",
        "2026-04-01T00:11:08-04:00",
    ]
    raw = pl.DataFrame(
        {
            "transaction_id": [str(i) for i in range(len(spellings))],
            "tx_datetime": spellings,
            "customer_id": "c",
            "terminal_id": "t",
            "amount": "1.0",
        }
    )
    out = to_canonical_frame(raw)
    assert out[PARSE_ERRORS].is_null().all()
    assert out["tx_datetime"].n_unique() == 1
    assert str(out["tx_datetime"][0]) == "2026-04-01 04:11:08+00:00"
