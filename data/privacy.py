"""Pseudonyms for customer (card) ids: what logs, monitor output and artifacts carry instead of the raw id."""

from __future__ import annotations

import hashlib

import polars as pl


def hash_id(value: str, salt: str) -> str:
    """A stable pseudonym for a customer (or card) id: salted SHA-256, 16 hex characters."""
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()[:16]


def pseudonymise(frame: pl.DataFrame, salt: str, column: str = "customer_id") -> pl.DataFrame:
    """``frame`` with ``column`` replaced by ``customer_hash`` (for small frames shown to people: artifacts)."""
    if column not in frame.columns:
        return frame
    hashed = [hash_id(str(v), salt) for v in frame[column].to_list()]
    return frame.with_columns(pl.Series(column, hashed, dtype=pl.String)).rename({column: "customer_hash"})
