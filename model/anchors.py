"""Published results on the handbook data: the anchors a model card is read against.

Source: Le Borgne, Siblini, Lebichot, Bontempi, *Reproducible Machine Learning for Credit Card
Fraud Detection – Practical Handbook* (Université Libre de Bruxelles), as summarised in
``../shared/data/handbook/README.md``. These are facts about published work on the handbook's
simulated data (1.47 M transactions, 2018-04-01 .. 2018-08-31), not results of this project:
a model trained on other data (e.g. the demo's simulated world) is only loosely comparable.

Plain dataclasses and no imports beyond the standard library: the service (and its Bento) imports
this module.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = (
    "Le Borgne, Siblini, Lebichot, Bontempi, Reproducible Machine Learning for Credit Card Fraud Detection – "
    "Practical Handbook, Université Libre de Bruxelles"
)


@dataclass(frozen=True)
class Protocol:
    """One published evaluation protocol."""

    key: str
    name: str
    description: str


@dataclass(frozen=True)
class Anchor:
    """One published model's test metrics under one protocol."""

    protocol: str
    model: str
    auc: float
    ap: float
    cp_at_100: float


PROTOCOL_A = Protocol(
    key="A",
    name="Protocol A (single split)",
    description=(
        "train 2018-07-25..07-31, 7-day label delay, test 2018-08-08..08-14 without the cards already known "
        "defrauded (58,264 transactions, 385 frauds); 15 baseline features, default parameters"
    ),
)
PROTOCOL_B = Protocol(
    key="B",
    name="Protocol B (prequential)",
    description=(
        "4 folds of 7-day train / 7-day delay / 7-day test shifted by 7 days, test folds anchored at "
        "2018-08-15; mean over folds, parameters chosen on validation folds anchored at 2018-07-11"
    ),
)
PROTOCOLS: tuple[Protocol, ...] = (PROTOCOL_A, PROTOCOL_B)

#: Published AUC ROC, AP and Card Precision@100, protocol A then protocol B.
ANCHORS: tuple[Anchor, ...] = (
    Anchor("A", "logistic regression", auc=0.871, ap=0.606, cp_at_100=0.291),
    Anchor("A", "decision tree (depth 2)", auc=0.763, ap=0.496, cp_at_100=0.241),
    Anchor("A", "random forest", auc=0.867, ap=0.658, cp_at_100=0.287),
    Anchor("A", "XGBoost", auc=0.862, ap=0.639, cp_at_100=0.273),
    Anchor("B", "logistic regression", auc=0.868, ap=0.623, cp_at_100=0.297),
    Anchor("B", "random forest", auc=0.870, ap=0.678, cp_at_100=0.299),
    Anchor("B", "XGBoost", auc=0.869, ap=0.687, cp_at_100=0.303),
)

#: CP@100 of a perfect ranker on protocol A's test set (the ceiling of that metric there).
PERFECT_CP_AT_100_PROTOCOL_A = 0.397


def anchors_for(protocol: str) -> tuple[Anchor, ...]:
    """The published anchors of ``protocol`` (``A`` or ``B``); raises ValueError for another key."""
    if protocol not in {p.key for p in PROTOCOLS}:
        raise ValueError(f"unknown protocol {protocol!r}: the published protocols are A and B")
    return tuple(a for a in ANCHORS if a.protocol == protocol)
