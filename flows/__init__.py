"""Prefect flows and the `fraudops` CLI: thin orchestration over data/, features/, validation/, monitoring/, model/."""
