"""Ingestion's world: the data contract, source adapters, the lake, the simulator, labels and feedback.

Pure Polars (and SQLite for the feedback log): no Prefect, no MLflow.
"""
