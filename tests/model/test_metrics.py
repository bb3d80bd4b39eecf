"""Card Precision@k, recall at an alert budget and the cost threshold, on constructed cases."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.metrics import CostModel, alert_budget_threshold, card_precision_at_k, recall_at_budget


def _day(day: int, cards: list[int], scores: list[float], frauds: list[int]) -> pl.DataFrame:
    t = datetime(2018, 8, 8) + timedelta(days=day, hours=12)
    return pl.DataFrame({"tx_datetime": [t] * len(cards), "customer_id": cards, "score": scores, "is_fraud": frauds})


def test_card_precision_groups_by_card_and_drops_cards_found_earlier() -> None:
    frame = pl.concat(
        [
            # Day 0: card 1 has two transactions (max score 0.9, one fraud); card 2 genuine; card 3 fraud, low score.
            _day(0, [1, 1, 2, 3], [0.2, 0.9, 0.8, 0.1], [1, 0, 0, 1]),
            # Day 1: card 1 is still fraudulent but already found on day 0; card 3 now ranks first.
            _day(1, [1, 3, 2], [0.99, 0.7, 0.5], [1, 1, 0]),
        ]
    )
    # k=2: day 0 top = {1 (fraud), 2} -> 1/2; day 1 without card 1: top = {3 (fraud), 2} -> 1/2.
    assert card_precision_at_k(frame, k=2) == pytest.approx(0.5)
    # k=1: day 0 -> card 1 (1/1); day 1 -> card 3 (1/1).
    assert card_precision_at_k(frame, k=1) == pytest.approx(1.0)
    # k=4: day 0 finds cards 1 and 3 (2/4); day 1 has only card 2 left (0/4): the denominator stays k.
    assert card_precision_at_k(frame, k=4) == pytest.approx((2 / 4 + 0 / 4) / 2)


def test_recall_at_budget_and_its_threshold() -> None:
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.05, 0.0, 0.4, 0.01])
    assert recall_at_budget(y, s, 0.3) == pytest.approx(2 / 3)  # top 3: 0.9 (F), 0.8, 0.7 (F)
    assert recall_at_budget(y, s, 1.0) == 1.0
    threshold = alert_budget_threshold(s, 0.3)
    assert (s >= threshold).sum() == 3
    with pytest.raises(ValueError, match="alert budget"):
        alert_budget_threshold(s, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.floats(0, 500, allow_nan=False)), min_size=1, max_size=40),
    st.floats(0.1, 50),
    st.floats(0.0, 2.0),
)
def test_cost_threshold_is_the_brute_force_minimum(
    rows: list[tuple[bool, int, float]], per_alert: float, share: float
) -> None:
    y = np.array([int(r[0]) for r in rows])
    s = np.array([r[1] / 20 for r in rows])  # coarse scores: many ties
    amounts = np.array([r[2] for r in rows])
    model = CostModel(per_alert=per_alert, missed_fraud_share=share)
    threshold, cost = model.best_threshold(y, s, amounts)
    candidates = [*np.unique(s), np.nextafter(s.max(), np.inf)]
    brute = min(model.cost(y, s, amounts, t) for t in candidates)
    assert cost == pytest.approx(brute, abs=1e-6)
    assert model.cost(y, s, amounts, threshold) == pytest.approx(cost, abs=1e-6)
