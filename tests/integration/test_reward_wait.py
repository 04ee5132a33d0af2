"""The reward wait of the decision service, on a real registry: ``sum`` rewards within the
wait are learned together when it ends, an unrewarded decision learns the default reward,
a deferred decision learns only once activated, and one never activated expires unlearned.
Closing runs in slices (``tick(limit)``) so the event loop can serve between them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from auie.decide import service as service_module
from auie.decide.config import DecisionPointConfig
from auie.decide.context import PersonContext
from auie.decide.service import DecideRequest, DecisionService
from conftest import App

POINT = "wait-point"
ACTIONS = [{"id": "a"}, {"id": "b"}]


def _service(app: App, wait: float, aggregation: str, default: float = 0.0) -> DecisionService:
    config = DecisionPointConfig.model_validate(
        {
            "actions": ACTIONS,
            "policy": {"type": "epsilon_greedy", "epsilon": 0.5},
            "reward": {"waitSeconds": wait, "aggregation": aggregation, "default": default},
            "snapshotEvery": 3,
        }
    )
    app.runtime.decision_store.put(app.boot.workspace, POINT, config)

    async def append(_records: Any) -> None:
        return None

    return DecisionService(app.runtime.decision_store, PersonContext(app.runtime.profiles), append)


def _decide(service: DecisionService, app: App, user: str, **extra: Any) -> str:
    request = DecideRequest(POINT, ACTIONS, user_id=user, **extra)
    answer = asyncio.run(service.decide(app.boot.workspace, request))
    return str(answer["eventId"])


def _learned(service: DecisionService, app: App) -> dict[str, Any]:
    stats = service.report(app.boot.workspace, POINT)["arms"]["main"]
    return {"main": (stats["rewarded"], stats["meanReward"])}


def test_sum_rewards_are_learned_when_the_wait_ends(make_app: Callable[..., App]) -> None:
    app = make_app()
    service = _service(app, wait=0.3, aggregation="sum", default=-1.0)
    ws = app.boot.workspace
    rewarded = _decide(service, app, "u1")
    silent = _decide(service, app, "u2")
    asyncio.run(service.reward(ws, rewarded, 1.0))
    asyncio.run(service.reward(ws, rewarded, 2.0))
    assert service.tick() == 0  # the wait is not over: nothing learned yet
    assert _learned(service, app) == {"main": (0, None)}
    time.sleep(0.35)
    assert service.tick() == 2
    # Mean of 1 + 2 (summed) and the default -1 of the silent decision.
    assert _learned(service, app) == {"main": (2, pytest.approx(1.0))}
    with pytest.raises(Exception, match="no open decision"):
        asyncio.run(service.reward(ws, silent, 5.0))


def test_deferred_decisions_learn_only_once_activated(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "_DEFERRED_TTL_SECONDS", 0.3)
    app = make_app()
    service = _service(app, wait=0.2, aggregation="sum", default=0.5)
    ws = app.boot.workspace
    shown = _decide(service, app, "u1", defer_activation=True)
    never = _decide(service, app, "u2", defer_activation=True)
    asyncio.run(service.reward(ws, shown, 3.0))
    time.sleep(0.25)
    assert service.tick() == 0  # neither is activated; neither has expired
    asyncio.run(service.activate(ws, shown))
    time.sleep(0.25)
    # The activated one closes with its reward; the other expires without being learned.
    assert service.tick() == 2
    assert _learned(service, app) == {"main": (1, pytest.approx(3.0))}
    with pytest.raises(Exception, match="no open decision"):
        asyncio.run(service.activate(ws, never))


def test_closing_runs_in_slices_and_snapshots_are_handed_out(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    service = _service(app, wait=0.0, aggregation="sum", default=1.0)
    for i in range(7):
        _decide(service, app, f"u{i}")
    assert service.tick(limit=3) == 3
    assert service.tick(limit=3) == 3
    assert service.tick(limit=3) == 1
    assert service.tick(limit=3) == 0
    assert _learned(service, app) == {"main": (7, pytest.approx(1.0))}
    # snapshotEvery 3: due, and saved by whoever takes it (the server, in a thread).
    assert service.take_due_snapshots() == [(app.boot.workspace, POINT)]
    assert service.take_due_snapshots() == []
    version = service.snapshot(app.boot.workspace, POINT)
    assert version is not None
    listed = app.runtime.decision_store.versions(app.boot.workspace, POINT)
    assert listed[-1].updates == 7
