"""The typed model card: written once by training, read by the registry, the bundle, the flows and the UI.

It travels as ``model_card.json`` in the MLflow run and in the BentoML model. Only this module and
the standard library, pydantic and the feature spec are needed to read it, so the Bento carries it
without MLflow or scikit-learn.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.definitions import FeatureSpec
from model.policies import ThresholdPolicy
from model.splits import TimeSplit

CARD_FILE = "model_card.json"


class PRCurve(BaseModel):
    """The test window's precision-recall curve, thinned for the UI (empty lists when unknown)."""

    precision: list[float] = Field(default_factory=list)
    recall: list[float] = Field(default_factory=list)
    threshold: list[float] = Field(default_factory=list)


class ModelCard(BaseModel):
    """What a trained model is, on what data it was fitted and tested, and how it decides.

    ``model_version`` and ``run_id`` are filled in by the registry (:meth:`registered_as`);
    ``reference`` is the training window's feature profile (``validation.features.ReferenceProfile``
    as a dict) the next training's gate compares with. Fields added over time (``threshold_policy``,
    ``pr_curve``, ``baseline_metrics``) are optional so older cards still load.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    feature_names: list[str]
    feature_spec: FeatureSpec
    threshold: float
    split: TimeSplit
    metrics: dict[str, float]
    baseline_metrics: dict[str, float] = Field(default_factory=dict)
    rows: dict[str, int] = Field(default_factory=dict)
    best_iteration: int
    params: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(default_factory=dict)
    threshold_policy: ThresholdPolicy | None = None
    pr_curve: PRCurve = Field(default_factory=PRCurve)
    reference: dict[str, Any] | None = None
    #: The dataset profile of the training data (``data.profiles.Profile`` as a dict): the request schema.
    profile: dict[str, Any] | None = None
    model_version: str | None = None
    run_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_cards(cls, data: Any) -> Any:
        # Cards written before the behavioural features existed used the baseline feature set.
        if isinstance(data, dict) and isinstance(data.get("feature_spec"), dict):
            spec = data["feature_spec"]
            if "feature_set" not in spec:
                data = {**data, "feature_spec": {**spec, "feature_set": "baseline"}}
        return data

    @property
    def spec(self) -> FeatureSpec:
        """The feature spec serving must reproduce."""
        return self.feature_spec

    @property
    def version(self) -> str:
        """The registered version, or ``unknown`` before registration."""
        return self.model_version or "unknown"

    @property
    def test_ap(self) -> float:
        """Average precision on the test window."""
        return float(self.metrics["test_ap"])

    def registered_as(self, version: str, run_id: str) -> ModelCard:
        """This card with the registry's version and run id."""
        return self.model_copy(update={"model_version": version, "run_id": run_id})

    def with_reference(self, reference: dict[str, Any]) -> ModelCard:
        """This card with the training window's reference profile."""
        return self.model_copy(update={"reference": reference})

    def registry_tags(self) -> dict[str, str]:
        """Tags set on the registered version: threshold, windows, label delay, test metrics."""
        split = self.split
        policy = self.threshold_policy.kind if self.threshold_policy else "unknown"
        windows = {
            "data_window": f"{split.train_start}..{split.test_end}",
            "train_window": f"{split.train_start}..{split.train_end}",
            "test_window": f"{split.test_start}..{split.test_end}",
        }
        if split.bounds is not None:  # an hourly split: [from, until) in UTC, to the minute
            (train_from, train_until), _, (test_from, test_until) = (
                tuple(t.isoformat(timespec="minutes") for t in pair) for pair in split.bounds
            )
            windows = {
                "data_window": f"{train_from}..{test_until}",
                "train_window": f"{train_from}..{train_until}",
                "test_window": f"{test_from}..{test_until}",
            }
        return {
            "threshold": f"{self.threshold:.6f}",
            "threshold_policy": policy,
            **windows,
            "label_delay_days": str(self.spec.label_delay_days),
            "feature_set": self.spec.feature_set,
            **{k: f"{v:.6g}" for k, v in self.metrics.items() if k.startswith("test_")},
            **{f"baseline_{k}": f"{v:.6g}" for k, v in self.baseline_metrics.items()},
        }

    def to_json(self) -> str:
        """The ``model_card.json`` text."""
        return self.model_dump_json(indent=2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        """Read a ``model_card.json``."""
        return cls.model_validate_json(text)
