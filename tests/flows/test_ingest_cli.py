"""`fraudops simulate --land` (live mode) and `fraudops ingest` end to end: real Prefect, GX and lake."""

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from data.lake import Lake
from data.simulator import SimulatorConfig, simulate_transactions
from flows.cli import app

pytestmark = pytest.mark.slow
WORLD = ["--customers", "60", "--terminals", "120", "--seed", "9", "--origin", "2026-04-01"]


@dataclass
class Result:
    exit_code: int
    output: str


@pytest.fixture
def fraudops(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the CLI in-process, reading what it prints from its console.

    Not typer's CliRunner, nor ``capsys``: Prefect's log handler keeps the stream that was current
    at its first flow run, and both close theirs after each call.
    """
    from flows import cli

    def run(*args: str) -> Result:
        buffer = io.StringIO()
        # The private attribute: patching the ``file`` property would "restore" it to the stream current at
        # patch time (pytest's capture) instead of None (follow sys.stdout), and later CLI tests would print there.
        monkeypatch.setattr(cli.console, "_file", buffer)
        try:
            code = app(list(args), standalone_mode=False, prog_name="fraudops")
        except SystemExit as exc:
            code = exc.code
        return Result(int(code or 0), buffer.getvalue())

    return run


@pytest.fixture
def lake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> Path:
    monkeypatch.setenv("FRAUDOPS_HOME", str(tmp_path))
    # A service log of its own: every ingest drains the service's log, and other tests' services wrote theirs.
    monkeypatch.setenv("FRAUDOPS_FEEDBACK_DB", str(tmp_path / "service-log.sqlite"))
    return tmp_path


def test_live_mode_appends_the_next_days_of_the_same_world(fraudops: Callable[..., Result], lake_home: Path) -> None:
    first = fraudops(*["simulate", *WORLD, "--start", "next", "--days", "10", "--land"])
    assert first.exit_code == 0, first.output
    assert "duplicates 0 + rejected 0" in first.output
    second = fraudops(*["simulate", *WORLD, "--start", "next", "--days", "2", "--land"])
    assert second.exit_code == 0, second.output
    lake = Lake(lake_home)
    assert lake.newest_day() == date(2026, 4, 12)
    whole = simulate_transactions(SimulatorConfig.scaled(60, 120, 12, seed=9, start_date=date(2026, 4, 1)))
    assert lake.read().sort("transaction_id").select(whole.columns).equals(whole.sort("transaction_id"))


def test_landing_the_same_file_twice_adds_nothing(fraudops: Callable[..., Result], lake_home: Path) -> None:
    fraudops(*["simulate", *WORLD, "--days", "3", "--land"])
    rows = Lake(lake_home).read().height
    path = next((lake_home / "inbox").glob("*.parquet"))
    again = fraudops(*["ingest", str(path)])
    assert again.exit_code == 0, again.output
    assert f"accepted 0 + duplicates {rows:,} + rejected 0" in again.output
    assert Lake(lake_home).read().height == rows


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.parquet", b"PAR1" + bytes(range(256)) * 4, "cannot read as parquet"),
        ("semicolons.csv", b"transaction_id;amount\nx;1\n", "delimited"),
        ("empty.csv", b"", "file is empty"),
        ("other.csv", b"foo,bar\n1,2\n", "no shipped profile fits the columns [foo, bar]; the closest is 'canonical'"),
    ],
)
def test_bad_files_exit_non_zero_and_leave_the_lake_untouched(
    fraudops: Callable[..., Result], lake_home: Path, name: str, content: bytes, message: str
) -> None:
    fraudops(*["simulate", *WORLD, "--days", "2", "--land"])
    before = Lake(lake_home).lineage()
    bad = lake_home / name
    bad.write_bytes(content)
    result = fraudops(*["ingest", str(bad)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert Lake(lake_home).lineage() == before


def test_rejected_rows_are_quarantined_with_reasons_and_counts_balance(
    fraudops: Callable[..., Result], lake_home: Path
) -> None:
    path = lake_home / "mixed.csv"
    good = simulate_transactions(SimulatorConfig.scaled(30, 60, 2, seed=1, start_date=date(2026, 4, 1)))
    bad = pl.DataFrame(
        {
            "transaction_id": ["bad-1", "bad-2", "bad-3"],
            "tx_datetime": ["2026-04-01 10:00:00", "yesterday", "2099-01-01 00:00:00"],
            "customer_id": ["1", "2", "3"],
            "terminal_id": ["1", "2", "3"],
            "amount": ["-5", "10", "10"],
            "is_fraud": ["0", "0", "7"],
        }
    )
    pl.concat([good.drop("fraud_scenario").cast(pl.String), bad]).write_csv(path)
    result = fraudops(*["ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert f"read {good.height + 3:,} = accepted {good.height:,} + duplicates 0 + rejected 3" in result.output
    quarantined = pl.read_parquet(next((lake_home / "quarantine").glob("mixed-*.parquet"))).sort("transaction_id")
    reasons = dict(zip(quarantined["transaction_id"], quarantined["reason"], strict=True))
    assert "amount: negative" in reasons["bad-1"]
    assert "tx_datetime: cannot parse value 'yesterday'" in reasons["bad-2"]
    assert "in the future" in reasons["bad-3"] and "is_fraud" in reasons["bad-3"]


def test_a_label_file_lands_as_events_with_bad_rows_quarantined(
    fraudops: Callable[..., Result], lake_home: Path
) -> None:
    fraudops(*["simulate", *WORLD, "--days", "3", "--land"])
    lake = Lake(lake_home)
    first = lake.read().row(0, named=True)
    tid, flipped = first["transaction_id"], 1 - first["is_fraud"]
    path = lake_home / "chargebacks.csv"
    path.write_text(
        "transaction_id,is_fraud,label_time,source\n"
        f"{tid},{flipped},2026-04-20 09:00:00,chargeback\n"
        "not-yet-seen,1,2026-04-20 09:00:00,\n"
        f"{tid},maybe,2026-04-20 09:00:00,\n"
        "x,1,2026-04-20 09:00:00,bank\n"
    )
    result = fraudops(*["ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert "read 4 = accepted 2 + duplicates 0 + rejected 2" in result.output
    assert "labels: landed 2, duplicates 0, contradictions 1, unknown transactions 1" in result.output
    assert lake.read().filter(pl.col("transaction_id") == tid)["is_fraud"][0] == flipped
    quarantined = pl.read_parquet(next((lake_home / "quarantine" / "labels").glob("chargebacks-*.parquet")))
    assert "is_fraud: must be 0 or 1, got 'maybe'" in quarantined["reason"][0]
    assert "source: unknown 'bank'" in quarantined["reason"][1]
    again = fraudops(*["ingest", str(path)])
    assert "read 4 = accepted 0 + duplicates 2 + rejected 2" in again.output
