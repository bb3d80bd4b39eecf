"""Shared benchmark harness: machine facts, repeated timings, results files and the BENCHMARKS.md page.

A benchmark script measures with ``measure`` (seconds per repeat), turns timings into rates or per-item
times with ``throughput`` / ``per_item`` (per repeat, so median, min and max are real repeats), and ends
with ``write_results(name, figures, extra, source_note)``. ``render_benchmarks_md`` rebuilds the page from
``bench/results/*.json`` alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from config.machine import PACKAGES, machine
from data.lake import write_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLUMNS = ("figure", "median", "min", "max", "unit", "ceiling", "ratio", "note")

T = TypeVar("T")


# --- timings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Median, min and max of ``repeats`` measurements in ``unit`` (``samples`` keeps the raw values)."""

    median: float
    min: float
    max: float
    repeats: int
    unit: str
    samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, samples: Sequence[float], unit: str) -> Stat:
        """Summarise one measurement per repeat."""
        if not samples:
            raise ValueError("a Stat needs at least one sample")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples), unit, tuple(samples))

    def map(self, fn: Callable[[float], float], unit: str) -> Stat:
        """Apply ``fn`` to every sample and summarise again (so a reciprocal swaps min and max correctly)."""
        if not self.samples:
            raise ValueError("this Stat has no samples to transform")
        return Stat.of([fn(s) for s in self.samples], unit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "repeats": self.repeats,
            "unit": self.unit,
            "samples": list(self.samples),
        }


@overload
def measure(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Stat: ...
@overload
def measure(fn: Callable[[T], object], repeats: int, warmup: int = 1, *, setup: Callable[[], T]) -> Stat: ...
def measure(
    fn: Callable[..., object], repeats: int, warmup: int = 1, *, setup: Callable[[], Any] | None = None
) -> Stat:
    """Wall time in seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    With ``setup``, each call (warm-up included) gets a fresh ``setup()`` result as its argument, built
    outside the timed region (e.g. a stateful scorer that every repeat must start from scratch).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    samples = []
    for i in range(warmup + repeats):
        args = () if setup is None else (setup(),)
        started = time.perf_counter()
        fn(*args)
        elapsed = time.perf_counter() - started
        if i >= warmup:
            samples.append(elapsed)
    return Stat.of(samples, "s")


def parse_sizes(parser: argparse.ArgumentParser, defaults: dict[str, int], quick: dict[str, int]) -> argparse.Namespace:
    """Add ``--quick`` and an integer option per size (``--online-rows`` for ``online_rows``), then parse.

    Sizes left unset come from ``defaults``, or from ``quick`` with ``--quick``.
    """
    parser.add_argument("--quick", action="store_true", help="small inputs and fewer repeats (smoke run)")
    for key, default in defaults.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int, help=f"default {default:,}; --quick {quick[key]:,}")
    args = parser.parse_args()
    for key, value in (quick if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def throughput(seconds: Stat, rows: int, unit: str = "rows/s") -> Stat:
    """Rows per second, computed per repeat from a timing (in seconds) of ``rows`` rows."""
    _require_seconds(seconds)
    return seconds.map(lambda s: rows / s, unit)


def per_item(seconds: Stat, items: int, unit: str = "us", scale: float = 1e6) -> Stat:
    """Time per item (seconds * ``scale``; 1e6 gives microseconds), per repeat, from a timing of ``items``."""
    _require_seconds(seconds)
    return seconds.map(lambda s: s * scale / items, unit)


def _require_seconds(stat: Stat) -> None:
    if stat.unit != "s":
        raise ValueError(f"expected a timing in seconds, got unit {stat.unit!r}")


# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One reported figure, optionally beside the ceiling it is compared with (same unit).

    ``ratio`` is value median / ceiling median: for rates the share of the ceiling reached, for times how
    many times slower than the ceiling.
    """

    name: str
    value: Stat
    ceiling_name: str | None = None
    ceiling: Stat | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if (self.ceiling is None) != (self.ceiling_name is None):
            raise ValueError(f"{self.name}: give both ceiling_name and ceiling, or neither")
        if self.ceiling is not None and self.ceiling.unit != self.value.unit:
            raise ValueError(f"{self.name}: unit {self.value.unit!r} but ceiling in {self.ceiling.unit!r}")

    @property
    def unit(self) -> str:
        """The value's unit."""
        return self.value.unit

    @property
    def ratio(self) -> float | None:
        """Value median / ceiling median, or None without a ceiling."""
        if self.ceiling is None or self.ceiling.median == 0:
            return None
        return self.value.median / self.ceiling.median

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "value": self.value.to_dict(),
            "unit": self.unit,
            "ceiling_name": self.ceiling_name,
            "ceiling": None if self.ceiling is None else self.ceiling.to_dict(),
            "ratio": self.ratio,
            "note": self.note,
        }


def write_results(
    name: str, figures: list[Figure], extra: dict[str, Any], source_note: str, results_dir: Path = RESULTS
) -> Path:
    """Write ``<results_dir>/<name>.json`` (machine, figures, extra, source note) and ``<name>.md``, atomically.

    ``source_note`` says what data was used, e.g. "simulated, 5,000 customers" or "reads ../shared/data/handbook".
    Returns the JSON path.
    """
    payload = {
        "name": name,
        "machine": machine(),
        "source_note": source_note,
        "figures": [f.to_dict() for f in figures],
        "extra": extra,
    }
    path = results_dir / f"{name}.json"
    _write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
    _write_atomic(path.with_suffix(".md"), section_markdown(name, payload, level=1))
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through the lake's atomic writer (temp file, fsync, rename)."""
    write_atomic(path, lambda fh: fh.write(text.encode()))


# --- markdown ------------------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    """A number for a table: thousands separators, about three significant digits for small values."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "" if x is None else str(x)
    if abs(x) >= 1000 or (isinstance(x, int) and abs(x) >= 10):
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _figure_row(f: dict[str, Any]) -> list[str]:
    value, ceiling = f.get("value") or {}, f.get("ceiling")
    ceiling_cell = f"{f.get('ceiling_name')} ({fmt(ceiling.get('median'))})" if isinstance(ceiling, dict) else ""
    ratio = f.get("ratio")
    return [
        str(f.get("name", "?")),
        fmt(value.get("median")),
        fmt(value.get("min")),
        fmt(value.get("max")),
        str(f.get("unit") or value.get("unit") or ""),
        ceiling_cell,
        f"{ratio:.3g}×" if isinstance(ratio, int | float) else "",
        str(f.get("note") or ""),
    ]


def _legacy_row(key: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [key, fmt(value.get("median")), fmt(value.get("min")), fmt(value.get("max")), "", "", "", ""]
    return [key, fmt(value), "", "", "", "", "", ""]


def section_markdown(name: str, payload: Any, level: int = 2) -> str:
    """One results payload as a markdown section: heading, provenance line, extras and the figures table.

    Accepts the current shape (``figures`` is a list) and older ones (``figures`` maps names to numbers or
    ``{median, min, max}``); anything else is reported, not raised.
    """
    heading = "#" * level + f" {name}"
    if not isinstance(payload, dict):
        return f"{heading}\n\nUnreadable result: expected a JSON object.\n"
    m = payload.get("machine") if isinstance(payload.get("machine"), dict) else {}
    commit = m.get("git_commit")
    when = f"Run {m.get('timestamp', 'at an unknown time')}"
    if commit:
        when += f" at commit `{commit}`" + (" (uncommitted changes)" if m.get("git_dirty") else "")
    source = payload.get("source_note") or "not recorded (older result format)"
    lines = [heading, "", f"{when}. Data: {source}.", ""]
    extra = payload.get("extra")
    if isinstance(extra, dict) and extra:
        lines += ["Parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in extra.items()) + ".", ""]
    figures = payload.get("figures")
    if isinstance(figures, list):
        rows = [_figure_row(f) for f in figures if isinstance(f, dict)]
    elif isinstance(figures, dict):
        rows = [_legacy_row(str(k), v) for k, v in figures.items()]
    else:
        rows = []
    lines.append(_table(rows) if rows else "No figures.")
    return "\n".join(lines) + "\n"


def machine_markdown(m: dict[str, Any]) -> str:
    """A machine dict (from ``machine()``) as a short bullet list."""
    cores = m.get("cores", m.get("cpus", "?"))
    usable = m.get("cores_usable")
    lines = [
        f"- CPU: {m.get('cpu_model', 'unknown model')}, {cores} cores"
        + (f" ({usable} usable)" if usable not in (None, cores) else ""),
    ]
    if "memory_gib" in m:
        lines.append(f"- Memory: {m['memory_gib']} GiB")
    lines.append(f"- Platform: {m.get('platform', '?')}, Python {m.get('python', '?')}")
    packages = m.get("packages")
    if not isinstance(packages, dict):  # older shape: versions at the top level
        packages = {k: m[k] for k in PACKAGES if k in m}
    if packages:
        lines.append("- Packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()))
    return "\n".join(lines)


def _load(path: Path) -> tuple[Any, str | None]:
    """(payload, None) or (None, why it could not be read)."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def benchmarks_markdown(results_dir: Path = RESULTS) -> str:
    """The BENCHMARKS.md page built from ``results_dir/*.json`` alone (no clock, no machine probing)."""
    results = {p.stem: _load(p) for p in sorted(results_dir.glob("*.json"))}
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/harness.py` from `bench/results/*.json`; do not edit by hand. "
        "Rerun every benchmark and regenerate this page with `make bench` "
        "(`uv run python bench/run_all.py --quick` for a fast smoke run on small inputs).",
        "",
        "Each figure is the median of its repeats, with min and max. "
        "Ratio = median / ceiling median: for rates the share of the ceiling reached, "
        "for times how many times slower than the ceiling.",
        "",
        "## Machine",
        "",
    ]
    dated = {n: p for n, (p, _) in results.items() if isinstance(p, dict) and isinstance(p.get("machine"), dict)}
    if dated:
        newest = max(dated, key=lambda n: (str(dated[n]["machine"].get("timestamp", "")), n))
        m = dated[newest]["machine"]
        parts += [f"From the newest result, `{newest}` ({m.get('timestamp', 'undated')}):", "", machine_markdown(m)]
    else:
        parts.append("No results yet.")
    quality = {n: p for n, (p, _) in results.items() if n.startswith(QUALITY_PREFIX) and isinstance(p, dict)}
    if quality:
        parts += ["", training_markdown(quality).rstrip("\n")]
    for name, (payload, error) in results.items():
        section = f"## {name}\n\nCould not read `{name}.json`: {error}" if error else section_markdown(name, payload)
        parts += ["", section.rstrip("\n")]
    return "\n".join(parts) + "\n"


QUALITY_PREFIX = "quality-"


def _spread(samples: Sequence[float]) -> Stat | None:
    values = [float(v) for v in samples if isinstance(v, int | float) and not isinstance(v, bool)]
    return Stat.of(values, "s") if values else None


def _stat_row(name: str, stat: Stat | None, note: str) -> list[str]:
    if stat is None:
        return [name, "", "", "", "s", "", "", f"{note} (not recorded)"]
    return [name, fmt(stat.median), fmt(stat.min), fmt(stat.max), "s", "", "", note]


def _dict(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def training_run_line(name: str, payload: dict[str, Any]) -> str:
    """Which run a quality result came from, with its one-shot timings (features, whole evaluation)."""
    m, seconds = _dict(payload, "machine"), _dict(payload, "seconds")
    run = f"run {m.get('timestamp', 'of unknown date')}"
    if m.get("git_commit"):
        run += f" at commit `{m['git_commit']}`" + (" (uncommitted changes)" if m.get("git_dirty") else "")
    return (
        f"- `{name}`: {run}; {fmt(payload.get('rows'))} rows; whole evaluation {fmt(seconds.get('runtime'))} s, "
        f"of which compute_features {fmt(seconds.get('features'))} s (one run, that commit's feature code)"
    )


def training_rows(name: str, payload: dict[str, Any]) -> list[list[str]]:
    """Training-time rows of one quality result (``fraudops evaluate --json``)."""
    protocol = name.removeprefix(QUALITY_PREFIX)
    folds, windows, search = _dicts(payload.get("folds")), _dict(payload, "windows"), _dict(payload, "search")
    trials = _dicts(search.get("trials"))
    train_rows = " / ".join(fmt(f.get("train_rows")) for f in folds)
    rounds = ", ".join(str(f.get("xgboost_rounds", "?")) for f in folds)
    fit = "refit" if windows.get("refit") else "early-stopped fit"
    return [
        _stat_row(
            f"{protocol}: final fit, per test fold",
            _spread([f.get("seconds") for f in folds]),
            f"{len(folds)} fold(s): XGBoost {fit} on {train_rows} rows ({rounds} rounds), "
            "logistic regression, thresholds, test scoring",
        ),
        _stat_row(
            f"{protocol}: search, per trial",
            _spread([t.get("seconds") for t in trials]),
            f"{len(trials)} trials, one XGBoost fit per validation fold ({len(windows.get('valid_folds') or [])}); "
            f"{fmt(_dict(payload, 'seconds').get('search'))} s in all",
        ),
    ]


def training_markdown(quality: dict[str, dict[str, Any]]) -> str:
    """The training-time section, from the quality results (``bench/results/quality-*.json``) alone."""
    ordered = sorted(quality.items())
    return "\n".join(
        [
            "## Training time (quality runs)",
            "",
            "Seconds from the `fraudops evaluate --json` runs behind `bench/results/quality-*.json` "
            "(docs/quality.md). `make bench` does not rerun them (8 to 15 minutes each), so they date from these "
            "runs:",
            "",
            *(training_run_line(name, payload) for name, payload in ordered),
            "",
            "Median, min and max are over that run's test folds (one for protocol A) or its search trials; "
            "trials differ in hyperparameters and rounds, so their spread is not noise. "
            "No ceiling was measured for training.",
            "",
            _table([row for name, payload in ordered for row in training_rows(name, payload)]),
        ]
    )


def render_benchmarks_md(results_dir: Path = RESULTS, out: Path | None = ROOT / "BENCHMARKS.md") -> str:
    """Build the page from ``results_dir`` and, unless ``out`` is None, write it there atomically."""
    text = benchmarks_markdown(results_dir)
    if out is not None:
        _write_atomic(out, text)
    return text


if __name__ == "__main__":
    print(f"wrote {ROOT / 'BENCHMARKS.md'} ({len(render_benchmarks_md().splitlines())} lines)")


def seed_summary(runs: list[dict[str, float]], keys: tuple[str, ...] = ("auc", "ap")) -> dict[str, dict[str, float]]:
    """Mean, min and max of each metric over runs with different seeds (the quality scripts' tables)."""
    return {
        key: {
            "mean": statistics.fmean(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in keys
    }
