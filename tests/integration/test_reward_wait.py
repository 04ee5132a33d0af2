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
from sqlalchemy import delete

from auie.decide import service as service_module
from auie.decide.config import DecisionPointConfig
from auie.decide.context import PersonContext
from auie.decide.service import DecideRequest, DecisionService
from auie.decide.tables import policy_versions
from conftest import App

POINT = "wait-point"
ACTIONS = [{"id": "a"}, {"id": "b"}]


def _service(
    app: App, wait: float, aggregation: str, default: float = 0.0, **extra: Any
) -> DecisionService:
    config = DecisionPointConfig.model_validate(
        {
            "actions": ACTIONS,
            "policy": {"type": "epsilon_greedy", "epsilon": 0.5},
            "reward": {"waitSeconds": wait, "aggregation": aggregation, "default": default},
            "snapshotEvery": 3,
            **extra,
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


def test_snapshots_due_by_count_wait_for_the_time_floor(make_app: Callable[..., App]) -> None:
    app = make_app()
    service = _service(app, wait=0.0, aggregation="sum", default=1.0, snapshotMinSeconds=3600)
    ws = app.boot.workspace
    for i in range(3):
        _decide(service, app, f"u{i}")
    service.tick()
    # The first is due at once (none yet since the state was loaded) ...
    assert service.take_due_snapshots() == [(ws, POINT)]
    service.snapshot(ws, POINT)
    for i in range(6):
        _decide(service, app, f"v{i}")
    service.tick()
    # ... the next 6 updates (twice snapshotEvery) wait for the hour's floor.
    assert service.take_due_snapshots() == []
    assert len(app.runtime.decision_store.versions(ws, POINT)) == 1
    service.snapshot_all()  # what the server does every minute and at shutdown
    assert [v.updates for v in app.runtime.decision_store.versions(ws, POINT)] == [3, 9]


def _snapshots(service: DecisionService, app: App, count: int) -> list[int | None]:
    """``count`` decisions, each learned from and followed by a snapshot; their versions."""
    made = []
    for i in range(count):
        _decide(service, app, f"u{i}")
        service.tick()
        made.append(service.snapshot(app.boot.workspace, POINT))
    return made


def test_old_online_versions_are_pruned_but_the_served_and_trained_ones_stay(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    service = _service(app, wait=0.0, aggregation="sum", default=1.0, snapshotKeep=2)
    store = app.runtime.decision_store
    ws = app.boot.workspace
    made = _snapshots(service, app, 4)  # the service prunes after each: the newest 2 stay
    assert [v.version for v in store.versions(ws, POINT)] == made[-2:]
    blob, featurizer = store.load(ws, POINT, arm="")[1:]  # type: ignore[index]

    def save(source: str) -> int:
        return store.save(
            ws,
            POINT,
            arm="",
            blob=blob,
            featurizer=featurizer,
            kind="epsilon_greedy",
            updates=1,
            source=source,
            activate=False,
        )

    trained = save("offline")
    newer = [save("online") for _ in range(3)]
    store.activate(ws, POINT, made[-2])  # a rollback to an old online version
    assert store.prune(ws, POINT, arm="", keep=2) == 2
    kept = [v.version for v in store.versions(ws, POINT)]
    assert kept == [made[-2], trained, *newer[-2:]]
    files = sorted(p.name for p in (store.root / ws / POINT).iterdir())
    assert files == sorted(f"main-v{v:06d}.{suffix}" for v in kept for suffix in ("npz", "json"))


def test_a_prune_removes_the_files_an_earlier_crashed_prune_left(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    service = _service(app, wait=0.0, aggregation="sum", default=1.0, snapshotKeep=100)
    store = app.runtime.decision_store
    ws = app.boot.workspace
    made = _snapshots(service, app, 4)
    directory = store.root / ws / POINT
    # A prune that committed its row deletes, then died before unlinking the files.
    with store.engine.begin() as conn:
        conn.execute(
            delete(policy_versions).where(
                policy_versions.c.workspace_id == ws, policy_versions.c.version == made[0]
            )
        )
    assert (directory / f"main-v{made[0]:06d}.npz").exists()
    # Files of a version being saved: newer than every row until its row commits.
    (directory / f"main-v{made[-1] + 1:06d}.npz").write_bytes(b"saving")
    other_arm = directory / f"b-v{made[0]:06d}.npz"
    other_arm.write_bytes(b"another arm's")
    assert store.prune(ws, POINT, arm="", keep=100) == 0
    files = sorted(p.name for p in directory.iterdir())
    assert f"main-v{made[0]:06d}.npz" not in files
    assert f"main-v{made[0]:06d}.json" not in files
    assert f"main-v{made[-1] + 1:06d}.npz" in files
    assert other_arm.name in files
    for version in made[1:]:
        assert store.load(ws, POINT, arm="", version=version) is not None
