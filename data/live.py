"""The simulator's live mode: one new day a run, its labels delivered later, as production delivers them.

Each run emits the next day's transactions **without labels**, and one label file with every label event
that became known by the end of that day and was not emitted before:

* **investigations** (source ``analyst``): the analysts look at the day's top-k cards by the champion's
  score (k = the queue capacity, ``Settings.alert_capacity``): each card's highest-scored transaction ranks
  it, as in the service's alert queue. Every transaction of those cards that day gets its true label,
  ``label_time`` = the day's end + a delay drawn per card (default 1-2 days). No champion: no investigations.
* **chargebacks** (source ``chargeback``): every other fraud is reported by the card holder a delay after
  the transaction (default uniform 7-45 days; a triangular distribution with ``chargeback_peak_days``).
* genuine transactions nobody investigated get no event: they become genuine by maturity.

The ground truth (``is_fraud``, ``fraud_scenario``) never reaches the lake before its event is due: the
simulator keeps every scheduled event, with its truth, in a Parquet file private to the simulator
(``<home>/simulator/live-<world>/events.parquet``, written atomically), marks each with the day it was
emitted on, and keeps a ledger of the days it emitted (``days.parquet``). A day's events are scheduled once,
when the day is emitted, from random streams keyed by (seed, day): the same seed, day and champion ranking
give the same events.

A run has two steps, so the champion ranks the day's cards knowing every label due by the day's end:
:func:`begin_live_day` picks the events due (none of the new day's own: chargebacks take at least a day,
verdicts come after the day's end) and writes both files; the caller lands them and scores the day;
:func:`finish_live_day` schedules the day's events from those scores and commits the state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data.contract import CANONICAL_COLUMNS, SCENARIO_COLUMN
from data.labels import LABEL_COLUMNS, LABEL_SCHEMA
from data.lake import write_parquet_atomic
from data.simulator import SimulatorConfig

SECONDS_PER_DAY = 86_400
#: Random streams of the live labels (keyed with the label seed and the day), apart from the simulator's.
_INVESTIGATION, _CHARGEBACK = 101, 102
#: Default queue capacity when the settings have none.
DEFAULT_CAPACITY = 100
ANALYST_REVIEWER = "simulated-analyst"

#: A scheduled event: the label columns, the truth and bookkeeping (private to the simulator).
EVENT_SCHEMA: dict[str, pl.DataType] = {
    **LABEL_SCHEMA,
    "tx_datetime": pl.Datetime("us", "UTC"),
    "customer_id": pl.String(),
    SCENARIO_COLUMN: pl.Int8(),
    "scheduled_on": pl.Date(),
    "emitted_on": pl.Date(),
}
#: One row per emitted day.
DAY_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "transactions": pl.Int64(),
    "frauds": pl.Int64(),
    "model_version": pl.String(),
    "alerted_cards": pl.Int64(),
    "investigated": pl.Int64(),
    "investigated_frauds": pl.Int64(),
    "chargebacks_scheduled": pl.Int64(),
    "emitted": pl.Int64(),
}


class LiveLabelConfig(BaseModel):
    """How labels of live days arrive: the analysts' capacity, investigation and chargeback delays, the seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity: int = Field(
        DEFAULT_CAPACITY,
        ge=0,
        description="Cards investigated per day: the day's top-k cards by the champion's score (k; default "
        "FRAUDOPS_ALERT_CAPACITY).",
    )
    investigation_min_days: float = Field(
        1.0, ge=0, description="Shortest delay of an analyst verdict after the end of the investigated day."
    )
    investigation_max_days: float = Field(
        2.0, ge=0, description="Longest delay of an analyst verdict after the end of the investigated day."
    )
    chargeback_min_days: float = Field(
        7.0, ge=1, description="Shortest delay of a chargeback after its fraudulent transaction (at least a day)."
    )
    chargeback_max_days: float = Field(
        45.0, ge=0, description="Longest delay of a chargeback after its fraudulent transaction."
    )
    chargeback_peak_days: float | None = Field(
        None,
        ge=0,
        description="Most likely chargeback delay: triangular between the shortest and longest (default: uniform).",
    )
    seed: int = Field(0, description="Seed of the label delays (with the day: same seed, same events).")

    @model_validator(mode="after")
    def _ranges(self) -> LiveLabelConfig:
        if self.investigation_min_days > self.investigation_max_days:
            raise ValueError(f"investigation delay: {self.investigation_min_days} > {self.investigation_max_days} days")
        if self.chargeback_min_days > self.chargeback_max_days:
            raise ValueError(f"chargeback delay: {self.chargeback_min_days} > {self.chargeback_max_days} days")
        peak = self.chargeback_peak_days
        if peak is not None and not self.chargeback_min_days <= peak <= self.chargeback_max_days:
            raise ValueError(
                f"chargeback peak {peak} days is outside {self.chargeback_min_days}..{self.chargeback_max_days}"
            )
        return self


@dataclass(frozen=True)
class LiveDay:
    """What one live run emitted.

    ``labels_path`` is None when no event was due (a label file needs rows). ``model_version`` is the
    champion that ranked the day's cards (None: no champion, no investigations). ``pending``: events
    scheduled but not due yet, over all days.
    """

    day: date
    transactions: int
    frauds: int
    model_version: str | None
    alerted_cards: int
    investigated: int
    investigated_frauds: int
    chargebacks_scheduled: int
    emitted: int
    emitted_analyst: int
    emitted_chargeback: int
    pending: int
    transactions_path: str
    labels_path: str | None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (dates as ISO text)."""
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


def next_midnight(day: date) -> datetime:
    """The midnight (UTC) that ends ``day``: investigation delays count from it."""
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def day_end(day: date) -> datetime:
    """The last instant (µs) of ``day``, UTC: events with a ``label_time`` up to it are known by the day's end."""
    return next_midnight(day) - timedelta(microseconds=1)


def live_dir(home: Path, config: SimulatorConfig) -> Path:
    """The simulator's private folder for one world (seed, size, origin) under the home."""
    world = f"live-s{config.seed}-{config.n_customers}c-{config.n_terminals}t-{config.world_origin}"
    return home / "simulator" / world


def day_config(config: SimulatorConfig, day: date) -> SimulatorConfig:
    """``config`` narrowed to the one day ``day`` (same world: seed, size, origin and drift)."""
    return replace(config, start_date=day, n_days=1, origin=config.world_origin)


def next_live_day(lake_newest: date | None, state: LiveState, origin: date) -> date:
    """The day a live run emits: after both the lake's newest day and the newest day emitted (else ``origin``)."""
    known = [d for d in (lake_newest, state.newest_day()) if d is not None]
    return max(known) + timedelta(days=1) if known else origin


def public_transactions(truth: pl.DataFrame) -> pl.DataFrame:
    """The day's file as production sees it: the canonical columns without ``is_fraud`` (nor the scenario)."""
    return truth.select(c for c in CANONICAL_COLUMNS if c != "is_fraud")


def alerted_cards(scores: pl.DataFrame, capacity: int) -> pl.DataFrame:
    """The top-``capacity`` cards of scored transactions (``transaction_id, tx_datetime, customer_id, score``).

    As the service's alert queue: a card ranks by its highest-scored transaction (ties: earlier, then
    smaller id). Returns ``customer_id, rank`` (1 = highest), ``score`` and that ``transaction_id``.
    """
    return (
        scores.sort(["score", "tx_datetime", "transaction_id"], descending=[True, False, False])
        .unique("customer_id", keep="first", maintain_order=True)
        .head(capacity)
        .select("customer_id", "score", "transaction_id")
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )


def _delays_s(rng: np.random.Generator, n: int, low: float, high: float, peak: float | None = None) -> np.ndarray:
    """``n`` delays in whole seconds within ``[low, high]`` days (uniform, or triangular around ``peak``)."""
    lo, hi = low * SECONDS_PER_DAY, high * SECONDS_PER_DAY
    if hi == lo:
        days = np.full(n, lo)
    elif peak is None:
        days = rng.uniform(lo, hi, size=n)
    else:
        days = rng.triangular(lo, peak * SECONDS_PER_DAY, hi, size=n)
    return np.clip(np.floor(days), np.ceil(lo), np.floor(hi)).astype(np.int64)


def schedule_labels(
    truth: pl.DataFrame,
    day: date,
    config: LiveLabelConfig,
    alerted: pl.DataFrame | None = None,
    model_version: str | None = None,
) -> pl.DataFrame:
    """Every future label event of ``day``'s transactions (:data:`EVENT_SCHEMA`, not emitted yet).

    ``truth`` is the simulator's output for the day (with ``is_fraud`` and the scenario); ``alerted`` the
    cards investigated (:func:`alerted_cards`, None: none). Investigated cards' transactions get ``analyst``
    events at the day's end (:func:`next_midnight`) + their card's delay; the other frauds ``chargeback`` events
    at their time + a delay. Delays come from streams keyed by (``config.seed``, day): per card rank and per
    transaction id.
    """
    frame = truth.sort("transaction_id")
    end_us = int(next_midnight(day).timestamp()) * 1_000_000
    cards = alerted if alerted is not None else pl.DataFrame(schema={"customer_id": pl.String, "rank": pl.Int64})
    investigation = np.random.default_rng([config.seed, _INVESTIGATION, day.toordinal()])
    lo, hi = config.investigation_min_days, config.investigation_max_days
    cards = cards.select("customer_id", "rank").with_columns(
        _delay_s=pl.Series(_delays_s(investigation, cards.height, lo, hi), dtype=pl.Int64)
    )
    chargeback = np.random.default_rng([config.seed, _CHARGEBACK, day.toordinal()])
    lo, hi, peak = config.chargeback_min_days, config.chargeback_max_days, config.chargeback_peak_days
    frame = frame.with_columns(_cb_s=pl.Series(_delays_s(chargeback, frame.height, lo, hi, peak), dtype=pl.Int64))
    frame = frame.join(cards, on="customer_id", how="left", maintain_order="left")
    version = f"champion v{model_version}" if model_version else "champion"
    analyst = frame.filter(pl.col("rank").is_not_null()).select(
        "transaction_id",
        "is_fraud",
        label_time=pl.lit(end_us, pl.Int64) + pl.col("_delay_s") * 1_000_000,
        source=pl.lit("analyst"),
        reviewer=pl.lit(ANALYST_REVIEWER),
        note=pl.format(
            "simulated investigation: card ranked {} of {} by {}", "rank", pl.lit(cards.height), pl.lit(version)
        ),
    )
    chargebacks = frame.filter(pl.col("rank").is_null() & (pl.col("is_fraud") == 1)).select(
        "transaction_id",
        "is_fraud",
        label_time=pl.col("tx_datetime").dt.epoch("us") + pl.col("_cb_s") * 1_000_000,
        source=pl.lit("chargeback"),
        reviewer=pl.lit(None, pl.String),
        note=pl.lit("simulated chargeback"),
    )
    events = pl.concat([analyst, chargebacks]).with_columns(
        pl.col("label_time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )
    truth_columns = frame.select("transaction_id", "tx_datetime", "customer_id", SCENARIO_COLUMN)
    return (
        events.join(truth_columns, on="transaction_id", how="left", maintain_order="left")
        .with_columns(scheduled_on=pl.lit(day, pl.Date), emitted_on=pl.lit(None, pl.Date))
        .select((pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()))
        .sort("label_time", "transaction_id")
    )


class LiveState:
    """The simulator's private record of one world's live days: scheduled events (with truth) and the ledger.

    Both files are written atomically, the events first; on loading, events of a day missing from the
    ledger (a run that crashed in between) are dropped and their emissions undone, so that run is replayed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def events_path(self) -> Path:
        """Every scheduled event, its truth, and the day it was emitted on (null: pending)."""
        return self.directory / "events.parquet"

    @property
    def days_path(self) -> Path:
        """The ledger: one row per emitted day."""
        return self.directory / "days.parquet"

    def days(self) -> pl.DataFrame:
        """The ledger (:data:`DAY_SCHEMA`), oldest day first."""
        if not self.days_path.exists():
            return pl.DataFrame(schema=DAY_SCHEMA)
        return pl.read_parquet(self.days_path).sort("day")

    def events(self) -> pl.DataFrame:
        """Scheduled events of the ledger's days (:data:`EVENT_SCHEMA`); emissions of unrecorded days undone."""
        if not self.events_path.exists():
            return pl.DataFrame(schema=EVENT_SCHEMA)
        recorded = self.days()["day"].implode()
        return (
            pl.read_parquet(self.events_path)
            .filter(pl.col("scheduled_on").is_in(recorded))
            .with_columns(
                emitted_on=pl.when(pl.col("emitted_on").is_in(recorded)).then(pl.col("emitted_on")).otherwise(None)
            )
        )

    def newest_day(self) -> date | None:
        """The newest day emitted, None before the first."""
        days = self.days()
        return None if days.height == 0 else days["day"].max()  # type: ignore[return-value]

    def commit(self, events: pl.DataFrame, day: dict[str, Any]) -> None:
        """Save all ``events`` and add ``day`` to the ledger (events first: see the class)."""
        write_parquet_atomic(events.select(list(EVENT_SCHEMA)), self.events_path)
        ledger = pl.concat([self.days(), pl.DataFrame([day], schema=DAY_SCHEMA)])
        write_parquet_atomic(ledger, self.days_path)


@dataclass(frozen=True)
class LiveEmission:
    """The first step of a live run (:func:`begin_live_day`): the files written, the state not committed yet."""

    day: date
    truth: pl.DataFrame
    events: pl.DataFrame  # the state's events, with those emitted now marked
    emitted: pl.DataFrame
    transactions_path: Path
    labels_path: Path | None


def begin_live_day(
    state: LiveState, truth: pl.DataFrame, day: date, transactions_path: Path, labels_path: Path
) -> LiveEmission:
    """Write ``day``'s transaction file and the label file of the events due by its end not emitted before.

    ``truth`` is the simulator's output for ``day``. The transaction file holds :func:`public_transactions`;
    the label file (:data:`data.labels.LABEL_COLUMNS`) every pending event with ``label_time <= day_end(day)``,
    and is not written when there is none (a label file needs rows). Nothing is committed: a run that stops
    before :func:`finish_live_day` is replayed whole, with the same files. Raises ``ValueError`` for a day not
    after the newest one emitted (a day is scheduled once).
    """
    newest = state.newest_day()
    if newest is not None and day <= newest:
        following = newest + timedelta(days=1)
        raise ValueError(f"live day {day} was already emitted (the newest is {newest}): the next one is {following}")
    if truth.height and truth["tx_datetime"].dt.date().unique().to_list() != [day]:
        raise ValueError(f"the transactions are not all of {day}")
    events = state.events()
    due = pl.col("emitted_on").is_null() & (pl.col("label_time") <= day_end(day))
    events = events.with_columns(emitted_on=pl.when(due).then(pl.lit(day)).otherwise(pl.col("emitted_on")))
    emitted = events.filter(pl.col("emitted_on") == day).sort("label_time", "transaction_id")
    write_parquet_atomic(public_transactions(truth), transactions_path)
    if emitted.height:
        write_parquet_atomic(emitted.select(LABEL_COLUMNS), labels_path)
    return LiveEmission(day, truth, events, emitted, transactions_path, labels_path if emitted.height else None)


def finish_live_day(
    state: LiveState,
    emission: LiveEmission,
    config: LiveLabelConfig,
    scores: pl.DataFrame | None = None,
    model_version: str | None = None,
) -> LiveDay:
    """Schedule the day's label events from the champion's ``scores`` and commit the state.

    ``scores``: the champion's scores of the day's transactions (``transaction_id, tx_datetime, customer_id,
    score``; None: no champion, no investigations): its top-``config.capacity`` cards are investigated.
    """
    day, truth = emission.day, emission.truth
    alerted = alerted_cards(scores, config.capacity) if scores is not None else None
    scheduled = schedule_labels(truth, day, config, alerted, model_version)
    if scheduled.filter(pl.col("label_time") <= day_end(day)).height:  # guarded by the config's minimum delays
        raise AssertionError(f"an event of {day} is due by its own end")
    events = pl.concat([emission.events, scheduled])
    analyst = scheduled.filter(pl.col("source") == "analyst")
    emitted = emission.emitted
    record = {
        "day": day,
        "transactions": truth.height,
        "frauds": int(truth["is_fraud"].sum()),
        "model_version": model_version if scores is not None else None,
        "alerted_cards": 0 if alerted is None else alerted.height,
        "investigated": analyst.height,
        "investigated_frauds": int(analyst["is_fraud"].sum()),
        "chargebacks_scheduled": scheduled.height - analyst.height,
        "emitted": emitted.height,
    }
    state.commit(events, record)
    return LiveDay(
        **record,
        emitted_analyst=emitted.filter(pl.col("source") == "analyst").height,
        emitted_chargeback=emitted.filter(pl.col("source") == "chargeback").height,
        pending=events.filter(pl.col("emitted_on").is_null()).height,
        transactions_path=str(emission.transactions_path),
        labels_path=None if emission.labels_path is None else str(emission.labels_path),
    )


def emit_live_day(
    state: LiveState,
    truth: pl.DataFrame,
    day: date,
    config: LiveLabelConfig,
    transactions_path: Path,
    labels_path: Path,
    scores: pl.DataFrame | None = None,
    model_version: str | None = None,
) -> LiveDay:
    """Both steps at once, for scores known up front: :func:`begin_live_day` then :func:`finish_live_day`."""
    emission = begin_live_day(state, truth, day, transactions_path, labels_path)
    return finish_live_day(state, emission, config, scores, model_version)
