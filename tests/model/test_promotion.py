"""The promotion gate on constructed scores, and the promote/rollback flows on a real registry.

The flow tests run in a home of their own (lake, MLflow SQLite) under the session's Prefect harness.
"""

import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from model.policies import PromotionPolicy
from model.promotion import ModelScore, decide_promotion


def score(version: str, ap: float, auc: float = 0.95) -> ModelScore:
    return ModelScore(version, ap=ap, auc=auc, precision=0.8, recall=0.6, alert_rate=0.01, cost=100.0)


@pytest.mark.parametrize(
    ("challenger", "champion", "policy", "promote", "because"),
    [
        (score("2", 0.70), None, PromotionPolicy(), True, "no champion yet"),
        (score("2", 0.20), None, PromotionPolicy(), False, "AP 0.2000 below floor 0.3"),
        (score("2", 0.70, auc=0.7), None, PromotionPolicy(), False, "AUC 0.7000 below floor 0.8"),
        (score("2", float("nan")), None, PromotionPolicy(), False, "AP nan below floor"),
        (score("2", 0.695), score("1", 0.70), PromotionPolicy(max_ap_drop=0.01), True, "may lose at most 0.01"),
        (score("2", 0.68), score("1", 0.70), PromotionPolicy(max_ap_drop=0.01), False, "keep the champion"),
        (score("2", 0.72), score("1", 0.70), PromotionPolicy(min_ap_gain=0.03), False, "must gain at least 0.03"),
        (score("2", 0.74), score("1", 0.70), PromotionPolicy(min_ap_gain=0.03), True, "delta +0.0400"),
        (score("2", 0.25), score("1", 0.20), PromotionPolicy(), False, "below floor"),  # better, but under the floor
    ],
)
def test_gate_decisions(
    challenger: ModelScore, champion: ModelScore | None, policy: PromotionPolicy, promote: bool, because: str
) -> None:
    decision = decide_promotion(challenger, champion, policy, (date(2026, 5, 1), date(2026, 5, 7)))
    assert decision.promote is promote
    assert any(because in r for r in decision.reasons), decision.reasons
    text = decision.markdown()
    assert ("promoted to champion" if promote else "not promoted") in text and "2026-05-01 .. 2026-05-07" in text
    assert decision.to_dict()["challenger_version"] == "2"


def test_a_review_can_only_take_a_promotion_away() -> None:
    passed = decide_promotion(score("2", 0.8), score("1", 0.7))
    failed = decide_promotion(score("2", 0.5), score("1", 0.7))
    assert passed.with_review(True, "approved by ana").promote
    assert not passed.with_review(False, "rejected by ana").promote
    assert not failed.with_review(True, "approved by ana").promote
    assert passed.with_review(True, "approved by ana").mode == "manual"


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="mode"):
        PromotionPolicy(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margins"):
        PromotionPolicy(max_ap_drop=-0.1)


# --- flows on a real registry ---------------------------------------------------------------------

START = date(2026, 2, 1)


@pytest.fixture(scope="module")
def registry(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lake of 100 simulated days, champion v1 and challenger v2 (another seed), in a home of its own."""
    from data.lake import write_parquet_atomic
    from data.simulator import SimulatorConfig, simulate_transactions
    from tests.helpers import use_own_home

    tmp = tmp_path_factory.mktemp("promotion")
    with pytest.MonkeyPatch.context() as mp:
        use_own_home(mp, tmp)
        from flows.pipeline import ingest_flow, train_flow
        from flows.promotion import promote_flow

        frame = simulate_transactions(SimulatorConfig.scaled(300, 600, 100, seed=3, start_date=START))
        write_parquet_atomic(frame, tmp / "world.parquet")
        ingest_flow(str(tmp / "world.parquet"))
        first = train_flow(seed=1)
        assert promote_flow()["promote"]
        second = train_flow(seed=2)
        yield {"v1": first["version"], "v2": second["version"], "tmp": tmp}


def aliases() -> dict[str, str]:
    import mlflow

    from config.settings import Settings

    settings = Settings()
    model = mlflow.MlflowClient(settings.tracking_uri).get_registered_model(settings.registered_model)
    return {alias: str(version) for alias, version in model.aliases.items()}


def version_tags(version: str) -> dict[str, str]:
    import mlflow

    from config.settings import Settings

    settings = Settings()
    return mlflow.MlflowClient(settings.tracking_uri).get_model_version(settings.registered_model, version).tags


def paused_run(flow_name: str, timeout: float = 60) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
            if runs:
                return runs[0]
            time.sleep(0.5)
    raise AssertionError(f"no paused '{flow_name}' run within {timeout} s")


def run_in_thread(fn: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn(**kwargs)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.slow
def test_manual_promotion_waits_for_approval_then_rollback_restores(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.promotion import promote_flow, rollback_flow

    assert aliases() == {"champion": registry["v1"], "challenger": registry["v2"]}
    policy = PromotionPolicy(mode="manual", max_ap_drop=1.0, approval_timeout_s=120)
    thread, out = run_in_thread(promote_flow, policy=policy, approval_poll_s=1)
    run = paused_run("promote")
    assert aliases()["champion"] == registry["v1"]  # nothing moves while the review is pending
    resume_flow_run(run.id, run_input={"approve": True, "reviewer": "ana", "note": "checked the PR curve"})
    thread.join(90)
    assert "error" not in out, out.get("error")
    decision = out["result"]
    assert decision["promote"] and decision["mode"] == "manual"
    assert "approved by ana (checked the PR curve)" in decision["reasons"][-1]
    assert aliases()["champion"] == registry["v2"]
    tags = version_tags(registry["v2"])
    assert tags["promotion"] == "promoted" and tags["previous_champion"] == registry["v1"]
    assert "approved by ana" in tags["promotion_reasons"]

    moved = rollback_flow()
    assert moved == {"from_version": registry["v2"], "to_version": registry["v1"]}
    assert aliases()["champion"] == registry["v1"]
    assert version_tags(registry["v2"])["promotion"] == "rolled back"
    with pytest.raises(ValueError, match="replaced no earlier champion"):
        rollback_flow()  # v1 was the first champion


@pytest.mark.slow
def test_manual_promotion_without_an_answer_is_rejected(registry: dict[str, Any]) -> None:
    from flows.promotion import promote_flow

    champion = aliases()["champion"]
    decision = promote_flow(
        policy=PromotionPolicy(mode="manual", max_ap_drop=1.0, approval_timeout_s=2), approval_poll_s=1
    )
    assert not decision["promote"] and "no approval within 2 s" in decision["reasons"][-1]
    assert aliases()["champion"] == champion


@pytest.mark.slow
def test_failure_mid_promotion_leaves_a_valid_champion(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    import model.registry
    from config.settings import Settings
    from flows.promotion import promote_flow

    champion = aliases()["champion"]

    def registry_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("MLflow registry unreachable while moving the alias")

    monkeypatch.setattr(model.registry, "set_alias", registry_down)
    state = promote_flow(policy=PromotionPolicy(max_ap_drop=1.0), return_state=True)
    assert state.is_failed()
    with pytest.raises(ConnectionError, match="unreachable"):
        state.result()
    assert aliases()["champion"] == champion
    settings = Settings()
    booster = mlflow.xgboost.load_model(f"models:/{settings.registered_model}@champion")
    assert booster.num_features() > 0
