"""Prefect flows: simulate, ingest, train, promote, package, and the pipeline that chains them."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from config.settings import Settings, current_settings
from data.labels import data_clock, labels_as_of
from data.lake import Lake, write_parquet_atomic
from data.live import LiveLabelConfig
from data.profiles import Profile, ProfileError, load_profile, profile_from_dict
from data.simulator import SimulatorConfig, simulate_transactions
from data.sources import (
    AUTO,
    LABELS,
    SourceError,
    is_label_file,
    read_table,
    resolve_profile,
    to_canonical_frame,
    to_label_frame,
)
from features.definitions import FeatureSpec, compute_features
from features.stores.memory import MemoryFeatureStore
from flows.promotion import promote_flow, rollback_flow
from model.policies import PromotionPolicy, ThresholdPolicy
from model.splits import TimeSplit
from validation.docs import build_data_docs, data_docs_markdown, recording_data_docs
from validation.features import FeatureValidationError, ReferenceProfile, reference_profile, validate_features
from validation.gx_runner import SuiteResult
from validation.raw import validate_labels, validate_raw

DEMO_START = date(2026, 4, 1)


@dataclass(frozen=True)
class IngestSummary:
    """``read == accepted + duplicates + rejected``, always.

    ``kind`` is ``transactions`` or ``labels`` (a label file: accepted = label events landed). The label
    counts are those of the file's label events (a transaction file's own ``is_fraud`` included);
    ``service_log`` the counts of draining the service's log (:func:`data.drain.drain_service_log`).
    """

    source: str
    read: int
    accepted: int
    duplicates: int
    rejected: int
    partitions: list[str]
    quarantine: str | None
    kind: str = "transactions"
    labels_landed: int = 0
    label_duplicates: int = 0
    contradictions: int = 0
    unknown_transactions: int = 0
    service_log: dict[str, int] | None = None


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


def _champion_scores(settings: Settings, lake: Lake, day: date, day_file: Path) -> tuple[Any, str | None]:
    """The champion's scores of one day's transactions (with the lake's history before it); (None, None) without one.

    The batch scoring's own code (:func:`flows.scoring.score_period`) on the lake's days before ``day``
    (as far back as the champion's features look, labels as the lake knows them) followed by the day's
    transactions as ``day_file`` delivers them (no labels), whether or not they have landed.
    """
    from data.contract import CANONICAL_COLUMNS, CANONICAL_SCHEMA
    from flows.scoring import history_labels, score_period
    from model.registry import CHAMPION, Registry, alias_version, load_booster, load_model_card

    Registry.connect(settings)
    champion = alias_version(settings.registered_model, CHAMPION)
    if champion is None:
        return None, None
    transactions = pl.read_parquet(day_file)
    if transactions.height == 0:
        columns = ("transaction_id", "tx_datetime", "customer_id")
        return transactions.select(columns).with_columns(score=pl.lit(None, pl.Float64)), champion.version
    card = load_model_card(champion)
    history = lake.read(day - timedelta(days=card.spec.history_days), day - timedelta(days=1))
    unlabelled = transactions.with_columns(pl.lit(None, CANONICAL_SCHEMA["is_fraud"]).alias("is_fraud"))
    frame = pl.concat([history.select(CANONICAL_COLUMNS), unlabelled.select(CANONICAL_COLUMNS)])
    labels = history_labels(lake, history)  # each known from its own time: what the service's state holds
    scores = score_period(frame, [day], card.spec, load_booster(champion), card.threshold, champion.version, labels)
    return scores, champion.version


def _simulate_live_day(
    settings: Settings, config: SimulatorConfig, start: date | None, live: LiveLabelConfig, land: bool
) -> dict[str, Any]:
    """Live mode of :func:`simulate_flow`: one day without labels, plus the label events due by its end.

    The files are written (and landed) first, so the champion ranks the day's cards with every label known
    by its end; then the day's own events are scheduled from that ranking (``data.live``).
    """
    from data.live import LiveState, begin_live_day, day_config, finish_live_day, live_dir, next_live_day

    lake = Lake(settings.home_dir, settings.label_delay_days)
    state = LiveState(live_dir(settings.home_dir, config))
    lake_newest, emitted = lake.newest_day(), state.newest_day()
    following = next_live_day(lake_newest, state, config.world_origin)
    # A run stopped after landing its day but before recording it: --start that day replays it (idempotent).
    replay = start is not None and start == lake_newest and (emitted is None or start > emitted)
    if start is not None and start < following and not replay:
        raise ValueError(
            f"live mode emits new days only: {start} is before {following}, the next one "
            f"(or the lake's newest day {lake_newest}, to replay a run that stopped before recording it)"
        )
    day = start or following
    truth = simulate_transactions(day_config(config, day))
    stem = f"live-{day}-{config.n_customers}c-seed{config.seed}" + "".join(f"-{name}" for name in config.drift)
    inbox = settings.home_dir / "inbox"
    emission = begin_live_day(state, truth, day, inbox / f"{stem}.parquet", inbox / f"{stem}-labels.parquet")
    ingested: dict[str, Any] = {"transactions": None, "labels": None}
    if land:
        if truth.height:  # an empty file is refused by ingestion
            ingested["transactions"] = ingest_flow(str(emission.transactions_path))
        if emission.labels_path is not None:
            ingested["labels"] = ingest_flow(str(emission.labels_path))
    scores, version = _champion_scores(settings, lake, day, emission.transactions_path)
    report = finish_live_day(state, emission, live, scores, version).to_dict()
    if scores is None:
        print(f"{day}: no champion yet, so no investigations: its frauds come back as chargebacks only")
    else:
        print(
            f"{day}: champion v{version} ranked the top {report['alerted_cards']} cards; {report['investigated']} "
            f"transactions ({report['investigated_frauds']} frauds) get analyst labels "
            f"{live.investigation_min_days:g}-{live.investigation_max_days:g} days after the day's end"
        )
    print(
        f"{day}: {report['transactions']} transactions without labels -> {report['transactions_path']}; "
        f"{report['emitted']} label events due by its end ({report['emitted_analyst']} analyst, "
        f"{report['emitted_chargeback']} chargeback) -> {report['labels_path'] or 'no label file'}; "
        f"{report['pending']} events pending"
    )
    create_table_artifact(
        key="simulate-live",
        table=[{k: v for k, v in report.items() if not k.endswith("_path")}],
        description=f"Live day {day}: transactions without labels, label events due by its end",
    )
    return {**report, "ingest": ingested}


@flow(name="simulate", log_prints=True)
def simulate_flow(
    customers: int = 1_000,
    terminals: int = 2_000,
    days: int = 120,
    start: date | None = DEMO_START,
    seed: int = 42,
    origin: date = DEMO_START,
    drift: list[str] | None = None,
    live: LiveLabelConfig | None = None,
    land: bool = False,
) -> str | dict[str, Any]:
    """Generate a seeded transaction file into the home's inbox; returns its path.

    ``start=None`` continues the world: the day after the lake's newest partition (``origin`` for an
    empty lake). The world (customers, terminals, ongoing compromises) is the same for the same
    ``customers``, ``terminals``, ``seed`` and ``origin``, so appended days continue it.
    ``drift`` names presets from ``data.simulator.DRIFT_PRESETS`` applied to these days.

    With ``live`` (:class:`data.live.LiveLabelConfig`), production-like live mode (``days`` must be 1):
    the next day (after the lake's newest and the newest live day emitted; or ``start``) without labels,
    and a label file of the events due by its end (``data.live``); returns :class:`data.live.LiveDay`'s
    fields and, with ``land``, the ``ingest`` summaries of both files (transactions first).
    ``land`` ingests the file(s) right away.
    """
    settings = _settings()
    if live is not None:
        if days != 1:
            raise ValueError(f"live mode emits one day per run, not {days}")
        config = SimulatorConfig.scaled(
            customers, terminals, 1, start_date=start or origin, seed=seed, origin=origin
        ).with_drift(drift or ())
        return _simulate_live_day(settings, config, start, live, land)
    if start is None:
        newest = Lake(settings.home_dir).newest_day()
        start = origin if newest is None else newest + timedelta(days=1)
    config = SimulatorConfig.scaled(customers, terminals, days, start_date=start, seed=seed, origin=origin)
    config = config.with_drift(drift or ())
    path = simulate_task(config, settings.simulated_path(start, days, customers, seed, config.drift))
    drifted = f" with drift {', '.join(config.drift)}" if config.drift else ""
    print(f"simulated {customers} customers, {start} + {days} days{drifted} -> {path}")
    if land:
        ingest_flow(str(path))
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
def ingest_flow(source: str, profile: str = AUTO) -> dict[str, Any]:
    """Read a file, validate it, land accepted rows, quarantine the rest; then drain the service's log.

    A transaction file goes through the raw GX suite into the transactions table (its ``is_fraud`` values
    as ``dataset`` label events); a label file (``transaction_id, is_fraud[, label_time][, source]...``,
    detected from its columns or ``profile="labels"``) is checked row by row into the labels table.
    ``profile``: a shipped profile's name, a profile file, or ``auto`` (detected from the header); the
    lake records it, and refuses a file whose profile gives other features.
    """
    settings = _settings()
    path = Path(source)
    lake = Lake(settings.home_dir, settings.label_delay_days)
    raw = read_source_task(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    if profile == LABELS or (profile == AUTO and is_label_file(raw.columns)):
        summary = _ingest_labels(lake, path, raw, f"{path.stem}-{digest}")
    else:
        try:
            chosen = resolve_profile(raw.columns, profile)
        except ProfileError as exc:
            raise SourceError(str(exc)) from None
        lake = Lake(settings.home_dir, label_delay(settings, chosen))
        lake.check_profile(chosen)  # before anything lands; recorded once the file mapped through it
        summary = _ingest_transactions(lake, path, raw, chosen, f"{path.stem}-{digest}", settings.data_docs_dir)
    if summary.read != summary.accepted + summary.duplicates + summary.rejected:
        raise RuntimeError(f"row accounting does not balance: {summary}")
    if settings.feedback_path.exists():
        from data.drain import drain_service_log

        summary = replace(summary, service_log=drain_service_log(lake, settings.feedback_path))
    create_table_artifact(
        key="ingest-report",
        table=[{k: v for k, v in asdict(summary).items() if k not in ("partitions", "service_log")}],
        description=f"Ingest of {path.name}: read = accepted + duplicates + rejected",
    )
    print(
        f"ingest {path.name}: read {summary.read} = accepted {summary.accepted} + duplicates "
        f"{summary.duplicates} + rejected {summary.rejected} ({len(summary.partitions)} partitions written); "
        f"labels landed {summary.labels_landed}, duplicates {summary.label_duplicates}, contradictions "
        f"{summary.contradictions}, unknown transactions {summary.unknown_transactions}"
    )
    if summary.service_log:
        print(f"service log drained: {summary.service_log}")
    return asdict(summary)


def _ingest_transactions(
    lake: Lake, path: Path, raw: pl.DataFrame, profile: Profile, batch_name: str, docs_dir: Path
) -> IngestSummary:
    """A transaction file: map through its profile, raw GX suite, land (with its labels), quarantine."""
    mapped = to_canonical_frame(raw, profile)
    lake.record_profile(profile)
    # Repeated ids inside the file: the first occurrence competes, later ones are duplicates.
    repeat = pl.col("transaction_id").is_not_null() & ~pl.col("transaction_id").is_first_distinct()
    in_file_duplicates = mapped.filter(repeat).height
    with recording_data_docs(docs_dir):
        validation = validate_raw(mapped.filter(~repeat))
    publish_data_docs(docs_dir, [validation.suite])
    landing = lake.land(validation.accepted)
    quarantine = lake.quarantine(validation.rejected, batch_name)
    return IngestSummary(
        source=str(path),
        read=mapped.height,
        accepted=landing.landed,
        duplicates=landing.duplicates + in_file_duplicates,
        rejected=validation.rejected.height,
        partitions=list(landing.partitions),
        quarantine=str(quarantine) if quarantine else None,
        labels_landed=landing.labels_landed,
        label_duplicates=landing.label_duplicates,
    )


def _ingest_labels(lake: Lake, path: Path, raw: pl.DataFrame, batch_name: str) -> IngestSummary:
    """A label file: check each row (reasons to quarantine), land the events in the labels table."""
    parsed = to_label_frame(raw)
    # A row without a label_time was given when the file was written: its modification time, so that
    # ingesting the same file again lands nothing new (and cannot outrank a later verdict).
    written = datetime.fromtimestamp(int(path.stat().st_mtime), UTC)
    validation = validate_labels(parsed, lake.transaction_times(parsed["transaction_id"]), arrived=written)
    landing = lake.land_labels(validation.accepted)
    quarantine = lake.quarantine(validation.rejected, batch_name, kind="labels")
    return IngestSummary(
        source=str(path),
        read=parsed.height,
        accepted=landing.landed,
        duplicates=landing.duplicates,
        rejected=validation.rejected.height,
        partitions=[],
        quarantine=str(quarantine) if quarantine else None,
        kind="labels",
        labels_landed=landing.landed,
        label_duplicates=landing.duplicates,
        contradictions=landing.contradictions,
        unknown_transactions=landing.unknown_transactions,
    )


def label_delay(settings: Settings, profile: Profile | None) -> int:
    """Days until a dataset's own labels are known: FRAUDOPS_LABEL_DELAY_DAYS when set, else the profile's, else 7."""
    if "label_delay_days" in settings.model_fields_set or profile is None or profile.split.label_delay_days is None:
        return settings.label_delay_days
    return profile.split.label_delay_days


def features_digest(lineage: list[dict[str, str]], spec: FeatureSpec) -> str:
    """Cache key of a feature table: the lake tables' versions and window, the spec, and the feature code itself."""
    import json

    import features.definitions

    code = hashlib.sha256(Path(features.definitions.__file__).read_bytes()).hexdigest()
    parts = json.dumps(lineage, sort_keys=True)
    return hashlib.sha256(f"{parts}|{json.dumps(spec.to_dict(), sort_keys=True)}|{code}".encode()).hexdigest()


@task(
    cache_key_fn=lambda _context, parameters: f"features-{parameters['digest']}",
    cache_expiration=timedelta(days=7),
    persist_result=True,
    result_serializer="compressed/pickle",
)
def build_features_task(
    transactions: pl.DataFrame, spec: FeatureSpec, digest: str, labels: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Compute the feature columns of ``spec`` for the transactions (terminal risk from ``labels``' events).

    Cached by ``digest`` (:func:`features_digest`, which must cover the labels' version and time),
    persisted under the Prefect home: retraining on an unchanged lake window with the same spec and
    feature code reuses the table instead of recomputing it.
    """
    return compute_features(transactions, spec, labels=labels)


def read_training_data(
    lake: Lake, pinned: LakeSnapshot, start: date | None, end: date | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The transactions of ``[start, end]`` with labels as known at ``pinned.as_of``, and the label events then known.

    ``ValueError`` when there are no transactions there.
    """
    transactions = None
    if pinned.transactions >= 0:
        matured_at = data_clock(lake.newest_time(pinned.transactions), pinned.as_of)
        transactions = lake.read(start, end, as_of=pinned.as_of, versions=pinned.versions, matured_at=matured_at)
    if transactions is None or transactions.height == 0:
        raise ValueError(f"the lake at {lake.transactions_dir} has no transactions in {start}..{end}; ingest first")
    labels = lake.read_labels(as_of=pinned.as_of, version=pinned.labels if pinned.labels >= 0 else None)
    return transactions, labels


def training_split(
    features: pl.DataFrame,
    lake: Lake,
    pinned: LakeSnapshot,
    spec: FeatureSpec,
    valid_days: int,
    test_days: int,
    hours: tuple[int, int] | None = None,
) -> TimeSplit:
    """Train | gap | valid | gap | test, the test ending a label delay before the lake's newest day (at ``pinned``).

    ``hours`` (valid, test): an hourly split instead (a dataset of a few days), ending a label delay before
    the newest transaction.
    """
    newest_time = lake.newest_time(pinned.transactions)
    assert newest_time is not None
    if hours is not None:
        times = features["tx_datetime"]
        until = min(times.max(), newest_time - timedelta(days=spec.label_delay_days))  # type: ignore[type-var]
        return TimeSplit.ending_at_hours(until, times.min(), spec.label_delay_days * 24, *hours)  # type: ignore[arg-type]
    days = features["tx_datetime"].dt.date()
    labelled_until = min(days.max(), newest_time.date() - timedelta(days=spec.label_delay_days))  # type: ignore[type-var]
    return TimeSplit.ending_at(labelled_until, days.min(), spec.label_delay_days, valid_days, test_days)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LakeSnapshot:
    """What a training run reads: the Delta tables' versions and the time its labels are known at.

    Written as ``transactions=N,labels=M,as_of=ISO`` (the run's ``fraudops.as_of_version`` tag);
    ``fraudops train --as-of-version`` takes it back to read exactly the same rows and labels.
    """

    transactions: int
    labels: int
    as_of: datetime

    @classmethod
    def now(cls, lake: Lake) -> LakeSnapshot:
        """The lake's current table versions, labels as known now."""
        current = lake.versions()
        return cls(current["transactions"], current["labels"], datetime.now(UTC))

    @property
    def versions(self) -> dict[str, int]:
        """The table versions, as ``Lake.read`` takes them."""
        return {"transactions": self.transactions, "labels": self.labels}

    def __str__(self) -> str:
        return f"transactions={self.transactions},labels={self.labels},as_of={self.as_of.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> LakeSnapshot:
        """The inverse of ``str``; ValueError naming the expected form when malformed."""
        expected = "expected transactions=N,labels=M,as_of=ISO-TIME (a training run's fraudops.as_of_version tag)"
        fields = dict(part.strip().partition("=")[::2] for part in text.split(",") if part.strip())
        if set(fields) != {"transactions", "labels", "as_of"}:
            raise ValueError(f"{expected}, got {text!r}")
        try:
            as_of = datetime.fromisoformat(fields["as_of"])
            return cls(int(fields["transactions"]), int(fields["labels"]), as_of.replace(tzinfo=as_of.tzinfo or UTC))
        except ValueError:
            raise ValueError(f"{expected}, got {text!r}") from None


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
    valid_days: int | None = None,
    test_days: int | None = None,
    seed: int = 42,
    check_reference: bool = True,
    from_champion: bool = True,
    search_budget_s: float = 0.0,
    threshold_policy: ThresholdPolicy = ThresholdPolicy(),  # noqa: B008 (a frozen model: a safe default)
    snapshot: str | None = None,
) -> dict[str, Any]:
    """Features from the lake window, GX feature gate, XGBoost on a time split, MLflow run, `challenger`.

    Labels are read as known now (the run's start): a transaction's label is its newest label event by
    then, else genuine once ``delay`` days old, else pending (not trained on); terminal risk reads each
    label from its own label time. The split (train | gap | valid | gap | test, gaps = the delay) ends
    ``delay`` days before the lake's newest day; ``start``/``end`` narrow the window. ``snapshot``
    (:class:`LakeSnapshot` text, a run's ``fraudops.as_of_version`` tag) reads those table versions with
    labels as known at that time: the same training set as that run.

    The gate checks nulls and ranges and, with ``check_reference`` and a champion, that the
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
    data_profile = Lake(settings.home_dir).profile() or load_profile("canonical")
    delay = label_delay(settings, data_profile) if label_delay_days is None else label_delay_days
    lake = Lake(settings.home_dir, delay)
    spec = FeatureSpec.for_profile(data_profile, label_delay_days=delay)
    if end is None and data_profile.split.end is not None:
        end = data_profile.split.end
        print(f"training on data up to {end} (the {data_profile.name} profile's split end)")
    pinned = LakeSnapshot.parse(snapshot) if snapshot is not None else LakeSnapshot.now(lake)
    as_of, versions = pinned.as_of, pinned.versions
    transactions, labels = read_training_data(lake, pinned, start, end)
    Registry.connect(settings)
    lineage = [{**t, "version": str(versions[t["table"]])} for t in lake.lineage(start, end)]
    # Features read each label from its own time, so events after the newest transaction change none of
    # them: the table is the same while the versions are, and it is cached across runs (until then).
    newest = transactions["tx_datetime"].max()
    digest = features_digest([*lineage, {"labels_as_of": min(as_of, newest).isoformat()}], spec)  # type: ignore[type-var,union-attr]
    # The cached table holds the features only; the target (labels as known now) joins it afterwards.
    features = build_features_task(transactions.drop("is_fraud"), spec, digest, labels).join(
        transactions.select("transaction_id", "tx_datetime", "is_fraud"),
        on=["transaction_id", "tx_datetime"],
        how="left",
        maintain_order="left",
    )
    basis = champion_basis(settings.registered_model) if check_reference or from_champion else None
    reference = basis.reference if basis and check_reference else None
    if reference is not None:
        print(f"feature gate: reference bounds of champion v{basis.version}'s training window")  # type: ignore[union-attr]
    gate = feature_gate_task(features, spec, reference, settings.data_docs_dir)

    hourly = data_profile.split
    hours = (
        (hourly.valid_hours, hourly.test_hours) if hourly.hourly and valid_days is None and test_days is None else None
    )
    valid_days = hourly.valid_days if valid_days is None else valid_days
    test_days = hourly.test_days if test_days is None else test_days
    split = training_split(features, lake, pinned, spec, valid_days, test_days, hours)  # type: ignore[arg-type]
    config = TrainingConfig(seed=seed)
    recipe_source = "default recipe"
    if from_champion and basis is not None and basis.recipe is not None:
        config, recipe_source = basis.recipe.with_changes(seed=seed), f"champion v{basis.version}'s recipe"
    tags = {"fraudops.recipe_source": recipe_source, "fraudops.profile": data_profile.name}
    if search_budget_s > 0:
        found = search_task(features, spec, split, config, search_budget_s, seed)
        config = found.best
        tags |= {"fraudops.search_trials": str(len(found.trials)), "fraudops.search_budget_s": str(search_budget_s)}
        recipe_source += f", searched ({len(found.trials)} trials in {search_budget_s:g} s)"
    print(f"training from the {recipe_source}")
    result = task(train_model, cache_policy=NO_CACHE)(features, spec, split, config, threshold_policy)
    card = result.model_card().model_copy(update={"profile": data_profile.model_dump(mode="json")})
    # Profile the training rows; the warm-up is counted from the first transaction read, as the features were.
    try:
        profile = reference_profile(split.select(features, "train"), spec, features["tx_datetime"].min())
        card = card.with_reference(profile.to_dict())
    except ValueError as error:  # a training window shorter than the feature warm-up
        get_run_logger().warning("no reference profile saved (%s): the next training runs without its bounds", error)
    label_counts = split_label_sources(features, split, labels, as_of)
    tags |= {f"fraudops.labels.{source}": str(n) for source, n in label_counts.items()}
    tags["fraudops.as_of_version"] = str(pinned)
    about_labels = {"labels_as_of": as_of.isoformat(), "label_sources": _counts_text(label_counts)}
    lineage = [
        {**t, "version": str(versions[t["table"]])} | (about_labels if t["table"] == "labels" else {})
        for t in lake.lineage(split.train_start, split.test_end)
    ]
    print(f"labels as known at {as_of:%Y-%m-%d %H:%M} UTC in the split: {_counts_text(label_counts)}")
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


def split_label_sources(
    features: pl.DataFrame, split: TimeSplit, labels: pl.DataFrame, as_of: datetime
) -> dict[str, int]:
    """Where the split's labels came from: rows per label source, and ``matured`` (genuine by age, no event)."""
    used = pl.concat([split.select(features, part).select("transaction_id") for part in ("train", "valid", "test")])
    current = labels_as_of(labels, as_of).join(used, on="transaction_id", how="semi")
    counts = {str(k): int(v) for k, v in current.group_by("source").len().sort("source").iter_rows()}
    return counts | {"matured": used.height - current.height}


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items())


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
    from flows.packaging import build_bento, request_examples, save_bento_model
    from model.registry import Registry, load_booster, load_model_card

    settings = _settings()
    champion = Registry.connect(settings).champion()
    card = load_model_card(champion)
    spec = card.spec
    lake = Lake(settings.home_dir, spec.label_delay_days)
    # A profile that ends its data early (data.profiles.SplitDays.end) serves the world as of that day.
    profile = profile_from_dict(card.profile, "model card") if card.profile else None
    pinned_end = profile.split.end if profile is not None else None
    # Each transaction's newest label with its label time: terminal risk reads it from then on, as offline.
    history = lake.read_transactions(end=pinned_end)
    state = MemoryFeatureStore.from_transactions(history, spec, lake.read_labels()).to_frame()
    data_end = pinned_end or lake.newest_day()
    recent = None if data_end is None else data_end - timedelta(days=spec.history_days)
    examples = request_examples(lake.read(start=recent, end=data_end), profile)
    labels = {
        "mlflow_model": settings.registered_model,
        "mlflow_version": champion.version,
        "mlflow_run_id": champion.run_id,
    }
    booster = load_booster(champion)
    model_tag = save_bento_model(settings.bento_model, champion.version, booster, card, state, labels, examples)
    bento_tag = task(build_bento, cache_policy=NO_CACHE)(model_tag, champion.version)
    print(f"packaged champion v{champion.version}: model {model_tag}, bento {bento_tag} ({state.height} state rows)")
    return {"model_tag": model_tag, "bento_tag": bento_tag, "version": champion.version}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(
    customers: int = 1_000,
    terminals: int = 2_000,
    days: int = 120,
    start: date = DEMO_START,
    seed: int = 42,
    data: str | None = None,
    profile: str = AUTO,
) -> dict[str, Any]:
    """The demo lifecycle: simulate -> ingest -> train -> promote -> package.

    With ``data``, that file (read with ``profile``) replaces the simulator's world.
    """
    source = data if data is not None else simulate_flow(customers, terminals, days, start, seed)
    ingest = ingest_flow(source, profile if data is not None else AUTO)
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
