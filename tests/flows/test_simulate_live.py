"""`fraudops simulate --live --land` end to end: real Prefect, lake, MLflow registry (SQLite) and batch scoring."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer

from data.live import next_midnight

pytestmark = pytest.mark.slow

ORIGIN = date(2026, 2, 1)
WORLD = ["--customers", "250", "--terminals", "500", "--seed", "9", "--origin", str(ORIGIN)]
HISTORY_DAYS = 60
K = 5


@dataclass
class Result:
    exit_code: int
    output: str


def run_cli(mp: pytest.MonkeyPatch, *args: str) -> Result:
    """The CLI in-process, reading what it prints from its console (as tests/flows/test_ingest_cli.py does)."""
    from flows import cli

    buffer = io.StringIO()
    mp.setattr(cli.console, "_file", buffer)
    try:
        code = cli.app(list(args), standalone_mode=False, prog_name="fraudops")
    except SystemExit as exc:
        code = exc.code
    except typer.BadParameter as exc:  # a usage error: standalone mode would print it and exit 2
        return Result(exc.exit_code, exc.format_message())
    return Result(int(code or 0), buffer.getvalue())


@pytest.fixture(scope="module")
def champion_home(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """60 days landed with their labels, a champion trained on them; then three live days, each scored in batch.

    After each live day the batch scoring flow scores that day (``only_new=False``): its alert ranking is
    the champion's, computed independently of the simulator's.
    """
    from flows.pipeline import promote_flow, train_flow
    from flows.scoring import batch_score_flow, read_scored
    from model.policies import PromotionPolicy
    from tests.helpers import use_own_home

    tmp = tmp_path_factory.mktemp("simulate-live")
    with pytest.MonkeyPatch.context() as mp:
        home = use_own_home(mp, tmp)
        batch = run_cli(mp, "simulate", *WORLD, "--start", str(ORIGIN), "--days", str(HISTORY_DAYS), "--land")
        assert batch.exit_code == 0, batch.output
        version = train_flow()["version"]
        assert promote_flow(policy=PromotionPolicy(min_ap=0.0, min_auc=0.0))["promote"]  # a tiny world's model
        runs, scored = [], {}
        for _ in range(3):
            out = run_cli(mp, "simulate", *WORLD, "--live", "--land", "--capacity", str(K))
            assert out.exit_code == 0, out.output
            runs.append(out)
            day = ORIGIN + timedelta(days=HISTORY_DAYS + len(scored))
            batch_score_flow(day, day, only_new=False)
            scored[day] = read_scored(home, day, day)
        yield {"home": home, "version": version, "runs": runs, "scored": scored}


def _lake(home: Path) -> Any:
    from data.lake import Lake

    return Lake(home)


def test_live_days_land_without_labels_and_their_label_files_as_events(champion_home: dict[str, Any]) -> None:
    lake, days = _lake(champion_home["home"]), sorted(champion_home["scored"])
    assert lake.newest_day() == days[-1] == ORIGIN + timedelta(days=HISTORY_DAYS + 2)
    live = lake.read_transactions(days[0], days[-1])
    assert live.height > 0 and live["fraud_scenario"].null_count() == live.height  # the batch days' column: unset
    events = lake.read_labels().join(live.select("transaction_id"), on="transaction_id", how="semi")
    # Only analyst verdicts so far (chargebacks take at least 7 days), each known by the end of a live day.
    assert set(events["source"]) == {"analyst"}
    assert (events["label_time"] <= next_midnight(days[-1])).all()
    assert events.filter(pl.col("transaction_id").str.contains(days[-1].strftime("%Y%m%d"))).height == 0
    for run in champion_home["runs"]:
        assert "without labels" in run.output and "pending" in run.output
        assert f"champion v{champion_home['version']} ranked the top {K} cards" in run.output
    # The newest day's transactions have no label yet: pending, not fraud, not genuine.
    known = lake.read(days[-1], days[-1], as_of=next_midnight(days[-1]))
    assert known["is_fraud"].null_count() == known.height


def test_investigations_are_the_champions_top_k_cards_of_the_day(champion_home: dict[str, Any]) -> None:
    lake, scored = _lake(champion_home["home"]), champion_home["scored"]
    first = min(scored)
    day = scored[first]
    cards = (
        day.sort(["score", "tx_datetime", "transaction_id"], descending=[True, False, False])
        .unique("customer_id", keep="first", maintain_order=True)
        .head(K)["customer_id"]
    )
    expected = day.filter(pl.col("customer_id").is_in(cards.implode()))["transaction_id"]
    # Verdicts come 1-2 days after the day's end: those of the first live day have landed by the third's end.
    analyst = lake.read_labels().filter(pl.col("source") == "analyst")
    got = analyst.filter(pl.col("transaction_id").is_in(day["transaction_id"].implode()))
    assert sorted(got["transaction_id"].to_list()) == sorted(expected.to_list())
    delay = got["label_time"] - next_midnight(first)
    assert delay.min() >= timedelta(days=1) and delay.max() <= timedelta(days=2)  # type: ignore[operator]


def test_without_a_champion_no_one_investigates(prefect_harness: None, tmp_path: Path) -> None:
    from data.live import LiveState, live_dir
    from data.simulator import SimulatorConfig
    from tests.helpers import use_own_home

    with pytest.MonkeyPatch.context() as mp:
        home = use_own_home(mp, tmp_path)
        first = ORIGIN + timedelta(days=40)  # compromises have accumulated: frauds every day
        for start in (["--start", str(first)], []):  # then the next day
            out = run_cli(mp, "simulate", *WORLD, "--live", "--land", *start)
            assert out.exit_code == 0, out.output
            assert "no champion yet" in out.output
        lake = _lake(home)
        assert lake.days() == [first, first + timedelta(days=1)]
        assert lake.read_labels().height == 0
        state = LiveState(live_dir(home, SimulatorConfig.scaled(250, 500, 1, seed=9, origin=ORIGIN)))
        events = state.events()
        assert events.height == state.days()["frauds"].sum() > 0 and (events["source"] == "chargeback").all()
        assert state.days()["model_version"].null_count() == 2
        again = run_cli(mp, "simulate", *WORLD, "--live", "--start", str(first))
        assert again.exit_code == 2 and "live mode emits new days only" in again.output


def test_live_options_are_refused_without_live_and_live_makes_one_day(prefect_harness: None, tmp_path: Path) -> None:
    from tests.helpers import use_own_home

    with pytest.MonkeyPatch.context() as mp:
        use_own_home(mp, tmp_path)
        out = run_cli(mp, "simulate", *WORLD, "--days", "2", "--capacity", "5")
        assert out.exit_code == 2 and "--capacity only apply to --live" in out.output
        out = run_cli(mp, "simulate", *WORLD, "--live", "--days", "3")
        assert out.exit_code == 2 and "one day per run" in out.output
        out = run_cli(mp, "simulate", *WORLD, "--live", "--chargeback-delay", "9", "8")
        assert out.exit_code == 2 and "chargeback delay: 9.0 > 8.0 days" in out.output
