"""The promotion gate: challenger vs champion on the same labelled window."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger becomes champion, and why."""

    promote: bool
    challenger_version: str
    champion_version: str | None
    challenger_ap: float
    champion_ap: float | None
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """The decision as a plain dict."""
        return asdict(self)

    def markdown(self) -> str:
        """Markdown summary: the verdict heading and one bullet per reason."""
        verdict = "promoted to champion" if self.promote else "kept as challenger"
        lines = [f"## Challenger v{self.challenger_version}: {verdict}", ""]
        lines += [f"- {r}" for r in self.reasons]
        return "\n".join(lines)


def decide_promotion(
    challenger_version: str,
    challenger_ap: float,
    champion_version: str | None,
    champion_ap: float | None,
    max_ap_drop: float = 0.01,
) -> PromotionDecision:
    """Promote when there is no champion, or the challenger's AP is within ``max_ap_drop`` of it or better.

    A small tolerance lets a model trained on newer data replace an equally good older one.
    """
    if champion_version is None or champion_ap is None:
        reasons = ("no champion yet: the first validated model becomes champion",)
        return PromotionDecision(True, challenger_version, None, challenger_ap, None, reasons)
    delta = challenger_ap - champion_ap
    promote = delta >= -max_ap_drop
    comparison = (
        f"average precision on the shared test window: challenger {challenger_ap:.4f} vs "
        f"champion v{champion_version} {champion_ap:.4f} (delta {delta:+.4f}, allowed drop {max_ap_drop})"
    )
    verdict = "within tolerance or better: promote" if promote else "worse beyond tolerance: keep the champion"
    return PromotionDecision(
        promote, challenger_version, champion_version, challenger_ap, champion_ap, (comparison, verdict)
    )
