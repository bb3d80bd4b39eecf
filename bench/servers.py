"""Serving helpers shared by the served benchmarks (bench/bench_latency.py): start, wait for and stop servers.

:func:`serving` starts a server subprocess on a free loopback port and yields once ``/readyz`` answers and its
log shows every worker initialised; on the way out it stops the server and any descendant still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, Stat
from config.settings import QUIET_ENV


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int) -> dict[int, bytes]:
    """Descendant pids of ``pid`` with their command lines (to recognise them later)."""
    tree, found, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            with contextlib.suppress(OSError):
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
                todo.append(child)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started, then any of its own descendants still alive (by pid)."""
    descendants = _descendants(proc.pid)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid, cmdline in descendants.items():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(
    name: str, cmd: list[str], env: dict[str, str], logs: Path, marker: str, count: int
) -> Iterator[tuple[str, int]]:
    """Start ``cmd --port P``; yield (URL, pid) once ``/readyz`` answers and its log has ``count`` ``marker`` lines."""
    port = free_port()
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    ready = httpx.get(f"{base}/readyz", timeout=2, trust_env=False).status_code == 200
                    if ready and log_path.read_text(errors="replace").count(marker) >= count:
                        break
                if time.monotonic() - started > 300:
                    raise RuntimeError(f"{name} not ready after 300 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            print(f"   {name}: ready in {time.monotonic() - started:.0f} s", flush=True)
            yield base, proc.pid
        finally:
            _stop(proc)


def _cpu_ticks(pids: list[int]) -> int:
    """User + system clock ticks used so far by these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)
    return total


def idle_cpu(pid: int, windows: int = 3, seconds: float = 1.0) -> Stat:
    """CPU a server and its workers use with no requests, in % of one core, per ``seconds`` window."""
    pids, tick = [pid, *_descendants(pid)], os.sysconf("SC_CLK_TCK")
    samples = []
    for _ in range(windows):
        before = _cpu_ticks(pids)
        time.sleep(seconds)
        samples.append(100.0 * (_cpu_ticks(pids) - before) / tick / seconds)
    return Stat.of(samples, "% core")


def base_env(tmp: Path) -> dict[str, str]:
    """The servers' environment: this one without project or BentoML overrides, quiet, stores in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDOPS_", "BENTOML_CONFIG"))}
    env.update(QUIET_ENV)
    env.update({"BENTOML_HOME": str(tmp / "bentoml"), "PYTHONPATH": str(ROOT)})
    return env


def bentoml_config(
    tmp: Path,
    service: str,
    workers: int,
    access_log: bool = True,
    timeout_s: float | None = None,
    monitoring: bool = True,
) -> Path:
    """A BentoML config file (JSON is YAML): workers, access log, traffic timeout, prediction monitoring on/off."""
    name = f"bentoml-{service}-w{workers}{'' if access_log else '-nolog'}{f'-t{timeout_s:g}' if timeout_s else ''}"
    config: dict[str, Any] = {"workers": workers, "logging": {"access": {"enabled": access_log}}}
    if timeout_s:
        config["traffic"] = {"timeout": timeout_s}
    if not monitoring:
        name += "-nomon"
        config["monitoring"] = {"enabled": False}  # bentoml.monitor() then hands out a no-op monitor
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps({"services": {service: config}}))
    return path


def bentoml_cmd(target: str) -> list[str]:
    """``bentoml serve <target>`` on loopback (the port is appended by :func:`serving`)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]
