from datetime import UTC, datetime

import polars as pl
import pytest

from features.engineering import FeatureSpec, compute_features
from features.sources import to_canonical_frame
from validation.features import FeatureValidationError, require_valid_features, validate_features
from validation.raw import validate_raw

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def raw_batch() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": ["ok1", "bad_time", "no_customer", "future", "ok2", "bad_label", "neg", "two"],
            "tx_datetime": [
                "2026-01-01 10:00:00",
                "yesterday",
                "2026-01-01 11:00:00",
                "2027-06-01 00:00:00",
                "2026-01-02T00:00:00",
                "2026-01-03 00:00:00",
                "2026-01-03 00:00:00",
                "2026-01-04 00:00:00",
            ],
            "customer_id": ["1", "2", "", "4", "5", "6", "7", None],
            "terminal_id": ["t"] * 8,
            "amount": ["1.5", "3", "4", "2", "7", "8", "-3", "12,50"],
            "is_fraud": ["0", "1", "", "0", "1", "7", "0", "0"],
        }
    )


def test_raw_suite_rejects_each_bad_row_with_its_reason() -> None:
    result = validate_raw(to_canonical_frame(raw_batch()), now=NOW)
    assert result.accepted["transaction_id"].to_list() == ["ok1", "ok2"]
    reasons = dict(result.rejected.select("transaction_id", "reason").iter_rows())
    assert reasons["bad_time"] == "tx_datetime: cannot parse value 'yesterday'"
    assert reasons["no_customer"] == "customer_id: missing or unparseable"
    assert "in the future" in reasons["future"]
    assert reasons["bad_label"] == "is_fraud: not 0, 1 or empty"
    assert reasons["neg"].startswith("amount: negative")
    assert reasons["two"] == "customer_id: missing or unparseable; amount: cannot parse value '12,50'"
    assert result.received == 8 == result.accepted.height + result.rejected.height
    assert not result.suite.success


def test_raw_suite_accepts_clean_simulated_data(small_transactions: pl.DataFrame) -> None:
    result = validate_raw(small_transactions, now=NOW)
    assert result.rejected.height == 0
    assert result.accepted.height == small_transactions.height
    assert result.suite.success


def test_feature_suite_passes_real_features_and_blocks_broken_ones(small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    features = compute_features(small_transactions, spec)
    assert validate_features(features, spec).success
    broken = features.with_columns(pl.lit(-1.0).alias("terminal_id_risk_7day_window"))
    with pytest.raises(FeatureValidationError, match="terminal_id_risk_7day_window: outside"):
        require_valid_features(broken, spec)
