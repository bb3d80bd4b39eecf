"""The `fraudops` command line. Heavy libraries are imported inside commands so --help stays fast."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config.settings import Settings, current_settings
from model.policies import PromotionPolicy, ThresholdPolicy
from monitoring.thresholds import MonitorThresholds

app = typer.Typer(
    help="Card-fraud detection with its own ML lifecycle: simulate, ingest, train, promote, build, serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()

Customers = Annotated[int, typer.Option(min=10, help="Simulated customers.")]
Terminals = Annotated[int, typer.Option(min=10, help="Simulated terminals.")]
Days = Annotated[int, typer.Option(min=1, help="Simulated days.")]
Start = Annotated[str, typer.Option(help="First simulated day (YYYY-MM-DD).")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same data and model).")]
Host = Annotated[str | None, typer.Option(help="Bind address (default FRAUDOPS_HOST, 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default FRAUDOPS_PORT, 3000).")]
Workers = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="Worker processes (default FRAUDOPS_WORKERS, 1); they share the SQLite online store. "
        "On N cores, N workers serve about N times the requests.",
    ),
]


_settings = current_settings
_POLICY, _THRESHOLD, _MONITOR = PromotionPolicy(), ThresholdPolicy(), MonitorThresholds()


def _help(model: type[Any], field: str) -> str:
    """An option's help: the pydantic field's description (the flow parameter's, so both say the same)."""
    return model.model_fields[field].description or field


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


def _date_range(start: str | None, end: str | None, options: tuple[str, str]) -> tuple[date | None, date | None]:
    """Parse both ends of a day range; an end before its start is refused with both options named."""
    first, last = _date(start, options[0]), _date(end, options[1])
    if first is not None and last is not None and last < first:
        raise typer.BadParameter(f"{options[1]} {last} is before {options[0]} {first}")
    return first, last


def _input_file(path: Path, option: str) -> None:
    """Refuse a missing path or a directory before a flow (and its Prefect server) starts."""
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such file", param_hint=option)
    if not path.is_file():
        raise typer.BadParameter(f"{path} is a directory, not a CSV or Parquet file", param_hint=option)


class _WithoutTraceback(logging.Filter):
    """Drops the traceback of the given errors from a console log record (Prefect logs failed runs with one)."""

    def __init__(self, kinds: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info, record.exc_text = None, None  # the message line stays
        return True


@contextmanager
def _reported(what: str, *kinds: type[Exception], code: int = 2) -> Iterator[None]:
    """Report ``kinds`` raised in the block as ``<what>: <message>`` and exit with ``code``.

    These are the errors whose message says what to do (a bad file, an empty lake, no champion yet):
    Prefect still logs the failed run, but the console shows its message without the traceback
    (the run's logs in the Prefect API keep it). Any other exception keeps its traceback.
    """
    quiet = _WithoutTraceback(kinds)
    handlers = {h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)}
    handlers |= {h for h in logging.getLogger("prefect").handlers if isinstance(h, logging.StreamHandler)}
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    except kinds as exc:
        console.print(f"[red]{what}:[/red] {escape(str(exc))}")  # a message's [columns] are text, not markup
        raise typer.Exit(code) from None
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


DRIFT_NAMES = ("amount-inflation", "terminal-burst", "card-testing")  # data.simulator.DRIFT_PRESETS


def _live_config(
    seed: int,
    capacity: int | None,
    investigation_delay: tuple[float, float] | None,
    chargeback_delay: tuple[float, float] | None,
    chargeback_peak: float | None,
    label_seed: int | None,
) -> Any:
    """The live mode's :class:`data.live.LiveLabelConfig` from the options (unset ones: their defaults)."""
    from pydantic import ValidationError

    from data.live import DEFAULT_CAPACITY, LiveLabelConfig

    fields: dict[str, Any] = {
        "capacity": capacity if capacity is not None else getattr(_settings(), "alert_capacity", DEFAULT_CAPACITY),
        "seed": seed if label_seed is None else label_seed,
        "chargeback_peak_days": chargeback_peak,
    }
    if investigation_delay is not None:
        fields["investigation_min_days"], fields["investigation_max_days"] = investigation_delay
    if chargeback_delay is not None:
        fields["chargeback_min_days"], fields["chargeback_max_days"] = chargeback_delay
    try:
        return LiveLabelConfig(**fields)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


DEFAULT_SIMULATED_DAYS = 120
LIVE_ONLY = ("--capacity", "--investigation-delay", "--chargeback-delay", "--chargeback-peak", "--label-seed")


@app.command()
def simulate(
    customers: Customers = 1_000,
    terminals: Terminals = 2_000,
    days: Annotated[
        int | None, typer.Option(min=1, help=f"Simulated days (default {DEFAULT_SIMULATED_DAYS}; --live: 1).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="First simulated day (YYYY-MM-DD), or 'next': the day after the lake's newest "
            "(default 2026-04-01; --live: next)."
        ),
    ] = None,
    origin: Annotated[
        str, typer.Option(help="First day of the world (keep it fixed when appending days).")
    ] = "2026-04-01",
    seed: Seed = 42,
    drift: Annotated[
        list[str] | None,
        typer.Option(help=f"Drift preset for these days, repeatable: {', '.join(DRIFT_NAMES)} (docs/data.md)."),
    ] = None,
    land: Annotated[bool, typer.Option("--land", help="Ingest the file(s) into the lake right away.")] = False,
    out: Annotated[Path | None, typer.Option(help="Output .parquet or .csv (default: the home's inbox).")] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Production-like live mode: the next day WITHOUT labels, plus a label file of the events due by "
            "its end (analyst verdicts on the champion's top-k cards, chargebacks of the other frauds); the truth "
            "stays in <home>/simulator (docs/data.md, 'Simulator live mode').",
        ),
    ] = False,
    capacity: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="--live: cards the analysts investigate per day, the top k by the champion's score "
            "(default FRAUDOPS_ALERT_CAPACITY, 100).",
        ),
    ] = None,
    investigation_delay: Annotated[
        tuple[float, float] | None,
        typer.Option(
            min=0, help="--live: MIN MAX days from the end of the investigated day to the verdict (default 1 2)."
        ),
    ] = None,
    chargeback_delay: Annotated[
        tuple[float, float] | None,
        typer.Option(min=0, help="--live: MIN MAX days from a fraud to its chargeback (default 7 45, uniform)."),
    ] = None,
    chargeback_peak: Annotated[
        float | None,
        typer.Option(min=0, help="--live: most likely chargeback delay in days (triangular; default: uniform)."),
    ] = None,
    label_seed: Annotated[
        int | None,
        typer.Option(help="--live: seed of the label delays (default: --seed); same seed and day, same labels."),
    ] = None,
) -> None:
    """Generate transactions with the handbook-design simulator (canonical schema + scenario column).

    Appending: `fraudops simulate --start next --days 1 --land` appends the next day of the same world,
    labels included. Production-like: `fraudops simulate --live --land` appends the next day without
    labels and lands the label events known by its end (investigations, chargebacks) as a label file.
    """
    settings = _settings()
    from data.lake import Lake, write_parquet_atomic
    from data.simulator import SimulatorConfig, simulate_transactions

    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise typer.BadParameter(f"{out.name!r} must end in .parquet or .csv", param_hint="--out")
    world_origin = _date(origin, "--origin")
    assert world_origin is not None
    if live:
        _simulate_live(
            customers,
            terminals,
            days,
            start,
            world_origin,
            seed,
            drift,
            land,
            out,
            _live_config(seed, capacity, investigation_delay, chargeback_delay, chargeback_peak, label_seed),
        )
        return
    given = (capacity, investigation_delay, chargeback_delay, chargeback_peak, label_seed)
    if any(value is not None for value in given):
        options = ", ".join(o for o, v in zip(LIVE_ONLY, given, strict=True) if v is not None)
        raise typer.BadParameter(f"{options} only apply to --live")
    days = days or DEFAULT_SIMULATED_DAYS
    start = start or "2026-04-01"
    if start == "next":
        newest = Lake(settings.home_dir).newest_day()
        first = world_origin if newest is None else date.fromordinal(newest.toordinal() + 1)
    else:
        first = _date(start, "--start")
        assert first is not None
    config = SimulatorConfig.scaled(customers, terminals, days, start_date=first, seed=seed, origin=world_origin)
    try:
        config = config.with_drift(drift or ())
        with console.status("simulating..."):
            frame = simulate_transactions(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if frame.height == 0:
        raise typer.BadParameter(
            f"{customers} customers and {terminals} terminals made no transactions in {days} day(s); "
            "simulate more customers, terminals or days"
        )
    target = out or settings.simulated_path(first, days, customers, seed, config.drift)
    if target.suffix == ".csv":
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(target)
    else:
        write_parquet_atomic(frame, target)
    rate = frame["is_fraud"].mean() or 0.0
    console.print(
        f"wrote {frame.height:,} transactions {first}..{frame['tx_datetime'].max():%Y-%m-%d} "
        f"({rate:.2%} fraud) to {target}"
    )
    if land:
        from data.sources import SourceError
        from flows.pipeline import ingest_flow

        with _reported("ingest failed", SourceError, ValueError):
            summary = ingest_flow(str(target))
        _print_ingest(summary)


def _simulate_live(
    customers: int,
    terminals: int,
    days: int | None,
    start: str | None,
    origin: date,
    seed: int,
    drift: list[str] | None,
    land: bool,
    out: Path | None,
    config: Any,
) -> None:
    """`fraudops simulate --live`: one day without labels and its due label events (the simulate flow's live mode)."""
    from data.simulator import DRIFT_PRESETS
    from data.sources import SourceError
    from flows.pipeline import simulate_flow

    if days not in (None, 1):
        raise typer.BadParameter("--live emits one day per run", param_hint="--days")
    if out is not None:
        raise typer.BadParameter("--live writes its two files to the home's inbox", param_hint="--out")
    unknown = [name for name in drift or () if name not in DRIFT_PRESETS]
    if unknown:
        raise typer.BadParameter(f"unknown drift preset {unknown[0]!r}; choose from {', '.join(DRIFT_PRESETS)}")
    first = None if start in (None, "next") else _date(start, "--start")
    with _reported("live simulation failed", SourceError, ValueError):
        report = simulate_flow(customers, terminals, 1, first, seed, origin, drift, live=config, land=land)
    assert isinstance(report, dict)
    day = report["day"]
    if report["model_version"] is None:
        console.print(f"{day}: no champion yet, so no investigations (frauds come back as chargebacks only)")
    else:
        console.print(
            f"{day}: champion v{report['model_version']} ranked the top {report['alerted_cards']:,} cards: "
            f"{report['investigated']:,} transactions ({report['investigated_frauds']:,} frauds) investigated, "
            f"verdicts {config.investigation_min_days:g}-{config.investigation_max_days:g} days after the day's end"
        )
    console.print(
        f"wrote {report['transactions']:,} transactions of {day} without labels to {report['transactions_path']}"
    )
    if report["labels_path"]:
        console.print(
            f"wrote {report['emitted']:,} label events due by the end of {day} ({report['emitted_analyst']:,} analyst, "
            f"{report['emitted_chargeback']:,} chargeback) to {report['labels_path']}"
        )
    else:
        console.print(f"no label event due by the end of {day}: no label file")
    console.print(f"{report['pending']:,} label events pending (kept by the simulator, not in the lake)")
    for summary in (report["ingest"]["transactions"], report["ingest"]["labels"]):
        if summary is not None:
            _print_ingest(summary)


def _print_ingest(summary: dict[str, Any]) -> None:
    console.print(
        f"read {summary['read']:,} = accepted {summary['accepted']:,} + duplicates {summary['duplicates']:,} "
        f"+ rejected {summary['rejected']:,}"
    )
    if summary.get("kind") == "labels" or summary.get("labels_landed") or summary.get("label_duplicates"):
        console.print(
            f"labels: landed {summary['labels_landed']:,}, duplicates {summary['label_duplicates']:,}, "
            f"contradictions {summary['contradictions']:,}, unknown transactions {summary['unknown_transactions']:,}"
        )
    if summary.get("service_log"):
        log = summary["service_log"]
        console.print(
            f"service log: scored {log['scored_landed']:,} landed of {log['scored_read']:,}, "
            f"labels {log['labels_landed']:,} landed of {log['labels_read']:,}"
        )
    if summary["quarantine"]:
        console.print(f"rejected rows and reasons: {summary['quarantine']}")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file to ingest (transactions or labels).")],
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            "--format",
            help="Dataset profile: auto (detect from the header), a shipped one (see `fraudops profile list`), "
            "a profile YAML file, or labels.",
        ),
    ] = "auto",
) -> None:
    """Validate a file and land it in the lake; rejected rows go to quarantine with a reason.

    The dataset profile maps the file's columns (see docs/data.md); the lake records it. A label file
    (`transaction_id, is_fraud[, label_time][, source][, reviewer][, note]`) is detected from its columns
    and lands as label events.
    """
    _settings()
    from data.profiles import ProfileError, load_profile
    from data.sources import AUTO, LABELS, SourceError
    from flows.pipeline import ingest_flow

    if profile not in (AUTO, LABELS):
        try:
            load_profile(profile)
        except ProfileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--profile") from None
    _input_file(path, "'path'")
    with _reported("ingest failed", SourceError, ValueError):
        summary = ingest_flow(str(path), profile)
    _print_ingest(summary)


profile_app = typer.Typer(help="Dataset profiles: how a file's columns map to transactions.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")


@profile_app.command("list")
def profile_list() -> None:
    """The shipped profiles, the columns each needs and the features it gives."""
    from data.profiles import shipped_profiles

    table = Table("profile", "needs columns", "window families", "extra features")
    for p in sorted(shipped_profiles(), key=lambda p: p.name):
        families = ", ".join(k for k, on in p.families.items() if on) or "none"
        extra = [*p.numeric_features, *(n for n, _ in p.categorical_features)]
        shown = ", ".join(extra[:6]) + (f", ... ({len(extra)})" if len(extra) > 6 else "")
        table.add_row(
            p.name,
            ", ".join(p.required_columns[:8]) + (", ..." if len(p.required_columns) > 8 else ""),
            families,
            shown or "-",
        )
    console.print(table)


@profile_app.command("show")
def profile_show(name: Annotated[str, typer.Argument(help="A shipped profile's name or a profile file.")]) -> None:
    """Print a profile as YAML (a start for your own)."""
    from data.profiles import ProfileError, load_profile

    with _reported("cannot read the profile", ProfileError):
        print(load_profile(name).to_yaml(), end="")


@profile_app.command("infer")
def profile_infer(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file to propose a profile for.")],
    name: Annotated[str | None, typer.Option(help="Profile name (default: the file's stem).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the YAML here (default: print it).")] = None,
    sample_rows: Annotated[int, typer.Option(min=10, help="Rows read to guess roles and vocabularies.")] = 5_000,
) -> None:
    """Propose a profile from a sample of a file, for you to check and edit, then `ingest --profile FILE`."""
    from data.profiles import ProfileError, feature_name, infer_profile
    from data.sources import RAGGED, SourceError, read_table

    _input_file(path, "'path'")
    with _reported("cannot propose a profile", SourceError, ProfileError):
        sample = read_table(path).head(sample_rows)
        columns = {
            c: ["" if v is None else str(v).strip() for v in sample[c].to_list()] for c in sample.columns if c != RAGGED
        }
        proposed = infer_profile(columns, feature_name(name or path.stem).replace("_", "-") or "my-data")
    text = proposed.to_yaml()
    if out is None:
        print(text, end="")
        return
    out.write_text(text)
    console.print(f"wrote {out}: check every role, then `fraudops ingest {path} --profile {out}`")


lake_app = typer.Typer(help="The lake's Delta tables (transactions, label events).", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("migrate")
def lake_migrate(
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Home holding the Parquet lake (lake/transactions/date=*/...; default: this home)."
        ),
    ] = None,
) -> None:
    """Import a Parquet lake into the Delta tables (its is_fraud as dataset labels), then move it aside."""
    settings = _settings()
    from data.lake import Lake

    with _reported("migration failed", FileExistsError, ValueError):
        report = Lake(settings.home_dir, settings.label_delay_days).migrate(from_dir)
    if report.source is None:
        console.print("no Parquet lake to migrate")
        return
    console.print(
        f"migrated {report.files:,} partition files from {report.source}: {report.rows:,} rows, landed "
        f"{report.landed:,} (+ {report.duplicates:,} already there), {report.labels_landed:,} label events"
    )


@app.command()
def train(
    start: Annotated[str | None, typer.Option(help="First day of data to use (default: all).")] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day of data to use (default: the data profile's split end, else newest).")
    ] = None,
    label_delay: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=60,
            help="Label delay in days (default FRAUDOPS_LABEL_DELAY_DAYS if set, else the data profile's, else 7).",
        ),
    ] = None,
    seed: Seed = 42,
    valid_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=365,
            help="Days of the validation window (default: the data profile's, else 7; a profile with hourly "
            "windows, as ulb-creditcard, uses its hours unless days are given).",
        ),
    ] = None,
    test_days: Annotated[
        int | None, typer.Option(min=1, max=365, help="Days of the test window (default: the data profile's, else 7).")
    ] = None,
    check_reference: Annotated[
        bool,
        typer.Option(
            help="Gate on the champion's training-window bounds; --no-check-reference once a shift is confirmed real."
        ),
    ] = True,
    from_champion: Annotated[
        bool, typer.Option(help="Start from the champion's recipe (its MLflow run's parameters).")
    ] = True,
    search_budget: Annotated[
        float, typer.Option(min=0, help="Seconds to search parameters around the recipe on validation (0: none).")
    ] = 0.0,
    threshold_policy: Annotated[
        str, typer.Option(help="How the threshold is chosen on validation: " + _help(ThresholdPolicy, "kind"))
    ] = _THRESHOLD.kind,
    alert_budget: Annotated[
        float, typer.Option(min=0.0001, max=1, help=_help(ThresholdPolicy, "alert_budget"))
    ] = _THRESHOLD.alert_budget,
    as_of_version: Annotated[
        str | None,
        typer.Option(
            help="A past run's 'transactions=N,labels=M,as_of=TIME' (its fraudops.as_of_version tag in MLflow): "
            "read those Delta table versions with labels as known then, to reproduce its training set exactly."
        ),
    ] = None,
) -> None:
    """Train on the lake with a time split and the label delay; register the model as `challenger`.

    Labels are read as known now: each transaction's newest label event by then, else genuine once the
    label delay old, else pending (not trained on). By default all
    labelled history is used. The GX feature suite gates training: when it fails, nothing is registered
    and the exit code is 3.
    """
    _settings()
    from flows.pipeline import LakeSnapshot, train_flow
    from validation.features import FeatureValidationError

    if threshold_policy not in ("cost", "budget", "f1"):
        raise typer.BadParameter("expected cost, budget or f1", param_hint="--threshold-policy")
    try:
        snapshot = str(LakeSnapshot.parse(as_of_version)) if as_of_version else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--as-of-version") from None
    first, last = _date_range(start, end, ("--start", "--end"))
    with _reported("training refused", FeatureValidationError, code=3), _reported("training failed", ValueError):
        result = train_flow(
            first,
            last,
            label_delay,
            valid_days=valid_days,
            test_days=test_days,
            seed=seed,
            check_reference=check_reference,
            from_champion=from_champion,
            search_budget_s=search_budget,
            threshold_policy=ThresholdPolicy(kind=threshold_policy, alert_budget=alert_budget),  # type: ignore[arg-type]
            snapshot=snapshot,
        )
    m = result["metrics"]
    console.print(f"registered v{result['version']}: test AUC {m['test_auc']:.3f}, AP {m['test_ap']:.3f}")


@app.command()
def promote(
    mode: Annotated[str, typer.Option(help=_help(PromotionPolicy, "mode"))] = _POLICY.mode,
    max_ap_drop: Annotated[
        float, typer.Option(min=0, help=_help(PromotionPolicy, "max_ap_drop"))
    ] = _POLICY.max_ap_drop,
    min_ap_gain: Annotated[
        float, typer.Option(min=0, help=_help(PromotionPolicy, "min_ap_gain"))
    ] = _POLICY.min_ap_gain,
    min_ap: Annotated[float, typer.Option(min=0, max=1, help=_help(PromotionPolicy, "min_ap"))] = _POLICY.min_ap,
    min_auc: Annotated[float, typer.Option(min=0, max=1, help=_help(PromotionPolicy, "min_auc"))] = _POLICY.min_auc,
    approval_timeout: Annotated[
        int, typer.Option(min=1, help=_help(PromotionPolicy, "approval_timeout_s"))
    ] = _POLICY.approval_timeout_s,
) -> None:
    """Gate the challenger against the champion on the most recent labelled window; move `champion` if it passes."""
    _settings()
    from flows.promotion import promote_flow

    if mode not in ("auto", "manual"):
        raise typer.BadParameter("expected auto or manual", param_hint="--mode")
    policy = PromotionPolicy(
        mode=mode,  # type: ignore[arg-type]
        max_ap_drop=max_ap_drop,
        min_ap_gain=min_ap_gain,
        min_ap=min_ap,
        min_auc=min_auc,
        approval_timeout_s=approval_timeout,
    )
    with _reported("promotion failed", ValueError):
        decision = promote_flow(policy=policy)
    console.print(("promoted: " if decision["promote"] else "not promoted: ") + "; ".join(decision["reasons"]))


@app.command()
def rollback(
    build: Annotated[bool, typer.Option(help="Rebuild (or reuse) the Bento of the restored champion.")] = True,
) -> None:
    """Move `champion` back to the version it replaced."""
    _settings()
    from flows.pipeline import package_flow
    from flows.promotion import rollback_flow

    with _reported("rollback failed", ValueError, code=1):
        moved = rollback_flow()
    console.print(f"champion: v{moved['from_version']} -> v{moved['to_version']}")
    if build:
        with _reported("build failed", ValueError, RuntimeError):
            out = package_flow()
        console.print(f"bento {out['bento_tag']}: serve it with `fraudops serve --bento {out['bento_tag']}`")


@app.command()
def score(
    start: Annotated[str | None, typer.Option("--from", help="First lake day to score (default: the first).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last lake day to score (default: the newest).")] = None,
    only_new: Annotated[bool, typer.Option(help="Skip days already scored from the same data and model.")] = False,
    dask_workers: Annotated[
        int, typer.Option(min=0, help="Score the day chunks on a local Dask cluster of this many processes (0: no).")
    ] = 0,
) -> None:
    """Score lake days with the champion into <home>/scored/ (transaction_id, score, decision, ...) with alerts."""
    settings = _settings()
    from flows.scoring import batch_score_flow, dask_batch_score

    first, last = _date_range(start, end, ("--from", "--to"))
    with _reported("scoring failed", ValueError):
        if dask_workers:
            out = dask_batch_score(first, last, only_new=only_new, workers=dask_workers)
        else:
            out = batch_score_flow(first, last, only_new=only_new)
    console.print(
        f"scored {out['scored']} transactions on {len(out['days'])} day(s) with v{out['model_version']}: "
        f"{out['alerts']} alerts -> {settings.home_dir / 'scored'}"
    )


@app.command()
def monitor(
    days: Annotated[int, typer.Option(min=1, help="Newest days compared with the training window.")] = 7,
    retrain: Annotated[str, typer.Option(help="auto, deployment, inline or off.")] = "auto",
    psi_drift: Annotated[float, typer.Option(min=0, help=_help(MonitorThresholds, "psi_drift"))] = _MONITOR.psi_drift,
    max_ap_drop: Annotated[
        float, typer.Option(min=0, help=_help(MonitorThresholds, "max_ap_drop"))
    ] = _MONITOR.max_ap_drop,
    min_labelled_frauds: Annotated[
        int, typer.Option(min=1, help=_help(MonitorThresholds, "min_labelled_frauds"))
    ] = _MONITOR.min_labelled_frauds,
    max_rejected_share: Annotated[
        float, typer.Option(min=0, max=1, help=_help(MonitorThresholds, "max_rejected_share"))
    ] = _MONITOR.max_rejected_share,
) -> None:
    """Drift, performance on arrived labels and data quality vs the champion's training window; retrain if needed."""
    _settings()
    from flows.monitor import monitor_flow

    if retrain not in ("auto", "deployment", "inline", "off"):
        raise typer.BadParameter("expected auto, deployment, inline or off", param_hint="--retrain")
    with _reported("monitoring failed", ValueError):
        thresholds = MonitorThresholds(
            psi_warn=min(_MONITOR.psi_warn, psi_drift),
            psi_drift=psi_drift,
            max_ap_drop=max_ap_drop,
            min_labelled_frauds=min_labelled_frauds,
            max_rejected_share=max_rejected_share,
        )
        out = monitor_flow(days=days, thresholds=thresholds, retrain=retrain)  # type: ignore[arg-type]
    console.print("; ".join(out["reasons"]) or "all checks within thresholds")
    console.print(f"retrain: {out['retrain']}")


@app.command()
def evaluate(
    protocol: Annotated[
        str,
        typer.Option(help="A-strict, A-extended, A-feedback (next-day investigator labels) or B (docs/quality.md)."),
    ],
    data: Annotated[Path, typer.Option(help="The handbook file (Parquet or CSV), e.g. ../shared/data/handbook/...")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures per model to this JSON file.")
    ] = None,
    feature_set: Annotated[
        str,
        typer.Option(
            help="extended (19 features), baseline (the published 15) or labels (extended + 2 that read labels "
            "as soon as they are known)."
        ),
    ] = "extended",
    budget_seconds: Annotated[float, typer.Option(min=0, help="Time budget of the hyperparameter search.")] = 300.0,
    max_trials: Annotated[int | None, typer.Option(min=1, help="Cap on search trials (reproducible runs).")] = None,
    seed: Seed = 42,
) -> None:
    """Evaluate XGBoost and logistic regression under a published protocol, next to the published figures.

    Hyperparameters are chosen on validation periods before the test period; everything is logged to MLflow.
    """
    _settings()
    from data.sources import SourceError
    from features.definitions import FEATURE_SETS
    from flows.evaluate import evaluate_flow
    from model.protocols import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"expected one of {', '.join(PROTOCOLS)}", param_hint="--protocol")
    if feature_set not in FEATURE_SETS:
        raise typer.BadParameter(f"expected one of {', '.join(FEATURE_SETS)}", param_hint="--feature-set")
    _input_file(data, "--data")
    with _reported("evaluation failed", SourceError, ValueError, RuntimeError):
        evaluate_flow(
            protocol, str(data), str(json_out) if json_out else None, feature_set, budget_seconds, seed, max_trials
        )


@app.command()
def build() -> None:
    """Package the champion as a BentoML model and build the Bento (tagged with the model version)."""
    _settings()
    from flows.pipeline import package_flow

    with _reported("build failed", ValueError, RuntimeError):
        out = package_flow()
    console.print(f"bento {out['bento_tag']} (model {out['model_tag']})")


def _worker_overrides(settings: Settings, workers: int | None) -> dict[str, str]:
    """The serve environment's overrides for ``workers``; a usage error if the online store cannot share state."""
    try:
        return settings.serve_overrides(workers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from None


def _serve(
    bento: str,
    host: str,
    port: int,
    workers: int | None = None,
    when_ready: Callable[[str], None] | None = None,
) -> None:
    """Run `bentoml serve` with ``workers`` processes, wait for /readyz, print the URLs, stop it on Ctrl-C.

    ``when_ready(base_url)`` runs once the service answers (the demo sends it a day of live traffic).
    """
    import httpx

    settings = Settings()
    env = settings.child_environment(**_worker_overrides(settings, workers))
    cmd = [sys.executable, "-m", "bentoml", "serve", bento, "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=settings.home_dir, env=env)
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise typer.Exit(proc.returncode or 1)
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            console.print(f"[red]service did not become ready at {base}[/red]")
            raise typer.Exit(1)
        count = workers or settings.workers
        console.print(
            f"[green]serving[/green] {bento} ({count} worker{'s' if count > 1 else ''}): "
            f"API {base}/score  UI {base}/ui/  docs {base}/"
        )
        console.print(
            f"try: curl -s -X POST {base}/score -H 'content-type: application/json' -d "
            '\'{"transaction_id":"t1","tx_datetime":"2026-07-29T12:00:00Z","customer_id":"7",'
            '"terminal_id":"11","amount":250}\''
        )
        if when_ready is not None:
            when_ready(base)
        console.print("Ctrl-C to stop.")
        proc.wait()
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@app.command()
def up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server and UI port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port.")] = 5000,
    port: Port = None,
    workers: Workers = None,
    deploy: Annotated[bool, typer.Option(help="Run `prefect deploy --all` against the local server.")] = True,
) -> None:
    """Start the local stack on 127.0.0.1: Prefect server + UI, a worker, the MLflow UI, the Bento service.

    Waits for each to be healthy, prints the URLs, and stops everything it started on Ctrl-C. The
    service starts when a Bento exists (`fraudops demo` or `fraudops build` first).
    """
    settings = _settings()
    _worker_overrides(settings, workers)  # a usage error before anything starts
    from flows.stack import Stack

    def stop_on_term(*_: object) -> None:
        raise KeyboardInterrupt  # `kill`, systemd and `timeout` send SIGTERM: stop the children as on Ctrl-C

    signal.signal(signal.SIGTERM, stop_on_term)
    table = Table(title="fraudops stack (Ctrl-C stops everything)", show_header=False)
    with Stack(settings) as stack:
        try:
            with console.status("starting the Prefect server..."):
                server = stack.prefect_server(prefect_port)
            table.add_row("Prefect UI", server.url)
            if deploy:
                with console.status("deploying prefect.yaml..."):
                    stack.deploy_all()
                table.add_row("deployments", "prefect.yaml (ingest, train-and-promote, batch-score, monitor, ...)")
            with console.status("starting a worker..."):
                stack.worker()
            table.add_row("worker", "pool fraudops-process")
            with console.status("starting the MLflow UI..."):
                table.add_row("MLflow UI", stack.mlflow_ui(mlflow_port).url)
            try:
                bento = _latest_bento()
            except typer.Exit:
                table.add_row("service", "no Bento yet: run `fraudops demo --no-serve` or `fraudops build`")
            else:
                with console.status(f"starting {bento}..."):
                    service = stack.bento(bento, port or settings.port, workers)
                table.add_row("service", f"{service.url}/score   UI {service.url}/ui/   docs {service.url}/")
        except RuntimeError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(1) from None
        table.add_row("logs", str(stack.logs))
        console.print(table)
        sys.stdout.flush()
        try:
            while all(s.process.poll() is None for s in stack.services):
                time.sleep(1)
            gone = [s.name for s in stack.services if s.process.poll() is not None]
            console.print(f"[red]{', '.join(gone)} stopped; stopping the rest (logs in {stack.logs})[/red]")
        except KeyboardInterrupt:
            console.print("stopping...")


def _latest_bento() -> str:
    import bentoml

    try:
        bentos = sorted(bentoml.bentos.list("fraud_service"), key=lambda b: b.info.creation_time)
    except bentoml.exceptions.NotFound:
        bentos = []
    if not bentos:
        console.print("[red]no fraud_service Bento yet: run `fraudops build` (or `fraudops demo`) first[/red]")
        raise typer.Exit(1)
    return str(bentos[-1].tag)


def _known_bento(tag: str) -> str:
    """``tag`` if it is a Bento in the store (or a Bento directory), else a usage error listing the stored ones."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    if Path(tag).is_dir():
        return tag
    try:
        return str(bentoml.bentos.get(tag).tag)
    except BentoMLException:  # not found, or not a valid tag
        try:
            stored = ", ".join(str(b.tag) for b in bentoml.bentos.list("fraud_service"))
        except BentoMLException:
            stored = ""
        hint = f"stored: {stored}" if stored else "none stored yet: run `fraudops build`"
        raise typer.BadParameter(f"no Bento {tag!r} in the BentoML store ({hint})", param_hint="--bento") from None


@app.command()
def serve(
    bento: Annotated[str | None, typer.Option(help="Bento tag (default: the newest fraud_service).")] = None,
    host: Host = None,
    port: Port = None,
    workers: Workers = None,
) -> None:
    """Serve a built Bento with `bentoml serve` (API and the Gradio UI at /ui)."""
    settings = _settings()
    _worker_overrides(settings, workers)  # before looking for a Bento: a bad --workers is a usage error
    tag = _known_bento(bento) if bento else _latest_bento()
    _serve(tag, host or settings.host, port or settings.port, workers)


@app.command()
def demo(
    customers: Customers = 1_000,
    terminals: Terminals = 2_000,
    days: Days = 120,
    start: Start = "2026-04-01",
    seed: Seed = 42,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the Bento when done.")] = True,
    host: Host = None,
    port: Port = None,
    live_day: Annotated[
        bool,
        typer.Option(
            "--live-day/--no-live-day",
            help="Once serving, send the world's next day through /score_batch as live traffic (no labels), "
            "so the UI's Alerts tab has a queue to work (simulator only).",
        ),
    ] = True,
    data: Annotated[
        Path | None,
        typer.Option(help="Run the lifecycle on this CSV or Parquet file instead of the simulator's world."),
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Dataset profile of --data: auto (from the header), a shipped name or a YAML file.")
    ] = "auto",
) -> None:
    """The main job: simulate -> ingest -> validate -> features -> train -> register -> promote -> build -> serve.

    With --data, your file replaces the simulator (read with its dataset profile, see `fraudops profile list`);
    unless FRAUDOPS_HOME is set, it gets a home of its own (<home>/datasets/<profile>), so it never mixes
    with the simulator's lake.
    """
    chosen = None
    if data is not None:
        chosen = _demo_profile(data, profile)
    settings = _settings()
    from flows.pipeline import pipeline_flow

    first = _date(start, "--start")
    assert first is not None
    started = time.perf_counter()
    if chosen is not None:
        console.print(f"dataset {data} read with the {chosen} profile; home {settings.home_dir}")
        live_day = False
    with _reported("demo failed", ValueError):
        out = pipeline_flow(customers, terminals, days, first, seed, str(data) if data else None, profile)
    elapsed = time.perf_counter() - started
    ingest_, train_, pkg = out["ingest"], out["train"], out["package"]
    table = Table(title=f"fraudops demo ({elapsed:.0f} s)", show_header=False)
    table.add_row(
        "rows",
        (
            f"read {ingest_['read']:,}: accepted {ingest_['accepted']:,}, "
            f"duplicates {ingest_['duplicates']:,}, rejected {ingest_['rejected']:,}"
        ),
    )
    split = train_["split"]
    if "train_from" in split:  # an hourly split (a dataset of a few days)
        h = {k: v[:16].replace("T", " ") for k, v in split.items() if k.endswith(("_from", "_until"))}
        windows = f"train {h['train_from']}..{h['train_until']}, test {h['test_from']}..{h['test_until']} (UTC)"
    else:
        windows = f"train {split['train_start']}..{split['train_end']}, test {split['test_start']}..{split['test_end']}"
    table.add_row("split", windows)
    m, b = train_["metrics"], train_["baseline_metrics"]
    table.add_row(
        "test metrics",
        (
            f"AUC {m['test_auc']:.3f}  AP {m['test_ap']:.3f}  "
            f"precision {m['test_precision']:.3f}  recall {m['test_recall']:.3f}"
        ),
    )
    table.add_row("baseline (logistic)", f"AUC {b['test_auc']:.3f}  AP {b['test_ap']:.3f}")
    promotion = out["promote"]
    kept = "" if promotion["promote"] else f"; challenger v{promotion['challenger_version']} not promoted"
    table.add_row("model", f"{settings.registered_model} v{pkg['version']} (champion{kept})")
    table.add_row("bento", pkg["bento_tag"])
    table.add_row(
        "MLflow", f"{settings.tracking_uri}  (UI: uv run mlflow ui --backend-store-uri {settings.tracking_uri})"
    )
    console.print(table)
    if serve_after:
        replay = (lambda base: _send_live_day(base, customers, terminals, first, days, seed)) if live_day else None
        _serve(pkg["bento_tag"], host or settings.host, port or settings.port, when_ready=replay)


def _demo_profile(data: Path, profile: str) -> str:
    """The profile --data is read with (its name); points FRAUDOPS_HOME at a home of its own when unset."""
    import os

    from data.profiles import ProfileError
    from data.sources import SourceError, read_table, resolve_profile

    _input_file(data, "--data")
    with _reported("cannot read --data", SourceError, ProfileError):
        chosen = resolve_profile(read_table(data).columns, profile).name
    if "FRAUDOPS_HOME" not in os.environ:
        os.environ["FRAUDOPS_HOME"] = str(Settings().home_dir / "datasets" / chosen)
    return chosen


def _send_live_day(base: str, customers: int, terminals: int, first: date, days: int, seed: int) -> None:
    """Score the world's next day through ``/score_batch`` (as production traffic: no labels) and say what it made."""
    import httpx

    from config.settings import LiveSettings
    from data.simulator import SimulatorConfig, simulate_transactions

    day = first + timedelta(days=days)
    config = SimulatorConfig.scaled(customers, terminals, 1, start_date=day, seed=seed, origin=first)
    rows = simulate_transactions(config).select("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
    records = [{**r, "tx_datetime": r["tx_datetime"].isoformat()} for r in rows.to_dicts()]
    key = LiveSettings.api_key()
    headers = {"X-API-Key": key} if key else {}
    alerts = 0
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            for start in range(0, len(records), 2_000):
                answer = client.post("/score_batch", json={"transactions": records[start : start + 2_000]})
                answer.raise_for_status()
                alerts += sum(r["decision"] == "alert" for r in answer.json()["results"])
            queue = client.get("/alerts", params={"date": day.isoformat()}).json()
    except httpx.HTTPError as error:
        console.print(f"[yellow]live day not sent ({escape(str(error))}); the service is up[/yellow]")
        return
    figures = queue.get("figures", {})
    console.print(
        f"live traffic: {len(records):,} transactions of {day} scored through /score_batch, {alerts} alerts; "
        f"the alert queue holds {figures.get('alerts', 0)} cards (capacity {queue.get('capacity')}): "
        f"work them in the UI's Alerts tab, {base}/ui/"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
