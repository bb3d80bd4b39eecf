"""The on-disk bundle a BentoML model carries: booster, model card and online feature state.

Written by the package flow, read by the service; neither imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import xgboost as xgb

from features.engineering import FeatureSpec

BOOSTER_FILE = "booster.ubj"
CARD_FILE = "model_card.json"
STATE_FILE = "online_state.parquet"


@dataclass
class Bundle:
    """A loaded bundle."""

    booster: xgb.Booster
    card: dict[str, Any]
    state: pl.DataFrame

    @property
    def spec(self) -> FeatureSpec:
        """Feature spec recorded in the model card."""
        return FeatureSpec.from_dict(self.card["feature_spec"])

    @property
    def threshold(self) -> float:
        """Alert threshold on the fraud probability."""
        return float(self.card["threshold"])

    @property
    def version(self) -> str:
        """Model version from the card, or ``unknown``."""
        return str(self.card.get("model_version", "unknown"))


def write_bundle(directory: Path, booster: xgb.Booster, card: dict[str, Any], state: pl.DataFrame) -> None:
    """Write the three files into ``directory`` (a fresh BentoML model directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(directory / BOOSTER_FILE)
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2, default=str))
    state.write_parquet(directory / STATE_FILE)


def read_bundle(directory: Path) -> Bundle:
    """Load a bundle; raises FileNotFoundError naming the missing file."""
    for name in (BOOSTER_FILE, CARD_FILE, STATE_FILE):
        if not (directory / name).exists():
            raise FileNotFoundError(f"model bundle {directory} lacks {name}")
    booster = xgb.Booster()
    booster.load_model(directory / BOOSTER_FILE)
    card = json.loads((directory / CARD_FILE).read_text())
    # Restore the early-stopping point: saved boosters keep all trees.
    if "best_iteration" in card:
        booster.set_attr(best_iteration=str(card["best_iteration"]))
    return Bundle(booster, card, pl.read_parquet(directory / STATE_FILE))
