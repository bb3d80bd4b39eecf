"""Data quality: Great Expectations suites and the validation runner (GX + Polars, no orchestration)."""
