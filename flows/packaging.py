"""Champion -> BentoML model (bundle + lineage labels) -> `bentoml build` -> Bento tagged with the version."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import xgboost as xgb

from config.settings import Settings
from data.profiles import Profile, source_request
from model.bundle import write_bundle
from model.card import ModelCard

PROJECT_ROOT = Path(__file__).resolve().parent.parent


#: The example requests a bundle carries for the UI's form (its prefill and its example buttons).
EXAMPLE_KINDS = ("recent", "genuine", "fraud")


def request_examples(known: pl.DataFrame, profile: Profile | None) -> dict[str, dict[str, object]]:
    """Scoring requests made from the served data: its newest transaction, a typical genuine, the newest fraud.

    ``known``: lake transactions with ``is_fraud`` as known now (``Lake.read``). Each is written in the
    request layout of the model's profile (``data.profiles.source_request``) with a new transaction id.
    """
    recent = known.tail(1)
    genuine = known.filter(pl.col("is_fraud") == 0)
    typical = genuine.filter(  # an everyday amount, not the newest row again when there is another
        pl.col("amount").is_between(pl.col("amount").quantile(0.25), pl.col("amount").quantile(0.75))
        & ~pl.col("transaction_id").is_in(recent["transaction_id"].implode())
    )
    picks = {
        "recent": recent,
        "genuine": typical.tail(1) if typical.height else genuine.tail(1),
        "fraud": known.filter(pl.col("is_fraud") == 1).tail(1),
    }
    return {
        kind: source_request(profile, rows.row(0, named=True), f"example-{kind}")
        for kind, rows in picks.items()
        if rows.height
    }


def save_bento_model(
    name: str,
    version: str,
    booster: xgb.Booster,
    card: ModelCard,
    state: pl.DataFrame,
    labels: dict[str, str],
    examples: dict[str, dict[str, object]] | None = None,
) -> str:
    """Import the bundle into the BentoML store as ``name:v<version>``, replacing an older import of it.

    Always fresh: a rebuild or a rollback ships the lake's current state snapshot, not the one taken when
    the version was first packaged (Bentos already built keep their own copy of the model).
    """
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{name}:v{version}"
    with contextlib.suppress(NotFound):
        bentoml.models.delete(tag)
    with bentoml.models.create(tag, labels=labels, metadata={"threshold": card.threshold}) as stored:
        write_bundle(Path(stored.path), booster, card, state, examples)
    return tag


def build_bento(model_tag: str, version: str, project_root: Path = PROJECT_ROOT) -> str:
    """Run `bentoml build` in a subprocess (keeps Gradio out of this process) and return the Bento tag.

    An existing Bento with the same tag is replaced, so a rebuild after a code change takes effect.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    bento_tag = f"fraud_service:v{version}"
    with contextlib.suppress(NotFound):
        bentoml.bentos.delete(bento_tag)
    env = Settings().child_environment(model_tag=model_tag)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "build",
            str(project_root),
            "-f",
            str(project_root / "bentofile.yaml"),
            "--version",
            f"v{version}",
            "--output",
            "tag",
        ]
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("__tag__:"):
            return line.removeprefix("__tag__:").strip()
    return bento_tag
