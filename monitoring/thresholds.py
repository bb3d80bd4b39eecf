"""When the monitor asks for a retrain: the `monitor` flow's parameter (a form in the Prefect UI) and the CLI's options.

Light on purpose (pydantic only): the CLI imports it at start-up to show the defaults in ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from monitoring.drift import DriftThresholds


class MonitorThresholds(BaseModel):
    """When the monitor asks for a retrain (the `monitor` flow's parameter; a form in the Prefect UI)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_warn: float = Field(0.1, gt=0, description="PSI above which a feature is worth a look.")
    psi_drift: float = Field(0.25, gt=0, description="PSI above which a feature (or the score) has drifted.")
    # The current window's AP is judged by its 80 % bootstrap interval: a drop is flagged when even the
    # interval's upper end is below the champion's test AP by more than this.
    max_ap_drop: float = Field(
        0.1, ge=0, description="AP drop below the champion's test AP (upper end of the 80 % interval) that retrains."
    )
    # Fewer labelled frauds in the window and performance is not judged: with 10-30 frauds a steady week's
    # AP was seen anywhere between 0.3 and 0.8 on the simulated world.
    min_labelled_frauds: int = Field(50, ge=1, description="Labelled frauds needed before AP is judged.")
    max_rejected_share: float = Field(
        0.05, ge=0, le=1, description="Quarantined / received rows in the window above which data quality fails."
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitorThresholds:
        if self.psi_warn > self.psi_drift:
            raise ValueError(f"psi_warn {self.psi_warn} must be <= psi_drift {self.psi_drift}")
        return self

    @property
    def drift(self) -> DriftThresholds:
        """The PSI cut-offs for the drift report."""
        from monitoring.drift import DriftThresholds

        return DriftThresholds(warn=self.psi_warn, drift=self.psi_drift)
