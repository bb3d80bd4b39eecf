"""Run every bench/bench_*.py in turn (same interpreter, repo root as cwd), then regenerate BENCHMARKS.md.

Run: uv run python bench/run_all.py [--quick] [--timeout 1800] [--only scoring]
Exits non-zero if any benchmark failed or timed out; the page is rendered either way.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `python bench/run_all.py`

from bench.harness import RESULTS, ROOT, render_benchmarks_md

BENCH_DIR = ROOT / "bench"


def scripts(only: list[str] | None = None) -> list[Path]:
    """The benchmark scripts, by name; ``only`` keeps those named (``scoring`` or ``bench_scoring``)."""
    found = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in only}
        found = [p for p in found if p.stem.removeprefix("bench_") in wanted]
    return found


def run(script: Path, quick: bool, timeout: float) -> tuple[bool, str]:
    """Run one script; (succeeded, short outcome)."""
    cmd = [sys.executable, str(script.relative_to(ROOT)), *(["--quick"] if quick else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)  # own group: a timeout ends its children too
    try:
        code = proc.wait(timeout)
    except BaseException as exc:  # timeout or Ctrl-C
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            return False, f"timed out after {timeout:.0f} s"
        raise
    return code == 0, "ok" if code == 0 else f"exit code {code}"


def main() -> int:
    """Run the benchmarks, print a summary, render the page; 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (small inputs)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per script (default 1800)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks, e.g. scoring")
    args = parser.parse_args()

    todo = scripts(args.only)
    if not todo:
        print(f"no benchmark scripts matched under {BENCH_DIR}", file=sys.stderr)
        return 1
    outcomes = []
    for script in todo:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        ok, outcome = run(script, args.quick, args.timeout)
        outcomes.append((script.name, ok, outcome, time.perf_counter() - started))
    print("\n== summary")
    for name, _, outcome, seconds in outcomes:
        print(f"{name:<32} {outcome:<24} {seconds:7.1f} s")
    out = ROOT / "BENCHMARKS.md"
    render_benchmarks_md(RESULTS, out)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if all(ok for _, ok, _, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
