import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_help_lists_the_commands_without_importing_heavy_libraries() -> None:
    code = (
        "import sys; from flows.cli import app; "
        "heavy = [m for m in ('great_expectations', 'mlflow', 'gradio', 'bentoml', 'xgboost', 'prefect') "
        "if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "simulate", "ingest", "train", "promote", "build", "serve"):
        assert command in result.output


def test_simulate_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    result = runner.invoke(
        app, ["simulate", "--customers", "50", "--terminals", "100", "--days", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert frame.height > 100 and "transaction_id" in frame.columns


def test_bad_dates_and_formats_are_rejected_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--start", "April"])
    assert result.exit_code != 0 and "not a date" in result.output
    bad = runner.invoke(app, ["ingest", str(tmp_path / "x.csv"), "--format", "excel"])
    assert bad.exit_code != 0 and "no profile named 'excel'" in bad.output


def test_drift_presets_named_in_help_are_the_simulator_presets() -> None:
    from data.simulator import DRIFT_PRESETS
    from flows.cli import DRIFT_NAMES

    assert tuple(DRIFT_PRESETS) == DRIFT_NAMES


def test_several_workers_with_the_in_process_store_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker would keep its own memory state: refused before any Bento is looked up or server started."""
    monkeypatch.setenv("FRAUDOPS_ONLINE_STORE", "memory")
    for command in (["serve", "--workers", "2"], ["up", "--workers", "2", "--no-deploy"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "FRAUDOPS_ONLINE_STORE=sqlite" in " ".join(result.output.split())
    monkeypatch.setenv("FRAUDOPS_ONLINE_STORE", "sqlite")
    from config.settings import Settings

    assert Settings().serve_overrides(3) == {"FRAUDOPS_WORKERS": "3"}
