"""The published evaluation protocols of the handbook data (A-strict, A-extended, B) and their metrics.

Definitions from ``../shared/data/handbook/README.md`` (Le Borgne et al., *Reproducible Machine
Learning for Credit Card Fraud Detection – Practical Handbook*). Windows are whole calendar days,
inclusive, on event time; labels are known ``delay`` days (7) after the day ends, so a window whose
labels may be used before a test day ``d`` ends at ``d - delay - 1`` at the latest.

- **A-strict** (as published): train on the week from 2018-07-25, test on the week from 2018-08-08
  (after the 7-day delay). The test set drops the transactions of cards already known defrauded:
  a fraud in the training week, or, for each test day ``d``, a fraud on any day up to ``d - 8``.
  On the handbook file that leaves 58,264 transactions and 385 frauds. Early stopping and the
  decision threshold use the week before the training week.
- **A-extended**: the same test set; training uses all labelled history up to 2018-07-31 (from the
  end of the feature warm-up). Hyperparameters and the number of boosting rounds are chosen on
  validation weeks before the test under the delay (train on the history before each validation
  week minus the delay gap, early-stop and score on the week); the final model is refitted on all
  the history with those rounds, and its threshold is the one chosen on the newest validation week.
- **B** (prequential, as published): 4 folds of 7-day train / 7-day delay / 7-day test shifted by
  7 days; the newest fold trains from the test anchor 2018-08-15 and the older folds start 7, 14
  and 21 days before it (the published anchor is the newest fold's first training day), so the test
  weeks start 2018-08-08, 08-15, 08-22 and 08-29. The handbook file ends on 2018-08-31: the newest
  test week is cut to 3 days. Figures are means over the folds.
- **A-feedback** (ours): A-extended's folds, test set and training history, with the labels a fraud team
  would have had. Each day from the go-live (``Anchors.go_live_weeks``, :data:`GO_LIVE_WEEKS` weeks of
  labelled history after the feature warm-up) a production model (XGBoost, default recipe, trained once
  on that history with the extended features) ranks the day's cards; the top
  :data:`INVESTIGATION_CAPACITY` are investigated and their transactions of the day get ``analyst``
  labels known the next day (:func:`investigator_labels`).
  Every other label follows the 7-day delay (``dataset`` events). The features read labels through
  ``data.labels`` as known at each row's time; nothing else changes. Delayed-window features see the
  same labels either way, so the difference shows only with the label-aware features
  (``feature_set="labels"``).

Hyperparameters are always chosen on validation folds that end, with the delay gap, before the
first test day: for A-strict and B the published validation folds (the same shape as the test
folds, the newest training from 2018-07-11, i.e. validation weeks 07-04 .. 07-31); for A-extended
the validation weeks just before the test under the delay. A test window is never used to choose
anything. The generator's ``fraud_scenario`` only breaks recall and AP down per scenario.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from data.contract import SCENARIO_COLUMN
from features.definitions import FeatureSpec
from model.anchors import PERFECT_CP_AT_100_PROTOCOL_A
from model.metrics import CostModel, alert_metrics, card_precision_at_k, ranking_metrics, recall_at_budget
from model.policies import ThresholdPolicy
from model.search import SearchFold, SearchResult, search_folds
from model.training import TrainingConfig, fit_logistic, fit_xgboost, labels, matrix, predict

PROTOCOLS = ("A-strict", "A-extended", "A-feedback", "B")
#: A-feedback: cards investigated per day (the handbook's CP@k setting) and weeks of history before go-live.
INVESTIGATION_CAPACITY = 100
GO_LIVE_WEEKS = 4
MODELS = ("xgboost", "logistic_regression")
#: Published anchors (handbook README): protocol A's training week, protocol B's newest fold of each kind.
A_TRAIN_START = date(2018, 7, 25)
B_TEST_ANCHOR = date(2018, 8, 15)
B_VALID_ANCHOR = date(2018, 7, 11)
#: Published size of protocol A's test set on the handbook file, and the CP@100 of a perfect ranker on it.
PUBLISHED_TEST_TRANSACTIONS = 58_264
PUBLISHED_TEST_FRAUDS = 385
PUBLISHED_PERFECT_CP_AT_100 = PERFECT_CP_AT_100_PROTOCOL_A
WEEK = 7
ALERT_BUDGET = 0.01
SUMMARY_METRICS = ("auc", "ap", "cp_at_100", "recall_at_budget", "cost", "precision", "recall", "alert_rate")


@dataclass(frozen=True)
class Window:
    """Calendar days ``start .. end``, both inclusive."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def days_from(cls, start: date, days: int = WEEK) -> Window:
        """The ``days`` days from ``start``."""
        return cls(start, start + timedelta(days=days - 1))

    @property
    def days(self) -> int:
        """Number of days covered."""
        return (self.end - self.start).days + 1

    def select(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Labelled rows of ``frame`` whose event date falls in the window."""
        day = pl.col("tx_datetime").dt.date()
        return frame.filter((day >= self.start) & (day <= self.end) & pl.col("is_fraud").is_not_null())

    def gap_before(self, later: Window) -> int:
        """Whole days strictly between this window's end and ``later``'s start (negative if they overlap)."""
        return (later.start - self.end).days - 1

    def to_dict(self) -> dict[str, str]:
        """ISO dates."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class Fold:
    """Fit on ``train``, score on ``test`` without the cards known defrauded since ``known_from``.

    ``stop`` is the early-stopping and threshold window (None: early-stop on ``test``, which is
    then a validation window, or refit with chosen rounds in a refit protocol).
    """

    name: str
    train: Window
    test: Window
    known_from: date
    stop: Window | None = None

    def to_dict(self) -> dict[str, Any]:
        """Window boundaries as ISO dates."""
        return {
            "name": self.name,
            "train": self.train.to_dict(),
            "stop": self.stop.to_dict() if self.stop else None,
            "test": self.test.to_dict(),
            "known_from": self.known_from.isoformat(),
        }


@dataclass(frozen=True)
class Anchors:
    """Protocol dates and fold counts; the defaults are the published ones (tests move them).

    ``train_start`` is protocol A's training week; ``test_anchor`` and ``valid_anchor`` are the first
    training days of protocol B's newest test and validation folds. ``valid_folds`` validation folds
    serve A-strict and B (A-strict's newest trains from ``train_start - delay - 7``, which is
    ``valid_anchor`` with the published dates), ``extended_valid_folds`` A-extended (and A-feedback, whose
    investigations start ``go_live_weeks`` weeks of labelled history after the warm-up).
    """

    train_start: date = A_TRAIN_START
    go_live_weeks: int = GO_LIVE_WEEKS
    test_anchor: date = B_TEST_ANCHOR
    valid_anchor: date = B_VALID_ANCHOR
    folds: int = 4
    valid_folds: int = 4
    extended_valid_folds: int = 2

    def is_published(self) -> bool:
        """Whether these are the published anchors and fold counts (the count checks apply)."""
        return self == Anchors()


@dataclass(frozen=True)
class Protocol:
    """Test folds, the validation folds that choose hyperparameters, and the label delay."""

    name: str
    delay_days: int
    test_folds: tuple[Fold, ...]
    valid_folds: tuple[Fold, ...]
    refit: bool = False

    def check(self, first_day: date, last_day: date) -> None:
        """Raise ``ValueError`` unless every window is in the data and nothing chosen sees a test label.

        Per test fold, train and stop windows end at least ``delay`` days before the test starts;
        every validation fold (train, stop, valid) ends at least ``delay`` days before the first
        test day of the protocol, since its choice applies to every test fold.
        """
        first_test = min(f.test.start for f in self.test_folds)
        for fold in (*self.test_folds, *self.valid_folds):
            before_test = [fold.train, *([fold.stop] if fold.stop else [])]
            for w in (*before_test, fold.test):
                if w.start < first_day or w.end > last_day:
                    raise ValueError(f"{self.name} {fold.name}: window {w.start}..{w.end} outside the data")
            for w in before_test:
                if w.gap_before(fold.test) < self.delay_days:
                    raise ValueError(f"{self.name} {fold.name}: {w.start}..{w.end} is within the delay of its test")
        for fold in self.valid_folds:
            for w in (fold.train, fold.test, *([fold.stop] if fold.stop else [])):
                if (first_test - w.end).days - 1 < self.delay_days:
                    raise ValueError(f"{self.name} {fold.name}: {w.start}..{w.end} is within the delay of the test")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready windows."""
        return {
            "name": self.name,
            "delay_days": self.delay_days,
            "refit": self.refit,
            "test_folds": [f.to_dict() for f in self.test_folds],
            "valid_folds": [f.to_dict() for f in self.valid_folds],
        }


def _weekly_fold(name: str, train_start: date, delay_days: int, last_day: date | None = None) -> Fold:
    """Train a week from ``train_start``, early-stop on the week before, test the week after the delay."""
    test = Window.days_from(train_start + timedelta(days=WEEK + delay_days))
    if last_day is not None and test.end > last_day and test.start <= last_day:
        test = Window(test.start, last_day)
    return Fold(
        name,
        Window.days_from(train_start),
        test,
        known_from=train_start,
        stop=Window.days_from(train_start - timedelta(days=WEEK)),
    )


def build_protocol(
    name: str,
    first_day: date,
    last_day: date,
    spec: FeatureSpec,
    anchors: Anchors | None = None,
) -> Protocol:
    """The folds of protocol ``name`` for data covering ``first_day .. last_day``, checked (see :class:`Protocol`).

    Training and validation windows start after the feature warm-up (``spec.history_days``) in
    A-extended; the weekly folds of A-strict and B are the published ones.
    """
    anchors = anchors or Anchors()
    delay = spec.label_delay_days
    if name == "A-strict":
        valid_anchor = anchors.train_start - timedelta(days=delay + WEEK)
        protocol = Protocol(
            name,
            delay,
            (_weekly_fold("test", anchors.train_start, delay),),
            _weekly_folds("valid", valid_anchor, anchors.valid_folds, delay),
        )
    elif name in ("A-extended", "A-feedback"):
        strict = _weekly_fold("test", anchors.train_start, delay)
        history_start = first_day + timedelta(days=spec.history_days)
        test = Fold("test", Window(history_start, strict.train.end), strict.test, strict.known_from)
        valid = []
        for i in reversed(range(anchors.extended_valid_folds)):
            window = Window.days_from(anchors.train_start - timedelta(days=WEEK * i))
            train_end = window.start - timedelta(days=delay + 1)
            if train_end < history_start:
                raise ValueError(f"A-extended: no training history before validation week {window.start}")
            known_from = window.start - timedelta(days=delay + WEEK)
            valid.append(Fold(f"valid-{window.start}", Window(history_start, train_end), window, known_from))
        protocol = Protocol(name, delay, (test,), tuple(valid), refit=True)
        if name == "A-feedback" and go_live_day(first_day, spec, anchors.go_live_weeks) >= test.test.start:
            raise ValueError("A-feedback: the go-live of the investigations would come after the test starts")
    elif name == "B":
        protocol = Protocol(
            name,
            delay,
            _weekly_folds("test", anchors.test_anchor, anchors.folds, delay, last_day),
            _weekly_folds("valid", anchors.valid_anchor, anchors.valid_folds, delay),
        )
    else:
        raise ValueError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    protocol.check(first_day, last_day)
    return protocol


def _weekly_folds(
    kind: str, anchor: date, n_folds: int, delay_days: int, last_day: date | None = None
) -> tuple[Fold, ...]:
    """``n_folds`` weekly folds whose newest trains from ``anchor``, each 7 days before the next; oldest first."""
    starts = [anchor - timedelta(days=WEEK * i) for i in reversed(range(n_folds))]
    folds = [_weekly_fold("", s, delay_days, last_day) for s in starts]
    return tuple(Fold(f"{kind}-{f.test.start}", f.train, f.test, f.known_from, f.stop) for f in folds)


def go_live_day(first_day: date, spec: FeatureSpec, weeks: int = GO_LIVE_WEEKS) -> date:
    """A-feedback's first investigated day: ``weeks`` of labelled history after the warm-up, plus the delay."""
    return first_day + timedelta(days=spec.history_days + WEEK * weeks + spec.label_delay_days + 1)


def investigator_labels(
    scored: pl.DataFrame, start: date, capacity: int = INVESTIGATION_CAPACITY, known_after_days: int = 1
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``analyst`` label events of each day's top-``capacity`` cards by score, known ``known_after_days`` later.

    ``scored`` has ``transaction_id, tx_datetime, customer_id, is_fraud`` (the truth an investigation
    finds) and ``score``. From ``start`` on, each day's cards are ranked by their highest score that day;
    the top ones' transactions of that day are labelled at the start of the day ``known_after_days`` later.
    Returns the events and a summary (cards and transactions investigated, frauds found).
    """
    day = pl.col("tx_datetime").dt.date()
    rows = scored.filter(day >= start).with_columns(_day=day)
    top_cards = (
        rows.group_by("_day", "customer_id")
        .agg(pl.col("score").max())
        .sort("score", descending=True)
        .group_by("_day", maintain_order=True)
        .head(capacity)
        .select("_day", "customer_id")
    )
    investigated = rows.join(top_cards, on=["_day", "customer_id"], how="semi")
    events = investigated.select(
        "transaction_id",
        "is_fraud",
        label_time=(pl.col("_day") + pl.duration(days=known_after_days)).cast(pl.Datetime("us", "UTC")),
        source=pl.lit("analyst"),
    )
    summary = {
        "days": rows["_day"].n_unique(),
        "cards": top_cards.height,
        "transactions": investigated.height,
        "frauds_found": int(investigated["is_fraud"].sum()),
        "frauds_from_go_live": int(rows["is_fraud"].sum()),
        "capacity": capacity,
        "known_after_days": known_after_days,
        "start": start.isoformat(),
    }
    return events, summary


def exclude_known_defrauded(frame: pl.DataFrame, test: Window, known_from: date, delay_days: int) -> pl.DataFrame:
    """Labelled rows of ``test`` without the cards already known defrauded on their day.

    On test day ``d`` a card is known defrauded when it has a fraud on a day in
    ``known_from .. d - delay - 1`` (the published rule: its training-week frauds and those whose
    label arrived before ``d``). ``frame`` supplies those labels and the test rows.
    """
    day = pl.col("tx_datetime").dt.date()
    latest = test.end - timedelta(days=delay_days + 1)
    first_fraud = (
        frame.filter((pl.col("is_fraud") == 1) & (day >= known_from) & (day <= latest))
        .group_by("customer_id")
        .agg(day.min().alias("_first_fraud"))
    )
    rows = test.select(frame).join(first_fraud, on="customer_id", how="left", maintain_order="left")
    known = pl.col("_first_fraud") <= day - timedelta(days=delay_days + 1)
    return rows.filter(pl.col("_first_fraud").is_null() | ~known).drop("_first_fraud")


def perfect_card_precision(test: pl.DataFrame, k: int = 100) -> float:
    """CP@k of a perfect ranker (score = label) on a test set: the ceiling of CP@k there."""
    frame = test.select("tx_datetime", "customer_id", "is_fraud")
    return card_precision_at_k(frame.with_columns(score=pl.col("is_fraud").cast(pl.Float64)), k)


def score_metrics(
    test: pl.DataFrame,
    scores: np.ndarray,
    threshold: float,
    budget: float = ALERT_BUDGET,
    cost_model: CostModel | None = None,
) -> dict[str, Any]:
    """AUC, AP, CP@100, recall at the alert ``budget``, cost and alert metrics at ``threshold``, per-scenario recall.

    ``scenarios`` (when the frame has the generator's ``fraud_scenario``) maps each fraud scenario
    to its fraud count, its recall among the top ``budget`` share of transactions, and the AP of
    ranking its frauds above the genuine transactions: analysis only, never a feature.
    """
    y = labels(test)
    amounts = test["tx_amount"].to_numpy()
    card_frame = test.select("tx_datetime", "customer_id", "is_fraud").with_columns(score=pl.Series(scores))
    out: dict[str, Any] = {
        **ranking_metrics(y, scores),
        "cp_at_100": card_precision_at_k(card_frame, 100),
        "recall_at_budget": recall_at_budget(y, scores, budget),
        "alert_budget": budget,
        "cost": (cost_model or CostModel()).cost(y, scores, amounts, threshold),
        "threshold": float(threshold),
        **alert_metrics(y, scores, threshold),
    }
    if SCENARIO_COLUMN in test.columns:
        scenario = test[SCENARIO_COLUMN].fill_null(0).to_numpy()
        genuine = y == 0
        out["scenarios"] = {}
        for s in sorted(int(v) for v in np.unique(scenario[y == 1])):
            mine = (scenario == s) & (y == 1)
            keep = genuine | mine
            out["scenarios"][str(s)] = {
                "frauds": int(mine.sum()),
                "recall_at_budget": recall_at_budget(mine.astype(np.int8), scores, budget),
                "ap": ranking_metrics(mine[keep].astype(np.int8), scores[keep])["ap"],
            }
    return out


def fit_xgboost_rounds(train: pl.DataFrame, spec: FeatureSpec, config: TrainingConfig, rounds: int) -> xgb.Booster:
    """Fit exactly ``rounds`` boosting rounds on ``train`` (no early stopping: the rounds were chosen on validation).

    ``best_iteration`` is set to the last round so that :func:`model.training.predict` uses them all.
    """
    dtrain = xgb.DMatrix(matrix(train, spec), label=labels(train), feature_names=spec.feature_names)
    booster = xgb.train(config.xgb_params(), dtrain, num_boost_round=rounds)
    booster.best_iteration = rounds - 1
    return booster


@dataclass
class ProtocolResult:
    """What a protocol run measured: per model, per fold, the search, the test-set counts and timings."""

    protocol: Protocol
    models: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]
    search: SearchResult
    test_set: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    config: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``xgboost`` and ``logistic_regression`` at the top, then the details."""
        return {
            **self.models,
            "protocol": self.protocol.name,
            "test_set": self.test_set,
            "folds": self.folds,
            "windows": self.protocol.to_dict(),
            "search": self.search.to_dict(),
            "xgboost_recipe": asdict(self.config),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def run_protocol(
    features: pl.DataFrame,
    protocol: Protocol,
    spec: FeatureSpec,
    base: TrainingConfig | None = None,
    budget_seconds: float = 300.0,
    seed: int = 42,
    max_trials: int | None = None,
    policy: ThresholdPolicy | None = None,
) -> ProtocolResult:
    """Search hyperparameters on the validation folds, then fit and score XGBoost and logistic regression per test fold.

    ``features`` are computed over the whole history (windows look back); the protocol only cuts
    them. The logistic regression has no hyperparameter (as published); both models get their
    decision threshold (``policy``, cost by default) from a window before the test.
    """
    policy = policy or ThresholdPolicy()
    base = base or TrainingConfig()
    delay = protocol.delay_days
    started = time.perf_counter()
    search_data = [
        SearchFold(
            fold.train.select(features),
            exclude_known_defrauded(features, fold.test, fold.known_from, delay),
            fold.stop.select(features) if fold.stop else None,
        )
        for fold in protocol.valid_folds
    ]
    found = search_folds(search_data, spec, base, budget_seconds, seed, max_trials)
    config = found.best
    search_seconds = time.perf_counter() - started
    newest_valid = search_data[-1]

    fold_results: list[dict[str, Any]] = []
    for fold in protocol.test_folds:
        t0 = time.perf_counter()
        train = fold.train.select(features)
        test = exclude_known_defrauded(features, fold.test, fold.known_from, delay)
        x_test = matrix(test, spec)
        logistic = fit_logistic(train, spec)
        if protocol.refit:
            rounds = found.best_trial.best_iterations[-1] + 1
            booster = fit_xgboost_rounds(train, spec, config, rounds)
            # Thresholds come from out-of-sample scores on the newest validation week.
            valid = newest_valid.valid
            xgb_valid_scores = predict(found.boosters[-1], matrix(valid, spec))
            lr_valid_scores = fit_logistic(newest_valid.train, spec).predict_proba(matrix(valid, spec))[:, 1]
        else:
            assert fold.stop is not None
            valid = fold.stop.select(features)
            booster = fit_xgboost(train, valid, spec, config)
            rounds = int(booster.best_iteration) + 1
            xgb_valid_scores = predict(booster, matrix(valid, spec))
            lr_valid_scores = logistic.predict_proba(matrix(valid, spec))[:, 1]
        y_valid, amounts = labels(valid), valid["tx_amount"].to_numpy()
        thresholds = {
            "xgboost": policy.choose(y_valid, xgb_valid_scores, amounts),
            "logistic_regression": policy.choose(y_valid, lr_valid_scores, amounts),
        }
        scores = {"xgboost": predict(booster, x_test), "logistic_regression": logistic.predict_proba(x_test)[:, 1]}
        fold_results.append(
            {
                **fold.to_dict(),
                "train_rows": train.height,
                "test_transactions": test.height,
                "test_frauds": int(test["is_fraud"].sum()),
                "test_days": fold.test.days,
                "perfect_cp_at_100": perfect_card_precision(test),
                "xgboost_rounds": rounds,
                "seconds": time.perf_counter() - t0,
                **{m: score_metrics(test, scores[m], thresholds[m], cost_model=policy.cost_model) for m in MODELS},
            }
        )
    models = {m: _mean_over_folds([f[m] for f in fold_results]) for m in MODELS}
    test_set = {
        "transactions": sum(f["test_transactions"] for f in fold_results),
        "frauds": sum(f["test_frauds"] for f in fold_results),
        "perfect_cp_at_100": float(np.mean([f["perfect_cp_at_100"] for f in fold_results])),
        "folds": len(fold_results),
    }
    seconds = {"search": search_seconds, "folds": time.perf_counter() - started - search_seconds}
    seconds["total"] = time.perf_counter() - started
    return ProtocolResult(protocol, models, fold_results, found, test_set, seconds, config)


def _mean_over_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold metrics as their mean (the fold itself when there is one), with ``<metric>_std`` across folds."""
    if len(per_fold) == 1:
        return per_fold[0]
    out: dict[str, Any] = {}
    for key in (*SUMMARY_METRICS, "alert_budget", "threshold"):
        values = [f[key] for f in per_fold if math.isfinite(f[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
        if key in SUMMARY_METRICS:
            out[f"{key}_std"] = float(np.std(values)) if values else float("nan")
    scenario_names = sorted({s for f in per_fold for s in f.get("scenarios", {})})
    if scenario_names:
        out["scenarios"] = {}
        for s in scenario_names:
            present = [f["scenarios"][s] for f in per_fold if s in f.get("scenarios", {})]
            out["scenarios"][s] = {
                "frauds": sum(p["frauds"] for p in present),
                **{k: float(np.nanmean([p[k] for p in present])) for k in ("recall_at_budget", "ap")},
            }
    return out
