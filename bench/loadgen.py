"""HTTP load generator for bench/bench_latency.py, run in its own process so it never shares a GIL with the caller.

The parent calls :func:`run_load` with a spec; that starts ``python bench/loadgen.py --spec S --out O`` (bounded
by a wall-clock timeout) and returns the child's JSON. The child loads one or more targets (servers, or routes
of one server) in turn, interleaved: each target's warm-up, then repeat 1 of every target, repeat 2 of every
target, ... (the order rotating each round), so that a busy machine's drift hits the targets alike and their
ratios stay fair. A phase keeps ``concurrency`` requests in flight on a pool of ``concurrency`` keep-alive
connections on loopback, sends each request body at most once (so each request carries a distinct
transaction id), and stops at its request count or its time limit, whichever comes first.

Two clients: ``aiohttp`` (default) and ``httpx`` (one ``AsyncClient``, its pool sized to the concurrency).
In a check against the bare Starlette ceiling on a busy 2-core machine, httpx's pool was the bottleneck from
about 8 connections on (at concurrency 32 about a sixth of aiohttp's requests per second, p50 ~5x higher), so
it would report the client's limits as the server's; the benchmarks load with aiohttp.

Spec (JSON):
- ``targets``: list of ``{name, url, kind, bodies, client, field}``: POST to ``url`` with ``client``
  (``aiohttp`` by default, or ``httpx``); ``kind`` ``json`` (``bodies`` is a file with one JSON body per line)
  or ``file`` (``bodies`` is a list of file paths, each sent as multipart field ``field``, default ``file``);
- ``concurrency``: requests in flight; ``warmup``: untimed requests per target first; ``repeats`` phases of
  ``requests`` requests per target, each limited to ``max_seconds``; ``timeout``: seconds per request;
- ``budget_seconds`` (optional): start no further repeat of a target once its repeats took this long (one
  always runs);
- ``count_field`` (optional): sum this top-level field of the 2xx JSON answers (e.g. ``scored`` of a batch),
  parsed after the latency is taken, into the phase's ``field_sum``.

Result: ``{"targets": {name: {"warmup": phase, "repeats": [phase, ...], "client": ...}}}``; a phase has
``requests`` (sent), ``ok`` (2xx), ``errors`` (everything else, transport errors included, by kind in
``error_kinds``), ``seconds`` (wall), ``rps`` (2xx answers per second), latency ``p50_ms``, ``p90_ms``,
``p99_ms``, ``p999_ms``, ``mean_ms`` and ``max_ms`` of the 2xx answers (body read included), ``stopped_by``
(``count`` or ``time``) and a sample error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

HERE = Path(__file__).resolve()


# --- parent side ---------------------------------------------------------------------------------------


def run_load(spec: dict[str, Any], wall_timeout_s: float) -> dict[str, Any]:
    """Run one load spec in a child process and return its result (raises if it fails or overruns)."""
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, str(HERE), "--spec", str(spec_path), "--out", str(out_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=wall_timeout_s)
        if done.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(out_path.read_text())


# --- child side ----------------------------------------------------------------------------------------


class _Bodies:
    """Request bodies by index: JSON lines or uploaded files (bytes, read up front)."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.kind = target.get("kind", "json")
        if self.kind == "json":
            self.items = Path(target["bodies"]).read_bytes().splitlines()
        elif self.kind == "file":
            self.items = [Path(p).read_bytes() for p in target["bodies"]]
            self.names = [Path(p).name for p in target["bodies"]]
        else:
            raise ValueError(f"kind must be 'json' or 'file', not {self.kind!r}")

    def __len__(self) -> int:
        return len(self.items)


class _Client:
    """POST a body by index; answers (status, body bytes). Transport errors raise ``TRANSPORT_ERRORS``."""

    TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError)

    def __init__(self, spec: dict[str, Any], target: dict[str, Any]) -> None:
        self.kind = target.get("client", "aiohttp")
        self.url, self.bodies, self.field = target["url"], _Bodies(target), target.get("field", "file")
        self.cursor = 0  # the next unsent body
        concurrency, timeout = int(spec["concurrency"]), float(spec.get("timeout", 60))
        if self.kind == "httpx":
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            self.httpx = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False)
        elif self.kind == "aiohttp":
            self.aiohttp = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency), timeout=aiohttp.ClientTimeout(total=timeout)
            )
        else:
            raise ValueError(f"client must be 'aiohttp' or 'httpx', not {self.kind!r}")

    async def post(self, i: int) -> tuple[int, bytes]:
        """Send body ``i``."""
        url = self.url
        body, json_body = self.bodies.items[i], self.bodies.kind == "json"
        if self.kind == "httpx":
            if json_body:
                response = await self.httpx.post(url, content=body, headers={"content-type": "application/json"})
            else:
                files = {self.field: (self.bodies.names[i], body, "application/octet-stream")}
                response = await self.httpx.post(url, files=files)
            return response.status_code, response.content
        if json_body:
            data: Any = body
            headers = {"content-type": "application/json"}
        else:
            data = aiohttp.FormData()
            data.add_field(self.field, body, filename=self.bodies.names[i], content_type="application/octet-stream")
            headers = {}
        async with self.aiohttp.post(url, data=data, headers=headers) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        """Close the connections."""
        if self.kind == "httpx":
            await self.httpx.aclose()
        else:
            await self.aiohttp.close()


async def _phase(
    client: _Client,
    count: int,
    concurrency: int,
    max_seconds: float,
    count_field: str | None = None,
) -> dict[str, Any]:
    """Send the client's next ``count`` bodies, ``concurrency`` in flight, until done or ``max_seconds``."""
    start = cursor = client.cursor
    end = min(start + count, len(client.bodies))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sample: list[str] = []
    field_sum = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal cursor, field_sum
        while cursor < end and time.perf_counter() < deadline:
            i = cursor
            cursor += 1
            t0 = time.perf_counter()
            try:
                status, content = await client.post(i)
            except client.TRANSPORT_ERRORS as exc:
                errors[type(exc).__name__] += 1
                if not sample:
                    sample.append(repr(exc)[:300])
                continue
            elapsed = time.perf_counter() - t0
            if 200 <= status < 300:
                latencies.append(elapsed)
                if count_field:
                    field_sum += int(json.loads(content).get(count_field, 0))
            else:
                errors[f"HTTP {status}"] += 1
                if not sample:
                    sample.append(content[:300].decode(errors="replace"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    client.cursor = cursor
    sent = cursor - start
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": sent,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_sample": sample[0] if sample else None,
        "seconds": seconds,
        "rps": len(latencies) / seconds if seconds > 0 else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else None,
        "p90_ms": float(np.percentile(ms, 90)) if ms.size else None,
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else None,
        "p999_ms": float(np.percentile(ms, 99.9)) if ms.size else None,
        "mean_ms": float(ms.mean()) if ms.size else None,
        "max_ms": float(ms.max()) if ms.size else None,
        "field_sum": field_sum if count_field else None,
        "stopped_by": "count" if cursor >= end else "time",
    }


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    clients = {t["name"]: _Client(spec, t) for t in spec["targets"]}
    concurrency, limit, field = int(spec["concurrency"]), float(spec["max_seconds"]), spec.get("count_field")
    budget = float(spec.get("budget_seconds", float("inf")))
    out: dict[str, dict[str, Any]] = {name: {"repeats": [], "client": c.kind} for name, c in clients.items()}
    spent = dict.fromkeys(clients, 0.0)
    try:
        for name, client in clients.items():
            out[name]["warmup"] = await _phase(client, int(spec.get("warmup", 0)), concurrency, limit, field)
        names = list(clients)
        for round_ in range(int(spec.get("repeats", 1))):
            k = round_ % len(names)
            for name in names[k:] + names[:k]:  # rotate who goes first
                if out[name]["repeats"] and spent[name] > budget:
                    continue
                phase = await _phase(clients[name], int(spec["requests"]), concurrency, limit, field)
                spent[name] += phase["seconds"]
                out[name]["repeats"].append(phase)
    finally:
        for client in clients.values():
            await client.close()
    return {"targets": out}


def main() -> None:
    """Child entry point: read the spec, run it, write the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="JSON spec file")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    result = asyncio.run(_run(json.loads(args.spec.read_text())))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
