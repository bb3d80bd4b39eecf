"""Vectorised transaction simulator following the published design of the ULB handbook generator.

Customers and terminals live on a square grid; a customer uses the terminals within a radius.
Per customer: mean amount ~ U(5, 100), std = mean / 2, daily count ~ Poisson(lambda) with
lambda ~ U(0, 4); time of day ~ N(noon, 20,000 s), draws outside the day are dropped.
Fraud scenarios (applied in this order, later ones overwrite the scenario id):

1. any amount above ``scenario1_amount`` is fraud;
2. each day, compromised terminals: all their transactions in the next 28 days are fraud;
3. each day, compromised customers: a third of their transactions in the next 14 days are
   fraud, with the amount multiplied by 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from scipy.spatial import cKDTree

from features.contract import CANONICAL_SCHEMA, SCENARIO_COLUMN

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulated world (defaults: the handbook's published size)."""

    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: date = date(2018, 4, 1)
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


def _daily_picks(rng: np.random.Generator, rate: float, population: int, n_days: int) -> list[np.ndarray]:
    """Indices compromised on each day: floor(rate) picks plus one more with probability frac(rate)."""
    whole, frac = int(rate), rate - int(rate)
    picks = []
    for _ in range(n_days):
        k = min(population, whole + int(rng.random() < frac))
        picks.append(rng.choice(population, size=k, replace=False))
    return picks


def _active_matrix(picks: list[np.ndarray], population: int, n_days: int, duration: int) -> np.ndarray:
    """Boolean [entity, day] matrix: True while an entity is compromised."""
    active = np.zeros((population, n_days), dtype=bool)
    for day, entities in enumerate(picks):
        active[entities, day : day + duration] = True
    return active


def simulate_transactions(config: SimulatorConfig) -> pl.DataFrame:
    """Generate transactions in the canonical schema plus the ``fraud_scenario`` ground truth.

    Deterministic for a given config (seed included). Sorted by time; ids follow that order.
    """
    rng = np.random.default_rng(config.seed)
    c = config

    cust_xy = rng.uniform(0, c.grid_size, size=(c.n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=c.n_customers)
    std_amount = mean_amount / 2
    daily_rate = rng.uniform(0, c.max_daily_rate, size=c.n_customers)
    term_xy = rng.uniform(0, c.grid_size, size=(c.n_terminals, 2))

    # Terminals within the radius of each customer, as a CSR-like flat array.
    nearby = cKDTree(term_xy).query_ball_point(cust_xy, r=c.radius)
    n_nearby = np.fromiter((len(t) for t in nearby), dtype=np.int64, count=c.n_customers)
    offsets = np.concatenate([[0], np.cumsum(n_nearby)])
    flat_terminals = np.fromiter((t for ts in nearby for t in sorted(ts)), dtype=np.int64, count=int(offsets[-1]))

    counts = rng.poisson(daily_rate[:, None], size=(c.n_customers, c.n_days))
    counts[n_nearby == 0, :] = 0
    flat_counts = counts.ravel()
    customer = np.repeat(np.repeat(np.arange(c.n_customers), c.n_days), flat_counts)
    day = np.repeat(np.tile(np.arange(c.n_days), c.n_customers), flat_counts)
    n = customer.size

    seconds = np.rint(rng.normal(SECONDS_PER_DAY / 2, c.time_of_day_std_s, size=n)).astype(np.int64)
    amount = rng.normal(mean_amount[customer], std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean_amount[customer[negative]])
    amount = np.round(amount, 2)
    pick = (rng.random(n) * n_nearby[customer]).astype(np.int64)
    terminal = flat_terminals[offsets[customer] + pick]

    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY)
    customer, day, seconds, amount, terminal = (a[keep] for a in (customer, day, seconds, amount, terminal))
    order = np.lexsort((customer, seconds, day))
    customer, day, seconds, amount, terminal = (a[order] for a in (customer, day, seconds, amount, terminal))

    scenario = np.zeros(customer.size, dtype=np.int8)
    scenario[amount > c.scenario1_amount] = 1

    term_picks = _daily_picks(rng, c.compromised_terminals_per_day, c.n_terminals, c.n_days)
    term_active = _active_matrix(term_picks, c.n_terminals, c.n_days, c.terminal_compromise_days)
    scenario[term_active[terminal, day]] = 2

    cust_picks = _daily_picks(rng, c.compromised_customers_per_day, c.n_customers, c.n_days)
    cust_active = _active_matrix(cust_picks, c.n_customers, c.n_days, c.customer_compromise_days)
    stolen = cust_active[customer, day] & (rng.random(customer.size) < c.customer_fraud_share)
    amount[stolen] = np.round(amount[stolen] * c.customer_fraud_amount_factor, 2)
    scenario[stolen] = 3

    start = datetime(c.start_date.year, c.start_date.month, c.start_date.day, tzinfo=UTC)
    epoch_us = int(start.timestamp() * 1_000_000)
    tx_us = epoch_us + (day * SECONDS_PER_DAY + seconds) * 1_000_000
    frame = pl.DataFrame(
        {
            "tx_datetime": pl.Series(tx_us, dtype=pl.Int64).cast(CANONICAL_SCHEMA["tx_datetime"]),
            "customer_id": pl.Series(customer).cast(pl.String),
            "terminal_id": pl.Series(terminal).cast(pl.String),
            "amount": amount,
            "is_fraud": (scenario > 0).astype(np.int8),
            SCENARIO_COLUMN: scenario,
        }
    )
    # Ids unique across simulations and appended days: seed, date and rank within the day.
    day_key = pl.col("tx_datetime").dt.strftime("%Y%m%d")
    rank = pl.int_range(0, pl.len()).over(day_key).cast(pl.String).str.zfill(6)
    transaction_id = pl.format("s{}-{}-{}", pl.lit(c.seed), day_key, rank).alias("transaction_id")
    return frame.select(transaction_id, pl.all())
