"""Which logged decisions evaluation and training may use: those whose reward is final."""

from __future__ import annotations

import pytest

from auie.decide.config import RewardSpec
from auie.decide.evaluation import LoggedDecision, settled

DECIDED_MS = 1_700_000_000_000
WAIT = RewardSpec(wait_seconds=600)


def _decision(rewards: list[float], *, deferred: bool = False) -> LoggedDecision:
    return LoggedDecision(
        event_id="d-1",
        timestamp_ms=DECIDED_MS,
        context={},
        actions=[("a", {}), ("b", {})],
        excluded=frozenset(),
        probabilities=[0.5, 0.5],
        chosen_action="a",
        arm="",
        learn=True,
        deferred=deferred,
        rewards=rewards,
    )


@pytest.mark.parametrize("deferred", [False, True])
def test_a_decision_without_a_reward_is_pending_until_its_wait_is_over(deferred: bool) -> None:
    decision = _decision([], deferred=deferred)
    assert not settled(decision, WAIT, DECIDED_MS + 599_999)
    assert settled(decision, WAIT, DECIDED_MS + 600_000)


def test_the_earliest_reward_is_final_at_once() -> None:
    assert settled(_decision([1.0]), WAIT, DECIDED_MS + 1)


def test_a_summed_reward_can_still_grow_until_the_wait_is_over() -> None:
    spec = RewardSpec(wait_seconds=600, aggregation="sum")
    assert not settled(_decision([1.0, 2.0]), spec, DECIDED_MS + 1)
    assert settled(_decision([1.0, 2.0]), spec, DECIDED_MS + 600_000)
