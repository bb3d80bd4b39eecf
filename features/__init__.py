"""Data contract, simulator, lake storage and feature engineering (pure Polars, no orchestration)."""
