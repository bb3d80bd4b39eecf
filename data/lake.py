"""The lake: two Delta Lake tables, transactions and label events, plus a quarantine of rejected rows.

``root/lake/transactions`` holds each transaction once (canonical columns without ``is_fraud``, any extra
source columns, and ``score``/``model_version`` for rows the service scored), partitioned by ``date``.
``root/lake/labels`` is the append-only stream of label events (:data:`data.labels.LABEL_SCHEMA`).
Landing is a Delta merge (insert when not matched), so landing the same rows or events again is a
no-op; a conflicting concurrent commit is retried. Every commit is a table version: ``read(versions=...)``
reads a past state back exactly (time travel), and :meth:`Lake.lineage` names the versions a training
run read.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import polars as pl

from data.contract import CANONICAL_COLUMNS, CANONICAL_SCHEMA, empty_transactions
from data.labels import (
    DEFAULT_MATURITY_DAYS,
    LABEL_COLUMNS,
    LABEL_SCHEMA,
    as_label_events,
    dataset_labels,
    empty_labels,
    with_labels_as_of,
)
from data.profiles import Profile, parse_profile

if TYPE_CHECKING:
    from deltalake import DeltaTable

T = TypeVar("T")

TRANSACTIONS = "transactions"
LABELS = "labels"
PROFILE_FILE = "profile.yaml"
#: Partition column of the transactions table: the UTC day of ``tx_datetime``.
PARTITION_COLUMN = "date"
#: Columns of rows scored by the service (null for rows from files).
SERVICE_SCHEMA: dict[str, pl.DataType] = {"score": pl.Float64(), "model_version": pl.String()}
#: The transactions table's fixed columns; other source columns (``fraud_scenario``, ``attr_*``) join on arrival.
TRANSACTION_SCHEMA: dict[str, pl.DataType] = {
    **{c: t for c, t in CANONICAL_SCHEMA.items() if c != "is_fraud"},
    **SERVICE_SCHEMA,
    PARTITION_COLUMN: pl.Date(),
}
#: What makes two label events the same event (landing it again is a no-op).
LABEL_KEY: tuple[str, ...] = ("transaction_id", "is_fraud", "label_time", "source")
#: Commit attempts when another writer committed first (with exponential backoff between them).
COMMIT_ATTEMPTS = 8
COMMIT_BACKOFF_S = 0.05
#: Where :meth:`Lake.migrate` moves a Parquet lake (``lake/transactions/date=*/part.parquet``) it imported.
MIGRATED_SUFFIX = ".parquet-migrated"
LEGACY_PARTITION_FILE = "part.parquet"


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
    """Outcome of landing transactions: ``received == landed + duplicates``.

    ``partitions`` are the days that got new rows; ``labels_landed`` the label events landed with them
    (the batch's own labels, see :meth:`Lake.land`), ``label_duplicates`` those already in the lake.
    """

    received: int
    landed: int
    duplicates: int
    partitions: tuple[str, ...]
    labels_landed: int = 0
    label_duplicates: int = 0


@dataclass(frozen=True)
class LabelReport:
    """Outcome of landing label events: ``received == landed + duplicates``.

    ``contradictions``: transactions whose newly landed events disagree with another of their events
    (kept: the newest known one is the label, see :mod:`data.labels`). ``unknown_transactions``:
    transactions of the batch not in the lake yet (their events are kept and apply when they arrive).
    """

    received: int
    landed: int
    duplicates: int
    contradictions: int
    unknown_transactions: int


@dataclass(frozen=True)
class MigrationReport:
    """Outcome of :meth:`Lake.migrate`: what was read from the Parquet lake and what it landed."""

    source: str | None
    files: int
    rows: int
    landed: int
    duplicates: int
    labels_landed: int


class CommitConflict(RuntimeError):
    """Other writers kept committing first: the write was retried :data:`COMMIT_ATTEMPTS` times."""


@dataclass(frozen=True)
class Lake:
    """The lake under ``root``: Delta tables ``root/lake/transactions`` (by date) and ``root/lake/labels``.

    ``label_delay_days``: when a dataset's own labels become known (``tx_datetime`` + delay), and how old
    an unlabelled transaction must be to count as genuine when reading labels as of a time.
    """

    root: Path
    label_delay_days: int = DEFAULT_MATURITY_DAYS

    @property
    def lake_dir(self) -> Path:
        """Directory holding the Delta tables."""
        return self.root / "lake"

    @property
    def transactions_dir(self) -> Path:
        """The transactions Delta table (partitioned by ``date``)."""
        return self.lake_dir / TRANSACTIONS

    @property
    def labels_dir(self) -> Path:
        """The label events Delta table (append-only)."""
        return self.lake_dir / LABELS

    @property
    def quarantine_dir(self) -> Path:
        """Directory where rejected rows are written."""
        return self.root / "quarantine"

    @property
    def profile_path(self) -> Path:
        """The dataset profile the lake's transactions were read with (``profile.yaml``)."""
        return self.lake_dir / PROFILE_FILE

    def profile(self) -> Profile | None:
        """The recorded dataset profile (None before the first transaction file)."""
        if not self.profile_path.exists():
            return None
        return parse_profile(self.profile_path)

    def check_profile(self, profile: Profile) -> None:
        """Raise ValueError when the lake holds data whose features ``profile`` does not give (nothing written)."""
        recorded = self._recorded_or_implied()
        if recorded is not None and not recorded.feature_compatible(profile):
            raise ValueError(
                f"this lake holds {recorded.name!r} data; {profile.name!r} rows have other features or keys "
                f"(keys {profile.families}, extra features {list(profile.numeric_features)}"
                f"{[n for n, _ in profile.categorical_features]}): use another FRAUDOPS_HOME for them"
            )

    def _recorded_or_implied(self) -> Profile | None:
        """The recorded profile; ``canonical`` for a lake with transactions from before profiles existed."""
        recorded = self.profile()
        if recorded is None and self._exists(TRANSACTIONS):
            from data.profiles import load_profile

            return load_profile("canonical")
        return recorded

    def record_profile(self, profile: Profile) -> Profile:
        """Record the profile of data about to land; refuse one whose features differ from the recorded one.

        Files of feature-compatible profiles (the same key families and extra columns, e.g. ``handbook``
        and ``canonical``) share a lake; the first recorded stays, unless the new one is an edit of it
        (the same name). Returns the recorded profile.
        """
        self.check_profile(profile)
        recorded = self._recorded_or_implied()
        if self.profile() is None or (recorded is not None and recorded.name == profile.name and recorded != profile):
            write_atomic(self.profile_path, lambda fh: fh.write(profile.to_yaml().encode()))
            return profile
        assert recorded is not None
        return recorded

    def _path(self, table: str) -> Path:
        return self.lake_dir / table

    def _exists(self, table: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(str(self._path(table)))

    def _open(self, table: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table (at ``version``), or None if it does not exist yet."""
        from deltalake import DeltaTable

        if not self._exists(table):
            return None
        return DeltaTable(str(self._path(table)), version=version)

    def _open_or_create(self, table: str) -> DeltaTable:
        """The Delta table, created empty with its fixed schema when missing (racing creators: one wins)."""
        from deltalake import DeltaTable

        existing = self._open(table)
        if existing is not None:
            return existing
        schema = TRANSACTION_SCHEMA if table == TRANSACTIONS else LABEL_SCHEMA
        partition_by = [PARTITION_COLUMN] if table == TRANSACTIONS else None
        self.lake_dir.mkdir(parents=True, exist_ok=True)
        try:
            pl.DataFrame(schema=schema).write_delta(
                self._path(table), mode="append", delta_write_options={"partition_by": partition_by}
            )
        except Exception:  # another writer created it meanwhile (version 0 taken, or its schema grew)
            if not self._exists(table):
                raise
        return DeltaTable(str(self._path(table)))

    # --- reading -------------------------------------------------------------------------------------

    def versions(self) -> dict[str, int]:
        """Current version of each table (-1 for a table not created yet)."""
        out = {}
        for table in (TRANSACTIONS, LABELS):
            dt = self._open(table)
            out[table] = -1 if dt is None else dt.version()
        return out

    def days(self, start: date | None = None, end: date | None = None) -> list[date]:
        """Days with transactions in ``[start, end]`` (None = open), oldest first."""
        dt = self._open(TRANSACTIONS)
        if dt is None:
            return []
        found = {date.fromisoformat(p[PARTITION_COLUMN]) for p in dt.partitions()}
        return sorted(d for d in found if _in_range(d, start, end))

    def newest_day(self) -> date | None:
        """Date of the newest transaction day, or None for an empty lake."""
        days = self.days()
        return days[-1] if days else None

    def newest_time(self, version: int | None = None) -> datetime | None:
        """The newest ``tx_datetime`` in the transactions table (at ``version``); None when it is empty."""
        return self.scan_transactions(version).select(pl.col("tx_datetime").max()).collect().item()

    def scan_transactions(self, version: int | None = None) -> pl.LazyFrame:
        """The transactions table (at ``version``; negative: before it existed) as a lazy frame, with ``date``."""
        if not self._exists(TRANSACTIONS) or (version is not None and version < 0):
            return pl.DataFrame(schema=TRANSACTION_SCHEMA).lazy()
        return pl.scan_delta(self.transactions_dir, version=version)

    def scan_labels(self, version: int | None = None) -> pl.LazyFrame:
        """The label events table (at ``version``; negative: before it existed) as a lazy frame."""
        if not self._exists(LABELS) or (version is not None and version < 0):
            return empty_labels().lazy()
        return pl.scan_delta(self.labels_dir, version=version)

    def read_transactions(
        self, start: date | None = None, end: date | None = None, version: int | None = None
    ) -> pl.DataFrame:
        """Transactions with ``start <= date <= end`` (inclusive; None = open), without labels.

        Canonical columns (but ``is_fraud``) first, then extra source columns, then ``score`` and
        ``model_version``; rows in (``tx_datetime``, ``transaction_id``) order.
        """
        lazy = self.scan_transactions(version)
        if start is not None:
            lazy = lazy.filter(pl.col(PARTITION_COLUMN) >= start)
        if end is not None:
            lazy = lazy.filter(pl.col(PARTITION_COLUMN) <= end)
        frame = lazy.drop(PARTITION_COLUMN).collect()
        first = [c for c in CANONICAL_COLUMNS if c in frame.columns]
        last = list(SERVICE_SCHEMA)
        middle = [c for c in frame.columns if c not in first and c not in last]
        return frame.select(*first, *middle, *last).sort("tx_datetime", "transaction_id")

    def read_labels(self, as_of: datetime | None = None, version: int | None = None) -> pl.DataFrame:
        """Raw label events (at table ``version``) with ``label_time <= as_of`` (None: all), in recorded order."""
        lazy = self.scan_labels(version)
        if as_of is not None:
            lazy = lazy.filter(pl.col("label_time") <= as_of)
        return lazy.select(LABEL_COLUMNS).collect()

    def read(
        self,
        start: date | None = None,
        end: date | None = None,
        as_of: datetime | None = None,
        versions: dict[str, int] | None = None,
        matured_at: datetime | None = None,
    ) -> pl.DataFrame:
        """Transactions with ``start <= date <= end`` and ``is_fraud`` as known at ``as_of``.

        ``is_fraud`` follows :func:`data.labels.with_labels_as_of` (maturity = ``label_delay_days``):
        ``as_of=None`` reads every event and counts unlabelled transactions as genuine (0).
        ``versions`` (``{"transactions": n, "labels": m}``, e.g. from :meth:`lineage`) reads those table
        versions, so a past training set comes back row for row.
        """
        versions = versions or {}
        transactions = self.read_transactions(start, end, versions.get(TRANSACTIONS))
        if transactions.height == 0:
            return empty_transactions()
        events = self.scan_labels(versions.get(LABELS)).join(
            transactions.lazy().select("transaction_id"), on="transaction_id", how="semi", maintain_order="left"
        )
        out = with_labels_as_of(transactions, events, as_of, self.label_delay_days, matured_at)
        rest = [c for c in out.columns if c not in CANONICAL_COLUMNS]
        return out.select(*CANONICAL_COLUMNS, *rest)

    def transaction_times(self, ids: pl.Series) -> pl.DataFrame:
        """``transaction_id, tx_datetime`` of those of ``ids`` that are in the lake (a semi-join in Polars)."""
        wanted = pl.DataFrame({"transaction_id": ids.cast(pl.String).drop_nulls().unique()})
        return (
            self.scan_transactions()
            .select("transaction_id", "tx_datetime")
            .join(wanted.lazy(), on="transaction_id", how="semi")
            .collect()
        )

    def lineage(self, start: date | None = None, end: date | None = None) -> list[dict[str, str]]:
        """What a training run on ``[start, end]`` read: each table's URI and current version.

        ``Lake.read(start, end, versions={t["table"]: int(t["version"]) for t in lineage})`` reads the same
        rows and labels again later (until the versions are vacuumed).
        """
        current = self.versions()
        window = {"start": "" if start is None else str(start), "end": "" if end is None else str(end)}
        return [
            {"table": TRANSACTIONS, "uri": self.transactions_dir.as_uri(), "version": str(current[TRANSACTIONS])}
            | window,
            {"table": LABELS, "uri": self.labels_dir.as_uri(), "version": str(current[LABELS])},
        ]

    def partition_digests(self, start: date | None = None, end: date | None = None) -> dict[str, str]:
        """Per day in ``[start, end]``: a SHA-256 of its data files (changes whenever rows land in that day)."""
        dt = self._open(TRANSACTIONS)
        if dt is None:
            return {}
        files = pl.DataFrame(dt.get_add_actions(flatten=True)).select(
            "path", "size_bytes", f"partition.{PARTITION_COLUMN}"
        )
        out: dict[str, str] = {}
        for (day,), part in files.sort("path").group_by(f"partition.{PARTITION_COLUMN}", maintain_order=True):
            if _in_range(day, start, end):
                listing = "".join(f"{p}:{s};" for p, s in part.select("path", "size_bytes").iter_rows())
                out[str(day)] = hashlib.sha256(listing.encode()).hexdigest()
        return dict(sorted(out.items()))

    # --- landing -------------------------------------------------------------------------------------

    def land(self, accepted: pl.DataFrame) -> LandingReport:
        """Merge transactions not yet in the lake (by ``transaction_id``), and the label events they carry.

        Only the partitions of the batch's days are scanned for matches. Duplicates inside the batch keep
        their first occurrence. Rows with a non-null ``is_fraud`` give label events: ``label_time`` from the
        frame's own ``label_time`` column when it has one, else ``tx_datetime + label_delay_days`` (source
        ``dataset``, see :func:`data.labels.dataset_labels`). Rerunning with the same rows lands nothing.
        """
        received = accepted.height
        if received == 0:
            return LandingReport(0, 0, 0, ())
        first = accepted.unique("transaction_id", keep="first", maintain_order=True)
        events = self._carried_labels(first)  # one per transaction: unique events already
        rows = first.drop([c for c in LABEL_COLUMNS if c != "transaction_id"], strict=False).with_columns(
            pl.col("tx_datetime").dt.date().alias(PARTITION_COLUMN)
        )
        # Labels first: a reader between the two commits must not see the transactions without their labels
        # (they would count as genuine once mature); events of transactions not landed yet wait harmlessly.
        labels = self._land_labels(events, check_transactions=False, unique=True) if events.height else None
        landed, partitions = _retrying(lambda: self._merge_transactions(rows))
        return LandingReport(
            received,
            landed,
            received - landed,
            partitions,
            labels.landed if labels else 0,
            labels.duplicates if labels else 0,
        )

    def _carried_labels(self, accepted: pl.DataFrame) -> pl.DataFrame:
        """Label events of a batch's own ``is_fraud`` values (see :meth:`land`)."""
        if "is_fraud" not in accepted.columns:
            return empty_labels()
        if "label_time" not in accepted.columns:
            return dataset_labels(accepted, self.label_delay_days)
        labelled = accepted.filter(pl.col("is_fraud").is_not_null())
        return as_label_events(
            labelled.with_columns(
                label_time=pl.coalesce(
                    pl.col("label_time"), pl.col("tx_datetime") + pl.duration(days=self.label_delay_days)
                ),
                source=pl.col("source").fill_null("dataset") if "source" in labelled.columns else pl.lit("dataset"),
            )
        )

    def _merge_transactions(self, rows: pl.DataFrame) -> tuple[int, tuple[str, ...]]:
        """One merge attempt: insert the rows whose id is not in their days' partitions; (inserted, days)."""
        dt = self._open_or_create(TRANSACTIONS)
        source = _conform(rows, _table_schema(dt))
        days = sorted({str(d) for d in source[PARTITION_COLUMN].unique().to_list()})
        in_days = ", ".join(f"'{d}'" for d in days)
        metrics = (
            dt.merge(
                source.to_arrow(),
                predicate=f"t.{PARTITION_COLUMN} IN ({in_days}) AND t.transaction_id = s.transaction_id",
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                streamed_exec=False,
                writer_properties=_writer_properties(),
            )
            .when_not_matched_insert_all()
            .execute()
        )
        inserted = int(metrics["num_target_rows_inserted"])
        if inserted == 0:
            return 0, ()
        return inserted, _committed_partitions(self.transactions_dir, dt.version(), days)

    def land_labels(self, events: pl.DataFrame, check_transactions: bool = True) -> LabelReport:
        """Append label events not yet in the lake (same transaction, is_fraud, label_time and source).

        Events contradicting earlier ones are kept and counted; events of transactions not in the lake
        are kept too (``unknown_transactions``) and apply once the transaction lands.
        ``check_transactions=False`` skips counting unknown transactions (the caller just landed them).
        """
        return self._land_labels(events, check_transactions, unique=False)

    def _land_labels(self, events: pl.DataFrame, check_transactions: bool, unique: bool) -> LabelReport:
        """:meth:`land_labels`; ``unique``: the events are known distinct (a batch's own labels, see :meth:`land`).

        Contradictions are counted only with ``check_transactions`` (a batch's own labels are its first).
        """
        batch = as_label_events(events)
        received = batch.height
        if received == 0:
            return LabelReport(0, 0, 0, 0, 0)
        if not unique:
            batch = batch.unique(list(LABEL_KEY), keep="first", maintain_order=True)
        ids = batch.select("transaction_id").unique()
        unknown = 0
        if check_transactions:
            unknown = ids.height - self.transaction_times(ids["transaction_id"]).height
        landed, contradictions = _retrying(lambda: self._merge_labels(batch, ids, check_transactions))
        return LabelReport(received, landed, received - landed, contradictions, unknown)

    def _merge_labels(self, batch: pl.DataFrame, ids: pl.DataFrame, contradictions: bool) -> tuple[int, int]:
        """One merge attempt: insert the events not in the table; (inserted, contradicted transactions)."""
        dt = self._open_or_create(LABELS)
        key = " AND ".join(f"t.{c} = s.{c}" for c in LABEL_KEY)
        merger = dt.merge(
            batch.to_arrow(),
            predicate=key,
            source_alias="s",
            target_alias="t",
            streamed_exec=False,
            writer_properties=_writer_properties(),
        )
        contradicted = self._contradictions(dt.version(), batch, ids) if contradictions else 0
        metrics = merger.when_not_matched_insert_all().execute()
        return int(metrics["num_target_rows_inserted"]), contradicted

    def _contradictions(self, version: int, batch: pl.DataFrame, ids: pl.DataFrame) -> int:
        """Transactions whose new events (of ``batch``) disagree with another of their events at ``version``."""
        earlier = (
            pl.scan_delta(self.labels_dir, version=version)
            .select(LABEL_KEY)
            .join(ids.lazy(), on="transaction_id", how="semi")
            .collect()
        )
        new = batch.join(earlier, on=list(LABEL_KEY), how="anti", nulls_equal=True)
        return (
            pl.concat([earlier.select("transaction_id", "is_fraud"), new.select("transaction_id", "is_fraud")])
            .group_by("transaction_id")
            .agg(pl.col("is_fraud").n_unique().alias("values"))
            .join(new.select("transaction_id").unique(), on="transaction_id", how="semi")
            .filter(pl.col("values") > 1)
            .height
        )

    def quarantine(self, rejected: pl.DataFrame, batch_name: str, kind: str = "transactions") -> Path | None:
        """Store rejected rows (with their ``reason``) for inspection; None if there are none.

        Rejected transactions go to ``quarantine/``, rejected label rows to ``quarantine/labels/`` (the
        monitor counts the first against the transactions received).
        """
        if rejected.height == 0:
            return None
        folder = self.quarantine_dir if kind == "transactions" else self.quarantine_dir / kind
        target = folder / f"{batch_name}.parquet"
        write_parquet_atomic(rejected, target)
        return target

    # --- migration -----------------------------------------------------------------------------------

    def migrate(self, old_root: Path | None = None) -> MigrationReport:
        """Import a Parquet lake (``old_root/lake/transactions/date=*/part.parquet``, default: this root's).

        The old folder is first renamed aside to ``transactions.parquet-migrated`` (the Delta table takes
        its place under this root), then its rows land with :meth:`land`: their ``is_fraud`` becomes
        ``dataset`` label events. Idempotent: a rerun (also after a crash) imports from the aside folder
        again and lands nothing new.
        """
        old = Path(old_root or self.root) / "lake" / TRANSACTIONS
        aside = old.with_name(old.name + MIGRATED_SUFFIX)
        if _is_parquet_lake(old):
            if aside.exists():
                raise FileExistsError(f"{aside} exists: move it away before migrating {old} again")
            os.replace(old, aside)
        if not aside.is_dir():
            return MigrationReport(None, 0, 0, 0, 0, 0)
        files = sorted(aside.glob(f"date=*/{LEGACY_PARTITION_FILE}"))
        if not files:
            return MigrationReport(str(aside), 0, 0, 0, 0, 0)
        frame = pl.concat([pl.read_parquet(p) for p in files], how="diagonal_relaxed")
        report = self.land(frame)
        return MigrationReport(
            str(aside), len(files), frame.height, report.landed, report.duplicates, report.labels_landed
        )


def _is_parquet_lake(path: Path) -> bool:
    """A folder of ``date=*/part.parquet`` files that is not a Delta table."""
    return path.is_dir() and not (path / "_delta_log").exists() and any(path.glob(f"date=*/{LEGACY_PARTITION_FILE}"))


def _retrying(attempt: Callable[[], T]) -> T:
    """Run a read-merge-commit ``attempt`` again (from a fresh snapshot) when another writer committed first."""
    from deltalake.exceptions import CommitFailedError

    for n in range(COMMIT_ATTEMPTS):
        try:
            return attempt()
        except CommitFailedError as exc:
            if n == COMMIT_ATTEMPTS - 1:
                raise CommitConflict(f"gave up after {COMMIT_ATTEMPTS} commit conflicts: {exc}") from exc
            time.sleep(COMMIT_BACKOFF_S * 2**n * (1 + random.random()))
    raise AssertionError("unreachable")


def _table_schema(dt: DeltaTable) -> dict[str, pl.DataType]:
    """The table's columns as Polars dtypes."""
    return dict(pl.scan_delta(dt).collect_schema())


def _conform(rows: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``rows`` with the table's columns in its types (missing ones null), then any new columns."""
    present = [pl.col(c).cast(t) if c in rows.columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()]
    return rows.select(*present, *(c for c in rows.columns if c not in schema))


def _writer_properties() -> object:
    from deltalake import WriterProperties

    return WriterProperties(compression="SNAPPY")


def _committed_partitions(table_dir: Path, version: int, fallback: Iterable[str]) -> tuple[str, ...]:
    """Days that commit ``version`` added files to, from its log entry (``fallback`` if it is gone)."""
    entry = table_dir / "_delta_log" / f"{version:020d}.json"
    try:
        lines = entry.read_text().splitlines()
    except FileNotFoundError:
        return tuple(sorted(fallback))
    days = set()
    for line in lines:
        action = json.loads(line)
        if "add" in action:
            days.add(action["add"]["partitionValues"][PARTITION_COLUMN])
    return tuple(sorted(days))


def _in_range(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)
