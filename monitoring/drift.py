"""Distribution drift between a reference window and a current window (Population Stability Index).

PSI compares the share of rows per bin: ``sum((cur - ref) * ln(cur / ref))``. Bins come from the
reference only:

- ``[min, q1], (q1, q2], ..., (qk, max]`` with ``q`` the reference quantiles (actual values,
  de-duplicated, so a 0/1 feature gets the two bins ``{0}`` and ``(0, 1]``, and a constant one bin);
- two open-ended outer bins, ``(-inf, min)`` and ``(max, +inf)``, which are empty in the reference and
  catch values outside its range (a constant that changes is drift, whichever way it moves);
- one bin for missing values (null or NaN), so a change in the missing rate is drift too.

Shares are taken over all rows, nulls included, and floored at :data:`PSI_EPSILON` so an empty bin
adds a large but finite term. Every term is >= 0, so PSI >= 0, and PSI(x, x) == 0.

Rule of thumb (:class:`DriftThresholds`): PSI <= 0.1 stable, 0.1-0.25 worth a look, > 0.25 shifted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import polars as pl

PSI_EPSILON = 1e-4
Status = Literal["ok", "warn", "drift"]
Window = tuple[date | None, date | None]


@dataclass(frozen=True)
class DriftThresholds:
    """PSI cut-offs: ``psi > warn`` is "warn", ``psi > drift`` is "drift"; ``bins`` quantile bins per feature.

    The defaults are the usual PSI rule of thumb: below 0.1 no meaningful change, 0.1 to 0.25 a
    moderate shift, above 0.25 a significant one.
    """

    warn: float = 0.1
    drift: float = 0.25
    bins: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.warn <= self.drift:
            raise ValueError(f"thresholds need 0 < warn <= drift, got warn={self.warn}, drift={self.drift}")
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")

    def status(self, psi: float) -> Status:
        """Classify one PSI value."""
        return "drift" if psi > self.drift else "warn" if psi > self.warn else "ok"


DEFAULT_THRESHOLDS = DriftThresholds()


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one column; means skip missing values (None if there are none), null rates count null and NaN."""

    feature: str
    psi: float
    ref_mean: float | None
    cur_mean: float | None
    ref_null_rate: float
    cur_null_rate: float
    status: Status


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift (and optionally the model score's) between two windows."""

    reference_start: date | None
    reference_end: date | None
    current_start: date | None
    current_end: date | None
    reference_rows: int
    current_rows: int
    features: tuple[FeatureDrift, ...]
    score: FeatureDrift | None
    thresholds: DriftThresholds

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        """Features whose status is "drift" (the score is not included; see :attr:`is_drift`)."""
        return tuple(f for f in self.features if f.status == "drift")

    @property
    def is_drift(self) -> bool:
        """Whether any feature, or the score, is over the drift threshold."""
        return bool(self.drifted) or (self.score is not None and self.score.status == "drift")

    def reasons(self) -> list[str]:
        """One sentence per drifted feature (then the score), e.g. ``"amount: PSI 0.310 > 0.25"``."""
        out = [f"{f.feature}: PSI {f.psi:.3f} > {self.thresholds.drift:g}" for f in self.drifted]
        if self.score is not None and self.score.status == "drift":
            out.append(f"{self.score.feature} (model score): PSI {self.score.psi:.3f} > {self.thresholds.drift:g}")
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per feature, then the score (floats to 4 decimals): the table for ``create_table_artifact``."""
        kinds = [("feature", f) for f in self.features] + ([("score", self.score)] if self.score else [])
        return [{"kind": kind, **{k: _round(v) for k, v in asdict(f).items()}} for kind, f in kinds]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings)."""
        return {
            "reference_window": [_iso(self.reference_start), _iso(self.reference_end)],
            "current_window": [_iso(self.current_start), _iso(self.current_end)],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": asdict(self.thresholds),
            "is_drift": self.is_drift,
            "reasons": self.reasons(),
            "features": [asdict(f) for f in self.features],
            "score": asdict(self.score) if self.score else None,
        }

    def description(self) -> str:
        """One line: the windows and how many columns crossed the drift threshold."""
        return (
            f"PSI per column, reference{_span(self.reference_start, self.reference_end)} vs current"
            f"{_span(self.current_start, self.current_end)}: {len(self.reasons())} over {self.thresholds.drift:g}"
        )

    def markdown(self) -> str:
        """Markdown summary: verdict, windows, one table row per feature (and the score), the reasons."""
        verdict = "drift detected" if self.is_drift else "no drift"
        lines = [
            f"## Feature drift: {verdict}",
            "",
            f"Reference{_span(self.reference_start, self.reference_end)} ({self.reference_rows} rows) vs current"
            f"{_span(self.current_start, self.current_end)} ({self.current_rows} rows); "
            f"PSI warn > {self.thresholds.warn:g}, drift > {self.thresholds.drift:g}.",
            "",
            "| column | PSI | status | mean ref → cur | null rate ref → cur |",
            "|---|---:|---|---|---|",
        ]
        for kind, f in [("", f) for f in self.features] + ([(" (score)", self.score)] if self.score else []):
            lines.append(
                f"| {f.feature}{kind} | {f.psi:.3f} | {f.status} | {_num(f.ref_mean)} → {_num(f.cur_mean)} "
                f"| {f.ref_null_rate:.2%} → {f.cur_null_rate:.2%} |"
            )
        reasons = self.reasons()
        return "\n".join(lines + ([""] + [f"- {r}" for r in reasons] if reasons else []))


def population_stability_index(
    reference: np.ndarray | pl.Series, current: np.ndarray | pl.Series, bins: int = 10
) -> float:
    """PSI of ``current`` against ``reference`` with ``bins`` reference-quantile bins (see the module docstring).

    Missing values (null or NaN) form their own bin. Raises ValueError if either side has no rows.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    ref, cur = _as_float(reference), _as_float(current)
    if ref.size == 0 or cur.size == 0:
        raise ValueError(f"PSI needs rows on both sides, got {ref.size} reference and {cur.size} current")
    ref_values = ref[~np.isnan(ref)]
    if ref_values.size == 0:  # nothing to bin on: all present values share one bin
        edges, low = np.empty(0), np.inf
    else:
        quantiles = np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
        edges, low = np.unique(np.append(quantiles, ref_values.max())), ref_values.min()
    ref_share, cur_share = (np.maximum(_bin_counts(a, edges, low) / a.size, PSI_EPSILON) for a in (ref, cur))
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def feature_drift(
    name: str, reference: pl.Series, current: pl.Series, thresholds: DriftThresholds = DEFAULT_THRESHOLDS
) -> FeatureDrift:
    """PSI, means, null rates and status of one numeric column."""
    ref, cur = _as_float(reference), _as_float(current)
    psi = population_stability_index(ref, cur, thresholds.bins)
    return FeatureDrift(
        feature=name,
        psi=psi,
        ref_mean=_mean(ref),
        cur_mean=_mean(cur),
        ref_null_rate=float(np.isnan(ref).mean()),
        cur_null_rate=float(np.isnan(cur).mean()),
        status=thresholds.status(psi),
    )


def drift_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    features: Sequence[str],
    thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
    score_column: str | None = None,
    reference_window: Window = (None, None),
    current_window: Window = (None, None),
) -> DriftReport:
    """Drift of each numeric ``features`` column (and of ``score_column`` if given) from reference to current.

    The windows are only recorded in the report. Raises ValueError if a frame is empty, a column is
    missing from either frame, or a column is not numeric (or boolean).
    """
    names = [features] if isinstance(features, str) else list(dict.fromkeys(features))
    columns = names + ([score_column] if score_column is not None else [])
    if not columns:
        raise ValueError("no features (and no score column) to compare")
    for label, frame in (("reference", reference), ("current", current)):
        if frame.height == 0:
            raise ValueError(f"the {label} frame is empty")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"columns missing from the {label} frame: {', '.join(missing)}")
        not_numeric = [c for c in columns if not (frame.schema[c].is_numeric() or frame.schema[c] == pl.Boolean)]
        if not_numeric:
            raise ValueError(f"columns not numeric in the {label} frame: {', '.join(not_numeric)}")

    def drift_of(column: str) -> FeatureDrift:
        return feature_drift(column, reference[column], current[column], thresholds)

    return DriftReport(
        reference_start=reference_window[0],
        reference_end=reference_window[1],
        current_start=current_window[0],
        current_end=current_window[1],
        reference_rows=reference.height,
        current_rows=current.height,
        features=tuple(drift_of(c) for c in names),
        score=drift_of(score_column) if score_column is not None else None,
        thresholds=thresholds,
    )


def _as_float(values: np.ndarray | pl.Series) -> np.ndarray:
    """A float64 numpy array, nulls as NaN."""
    if isinstance(values, pl.Series):
        return values.cast(pl.Float64).to_numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def _bin_counts(values: np.ndarray, edges: np.ndarray, low: float) -> np.ndarray:
    """Counts per bin: below ``low``, ``[low, edges[0]]``, ``(edges[i-1], edges[i]]``, above the last edge, missing."""
    missing = np.isnan(values)
    present = values[~missing]
    index = np.where(present < low, 0, np.searchsorted(edges, present, side="left") + 1)
    return np.append(np.bincount(index, minlength=edges.size + 2), missing.sum())


def _mean(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _span(start: date | None, end: date | None) -> str:
    """`` 2026-01-01 to 2026-01-31`` (``…`` for an open end), or nothing if neither end is known."""
    return "" if start is None and end is None else f" {_iso(start) or '…'} to {_iso(end) or '…'}"


def _round(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"
