"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


def use_own_home(mp: pytest.MonkeyPatch, root: Path) -> Path:
    """Point FRAUDOPS_HOME and MLflow (SQLite) at ``root`` for a test that needs a registry of its own."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp.setenv("FRAUDOPS_HOME", str(root / "home"))
    mp.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    return root / "home"
