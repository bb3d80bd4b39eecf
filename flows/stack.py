"""A local stack without Docker: Prefect server + UI, a process worker, the MLflow UI, the Bento service.

:class:`Stack` starts each piece as a child process bound to 127.0.0.1, waits for its health URL, and
stops everything it started (SIGINT, then SIGKILL after a grace period) on exit, in reverse order. Logs
go to ``<home>/logs/<name>.log``. Used by ``fraudops up`` and by the slow end-to-end test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from config.settings import Settings

WORK_POOL = "fraudops-process"
HOST = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One started child process."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@dataclass
class Stack:
    """Child processes started together and stopped together (a context manager)."""

    settings: Settings
    env: dict[str, str] = field(default_factory=dict)  # empty: the settings' child environment
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = self.env or self.settings.child_environment()

    @property
    def logs(self) -> Path:
        """Where the children's logs go."""
        return self.settings.home_dir / "logs"

    def start(
        self, name: str, cmd: list[str], url: str, health: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> Service:
        """Start ``cmd``; return once ``health`` answers 200 (raise, with the log's tail, if it exits or times out).

        ``env``: variables set for this child on top of the stack's environment.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=Path.cwd(),
                start_new_session=True,
            )
        service = Service(name, proc, url, log)
        self.services.append(service)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; last log lines:\n{_tail(log)}")
            try:
                if health and httpx.get(health, timeout=2).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            if not health and time.monotonic() > deadline - timeout + 5:
                return service  # no health URL (a worker): alive after a few seconds is enough
            time.sleep(0.5)
        raise RuntimeError(f"{name} not healthy at {health} within {timeout:.0f} s; last log lines:\n{_tail(log)}")

    def prefect_server(self, port: int) -> Service:
        """``prefect server start`` on loopback; sets ``PREFECT_API_URL`` for the children started after it."""
        url = f"http://{HOST}:{port}"
        service = self.start(
            "prefect-server",
            [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)],
            url,
            f"{url}/api/health",
        )
        self.env["PREFECT_API_URL"] = f"{url}/api"
        return service

    def prefect(self, *args: str) -> str:
        """Run a ``prefect`` CLI command against the stack's server; return its output."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def work_pool(self) -> None:
        """Create the process work pool the deployments use, if missing."""
        try:
            self.prefect("work-pool", "inspect", WORK_POOL)
        except RuntimeError:
            self.prefect("work-pool", "create", WORK_POOL, "--type", "process")

    def deploy_all(self) -> str:
        """``prefect deploy --all`` of prefect.yaml (work pool first); returns the output."""
        self.work_pool()
        return self.prefect("--no-prompt", "deploy", "--all")

    def worker(self) -> Service:
        """The process work pool (created if missing) and one worker polling it."""
        self.work_pool()
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--limit", "2"]
        return self.start("prefect-worker", cmd, "", "")

    def mlflow_ui(self, port: int) -> Service:
        """The MLflow UI over the project's tracking store."""
        url = f"http://{HOST}:{port}"
        cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", self.settings.tracking_uri]
        cmd += ["--host", HOST, "--port", str(port)]
        # MLflow 3's server also starts a job runner with several consumer processes; the UI needs none.
        self.env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        return self.start("mlflow-ui", cmd, url, f"{url}/health")

    def bento(self, bento: str, port: int, workers: int | None = None) -> Service:
        """``bentoml serve`` of a built Bento with ``workers`` processes; healthy when ``/readyz`` answers."""
        url = f"http://{HOST}:{port}"
        cmd = [sys.executable, "-m", "bentoml", "serve", bento, "--host", HOST, "--port", str(port)]
        return self.start("bento-service", cmd, url, f"{url}/readyz", env=self.settings.serve_overrides(workers))

    def stop(self) -> None:
        """Stop every child, newest first: SIGINT to its process group, SIGKILL after 20 s."""
        for service in reversed(self.services):
            proc = service.process
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                    proc.wait(timeout=20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.services.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
