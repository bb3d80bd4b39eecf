#!/usr/bin/env bash
# The benchmarks' system packages: Debian's wrk, the second load generator of bench/bench_latency.py.
# Idempotent: nothing happens when wrk is already installed. `make bench` runs it first.
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
fi
