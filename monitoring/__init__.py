"""Drift and performance computations (pure); the monitor flow publishes their artifacts."""
