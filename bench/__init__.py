"""Benchmarks: each ``bench/bench_*.py`` writes ``bench/results/<name>.{json,md}`` through ``bench.harness``."""
