"""The promotion gate: challenger vs champion on the same labelled window, with the same metric code.

Pure decisions on measured scores; the flow in ``flows/promotion.py`` measures, asks for approval in
manual mode and moves the alias.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from model.policies import PromotionPolicy


@dataclass(frozen=True)
class ModelScore:
    """One model version measured on the promotion window at its own shipped threshold."""

    version: str
    ap: float
    auc: float
    precision: float
    recall: float
    alert_rate: float
    cost: float

    @classmethod
    def from_metrics(cls, version: str, metrics: dict[str, float]) -> ModelScore:
        """From ``model.training.evaluate_booster`` output."""
        return cls(version, *(float(metrics[k]) for k in ("ap", "auc", "precision", "recall", "alert_rate", "cost")))


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger becomes champion, and why (one reason per check)."""

    promote: bool
    challenger: ModelScore
    champion: ModelScore | None
    window: tuple[date, date] | None
    reasons: tuple[str, ...]
    mode: str = "auto"

    @property
    def challenger_version(self) -> str:
        """The challenger's version."""
        return self.challenger.version

    @property
    def champion_version(self) -> str | None:
        """The champion's version at decision time (None without one)."""
        return self.champion.version if self.champion else None

    def with_review(self, approve: bool, reason: str) -> PromotionDecision:
        """The decision after a manual review: promoted only when the gate passed and the reviewer approved."""
        return PromotionDecision(
            self.promote and approve, self.challenger, self.champion, self.window, (*self.reasons, reason), "manual"
        )

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready form (versions and APs at the top level for scripts)."""
        return {
            "promote": self.promote,
            "mode": self.mode,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "challenger_ap": self.challenger.ap,
            "champion_ap": self.champion.ap if self.champion else None,
            "window": [d.isoformat() for d in self.window] if self.window else None,
            "challenger": asdict(self.challenger),
            "champion": asdict(self.champion) if self.champion else None,
            "reasons": list(self.reasons),
        }

    def markdown(self) -> str:
        """Verdict heading, the side-by-side comparison, one bullet per reason."""
        verdict = "promoted to champion" if self.promote else "not promoted"
        lines = [f"## Challenger v{self.challenger_version}: {verdict}", ""]
        if self.window:
            lines += [f"Window: {self.window[0]} .. {self.window[1]} (labelled, same for both)", ""]
        champ = self.champion
        header = f"| metric | challenger v{self.challenger_version} |"
        lines.append(header + (f" champion v{champ.version} |" if champ else ""))
        lines += ["|---|---|" + ("---|" if champ else "")]
        for key in ("ap", "auc", "precision", "recall", "alert_rate", "cost"):
            mine = getattr(self.challenger, key)
            row = f"| {key} | {mine:.4f} |"
            if champ:
                row += f" {getattr(champ, key):.4f} |"
            lines.append(row)
        lines += ["", *(f"- {r}" for r in self.reasons)]
        return "\n".join(lines) + "\n"


def decide_promotion(
    challenger: ModelScore,
    champion: ModelScore | None,
    policy: PromotionPolicy | None = None,
    window: tuple[date, date] | None = None,
) -> PromotionDecision:
    """Apply ``policy``: floors on the challenger, then the margin against the champion."""
    policy = policy or PromotionPolicy()
    reasons: list[str] = []
    floors = True
    for name, value, floor in (("AP", challenger.ap, policy.min_ap), ("AUC", challenger.auc, policy.min_auc)):
        ok = not math.isnan(value) and value >= floor
        floors &= ok
        reasons.append(f"{name} {value:.4f} {'>=' if ok else 'below'} floor {floor}")
    if not floors:
        reasons.append("fails an absolute floor: not promoted")
        return PromotionDecision(False, challenger, champion, window, tuple(reasons), policy.mode)
    if champion is None:
        reasons.append("no champion yet: the first model that passes the floors becomes champion")
        return PromotionDecision(True, challenger, None, window, tuple(reasons), policy.mode)
    if champion.version == challenger.version:
        reasons.append("the challenger already is the champion")
        return PromotionDecision(False, challenger, champion, window, tuple(reasons), policy.mode)
    delta = challenger.ap - champion.ap
    comparison = f"AP {challenger.ap:.4f} vs champion v{champion.version} {champion.ap:.4f} (delta {delta:+.4f})"
    if policy.min_ap_gain > 0:
        promote = delta >= policy.min_ap_gain
        rule = f"must gain at least {policy.min_ap_gain}"
    else:
        promote = delta >= -policy.max_ap_drop
        rule = f"may lose at most {policy.max_ap_drop}"
    reasons.append(f"{comparison}; {rule}: {'promote' if promote else 'keep the champion'}")
    return PromotionDecision(promote, challenger, champion, window, tuple(reasons), policy.mode)
