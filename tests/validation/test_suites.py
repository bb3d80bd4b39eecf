import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from data.sources import to_canonical_frame
from features.definitions import FeatureSpec, compute_features
from validation import gx_runner
from validation.docs import build_data_docs, data_docs_markdown, recording_data_docs
from validation.features import (
    FeatureProfile,
    FeatureValidationError,
    ReferenceProfile,
    ReferenceTolerance,
    after_warmup,
    reference_profile,
    require_valid_features,
    validate_features,
)
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


@pytest.fixture(scope="module")
def world_features(small_transactions: pl.DataFrame) -> pl.DataFrame:
    return compute_features(small_transactions, FeatureSpec())


def split_world(features: pl.DataFrame, day: int = 49) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reference = the first ``day`` days (steady part: days 37..day), later = the rest."""
    cut = features["tx_datetime"].min() + timedelta(days=day)
    return features.filter(pl.col("tx_datetime") < cut), features.filter(pl.col("tx_datetime") >= cut)


def test_reference_bounds_pass_a_later_window_and_fail_shifted_ones(world_features: pl.DataFrame) -> None:
    spec = FeatureSpec()
    reference, later = split_world(world_features)
    profile = reference_profile(reference, spec)
    start = world_features["tx_datetime"].min()
    assert profile.start is not None and profile.start >= start + timedelta(days=spec.history_days)
    result = validate_features(later, spec, profile, history_start=start)
    assert result.success, [o.reason for o in result.failures]
    assert sum(o.expectation == "expect_column_mean_to_be_between" for o in result.outcomes) == len(spec.feature_names)

    tripled = later.with_columns(pl.col("tx_amount") * 3)
    with pytest.raises(FeatureValidationError, match=r"tx_amount: mean \d+\.?\d* outside reference bounds \[") as exc:
        require_valid_features(tripled, spec, profile, history_start=start)
    failing = {o.column for o in exc.value.result.failures}
    assert failing == {"tx_amount"}, exc.value.result.failures

    flipped = later.with_columns(tx_during_night=1 - pl.col("tx_during_night"))
    failures = validate_features(flipped, spec, profile, history_start=start).failures
    assert [o.column for o in failures] == ["tx_during_night"]
    assert failures[0].reason.startswith("tx_during_night: mean 0.8")

    # Without history_start the later window is its own history: nothing is past the warm-up.
    short = validate_features(later, spec, profile)
    assert [o.expectation for o in short.failures] == ["reference_window"]


def test_training_gate_lets_the_simulators_drift_through(
    small_transactions: pl.DataFrame, world_features: pl.DataFrame
) -> None:
    """The reference bounds stop a broken upstream, not drift: two weeks of every preset still pass."""
    from datetime import date

    from data.simulator import SimulatorConfig, simulate_transactions

    spec = FeatureSpec()
    profile = reference_profile(split_world(world_features)[0], spec)
    config = SimulatorConfig.scaled(200, 400, 14, seed=11, start_date=date(2026, 3, 2), origin=date(2026, 1, 1))
    drifted = simulate_transactions(config.with_drift(("amount-inflation", "terminal-burst", "card-testing")))
    assert drifted["fraud_scenario"].eq(4).sum() > 0
    features = compute_features(pl.concat([small_transactions, drifted]), spec)
    result = validate_features(features, spec, profile)
    assert result.success, [o.reason for o in result.failures]


def test_reference_profile_json_round_trip_and_floor(world_features: pl.DataFrame) -> None:
    spec = FeatureSpec()
    profile = reference_profile(world_features, spec)
    assert profile.names == spec.feature_names
    assert profile.rows == after_warmup(world_features, spec).height > 0
    for f in profile.features:
        assert f.q_low <= f.mean <= f.q_high and f.std >= 0 and f.null_rate == 0
    assert ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    constant = FeatureProfile("c", mean=0.0, std=0.0, q_low=0.0, q_high=0.0, null_rate=0.0)
    assert ReferenceTolerance().mean_bounds(constant) == (-0.05, 0.05)


def test_data_docs_site_lists_each_suite_run(world_features: pl.DataFrame, tmp_path: Path) -> None:
    spec = FeatureSpec()
    docs = tmp_path / "data_docs"
    reference, later = split_world(world_features)
    profile = reference_profile(reference, spec)
    with recording_data_docs(docs):
        raw = validate_raw(to_canonical_frame(raw_batch()), now=NOW)
    feats = validate_features(later, spec, profile, history_start=world_features["tx_datetime"].min(), docs_dir=docs)
    assert len(raw.suite.docs_pages) == 1 and len(feats.docs_pages) == 2
    assert all(p.exists() and p.is_relative_to(docs) for p in (*raw.suite.docs_pages, *feats.docs_pages))
    texts = [p.read_text() for p in (*raw.suite.docs_pages, *feats.docs_pages)]
    assert any("raw_transactions" in text and "customer_id" in text for text in texts)
    assert any("features_reference" in text and "tx_amount" in text for text in texts)
    # Outside the block and without docs_dir nothing is published.
    assert validate_raw(to_canonical_frame(raw_batch()), now=NOW).suite.docs_pages == ()

    # A fresh context (another process) still lists the earlier runs: the results are stored on disk.
    gx_runner._docs_context.cache_clear()
    index = build_data_docs(docs)
    assert index == docs.resolve() / "index.html"
    html = index.read_text()
    for page in (*raw.suite.docs_pages, *feats.docs_pages):
        assert page.relative_to(docs.resolve()).as_posix() in html
    markdown = data_docs_markdown(index, [raw.suite, feats])
    assert f"]({index.as_uri()})" in markdown
    assert "`raw_transactions`: **failed**" in markdown and "`features`: passed" in markdown
