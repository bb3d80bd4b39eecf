"""Policies a person sets (the flows' parameters, forms in the Prefect UI, the CLI's options): each default once.

Light on purpose (pydantic only): the CLI imports them at start-up to show their defaults in ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np

    from model.metrics import CostModel


class ThresholdPolicy(BaseModel):
    """How the shipped decision threshold is chosen on the validation window.

    ``cost`` (default) minimises ``per_alert`` per alert plus ``missed_fraud_share`` of each missed
    fraud's amount; ``budget`` alerts the top ``alert_budget`` share of transactions; ``f1``
    maximises F1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cost", "budget", "f1"] = Field("cost", description="cost, budget or f1.")
    alert_budget: float = Field(0.01, gt=0, le=1, description="Share of transactions alerted with kind=budget.")
    per_alert: float = Field(5.0, ge=0, description="Cost of investigating one alert (kind=cost).")
    missed_fraud_share: float = Field(1.0, ge=0, description="Share of a missed fraud's amount lost (kind=cost).")

    @property
    def cost_model(self) -> CostModel:
        """The cost model of this policy (used for the cost metric whatever the kind)."""
        from model.metrics import CostModel

        return CostModel(self.per_alert, self.missed_fraud_share)

    def choose(self, y_true: np.ndarray, scores: np.ndarray, amounts: np.ndarray) -> float:
        """The threshold on validation labels, scores and amounts."""
        from model.metrics import alert_budget_threshold, best_f1_threshold

        if self.kind == "budget":
            return alert_budget_threshold(scores, self.alert_budget)
        if self.kind == "f1":
            return best_f1_threshold(y_true, scores)
        return self.cost_model.best_threshold(y_true, scores, amounts)[0]


class PromotionPolicy(BaseModel):
    """What a challenger must show to become champion (the `promote` flow's parameter; a form in the Prefect UI).

    Absolute floors first (``min_ap``, ``min_auc``); then against the champion: not worse in AP by
    more than ``max_ap_drop`` or, when ``min_ap_gain > 0``, better by at least ``min_ap_gain``.
    ``manual`` mode asks a person to approve a challenger that passed (within
    ``approval_timeout_s`` seconds, else it is rejected).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "manual"] = Field(
        "auto", description="auto, or manual: wait for approval in the Prefect UI (needs a Prefect server)."
    )
    min_ap: float = Field(0.3, ge=0, le=1, description="Absolute AP floor for the challenger.")
    min_auc: float = Field(0.8, ge=0, le=1, description="Absolute AUC floor for the challenger.")
    max_ap_drop: float = Field(0.01, description="Largest AP loss vs the champion still promoted.")
    min_ap_gain: float = Field(0.0, description="If > 0: AP gain over the champion required to replace it.")
    approval_timeout_s: int = Field(3600, ge=1, description="Seconds to wait for approval in manual mode.")

    @model_validator(mode="after")
    def _margins(self) -> PromotionPolicy:
        if self.max_ap_drop < 0 or self.min_ap_gain < 0:
            raise ValueError("max_ap_drop and min_ap_gain are margins: they must be >= 0")
        return self
