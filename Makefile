# Two commands matter: `make demo` (the main job) and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
# Use uv from PATH when present, else bootstrap a private copy under .tools/.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
UV_RUN := $(UV) run --locked

.PHONY: help install demo test test-fast lint format bench clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.5"

install: | $(UV)  ## Create .venv from uv.lock (runtime + dev dependencies)
	$(UV) sync --locked

demo: install  ## Run the whole lifecycle on simulated data, then serve the API and UI on 127.0.0.1:3000
	$(UV_RUN) fraudops demo

test: install  ## Run the whole test suite (slow end-to-end tests included)
	$(UV_RUN) pytest

test-fast: install  ## Skip the slow end-to-end tests
	$(UV_RUN) pytest -m "not slow"

lint: install  ## Ruff lint + format check
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .

format: install  ## Apply ruff fixes and formatting
	$(UV_RUN) ruff check --fix .
	$(UV_RUN) ruff format .

bench: install  ## Install wrk if missing, run bench/bench_*.py -> bench/results/, then BENCHMARKS.md (QUICK=1: small inputs)
	./bench/setup.sh
	$(UV_RUN) python bench/run_all.py $(if $(QUICK),--quick)

clean:  ## Remove the local state (.fraudops/) and caches; keeps .venv
	rm -rf .fraudops .pytest_cache .ruff_cache .hypothesis
