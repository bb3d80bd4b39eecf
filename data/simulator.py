"""Vectorised transaction simulator following the published design of the ULB handbook generator.

Customers and terminals live on a square grid; a customer uses the terminals within a radius.
Per customer: mean amount ~ U(5, 100), std = mean / 2, daily count ~ Poisson(lambda) with
lambda ~ U(0, 4); time of day ~ N(noon, 20,000 s), draws outside the day are dropped.
Fraud scenarios (applied in this order, later ones overwrite the scenario id):

1. any amount above ``scenario1_amount`` is fraud;
2. each day, compromised terminals: all their transactions in the next 28 days are fraud;
3. each day, compromised customers: a third of their transactions in the next 14 days are
   fraud, with the amount multiplied by 5.

The world (customers, terminals) depends only on the seed, and every day draws from its own
random stream keyed by (seed, calendar day). Simulating 1 Apr..30 Jun and then 1 Jul..10 Jul gives
exactly the rows of simulating 1 Apr..10 Jul in one go, provided both runs share the world's
``origin`` (the first day compromises can start): that is the "live" mode that appends days.

Drift presets (:data:`DRIFT_PRESETS`) change the world from the simulated days on, in documented
ways, so monitoring and retraining can be demonstrated. They draw from separate random streams,
so the undrifted part of a day stays what it would have been.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
from scipy.spatial import cKDTree

from data.contract import CANONICAL_SCHEMA, SCENARIO_COLUMN

SECONDS_PER_DAY = 86_400
# Random streams, keyed with the seed and the calendar day.
_WORLD, _DAY, _TERMINAL_PICKS, _CUSTOMER_PICKS, _BURST_PICKS, _CARD_TESTING = range(6)
CARD_TESTING_SCENARIO = 4


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulated world (defaults: the handbook's published size)."""

    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: date = date(2018, 4, 1)
    origin: date | None = None  # first day compromises may start (None: start_date)
    seed: int = 0
    grid_size: float = 100.0
    radius: float = 5.0
    max_daily_rate: float = 4.0
    time_of_day_std_s: float = 20_000.0
    scenario1_amount: float = 220.0
    compromised_terminals_per_day: float = 2.0
    terminal_compromise_days: int = 28
    compromised_customers_per_day: float = 3.0
    customer_compromise_days: int = 14
    customer_fraud_share: float = 1 / 3
    customer_fraud_amount_factor: float = 5.0
    # Drift knobs (neutral by default; see DRIFT_PRESETS).
    amount_factor: float = 1.0
    burst_terminals_per_day: float = 0.0
    card_testing_customers_per_day: float = 0.0
    card_testing_days: int = 3
    card_testing_tx_per_day: float = 8.0
    card_testing_max_amount: float = 3.0
    drift: tuple[str, ...] = ()

    @classmethod
    def scaled(cls, n_customers: int, n_terminals: int, n_days: int, **kwargs: object) -> SimulatorConfig:
        """A smaller world whose compromise rates scale with its size (same fraud rate)."""
        return cls(
            n_customers=n_customers,
            n_terminals=n_terminals,
            n_days=n_days,
            compromised_terminals_per_day=2.0 * n_terminals / 10_000,
            compromised_customers_per_day=3.0 * n_customers / 5_000,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def world_origin(self) -> date:
        """The first day of the world: no compromise starts before it."""
        return self.origin or self.start_date

    def with_drift(self, presets: Iterable[str]) -> SimulatorConfig:
        """This config with the named drift presets applied (unknown names raise ``ValueError``)."""
        config = self
        for name in presets:
            if name not in DRIFT_PRESETS:
                raise ValueError(f"unknown drift preset {name!r}; choose from {', '.join(DRIFT_PRESETS)}")
            config = replace(DRIFT_PRESETS[name].apply(config), drift=(*config.drift, name))
        return config


@dataclass(frozen=True)
class DriftPreset:
    """A documented change of the world, applied to the days being simulated."""

    description: str

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """The config with this preset's change."""
        raise NotImplementedError


@dataclass(frozen=True)
class AmountInflation(DriftPreset):
    """Every amount is multiplied by ``factor`` (before the scenario-1 rule)."""

    factor: float = 1.3

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """Multiply the amount factor."""
        return replace(config, amount_factor=config.amount_factor * self.factor)


@dataclass(frozen=True)
class TerminalBurst(DriftPreset):
    """Extra terminals compromised each day (``multiple`` x the base rate), for the usual 28 days."""

    multiple: float = 9.0

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """Add burst picks on top of the base compromise rate."""
        return replace(config, burst_terminals_per_day=config.compromised_terminals_per_day * self.multiple)


@dataclass(frozen=True)
class CardTesting(DriftPreset):
    """A new fraud pattern (scenario 4): stolen cards tested with bursts of tiny payments anywhere."""

    multiple: float = 2.0

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """Compromise ``multiple`` x the base customer rate for card testing."""
        return replace(config, card_testing_customers_per_day=config.compromised_customers_per_day * self.multiple)


DRIFT_PRESETS: dict[str, DriftPreset] = {
    "amount-inflation": AmountInflation("all amounts x1.3 (prices rise); more amounts cross the scenario-1 rule"),
    "terminal-burst": TerminalBurst("10x as many terminals compromised per day (scenario 2), each for 28 days"),
    "card-testing": CardTesting(
        "new fraud pattern, scenario 4: each day 2x the scenario-3 rate of cards are stolen and, for 3 days, "
        "get ~8 extra payments a day of at most 3.00 at random terminals anywhere on the grid"
    ),
}


@dataclass(frozen=True)
class _World:
    mean_amount: np.ndarray
    std_amount: np.ndarray
    daily_rate: np.ndarray
    n_nearby: np.ndarray
    offsets: np.ndarray
    flat_terminals: np.ndarray


def _rng(config: SimulatorConfig, stream: int, day: date | None = None) -> np.random.Generator:
    key = [config.seed, stream] + ([day.toordinal()] if day else [])
    return np.random.default_rng(key)


def _world(c: SimulatorConfig) -> _World:
    rng = _rng(c, _WORLD)
    cust_xy = rng.uniform(0, c.grid_size, size=(c.n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=c.n_customers)
    daily_rate = rng.uniform(0, c.max_daily_rate, size=c.n_customers)
    term_xy = rng.uniform(0, c.grid_size, size=(c.n_terminals, 2))
    # Terminals within the radius of each customer, as a CSR-like flat array.
    nearby = cKDTree(term_xy).query_ball_point(cust_xy, r=c.radius)
    n_nearby = np.fromiter((len(t) for t in nearby), dtype=np.int64, count=c.n_customers)
    offsets = np.concatenate([[0], np.cumsum(n_nearby)])
    flat = np.fromiter((t for ts in nearby for t in sorted(ts)), dtype=np.int64, count=int(offsets[-1]))
    return _World(mean_amount, mean_amount / 2, daily_rate, n_nearby, offsets, flat)


def _picks(c: SimulatorConfig, stream: int, rate: float, population: int, day: date) -> np.ndarray:
    """Entities compromised on ``day``: floor(rate) picks plus one more with probability frac(rate)."""
    if rate <= 0:
        return np.empty(0, dtype=np.int64)
    rng = _rng(c, stream, day)
    whole, frac = int(rate), rate - int(rate)
    k = min(population, whole + int(rng.random() < frac))
    return rng.choice(population, size=k, replace=False)


def _active(
    c: SimulatorConfig, stream: int, rate: float, population: int, duration: int, *, look_back: bool = True
) -> np.ndarray:
    """Boolean [entity, simulated day] matrix: True while an entity is compromised.

    With ``look_back``, compromises that started up to ``duration`` days before the first simulated
    day (never before the origin) still apply, so appended days continue the world. Drift streams
    do not look back: a drift starts with the run that asks for it.
    """
    first, n_days = c.start_date, c.n_days
    active = np.zeros((population, n_days), dtype=bool)
    since = max(c.world_origin, first - timedelta(days=duration - 1)) if look_back else first
    for offset in range((since - first).days, n_days):
        entities = _picks(c, stream, rate, population, first + timedelta(days=offset))
        active[entities, max(offset, 0) : offset + duration] = True
    return active


def _day(c: SimulatorConfig, w: _World, day: date, index: int) -> dict[str, np.ndarray]:
    """One day's genuine transactions (before fraud), from the day's own random stream."""
    rng = _rng(c, _DAY, day)
    counts = rng.poisson(w.daily_rate)
    counts[w.n_nearby == 0] = 0
    customer = np.repeat(np.arange(c.n_customers), counts)
    n = customer.size
    seconds = np.rint(rng.normal(SECONDS_PER_DAY / 2, c.time_of_day_std_s, size=n)).astype(np.int64)
    amount = rng.normal(w.mean_amount[customer], w.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * w.mean_amount[customer[negative]])
    pick = (rng.random(n) * w.n_nearby[customer]).astype(np.int64)
    terminal = w.flat_terminals[w.offsets[customer] + pick]
    stolen_draw = rng.random(n)
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY)
    return {
        "customer": customer[keep],
        "day": np.full(int(keep.sum()), index),
        "seconds": seconds[keep],
        "amount": np.round(amount[keep] * c.amount_factor, 2),
        "terminal": terminal[keep],
        "stolen_draw": stolen_draw[keep],
        "scenario": np.zeros(int(keep.sum()), dtype=np.int8),
    }


def _card_testing(c: SimulatorConfig, active: np.ndarray, day: date, index: int) -> dict[str, np.ndarray]:
    """Scenario-4 payments of the day: tiny amounts at random terminals for cards under test."""
    rng = _rng(c, _CARD_TESTING, day)
    victims = np.flatnonzero(active[:, index])
    counts = rng.poisson(c.card_testing_tx_per_day, size=victims.size)
    customer = np.repeat(victims, counts)
    n = customer.size
    return {
        "customer": customer,
        "day": np.full(n, index),
        "seconds": rng.integers(1, SECONDS_PER_DAY, size=n),
        "amount": np.round(rng.uniform(0.5, c.card_testing_max_amount, size=n), 2),
        "terminal": rng.integers(0, c.n_terminals, size=n),
        "stolen_draw": np.ones(n),
        "scenario": np.full(n, CARD_TESTING_SCENARIO, dtype=np.int8),
    }


def simulate_transactions(config: SimulatorConfig) -> pl.DataFrame:
    """Generate transactions in the canonical schema plus the ``fraud_scenario`` ground truth.

    Deterministic for a given config (seed included); a day's rows do not depend on which other
    days are simulated with it (same seed, world size and origin). Sorted by time; ids follow that order.
    """
    c = config
    if c.start_date < c.world_origin:
        raise ValueError(f"start_date {c.start_date} is before the world's origin {c.world_origin}")
    w = _world(c)
    days = [c.start_date + timedelta(days=i) for i in range(c.n_days)]
    parts = [_day(c, w, d, i) for i, d in enumerate(days)]
    if c.card_testing_customers_per_day > 0:
        rate, span = c.card_testing_customers_per_day, c.card_testing_days
        testing = _active(c, _CARD_TESTING, rate, c.n_customers, span, look_back=False)
        parts += [_card_testing(c, testing, d, i) for i, d in enumerate(days)]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    customer, day, terminal, amount, scenario = (cols[k] for k in ("customer", "day", "terminal", "amount", "scenario"))

    scenario[(amount > c.scenario1_amount) & (scenario == 0)] = 1
    span = c.terminal_compromise_days
    term_active = _active(c, _TERMINAL_PICKS, c.compromised_terminals_per_day, c.n_terminals, span)
    term_active |= _active(c, _BURST_PICKS, c.burst_terminals_per_day, c.n_terminals, span, look_back=False)
    scenario[term_active[terminal, day] & (scenario < CARD_TESTING_SCENARIO)] = 2
    span = c.customer_compromise_days
    cust_active = _active(c, _CUSTOMER_PICKS, c.compromised_customers_per_day, c.n_customers, span)
    stolen = cust_active[customer, day] & (cols["stolen_draw"] < c.customer_fraud_share)
    amount[stolen] = np.round(amount[stolen] * c.customer_fraud_amount_factor, 2)
    scenario[stolen] = 3

    order = np.lexsort((customer, cols["seconds"], day))
    start = datetime(c.start_date.year, c.start_date.month, c.start_date.day, tzinfo=UTC)
    tx_us = int(start.timestamp() * 1_000_000) + (day * SECONDS_PER_DAY + cols["seconds"]) * 1_000_000
    frame = pl.DataFrame(
        {
            "tx_datetime": pl.Series(tx_us[order], dtype=pl.Int64).cast(CANONICAL_SCHEMA["tx_datetime"]),
            "customer_id": pl.Series(customer[order]).cast(pl.String),
            "terminal_id": pl.Series(terminal[order]).cast(pl.String),
            "amount": amount[order],
            "is_fraud": (scenario[order] > 0).astype(np.int8),
            SCENARIO_COLUMN: scenario[order],
        }
    )
    # Ids unique across simulations and appended days: seed, date and rank within the day.
    day_key = pl.col("tx_datetime").dt.strftime("%Y%m%d")
    rank = pl.int_range(0, pl.len()).over(day_key).cast(pl.String).str.zfill(6)
    transaction_id = pl.format("s{}-{}-{}", pl.lit(c.seed), day_key, rank).alias("transaction_id")
    return frame.select(transaction_id, pl.all())
