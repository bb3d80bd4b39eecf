"""Prefect flows: simulate, ingest, train, promote, package, and the pipeline that chains them."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from config.settings import Settings, current_settings
from data.lake import Lake, write_parquet_atomic
from data.simulator import SimulatorConfig, simulate_transactions
from data.sources import SourceError, SourceFormat, read_table, to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from flows.promotion import promote_flow, rollback_flow
from model.policies import PromotionPolicy, ThresholdPolicy
from model.splits import TimeSplit
from validation.docs import build_data_docs, data_docs_markdown, recording_data_docs
from validation.features import FeatureValidationError, ReferenceProfile, reference_profile, validate_features
from validation.gx_runner import SuiteResult
from validation.raw import validate_raw

DEMO_START = date(2026, 4, 1)


@dataclass(frozen=True)
class IngestSummary:
    """``read == accepted + duplicates + rejected``, always."""

    source: str
    read: int
    accepted: int
    duplicates: int
    rejected: int
    partitions: list[str]
    quarantine: str | None


__all__ = [
    "ingest_flow",
    "package_flow",
    "pipeline_flow",
    "promote_flow",
    "rollback_flow",
    "simulate_flow",
    "train_and_promote_flow",
    "train_flow",
]


def _settings() -> Settings:
    return current_settings()


@task(cache_policy=NO_CACHE)
def simulate_task(config: SimulatorConfig, out: Path) -> Path:
    """Simulate transactions for ``config``, write them atomically to ``out`` and return that path."""
    frame = simulate_transactions(config)
    write_parquet_atomic(frame, out)
    return out


@flow(name="simulate", log_prints=True)
def simulate_flow(
    customers: int = 1_000,
    terminals: int = 2_000,
    days: int = 120,
    start: date | None = DEMO_START,
    seed: int = 42,
    origin: date = DEMO_START,
    drift: list[str] | None = None,
) -> str:
    """Generate a seeded transaction file into the home's inbox; returns its path.

    ``start=None`` is live mode: the day after the lake's newest partition (``origin`` for an
    empty lake). The world (customers, terminals, ongoing compromises) is the same for the same
    ``customers``, ``terminals``, ``seed`` and ``origin``, so appended days continue it.
    ``drift`` names presets from ``data.simulator.DRIFT_PRESETS`` applied to these days.
    """
    settings = _settings()
    if start is None:
        newest = Lake(settings.home_dir).newest_day()
        start = origin if newest is None else newest + timedelta(days=1)
    config = SimulatorConfig.scaled(customers, terminals, days, start_date=start, seed=seed, origin=origin)
    config = config.with_drift(drift or ())
    path = simulate_task(config, settings.simulated_path(start, days, customers, seed, config.drift))
    drifted = f" with drift {', '.join(config.drift)}" if config.drift else ""
    print(f"simulated {customers} customers, {start} + {days} days{drifted} -> {path}")
    return str(path)


def _retry_unless_bad_file(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O errors (a file still being copied, a flaky mount), not a file that is simply unreadable."""
    try:
        state.result()
    except SourceError:
        return False
    except Exception:  # any other failure is worth a retry
        return True
    return True


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=_retry_unless_bad_file)
def read_source_task(path: Path) -> pl.DataFrame:
    """Read the CSV or Parquet source file at ``path``."""
    return read_table(path)


@flow(name="ingest", log_prints=True)
def ingest_flow(source: str, source_format: str = "auto") -> dict[str, Any]:
    """Read a file, validate it with the raw GX suite, land accepted rows, quarantine the rest."""
    settings = _settings()
    path = Path(source)
    lake = Lake(settings.home_dir)
    mapped = to_canonical_frame(read_source_task(path), SourceFormat(source_format))
    # Repeated ids inside the file: the first occurrence competes, later ones are duplicates.
    repeat = pl.col("transaction_id").is_not_null() & ~pl.col("transaction_id").is_first_distinct()
    in_file_duplicates = mapped.filter(repeat).height
    with recording_data_docs(settings.data_docs_dir):
        validation = validate_raw(mapped.filter(~repeat))
    publish_data_docs(settings.data_docs_dir, [validation.suite])
    landing = lake.land(validation.accepted)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    quarantine = lake.quarantine(validation.rejected, f"{path.stem}-{digest}")
    summary = IngestSummary(
        source=str(path),
        read=mapped.height,
        accepted=landing.landed,
        duplicates=landing.duplicates + in_file_duplicates,
        rejected=validation.rejected.height,
        partitions=list(landing.partitions),
        quarantine=str(quarantine) if quarantine else None,
    )
    if summary.read != summary.accepted + summary.duplicates + summary.rejected:
        raise RuntimeError(f"row accounting does not balance: {summary}")
    create_table_artifact(
        key="ingest-report",
        table=[{k: v for k, v in asdict(summary).items() if k != "partitions"}],
        description=f"Ingest of {path.name}: read = accepted + duplicates + rejected",
    )
    print(
        f"ingest {path.name}: read {summary.read} = accepted {summary.accepted} + duplicates "
        f"{summary.duplicates} + rejected {summary.rejected} ({len(summary.partitions)} partitions written)"
    )
    return asdict(summary)


def features_digest(lineage: list[dict[str, str]], spec: FeatureSpec) -> str:
    """Cache key of a feature table: the lake partitions' SHA-256, the spec, and the feature code itself."""
    import json

    import features.definitions

    code = hashlib.sha256(Path(features.definitions.__file__).read_bytes()).hexdigest()
    parts = "".join(f"{p['partition']}:{p['sha256']};" for p in lineage)
    return hashlib.sha256(f"{parts}|{json.dumps(spec.to_dict(), sort_keys=True)}|{code}".encode()).hexdigest()


@task(
    cache_key_fn=lambda _context, parameters: f"features-{parameters['digest']}",
    cache_expiration=timedelta(days=7),
    persist_result=True,
    result_serializer="compressed/pickle",
)
def build_features_task(transactions: pl.DataFrame, spec: FeatureSpec, digest: str) -> pl.DataFrame:
    """Compute the feature columns of ``spec`` for the transactions.

    Cached by ``digest`` (:func:`features_digest`), persisted under the Prefect home: retraining on an
    unchanged lake window with the same spec and feature code reuses the table instead of recomputing it.
    """
    return compute_features(transactions, spec)


def publish_data_docs(docs_dir: Path, results: list[SuiteResult]) -> Path:
    """Rebuild the Data Docs index and link it, with these runs' pages, as the `data-docs` artifact."""
    index = build_data_docs(docs_dir)
    create_markdown_artifact(key="data-docs", markdown=data_docs_markdown(index, results))
    return index


@task(cache_policy=NO_CACHE)
def feature_gate_task(
    features: pl.DataFrame, spec: FeatureSpec, reference: ReferenceProfile | None, docs_dir: Path
) -> SuiteResult:
    """Run the GX feature suite (with ``reference`` bounds when given); raise, after publishing it, if it fails."""
    result = validate_features(features, spec, reference, docs_dir=docs_dir)
    publish_data_docs(docs_dir, [result])
    if not result.success:
        raise FeatureValidationError(result)
    return result


@dataclass(frozen=True)
class ChampionBasis:
    """What a new training takes from the current champion: its reference profile and its recipe."""

    version: str
    reference: ReferenceProfile | None
    recipe: Any  # model.training.TrainingConfig | None (imported lazily)


def champion_basis(model_name: str) -> ChampionBasis | None:
    """The champion's reference profile (from its card) and recipe (from its MLflow run); None without one."""
    from model.registry import CHAMPION, alias_version, load_model_card, load_recipe

    champion = alias_version(model_name, CHAMPION)
    if champion is None:
        return None
    card = load_model_card(champion)
    reference = ReferenceProfile.from_dict(card.reference) if card.reference is not None else None
    return ChampionBasis(champion.version, reference, load_recipe(champion))


@flow(name="train", log_prints=True)
def train_flow(
    start: date | None = None,
    end: date | None = None,
    label_delay_days: int | None = None,
    valid_days: int = 7,
    test_days: int = 7,
    seed: int = 42,
    check_reference: bool = True,
    from_champion: bool = True,
    search_budget_s: float = 0.0,
    threshold_policy: ThresholdPolicy = ThresholdPolicy(),  # noqa: B008 (a frozen model: a safe default)
) -> dict[str, Any]:
    """Features from the lake window, GX feature gate, XGBoost on a time split, MLflow run, `challenger`.

    Labels are known up to ``delay`` days before the newest transaction in the lake, so the split
    (train | gap | valid | gap | test, gaps = the delay) ends there; ``start``/``end`` narrow the
    window. The gate checks nulls and ranges and, with ``check_reference`` and a champion, that the
    features (after their warm-up) sit within the bounds of the champion's training window: a
    broken upstream (amounts in cents, a stuck terminal feed) stops training with the failing
    expectations named, and nothing is registered. Set ``check_reference=False`` only after
    confirming that the shift is real. The new model's own reference profile is saved in its card.

    With ``from_champion`` the recipe (XGBoost parameters) starts from the champion's MLflow run;
    ``search_budget_s > 0`` searches around it on the validation window within that many seconds.
    The threshold is chosen on the validation window by ``threshold_policy`` (cost, budget, f1).
    """
    from model.registry import Registry, log_training_run
    from model.training import TrainingConfig, train_model

    settings = _settings()
    lake = Lake(settings.home_dir)
    transactions = lake.read(start, end)
    if transactions.height == 0:
        raise ValueError(f"the lake at {lake.transactions_dir} has no transactions in {start}..{end}; ingest first")
    Registry.connect(settings)
    spec = FeatureSpec(label_delay_days=settings.label_delay_days if label_delay_days is None else label_delay_days)
    features = build_features_task(transactions, spec, features_digest(lake.lineage(start, end), spec))
    basis = champion_basis(settings.registered_model) if check_reference or from_champion else None
    reference = basis.reference if basis and check_reference else None
    if reference is not None:
        print(f"feature gate: reference bounds of champion v{basis.version}'s training window")  # type: ignore[union-attr]
    gate = feature_gate_task(features, spec, reference, settings.data_docs_dir)

    days = features["tx_datetime"].dt.date()
    newest = lake.newest_day()
    labelled_until = min(days.max(), newest - timedelta(days=spec.label_delay_days))  # type: ignore[operator,type-var]
    split = TimeSplit.ending_at(labelled_until, days.min(), spec.label_delay_days, valid_days, test_days)  # type: ignore[arg-type]
    config = TrainingConfig(seed=seed)
    recipe_source = "default recipe"
    if from_champion and basis is not None and basis.recipe is not None:
        config, recipe_source = basis.recipe.with_changes(seed=seed), f"champion v{basis.version}'s recipe"
    tags = {"fraudops.recipe_source": recipe_source}
    if search_budget_s > 0:
        found = search_task(features, spec, split, config, search_budget_s, seed)
        config = found.best
        tags |= {"fraudops.search_trials": str(len(found.trials)), "fraudops.search_budget_s": str(search_budget_s)}
        recipe_source += f", searched ({len(found.trials)} trials in {search_budget_s:g} s)"
    print(f"training from the {recipe_source}")
    result = task(train_model, cache_policy=NO_CACHE)(features, spec, split, config, threshold_policy)
    card = result.model_card()
    # Profile the training rows; the warm-up is counted from the first transaction read, as the features were.
    try:
        profile = reference_profile(split.select(features, "train"), spec, features["tx_datetime"].min())
        card = card.with_reference(profile.to_dict())
    except ValueError as error:  # a training window shorter than the feature warm-up
        get_run_logger().warning("no reference profile saved (%s): the next training runs without its bounds", error)
    lineage = lake.lineage(split.train_start, split.test_end)
    registered = log_training_run(
        result,
        settings.registered_model,
        lineage,
        extra_tags=tags,
        lake_uri=lake.transactions_dir.as_uri(),
        card=card,
        validation={"feature_gate": gate.to_dict()},
    )
    print(
        f"trained {settings.registered_model} v{registered.version} on {result.rows['train']} rows "
        f"({split.train_start}..{split.train_end}): test AUC {result.metrics['test_auc']:.3f}, "
        f"AP {result.metrics['test_ap']:.3f}; baseline AP {result.baseline_metrics['test_ap']:.3f}"
    )
    return {
        "version": registered.version,
        "run_id": registered.run_id,
        "metrics": result.metrics,
        "baseline_metrics": result.baseline_metrics,
        "rows": result.rows,
        "split": split.to_dict(),
        "threshold": result.threshold,
        "recipe": result.config.recipe(),
        "recipe_source": recipe_source,
    }


@task(cache_policy=NO_CACHE)
def search_task(
    features: pl.DataFrame, spec: FeatureSpec, split: TimeSplit, base: Any, budget_s: float, seed: int
) -> Any:
    """Search XGBoost parameters around ``base`` on the split's validation window, within ``budget_s``."""
    from model.search import search

    return search(split.select(features, "train"), split.select(features, "valid"), spec, base, budget_s, seed)


@flow(name="package", log_prints=True)
def package_flow() -> dict[str, str]:
    """Champion -> BentoML model (booster, card, online state, lineage labels) -> Bento."""
    from flows.packaging import build_bento, save_bento_model
    from model.registry import Registry, load_booster, load_model_card

    settings = _settings()
    champion = Registry.connect(settings).champion()
    card = load_model_card(champion)
    spec = card.spec
    state = MemoryFeatureStore.from_transactions(Lake(settings.home_dir).read(), spec).to_frame()
    labels = {
        "mlflow_model": settings.registered_model,
        "mlflow_version": champion.version,
        "mlflow_run_id": champion.run_id,
    }
    model_tag = save_bento_model(settings.bento_model, champion.version, load_booster(champion), card, state, labels)
    bento_tag = task(build_bento, cache_policy=NO_CACHE)(model_tag, champion.version)
    print(f"packaged champion v{champion.version}: model {model_tag}, bento {bento_tag} ({state.height} state rows)")
    return {"model_tag": model_tag, "bento_tag": bento_tag, "version": champion.version}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(
    customers: int = 1_000, terminals: int = 2_000, days: int = 120, start: date = DEMO_START, seed: int = 42
) -> dict[str, Any]:
    """The demo lifecycle: simulate -> ingest -> train -> promote -> package."""
    source = simulate_flow(customers, terminals, days, start, seed)
    ingest = ingest_flow(source)
    training = train_flow(seed=seed)
    promotion = promote_flow()
    package = package_flow()
    get_run_logger().info("pipeline done: model v%s, bento %s", package["version"], package["bento_tag"])
    return {"ingest": ingest, "train": training, "promote": promotion, "package": package}


@flow(name="train-and-promote", log_prints=True)
def train_and_promote_flow(
    seed: int = 42,
    search_budget_s: float = 120.0,
    policy: PromotionPolicy = PromotionPolicy(),  # noqa: B008 (a frozen model: a safe default)
) -> dict[str, Any]:
    """Scheduled retrain: train, gate against the champion with ``policy``, package when promoted.

    Training starts from the champion's recipe on all labelled lake history and searches around it
    for ``search_budget_s`` seconds.
    """
    training = train_flow(seed=seed, search_budget_s=search_budget_s)
    promotion = promote_flow(policy=policy)
    package = package_flow() if promotion["promote"] else None
    return {"train": training, "promote": promotion, "package": package}
