"""Prefect flows and the `fraudops` CLI: thin orchestration over features/, validation/ and model/."""
