"""Customer pseudonyms."""

from __future__ import annotations

import polars as pl

from data.privacy import hash_id, pseudonymise


def test_pseudonyms_are_stable_salted_and_replace_the_column() -> None:
    assert hash_id("42", "a") == hash_id("42", "a") != hash_id("42", "b")
    frame = pl.DataFrame({"transaction_id": ["t1", "t2"], "customer_id": ["42", "43"]})
    out = pseudonymise(frame, "a")
    assert out.columns == ["transaction_id", "customer_hash"]
    assert out["customer_hash"].to_list() == [hash_id("42", "a"), hash_id("43", "a")]
    assert "42" not in out["customer_hash"].to_list()
