"""MLflow 3 tracking and registry access (aliases, never stages)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xgboost as xgb

from model.card import CARD_FILE, ModelCard
from model.training import TrainingConfig, TrainingResult

if TYPE_CHECKING:
    from config.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_CARD = CARD_FILE
RECIPE_PREFIX = "recipe_"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached (after the client's own retries)."""


class NoSuchAlias(ValueError):
    """The registered model has no version behind an alias (no champion yet, no challenger yet)."""


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version and the run that produced it."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        """MLflow ``models:/<name>/<version>`` URI."""
        return f"models:/{self.name}/{self.version}"


def configure_mlflow(tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id (created on first use).

    With a local SQLite store, artifacts go under ``artifact_root`` instead of ``./mlruns``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:  # the client retries with backoff first (MLFLOW_HTTP_REQUEST_MAX_RETRIES, ..._BACKOFF_FACTOR)
        found = mlflow.get_experiment_by_name(experiment)
    except MlflowException as exc:
        message = f"MLflow tracking at {tracking_uri} is unreachable, nothing was logged: {exc}"
        raise TrackingUnavailable(message) from exc
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_training_run(
    result: TrainingResult,
    model_name: str,
    lineage: list[dict[str, str]],
    extra_tags: dict[str, str] | None = None,
    lake_uri: str | None = None,
    card: ModelCard | None = None,
    validation: dict[str, dict[str, Any]] | None = None,
) -> RegisteredModel:
    """Log params, metrics, lineage and the booster; register a new version aliased ``challenger``.

    ``card`` is the model card to log (default: the result's own); each ``validation`` entry (a GX
    suite result as a dict) is logged as ``validation/<name>.json`` with a ``<name>_success`` metric.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    card = card or result.model_card()
    split = card.split.to_dict()
    with mlflow.start_run(run_name=f"train-{result.split.train_end}") as run:
        mlflow.set_tags({"fraudops.stage": "train", **(extra_tags or {})})
        mlflow.log_params(dict(card.params))
        mlflow.log_params({f"{RECIPE_PREFIX}{k}": v for k, v in card.recipe.items()})
        mlflow.log_params({f"split_{k}": v for k, v in split.items()})
        mlflow.log_params({"label_delay_days": result.spec.label_delay_days, "threshold": round(result.threshold, 6)})
        mlflow.log_metrics({**result.metrics, **{f"baseline_{k}": v for k, v in result.baseline_metrics.items()}})
        mlflow.log_metrics({f"rows_{k}": v for k, v in result.rows.items()} | {"train_seconds": result.seconds})
        mlflow.log_text(card.to_json(), MODEL_CARD)
        mlflow.log_dict({"lake": lake_uri, "tables": lineage}, "lineage.json")
        for name, suite in (validation or {}).items():
            mlflow.log_dict(suite, f"validation/{name}.json")
            mlflow.log_metric(f"{name}_success", float(suite["success"]))
        if lake_uri:
            log_dataset_input(lake_uri, lineage, f"lake-{split['train_start']}..{split['test_end']}")
        log_figures(result)
        example = pd.DataFrame(result.example_rows, columns=result.feature_names)
        signature = infer_signature(example, result.booster.inplace_predict(example.to_numpy()))
        info = mlflow.xgboost.log_model(
            result.booster,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            model_format="ubj",
            # Explicit requirements: MLflow's inference costs ~6 s per run and guesses wrong in a uv venv.
            pip_requirements=[xgboost_requirement()],
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    registered = RegisteredModel(model_name, version, run.info.run_id)
    tag_version(registered, card.registry_tags())
    return registered


def xgboost_requirement() -> str:
    """The installed XGBoost distribution pinned (``xgboost-cpu`` by default: no CUDA wheel on restore)."""
    from importlib.metadata import packages_distributions

    distribution = (packages_distributions().get("xgboost") or ["xgboost"])[0]
    return f"{distribution}=={xgb.__version__}"


def log_figures(result: TrainingResult) -> None:
    """PR curve, score distribution per class (test window) and feature importance, as run artifacts."""
    import mlflow

    from model import plots

    figures = {"plots/pr_curve.png": plots.pr_curve(result.curves, result.threshold)}
    if "test" in result.curves:
        figures["plots/score_distribution.png"] = plots.score_distribution(*result.curves["test"], result.threshold)
    figures["plots/feature_importance.png"] = plots.feature_importance(result.booster)
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)


def log_dataset_input(lake_uri: str, lineage: list[dict[str, str]], name: str) -> None:
    """Log the lake window as the active run's dataset input: source, name, digest of its tables' versions."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # MLflow warns that a local path matches two equivalent source types
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(lake_uri)
    digest = hashlib.sha256(json.dumps(lineage, sort_keys=True).encode()).hexdigest()
    dataset = MetaDataset(source=source, name=name, digest=digest[:32])
    versions = ", ".join(f"{t['table']}@v{t['version']}" for t in lineage)
    # Which labels the run learnt from (rows per label source, as known at labels_as_of), next to the versions.
    about_labels = {k: str(v) for t in lineage for k, v in t.items() if k in ("labels_as_of", "label_sources")}
    mlflow.log_input(dataset, context="training", tags={"tables": versions} | about_labels)


def alias_version(model_name: str, alias: str) -> RegisteredModel | None:
    """The version behind ``alias``, or None if the alias (or the model) does not exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    return RegisteredModel(model_name, str(mv.version), str(mv.run_id))


def set_alias(model: RegisteredModel, alias: str) -> None:
    """Point ``alias`` at the model's version."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(model.name, alias, model.version)


def tag_version(model: RegisteredModel, tags: dict[str, str]) -> None:
    """Set each of ``tags`` on the model version."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model.name, model.version, key, value)


def load_booster(model: RegisteredModel) -> xgb.Booster:
    """The native booster (never the pyfunc wrapper: it is far slower per row)."""
    import mlflow

    return mlflow.xgboost.load_model(model.uri)


def load_recipe(model: RegisteredModel) -> TrainingConfig | None:
    """The training recipe logged as ``recipe_*`` params of the version's run (None for older runs)."""
    import mlflow

    params = mlflow.MlflowClient().get_run(model.run_id).data.params
    recipe = {k.removeprefix(RECIPE_PREFIX): v for k, v in params.items() if k.startswith(RECIPE_PREFIX)}
    return TrainingConfig.from_recipe(recipe) if recipe else None


def load_model_card(model: RegisteredModel) -> ModelCard:
    """The model card logged with the version's training run, with the version and run id filled in."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=model.run_id, artifact_path=MODEL_CARD, dst_path=tmp)
        return ModelCard.from_json(Path(path).read_text()).registered_as(model.version, model.run_id)


@dataclass(frozen=True)
class Registry:
    """The registered model of one deployment, with MLflow tracking configured (see :meth:`connect`)."""

    name: str
    tracking_uri: str

    @classmethod
    def connect(cls, settings: Settings) -> Registry:
        """Point MLflow at the settings' tracking URI and experiment; raise :class:`TrackingUnavailable` if down."""
        configure_mlflow(settings.tracking_uri, settings.experiment, settings.artifact_root)
        return cls(settings.registered_model, settings.tracking_uri)

    def alias(self, alias: str) -> RegisteredModel | None:
        """The version behind ``alias``, or None."""
        return alias_version(self.name, alias)

    def champion(self, why: str = "run train and promote first") -> RegisteredModel:
        """The `champion`; raises :class:`NoSuchAlias` (``why`` says what to do) when there is none."""
        return self._required(CHAMPION, why)

    def challenger(self, why: str = "run train first") -> RegisteredModel:
        """The `challenger`; raises :class:`NoSuchAlias` when there is none."""
        return self._required(CHALLENGER, why)

    def version(self, version: str) -> RegisteredModel:
        """A registered version by number."""
        import mlflow

        found = mlflow.MlflowClient().get_model_version(self.name, version)
        return RegisteredModel(self.name, str(found.version), str(found.run_id))

    def version_tags(self, model: RegisteredModel) -> dict[str, str]:
        """The tags of a registered version."""
        import mlflow

        return dict(mlflow.MlflowClient().get_model_version(self.name, model.version).tags)

    def _required(self, alias: str, why: str) -> RegisteredModel:
        found = self.alias(alias)
        if found is None:
            raise NoSuchAlias(f"no '{alias}' alias on {self.name}: {why}")
        return found
