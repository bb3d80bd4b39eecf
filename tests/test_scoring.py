"""The service's scorer against the offline pipeline and the raw booster (no server needed)."""

import numpy as np
import polars as pl

from features.contract import TransactionIn
from features.engineering import FeatureSpec, compute_features
from features.online import OnlineFeatureState
from model.bundle import Bundle
from model.splits import TimeSplit
from model.training import train_model
from service.scoring import Scorer


def test_scorer_probabilities_equal_the_booster_on_offline_features(small_transactions: pl.DataFrame) -> None:
    spec = FeatureSpec()
    features = compute_features(small_transactions, spec)
    days = features["tx_datetime"].dt.date()
    result = train_model(features, spec, TimeSplit.ending_at(days.max(), days.min(), spec.label_delay_days))
    held_out = features.tail(500)
    history = small_transactions.filter(~pl.col("transaction_id").is_in(held_out["transaction_id"].implode()))
    state = OnlineFeatureState.from_transactions(history, spec).to_frame()
    scorer = Scorer(Bundle(result.booster, {**result.model_card(), "model_version": "t"}, state))
    columns = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"]
    scored = [scorer.score(TransactionIn.model_construct(**row)) for row in held_out.select(columns).to_dicts()]
    expected = result.booster.inplace_predict(
        held_out.select(spec.feature_names).to_numpy(), iteration_range=(0, result.best_iteration + 1)
    )
    got = np.array([s.fraud_probability for s in scored])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(s.decision == ("alert" if s.fraud_probability >= s.threshold else "approve") for s in scored)
    assert all(len(s.reasons) == 3 for s in scored)
