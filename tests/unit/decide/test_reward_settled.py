"""Which logged decisions evaluation and training may use: those whose reward wait is over
(whatever rewards they have by then)."""

from __future__ import annotations

import pytest

from auie.decide.config import DEFERRED_TTL_SECONDS, RewardSpec
from auie.decide.evaluation import SETTLE_MARGIN_MS, LoggedDecision, settled

DECIDED_MS = 1_700_000_000_000
WAIT = RewardSpec(wait_seconds=600)
OVER_MS = DECIDED_MS + 600_000 + SETTLE_MARGIN_MS


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


@pytest.mark.parametrize("rewards", [[], [1.0]])
@pytest.mark.parametrize("aggregation", ["earliest", "sum"])
def test_a_decision_is_pending_until_its_wait_is_over(
    rewards: list[float], aggregation: str
) -> None:
    """Rewarded or not: keeping the rewarded ones of a still-open period would keep the
    clicks and drop the misses."""
    spec = RewardSpec(wait_seconds=600, aggregation=aggregation)  # type: ignore[arg-type]
    assert not settled(_decision(rewards), spec, DECIDED_MS + 1)
    assert not settled(_decision(rewards), spec, OVER_MS - 1)
    assert settled(_decision(rewards), spec, OVER_MS)


def test_a_deferred_decision_waits_for_the_latest_activation_it_could_have_had() -> None:
    decision = _decision([1.0], deferred=True)
    latest = OVER_MS + int(DEFERRED_TTL_SECONDS * 1000)
    assert not settled(decision, WAIT, OVER_MS)
    assert not settled(decision, WAIT, latest - 1)
    assert settled(decision, WAIT, latest)
