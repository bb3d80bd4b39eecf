"""Promotion and rollback flows: the `champion` alias moves only to a version that passed the gate.

Crash safety: moving an alias is one registry call, so at any point `champion` names either the
old champion or the new one, both of which passed. The new champion is tagged with the version it
replaced (``previous_champion``) *before* the alias moves, so a rollback always knows where to go.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from config.settings import current_settings
from data.labels import data_clock
from data.lake import Lake
from features.definitions import FeatureSpec, compute_features
from model.promotion import ModelScore, PromotionDecision, PromotionPolicy, decide_promotion
from model.splits import TimeSplit

if TYPE_CHECKING:
    from model.card import ModelCard
    from model.registry import RegisteredModel

PREVIOUS_CHAMPION = "previous_champion"


class PromotionApproval(RunInput):
    """The form a reviewer fills in the Prefect UI to resume a paused promotion."""

    approve: bool = Field(description="Promote the challenger to champion?")
    reviewer: str = Field("", description="Who decided.")
    note: str = Field("", description="Why (recorded with the decision).")


def promotion_window(lake: Lake, split: TimeSplit, delay_days: int, days: int = 7) -> tuple[date, date]:
    """The most recent labelled ``days`` as of the lake's newest day (labels lag by ``delay_days``).

    When that window overlaps what the challenger trained or chose its threshold on, its own test
    window is used instead: no model is judged on data it has seen. A data profile's split end
    (``data.profiles.SplitDays.end``) stands for the newest day when it is earlier.
    """
    newest = lake.newest_day()
    if newest is None:
        raise ValueError(f"the lake at {lake.transactions_dir} is empty")
    profile = lake.profile()
    if profile is not None and profile.split.end is not None:  # data after it is not for training or judging
        newest = min(newest, profile.split.end + timedelta(days=delay_days))
    end = newest - timedelta(days=delay_days)
    start = end - timedelta(days=days - 1)
    if start <= split.valid_end:
        return split.test_start, split.test_end
    return start, end


@flow(name="promote", log_prints=True)
def promote_flow(
    policy: PromotionPolicy = PromotionPolicy(),  # noqa: B008 (a frozen model: a safe default)
    approval_poll_s: int = 10,
) -> dict[str, Any]:
    """Gate the `challenger` against the `champion` on the most recent labelled window; move `champion` if it wins.

    Both versions are scored by the same code on the same rows, each with its own feature spec and
    shipped threshold. ``policy.mode="manual"`` pauses a challenger that passed until a reviewer
    answers the `PromotionApproval` form in the Prefect UI; no answer within
    ``policy.approval_timeout_s`` rejects. The decision is a `promotion-decision` markdown artifact
    and tags on the challenger version.
    """
    from model.registry import CHAMPION, Registry, set_alias, tag_version

    settings = current_settings()
    registry = Registry.connect(settings)
    challenger = registry.challenger()
    champion = registry.alias(CHAMPION)
    if champion is not None and champion.version == challenger.version:
        reason = f"the challenger already is the champion (v{champion.version}): nothing to promote"
        print(reason)
        return {
            "promote": False,
            "mode": policy.mode,
            "challenger_version": challenger.version,
            "champion_version": champion.version,
            "reasons": [reason],
        }
    decision = measure_and_decide(settings.home_dir, challenger, champion, policy)
    if decision.promote and policy.mode == "manual":
        decision = ask_for_approval(decision, policy, approval_poll_s)
    if decision.promote:
        if champion is not None:
            tag_version(challenger, {PREVIOUS_CHAMPION: champion.version})
        set_alias(challenger, CHAMPION)
    tag_version(
        challenger,
        {
            "promotion": "promoted" if decision.promote else "rejected",
            "promotion_mode": decision.mode,
            "promotion_window": "..".join(d.isoformat() for d in decision.window) if decision.window else "",
            "promotion_reasons": " | ".join(decision.reasons),
        },
    )
    create_markdown_artifact(key="promotion-decision", markdown=decision.markdown())
    print(decision.markdown())
    return decision.to_dict()


def measure_and_decide(
    home: Path, challenger: RegisteredModel, champion: RegisteredModel | None, policy: PromotionPolicy
) -> PromotionDecision:
    """Score both versions on the promotion window and apply the policy."""
    from model.registry import load_booster, load_model_card
    from model.training import evaluate_booster

    card = load_model_card(challenger)
    champion_card = load_model_card(champion) if champion is not None else None
    lake = Lake(home, card.spec.label_delay_days)
    window = promotion_window(lake, card.split, card.spec.label_delay_days)
    history = max(c.spec.history_days for c in (card, champion_card) if c)
    # Labels as known now: the window's rows without a known label yet (pending) are left out.
    as_of = datetime.now(UTC)
    matured_at = data_clock(lake.newest_time(), as_of)
    transactions = lake.read(window[0] - timedelta(days=history), window[1], as_of=as_of, matured_at=matured_at)
    labels = lake.read_labels(as_of=as_of)
    split = TimeSplit(window[0], window[1], window[0], window[1], *window)
    if card.split.bounds is not None and window == (card.split.test_start, card.split.test_end):
        split = card.split  # an hourly split: its test hours exactly, not the whole days they fall on
    frames: dict[FeatureSpec, pl.DataFrame] = {}

    def score(model: RegisteredModel, model_card: ModelCard) -> ModelScore:
        model_spec = model_card.spec
        if model_spec not in frames:
            frames[model_spec] = split.select(compute_features(transactions, model_spec, labels=labels), "test")
        metrics = evaluate_booster(load_booster(model), frames[model_spec], model_spec, model_card.threshold)
        return ModelScore.from_metrics(model.version, metrics)

    mine = score(challenger, card)
    theirs = score(champion, champion_card) if champion is not None and champion_card else None
    return decide_promotion(mine, theirs, policy, window)


def ask_for_approval(decision: PromotionDecision, policy: PromotionPolicy, poll_s: int) -> PromotionDecision:
    """Publish the comparison, pause the flow run for a `PromotionApproval`, and apply the answer."""
    from prefect.exceptions import FlowPauseTimeout

    create_markdown_artifact(
        key="promotion-review",
        markdown=decision.markdown()
        + f"\nThe gate passed. Approve or reject in the Prefect UI (Resume) within {policy.approval_timeout_s} s.\n",
    )
    try:
        answer = pause_flow_run(
            wait_for_input=PromotionApproval, timeout=policy.approval_timeout_s, poll_interval=poll_s
        )
    except FlowPauseTimeout:
        return decision.with_review(False, f"no approval within {policy.approval_timeout_s} s: rejected")
    who = answer.reviewer or "a reviewer"
    note = f" ({answer.note})" if answer.note else ""
    verdict = "approved" if answer.approve else "rejected"
    get_run_logger().info("promotion %s by %s%s", verdict, who, note)
    return decision.with_review(answer.approve, f"{verdict} by {who}{note}")


@flow(name="rollback", log_prints=True)
def rollback_flow() -> dict[str, Any]:
    """Move `champion` back to the version it replaced (the `previous_champion` tag of the current one)."""
    from model.registry import CHAMPION, Registry, set_alias, tag_version

    registry = Registry.connect(current_settings())
    current = registry.champion("nothing to roll back")
    previous = registry.version_tags(current).get(PREVIOUS_CHAMPION)
    if not previous:
        raise ValueError(f"champion v{current.version} replaced no earlier champion: nothing to roll back to")
    target = registry.version(previous)
    set_alias(target, CHAMPION)
    tag_version(current, {"promotion": "rolled back", "rolled_back_to": previous})
    message = f"## Rollback\n\n`champion` moved from v{current.version} back to v{previous}.\n"
    create_markdown_artifact(key="promotion-decision", markdown=message)
    print(message)
    return {"from_version": current.version, "to_version": previous}
