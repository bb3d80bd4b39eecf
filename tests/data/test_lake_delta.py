"""The Delta lake: label events as their own stream, time travel, concurrent writers, migration, draining.

Real Delta tables in ``tmp_path``; concurrent writers are real processes.
"""

import multiprocessing
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from data.labels import as_label_events
from data.lake import Lake, write_parquet_atomic
from data.sources import to_label_frame
from validation.raw import validate_labels

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, int, datetime, str]]) -> pl.DataFrame:
    ids, labels, times, sources = zip(*rows, strict=True)
    return as_label_events(
        pl.DataFrame({"transaction_id": ids, "is_fraud": labels, "label_time": times, "source": sources})
    )


def _unlabelled(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.Int8).alias("is_fraud"))


def test_reingest_is_a_no_op_and_makes_no_new_version(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    batch = small_transactions.head(2_000)
    lake.land(batch)
    versions = lake.versions()
    again = lake.land(batch)
    assert (again.landed, again.duplicates, again.labels_landed, again.label_duplicates) == (0, 2_000, 0, 2_000)
    assert lake.versions() == versions
    assert lake.read_labels().height == 2_000


def test_a_late_label_changes_what_is_known_as_of_its_time(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    batch = _unlabelled(small_transactions.head(50))
    lake.land(batch)
    tid = batch["transaction_id"][0]
    tx_time = batch["tx_datetime"][0]
    late = tx_time + timedelta(days=20)
    report = lake.land_labels(_events([(tid, 1, late, "chargeback")]))
    assert (report.landed, report.duplicates, report.unknown_transactions) == (1, 0, 0)

    def label(as_of: datetime | None) -> int | None:
        return lake.read(as_of=as_of).filter(pl.col("transaction_id") == tid)["is_fraud"][0]

    assert label(tx_time + timedelta(days=1)) is None  # young and unlabelled: pending
    assert label(late - timedelta(seconds=1)) == 0  # mature, no label yet: genuine
    assert label(late) == 1 and label(None) == 1
    assert lake.read_labels(as_of=late - timedelta(seconds=1)).height == 0


def test_labels_of_unknown_transactions_are_kept_and_apply_when_they_arrive(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    batch = _unlabelled(small_transactions.head(10))
    tid = batch["transaction_id"][3]
    report = lake.land_labels(_events([(tid, 1, T0 + timedelta(days=30), "analyst")]))
    assert (report.landed, report.unknown_transactions) == (1, 1)
    assert lake.read().height == 0
    lake.land(batch)
    assert lake.read().filter(pl.col("transaction_id") == tid)["is_fraud"][0] == 1
    assert lake.read()["is_fraud"].sum() == 1


def test_contradicting_events_are_kept_and_counted_not_overwritten(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    batch = _unlabelled(small_transactions.head(10))
    lake.land(batch)
    a, b = batch["transaction_id"][0], batch["transaction_id"][1]
    first = lake.land_labels(_events([(a, 1, T0 + timedelta(days=10), "chargeback")]))
    second = lake.land_labels(
        _events([(a, 0, T0 + timedelta(days=12), "analyst"), (b, 0, T0 + timedelta(days=12), "analyst")])
    )
    assert (first.contradictions, second.landed, second.contradictions) == (0, 2, 1)
    events = lake.read_labels().filter(pl.col("transaction_id") == a).sort("label_time")
    assert events["is_fraud"].to_list() == [1, 0]  # both kept
    read = lake.read(as_of=T0 + timedelta(days=11)).filter(pl.col("transaction_id") == a)
    assert read["is_fraud"][0] == 1  # known on day 11: the chargeback
    assert lake.read().filter(pl.col("transaction_id") == a)["is_fraud"][0] == 0  # the later verdict wins
    assert lake.land_labels(_events([(a, 0, T0 + timedelta(days=12), "analyst")])).duplicates == 1


def test_reading_past_versions_reproduces_a_training_set(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    day = pl.col("tx_datetime").dt.date()
    lake.land(small_transactions.filter(day <= date(2026, 1, 20)))
    lineage = lake.lineage(date(2026, 1, 1), date(2026, 1, 20))
    versions = {t["table"]: int(t["version"]) for t in lineage}
    as_of = datetime(2026, 1, 25, tzinfo=UTC)
    before = lake.read(date(2026, 1, 1), date(2026, 1, 20), as_of=as_of)
    # Later: more days, and a late label in the window.
    lake.land(small_transactions.filter(day > date(2026, 1, 20)))
    tid = before["transaction_id"][0]
    lake.land_labels(_events([(tid, 1 - before["is_fraud"][0], as_of - timedelta(days=1), "analyst")]))
    assert not lake.read(date(2026, 1, 1), date(2026, 1, 20), as_of=as_of).equals(before)
    again = lake.read(date(2026, 1, 1), date(2026, 1, 20), as_of=as_of, versions=versions)
    assert again.equals(before)
    assert lake.read_transactions(version=versions["transactions"]).height == before.height


def _land_in_process(root: str, batch: pl.DataFrame, what: str, start_at: float) -> None:
    lake = Lake(Path(root))
    while time.time() < start_at:
        time.sleep(0.001)
    chunks = 4
    for i in range(chunks):
        part = batch.filter(pl.int_range(pl.len()) % chunks == i)
        if what == "labels":
            lake.land_labels(part)
        else:
            lake.land(part)


def _run_together(root: Path, jobs: list[tuple[pl.DataFrame, str]]) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4  # after both interpreters have started
    procs = [ctx.Process(target=_land_in_process, args=(str(root), batch, what, start_at)) for batch, what in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_landing_disjoint_batches_at_once_lose_nothing(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    batch = small_transactions.head(3_000)
    even = pl.int_range(pl.len()) % 2 == 0
    _run_together(tmp_path, [(batch.filter(even), "transactions"), (batch.filter(~even), "transactions")])
    lake = Lake(tmp_path)
    stored = lake.read()
    assert stored.height == 3_000 and stored["transaction_id"].is_unique().all()
    assert lake.read_labels().height == 3_000
    assert stored.select(batch.columns).sort("transaction_id").equals(batch.sort("transaction_id"))


def test_ingest_and_label_landing_at_once_lose_nothing(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    batch = small_transactions.head(2_000)
    old, new = batch.head(1_000), _unlabelled(batch.tail(1_000))
    Lake(tmp_path).land(old)
    late = _events([(t, 1, T0 + timedelta(days=90), "chargeback") for t in old["transaction_id"].head(400)])
    _run_together(tmp_path, [(new, "transactions"), (late, "labels")])
    lake = Lake(tmp_path)
    assert lake.read().height == 2_000
    assert lake.read_labels().height == 1_000 + 400
    assert lake.read().filter(pl.col("transaction_id").is_in(late["transaction_id"].implode()))["is_fraud"].sum() == 400


def test_migrate_imports_a_parquet_lake_once_and_moves_it_aside(
    tmp_path: Path, small_transactions: pl.DataFrame
) -> None:
    batch = small_transactions.head(1_500)
    old = tmp_path / "lake" / "transactions"
    for (day,), part in batch.group_by(pl.col("tx_datetime").dt.date(), maintain_order=True):
        write_parquet_atomic(part, old / f"date={day}" / "part.parquet")
    lake = Lake(tmp_path)
    report = lake.migrate()
    assert (report.rows, report.landed, report.labels_landed) == (1_500, 1_500, 1_500)
    assert not list(old.glob("date=*/part.parquet")) and (tmp_path / "lake" / "transactions.parquet-migrated").is_dir()
    assert lake.read().select(batch.columns).sort("transaction_id").equals(batch.sort("transaction_id"))
    labels = lake.read_labels()
    assert (labels["source"] == "dataset").all()
    assert (labels["label_time"] - labels.join(batch, on="transaction_id")["tx_datetime"] == timedelta(days=7)).all()
    again = lake.migrate()  # idempotent
    assert (again.landed, again.duplicates) == (0, 1_500)


def test_migrate_from_another_home(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    batch = small_transactions.head(300)
    other = tmp_path / "old-home"
    write_parquet_atomic(batch, other / "lake" / "transactions" / "date=2026-01-01" / "part.parquet")
    report = Lake(tmp_path / "home").migrate(other)
    assert report.landed == 300 and report.files == 1
    assert (other / "lake" / "transactions.parquet-migrated").is_dir()
    assert Lake(tmp_path / "home").migrate(other).landed == 0


def test_bad_label_rows_are_rejected_each_with_its_reason(tmp_path: Path, small_transactions: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    lake.land(small_transactions.head(5))
    known_id, tx_time = small_transactions["transaction_id"][0], small_transactions["tx_datetime"][0]
    before = (tx_time - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "labels.csv"
    path.write_text(
        "transaction_id,is_fraud,label_time,source\n"
        f"{known_id},1,2026-03-01 10:00:00,analyst\n"  # good
        "unknown-1,0,,\n"  # good: now, chargeback, kept for later
        ",1,2026-03-01,\n"
        "has space,1,2026-03-01,\n"
        "x1,yes,2026-03-01,\n"
        "x2,2,2026-03-01,\n"
        "x3,1,last tuesday,\n"
        "x4,1,2099-01-01 00:00:00,\n"
        f"{known_id},1,{before},\n"
        "x5,1,2026-03-01,bank\n"
    )
    from data.sources import is_label_file, read_table

    raw = read_table(path)
    assert is_label_file(raw.columns)
    parsed = to_label_frame(raw)
    checked = validate_labels(parsed, lake.transaction_times(parsed["transaction_id"]))
    assert checked.received == parsed.height == 10
    assert checked.accepted.height == 2
    fallback = checked.accepted.filter(pl.col("transaction_id") == "unknown-1")
    assert fallback["source"][0] == "chargeback" and fallback["label_time"][0] > datetime.now(UTC) - timedelta(hours=1)
    reasons = checked.rejected["reason"].to_list()
    assert reasons[0] == "transaction_id: missing or empty"
    assert "transaction_id: malformed 'has space'" in reasons[1]
    assert "is_fraud: must be 0 or 1, got 'yes'" in reasons[2]
    assert "is_fraud: must be 0 or 1, got '2'" in reasons[3]
    assert "label_time: cannot parse value 'last tuesday'" in reasons[4]
    assert "label_time: in the future" in reasons[5]
    assert "label_time: before its transaction's tx_datetime" in reasons[6]
    assert "source: unknown 'bank'" in reasons[7]
    report = lake.land_labels(checked.accepted)
    assert (report.landed, report.unknown_transactions) == (2, 1)


def test_draining_the_service_log_lands_scored_rows_and_label_events_once(tmp_path: Path) -> None:
    feedback = pytest.importorskip("data.feedback")
    if not hasattr(feedback, "LabelEvent") or not hasattr(feedback.FeedbackLog, "record_scored"):
        pytest.skip("data.feedback has no scored log yet")
    from data.drain import drain_service_log

    path = tmp_path / "feedback.db"
    log = feedback.FeedbackLog(path)
    times = [(T0 + timedelta(minutes=i)).isoformat() for i in range(3)]
    log.record_scored(
        ["s1", "s2", "s3"], times, ["c1", "c2", "c1"], ["t1", "t1", "t2"], [10.0, 20.0, 30.0],
        [0.1, 0.9, 0.2], ["approve", "alert", "approve"], "7", ["[]", "[]", "[]"],
    )  # fmt: skip
    log.record_events([feedback.LabelEvent("s2", 1, T0 + timedelta(days=2), "analyst", True)], "7")
    lake = Lake(tmp_path / "home")
    first = drain_service_log(lake, path)
    assert (first["scored_landed"], first["labels_landed"], first["unknown_transactions"]) == (3, 1, 0)
    again = drain_service_log(lake, path)
    assert (again["scored_landed"], again["labels_landed"], again["label_duplicates"]) == (0, 0, 1)
    stored = lake.read().sort("transaction_id")
    assert stored["score"].to_list() == [0.1, 0.9, 0.2] and stored["model_version"].to_list() == ["7"] * 3
    assert stored["is_fraud"].to_list() == [0, 1, 0]
