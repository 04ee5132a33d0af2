"""The decision service: rank actions for a person and moment, learn from rewards.

``decide`` joins the person's profile into the context, picks the policy (the decision
point's, an experiment arm's, or the baseline for holdout and people without
``personalization`` consent), draws an action, logs the decision with its propensity to
the event log (``decisions`` topic) and keeps it open for rewards. Rewards (``rewards``
topic) aggregate by ``earliest`` (learned at once) or ``sum`` (learned when the wait time
ends); a decision without reward is learned with the default reward. Deferred decisions
start their wait when activated and are never learned from otherwise.

An erased person (an identifier on the suppression list) still gets a decision, the
baseline's, but nothing of it is kept: no profile is joined, the decision and its rewards
are not logged and never learned from. A decision whose person is erased while it waits
for rewards is not learned from either, and its later rewards are not logged.

Learning modes: ``online`` serves and learns; ``apprentice`` serves the baseline, learns
from it and reports how often the policy would have agreed; ``frozen`` serves, never learns.
Open decisions live in memory: a restart forgets them (the decision log keeps them for
offline training).

Versions activated by another process (``auie train`` promoting a policy, another server's
rollback) are picked up by :meth:`DecisionService.refresh`, which the server calls every
second: the decision point is reloaded from its new active version, as after a rollback.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from auie.decide.config import DEFERRED_TTL_SECONDS, DecisionPointConfig
from auie.decide.context import PersonContext
from auie.decide.features import Featurized, Featurizer
from auie.decide.policies import Policy, load_policy, make_policy
from auie.decide.policies.baseline import Baseline
from auie.decide.registry import ActiveVersionChanged, DecisionStore, check_name
from auie.errors import Conflict, InvalidRequest, NotFound
from auie.eventlog import DECISIONS_TOPIC, REWARDS_TOPIC, LogRecord
from auie.events import format_time

logger = logging.getLogger(__name__)
MAIN_ARM = ""
HOLDOUT_ARM = "holdout"
_MAX_ACTIONS = 1000
_DEFERRED_TTL_SECONDS = DEFERRED_TTL_SECONDS
HISTORY_BUCKET_SECONDS = 5
_HISTORY_BUCKETS = 6 * 3600 // HISTORY_BUCKET_SECONDS
_encode = msgspec.json.Encoder().encode

Append = Callable[[Sequence[LogRecord]], Awaitable[Any]]
#: (workspace, userId, anonymousId) → may this person's decisions be personalised?
ConsentCheck = Callable[[str, str | None, str | None], bool]


def allow_all(_workspace: str, _user_id: str | None, _anonymous_id: str | None) -> bool:
    """A consent check that allows everyone (tests, and instances without profiles)."""
    return True


def none_erased(_workspace: str, _user_id: str | None, _anonymous_id: str | None) -> bool:
    """An erasure check for instances without a suppression list."""
    return False


@dataclass(frozen=True, slots=True)
class DecideRequest:
    decision_point: str
    actions: list[dict[str, Any]]
    user_id: str | None = None
    anonymous_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    event_id: str | None = None
    defer_activation: bool = False
    slots: int = 1


@dataclass(slots=True)
class ArmStats:
    decisions: int = 0
    closed: int = 0
    reward_sum: float = 0.0
    reward_squares: float = 0.0
    #: Bucket (epoch // bucket seconds) → [reward sum, rewarded decisions], recent ones only.
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def add(self, reward: float) -> None:
        self.closed += 1
        self.reward_sum += reward
        self.reward_squares += reward * reward
        key = int(time.time() // HISTORY_BUCKET_SECONDS)
        bucket = self.buckets.setdefault(key, [0.0, 0.0])
        bucket[0] += reward
        bucket[1] += 1
        if len(self.buckets) > _HISTORY_BUCKETS:
            for old in sorted(self.buckets)[: len(self.buckets) - _HISTORY_BUCKETS]:
                del self.buckets[old]

    def history(self) -> list[dict[str, Any]]:
        """Mean reward per time bucket (``HISTORY_BUCKET_SECONDS``), oldest first."""
        return [
            {
                "at": format_time(datetime.fromtimestamp(key * HISTORY_BUCKET_SECONDS, UTC)),
                "meanReward": total / count,
                "rewarded": int(count),
            }
            for key, (total, count) in sorted(self.buckets.items())
        ]

    def summary(self) -> dict[str, Any]:
        n = self.closed
        mean = self.reward_sum / n if n else None
        half = None
        if n > 1 and mean is not None:
            variance = max(0.0, (self.reward_squares - n * mean * mean) / (n - 1))
            half = 1.96 * (variance / n) ** 0.5
        return {
            "decisions": self.decisions,
            "rewarded": n,
            "meanReward": mean,
            "ci95": [mean - half, mean + half] if half is not None and mean is not None else None,
        }


@dataclass(frozen=True, slots=True)
class _Drawn:
    """What the serving policy drew for one decision."""

    decision: Featurized
    index: int
    probabilities: Any
    slots: list[int]
    learn: bool
    arm: str


@dataclass(slots=True)
class _Pending:
    workspace: str
    point: str
    arm: str
    decision: Featurized
    index: int
    probability: float
    learn: bool
    created: float
    deadline: float | None
    rewards: list[float] = field(default_factory=list)
    #: The request's (userId, anonymousId): an erasure while the decision is open stops it.
    person: tuple[str | None, str | None] = (None, None)
    #: Whether the decision was logged (not for an erased person), and so its rewards are.
    logged: bool = True


@dataclass(slots=True)
class _Point:
    config: DecisionPointConfig
    featurizer: Featurizer
    policies: dict[str, Policy]
    baseline: Baseline
    version: int | None
    #: The registry's active version this state follows (changes elsewhere reload it).
    active: int | None = None
    updates_since_snapshot: int = 0
    #: time.monotonic() of the last snapshot (None: none since this state was loaded).
    snapshot_at: float | None = None
    stats: dict[str, ArmStats] = field(default_factory=dict)
    agreement: list[int] = field(default_factory=lambda: [0, 0])
    lock: threading.Lock = field(default_factory=threading.Lock)


class DecisionService:
    """See the module docstring."""

    def __init__(
        self,
        store: DecisionStore,
        person: PersonContext,
        append: Append,
        *,
        consent: ConsentCheck = allow_all,
        erased: ConsentCheck = none_erased,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.person = person
        self.append = append
        self.consent = consent
        #: (workspace, userId, anonymousId) → is either identifier on the suppression list?
        self.erased = erased
        self.seed = seed
        self._points: dict[tuple[str, str], _Point] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        #: (when, key) of every pending decision's reward deadline (or, while a deferred
        #: decision waits for activation, its expiry): tick() pops the due ones instead of
        #: scanning every open decision. Entries of decisions closed earlier are skipped.
        self._deadlines: list[tuple[float, tuple[str, str]]] = []
        #: Decision points whose updates reached snapshotEvery, saved by the caller of
        #: take_due_snapshots() (off the event loop).
        self._snapshots_due: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- decision points --------------------------------------------------------------------

    def point(self, workspace: str, name: str, actions: Sequence[Mapping[str, Any]] = ()) -> _Point:
        """The running state of a decision point, created with the defaults on first use."""
        key = (workspace, name)
        with self._lock:
            found = self._points.get(key)
            if found is None:
                stored = self.store.get(workspace, name)
                if stored is None:
                    config = DecisionPointConfig.model_validate({"actions": list(actions)})
                    stored = self.store.put(workspace, check_name(name), config)
                found = self._points[key] = self._build(
                    workspace, name, stored.config, stored.active_version
                )
        return found

    def _build(
        self, workspace: str, name: str, config: DecisionPointConfig, version: int | None
    ) -> _Point:
        arms = {MAIN_ARM: config.policy}
        if config.experiment is not None:
            arms = {arm.name: arm.policy for arm in config.experiment.arms}
        featurizer = Featurizer(
            config.features.context_dim,
            config.action_dim,
            interactions=config.features.interactions,
            hashed_fraction=config.features.hashed_fraction,
        )
        policies: dict[str, Policy] = {}
        for arm, policy_config in arms.items():
            saved = self.store.load(
                workspace, name, arm=arm, version=version if arm == MAIN_ARM else None
            )
            if saved is not None:
                _, blob, state = saved
                policies[arm] = load_policy(blob)
                featurizer = Featurizer.from_state(state)
            else:
                seed = int.from_bytes(
                    hashlib.sha256(f"{self.seed}:{name}:{arm}".encode()).digest()[:4], "big"
                )
                policies[arm] = make_policy(
                    {**policy_config, "exploration_floor": config.exploration_floor},
                    context_dim=config.features.context_dim,
                    action_dim=config.action_dim,
                    seed=seed,
                )
        first = next(iter(policies.values()))
        baseline = Baseline(
            first.model, action=config.baseline, seed=self.seed, exploration_floor=0.0
        )
        return _Point(
            config,
            featurizer,
            policies,
            baseline,
            version,
            active=version,
            stats={arm: ArmStats() for arm in [*policies, HOLDOUT_ARM]},
        )

    def configure(self, workspace: str, name: str, config: DecisionPointConfig) -> None:
        """Validate and store a new configuration; the decision point restarts from its
        active version (or fresh, if the policy's shape changed)."""
        arms = [("", config.policy)] + [
            (f"experiment.arms.{i} ({arm.name}): ", arm.policy)
            for i, arm in enumerate(config.experiment.arms if config.experiment else [])
        ]
        for where, policy in arms:
            try:
                make_policy(
                    policy, context_dim=config.features.context_dim, action_dim=config.action_dim
                )
            except InvalidRequest as exc:
                raise InvalidRequest(where + exc.message, code=exc.code) from None
        self.store.put(workspace, name, config)
        with self._lock:
            self._points.pop((workspace, name), None)

    def rollback(self, workspace: str, name: str, version: int) -> None:
        self.store.activate(workspace, name, version)
        with self._lock:
            self._points.pop((workspace, name), None)

    def refresh(self) -> int:
        """Reload the decision points whose active version another process changed (a
        promotion by ``auie train``, a rollback elsewhere); returns how many. Their online
        updates since the last snapshot are dropped, as with a rollback."""
        with self._lock:
            loaded = {key: point.active for key, point in self._points.items()}
        if not loaded:
            return 0
        active = self.store.active_versions({workspace for workspace, _ in loaded})
        stale = [key for key, version in loaded.items() if key in active and active[key] != version]
        with self._lock:
            for key in stale:
                point = self._points.get(key)
                if point is not None and point.active == loaded[key]:
                    del self._points[key]
                    logger.info(
                        "decision point %s/%s: version %s activated elsewhere; reloading",
                        *key,
                        active[key],
                    )
        return len(stale)

    # -- deciding ---------------------------------------------------------------------------

    async def decide(self, workspace: str, request: DecideRequest) -> dict[str, Any]:
        if not request.actions:
            raise InvalidRequest("actions must not be empty", code="invalid_actions")
        if len(request.actions) > _MAX_ACTIONS:
            raise InvalidRequest(f"at most {_MAX_ACTIONS} actions", code="invalid_actions")
        ids = [str(a.get("id")) for a in request.actions]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("action ids must be unique", code="invalid_actions")
        if set(request.excluded) >= set(ids):
            raise InvalidRequest("every action is excluded", code="invalid_actions")
        point = self.point(workspace, request.decision_point, request.actions)
        erased = self.erased(workspace, request.user_id, request.anonymous_id)
        profile_id, person = (
            (None, None)
            if erased
            else self.person.lookup(
                workspace, request.user_id, request.anonymous_id, point.config.join
            )
        )
        context = {**request.context, "user": person} if person else dict(request.context)
        event_id = request.event_id or uuid.uuid4().hex
        key = (workspace, event_id)
        if key in self._pending:
            raise Conflict(f"decision {event_id!r} already exists", code="duplicate_event")
        person_key = request.user_id or request.anonymous_id or event_id
        arm = self._arm(point, workspace, request.decision_point, person_key)
        allowed = not erased and self.consent(workspace, request.user_id, request.anonymous_id)
        drawn = self._choose(point, arm, allowed, context, request=request, ids=ids)
        now = time.monotonic()
        deadline = None if request.defer_activation else now + point.config.reward.wait_seconds
        heapq.heappush(
            self._deadlines, (now + _DEFERRED_TTL_SECONDS if deadline is None else deadline, key)
        )
        self._pending[key] = _Pending(
            workspace,
            request.decision_point,
            drawn.arm,
            drawn.decision,
            drawn.index,
            float(drawn.probabilities[drawn.index]),
            drawn.learn,
            now,
            deadline,
            person=(request.user_id, request.anonymous_id),
            logged=not erased,
        )
        point.stats[drawn.arm].decisions += 1
        version = f"{point.version or 0}.{point.updates_since_snapshot}"
        order = sorted(range(len(ids)), key=lambda i: -float(drawn.probabilities[i]))
        ranking = [{"id": ids[i], "probability": float(drawn.probabilities[i])} for i in order]
        if not erased:
            await self._log_decision(
                workspace,
                request,
                event_id,
                profile_id=profile_id,
                context=context,
                ids=ids,
                drawn=drawn,
                version=version,
            )
        reply: dict[str, Any] = {
            "eventId": event_id,
            "actionId": ids[drawn.index],
            "ranking": ranking,
            "policyVersion": version,
        }
        if request.slots > 1:
            reply["slots"] = [ids[i] for i in drawn.slots]
        return reply

    def _arm(self, point: _Point, workspace: str, name: str, person: str) -> str:
        experiment = point.config.experiment
        if experiment is None:
            return MAIN_ARM
        digest = hashlib.sha256(f"{workspace}:{name}:{person}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u < experiment.holdout:
            return HOLDOUT_ARM
        u = (u - experiment.holdout) / (1 - experiment.holdout)
        total = sum(arm.share for arm in experiment.arms)
        edge = 0.0
        for arm in experiment.arms:
            edge += arm.share / total
            if u < edge:
                return arm.name
        return experiment.arms[-1].name

    def _choose(
        self,
        point: _Point,
        arm: str,
        allowed: bool,
        context: dict[str, Any],
        *,
        request: DecideRequest,
        ids: list[str],
    ) -> _Drawn:
        config = point.config
        with point.lock:
            decision = point.featurizer(
                context,
                [(i, a.get("features") or {}) for i, a in zip(ids, request.actions, strict=True)],
            )
            policy = point.policies.get(arm) or next(iter(point.policies.values()))
            baseline = point.baseline
            excluded = set(request.excluded)
            use_baseline = not allowed or arm == HOLDOUT_ARM or config.mode == "apprentice"
            served = baseline if use_baseline else policy
            choice = served.choose(decision, excluded)
            if config.mode == "apprentice" and allowed and arm != HOLDOUT_ARM:
                own = policy.choose(decision, excluded)
                point.agreement[0] += 1
                point.agreement[1] += int(own.probabilities.argmax() == choice.index)
            slots = [choice.index]
            for _ in range(1, max(1, min(request.slots, len(ids) - len(excluded)))):
                excluded.add(ids[slots[-1]])
                slots.append(served.choose(decision, excluded).index)
        learn = allowed and arm != HOLDOUT_ARM and config.mode != "frozen"
        served_arm = (
            HOLDOUT_ARM if arm == HOLDOUT_ARM else (arm if arm in point.policies else MAIN_ARM)
        )
        return _Drawn(decision, choice.index, choice.probabilities, slots, learn, served_arm)

    async def _log_decision(
        self,
        workspace: str,
        request: DecideRequest,
        event_id: str,
        *,
        profile_id: str | None,
        context: dict[str, Any],
        ids: list[str],
        drawn: _Drawn,
        version: str,
    ) -> None:
        value = {
            "eventId": event_id,
            "decisionPoint": request.decision_point,
            "userId": request.user_id,
            "anonymousId": request.anonymous_id,
            "profileId": profile_id,
            "context": context,
            "actions": [
                {"id": i, "features": a.get("features") or {}}
                for i, a in zip(ids, request.actions, strict=True)
            ],
            "excludedActions": list(request.excluded),
            "probabilities": [float(p) for p in drawn.probabilities],
            "chosenAction": ids[drawn.index],
            "policyVersion": version,
            "arm": drawn.arm,
            "learn": drawn.learn,
            "deferActivation": request.defer_activation,
            "timestamp": format_time(datetime.now(UTC)),
        }
        await self.append(
            [
                LogRecord(
                    topic=DECISIONS_TOPIC,
                    key=event_id.encode(),
                    value=_encode(value),
                    timestamp_ms=int(time.time() * 1000),
                    headers={"workspaceId": workspace},
                    dedupe_key=f"decision:{workspace}:{event_id}",
                )
            ]
        )

    # -- rewards ----------------------------------------------------------------------------

    async def reward(self, workspace: str, event_id: str, value: float) -> dict[str, Any]:
        pending = self._pending.get((workspace, event_id))
        if pending is None:
            raise NotFound(
                f"no open decision {event_id!r} (unknown, or its reward wait ended)",
                code="unknown_decision",
            )
        point = self.point(workspace, pending.point)
        if pending.logged and self.erased(workspace, *pending.person):
            pending.logged = pending.learn = False  # erased since the decision
        if pending.logged:
            await self._append_reward(workspace, event_id, pending.point, value)
        pending.rewards.append(value)
        if point.config.reward.aggregation == "earliest" and pending.deadline is not None:
            await self._close_now(workspace, event_id)
        return {"eventId": event_id, "status": "recorded"}

    async def _append_reward(self, workspace: str, event_id: str, point: str, value: float) -> None:
        await self.append(
            [
                LogRecord(
                    topic=REWARDS_TOPIC,
                    key=event_id.encode(),
                    value=_encode(
                        {
                            "eventId": event_id,
                            "decisionPoint": point,
                            "value": value,
                            "timestamp": format_time(datetime.now(UTC)),
                        }
                    ),
                    timestamp_ms=int(time.time() * 1000),
                    headers={"workspaceId": workspace},
                )
            ]
        )

    async def activate(self, workspace: str, event_id: str) -> dict[str, Any]:
        pending = self._pending.get((workspace, event_id))
        if pending is None:
            raise NotFound(f"no open decision {event_id!r}", code="unknown_decision")
        if pending.deadline is None:
            wait = self.point(workspace, pending.point).config.reward.wait_seconds
            pending.deadline = time.monotonic() + wait
            heapq.heappush(self._deadlines, (pending.deadline, (workspace, event_id)))
            if (
                pending.rewards
                and self.point(workspace, pending.point).config.reward.aggregation == "earliest"
            ):
                await self._close_now(workspace, event_id)
        return {"eventId": event_id, "status": "activated"}

    async def _close_now(self, workspace: str, event_id: str) -> None:
        """Close a decision in a request; a snapshot it makes due is saved before the reply,
        in a worker thread (registry writes stay off the event loop)."""
        pending = self._pending.get((workspace, event_id))
        if pending is not None and self._close((workspace, event_id)):
            await asyncio.to_thread(self.snapshot, workspace, pending.point)

    def _close(self, key: tuple[str, str]) -> bool:
        """Learn from a decision whose wait is over; True when its decision point is due
        for a snapshot (``snapshotEvery`` updates since the last)."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return False
        point = self.point(pending.workspace, pending.point)
        config = point.config.reward
        if not pending.rewards:
            reward = config.default
        elif config.aggregation == "earliest":
            reward = pending.rewards[0]
        else:
            reward = float(sum(pending.rewards))
        point.stats[pending.arm].add(reward)
        policy = point.policies.get(pending.arm)
        if not pending.learn or policy is None or self.erased(pending.workspace, *pending.person):
            return False
        with point.lock:
            policy.update(pending.decision, pending.index, reward, pending.probability)
            point.updates_since_snapshot += 1
            return point.updates_since_snapshot >= point.config.snapshot_every and (
                point.snapshot_at is None
                or time.monotonic() - point.snapshot_at >= point.config.snapshot_min_seconds
            )

    def take_due_snapshots(self) -> list[tuple[str, str]]:
        """Decision points that learned ``snapshotEvery`` updates since their last snapshot
        (the server saves them in a worker thread, not on the event loop)."""
        due, self._snapshots_due = sorted(self._snapshots_due), set()
        return due

    def tick(self, limit: int | None = None) -> int:
        """Close the decisions whose reward wait is over (at most ``limit``, so the event
        loop can serve requests between slices); returns how many were due."""
        now = time.monotonic()
        heap = self._deadlines
        done = 0
        while heap and heap[0][0] <= now and (limit is None or done < limit):
            _when, key = heapq.heappop(heap)
            pending = self._pending.get(key)
            if pending is None:  # closed already (an earliest reward, an erasure)
                continue
            done += 1
            if pending.deadline is None:
                self._pending.pop(key, None)  # never activated: not learned from
            elif pending.deadline <= now and self._close(key):
                self._snapshots_due.add((pending.workspace, pending.point))
            # else: the expiry entry of a decision activated since; its deadline entry waits
        return done

    # -- registry ---------------------------------------------------------------------------

    def snapshot(self, workspace: str, name: str, note: str = "") -> int | None:
        """Save every arm's policy as a new registry version."""
        point = self._points.get((workspace, name))
        if point is None:
            return None
        version = None
        # The states are taken under the lock (decisions wait for it), written without it.
        with point.lock:
            states = [
                (arm, policy.save(), point.featurizer.state(), policy.kind, policy.steps)
                for arm, policy in point.policies.items()
            ]
            active = point.active
            point.updates_since_snapshot = 0
            point.snapshot_at = time.monotonic()
        try:
            for arm, blob, featurizer, kind, steps in states:
                version = self.store.save(
                    workspace,
                    name,
                    arm=arm,
                    blob=blob,
                    featurizer=featurizer,
                    kind=kind,
                    updates=steps,
                    note=note,
                    if_active=active if arm == MAIN_ARM else "any",
                )
                with point.lock:
                    point.version = version
                    if arm == MAIN_ARM:
                        point.active = active = version
                self.store.prune(workspace, name, arm=arm, keep=point.config.snapshot_keep)
        except ActiveVersionChanged:
            # A promotion or rollback by another process wins over this state: reload.
            with self._lock:
                if self._points.get((workspace, name)) is point:
                    del self._points[(workspace, name)]
            logger.info("decision point %s/%s: active version changed elsewhere", workspace, name)
            return None
        return version

    def snapshot_all(self) -> None:
        for workspace, name in list(self._points):
            point = self._points[(workspace, name)]
            if point.updates_since_snapshot:
                self.snapshot(workspace, name)

    def report(self, workspace: str, name: str) -> dict[str, Any]:
        """Per-arm rewards with 95% intervals, and apprentice agreement."""
        point = self.point(workspace, name)
        seen, agreed = point.agreement
        return {
            "decisionPoint": name,
            "mode": point.config.mode,
            "policyVersion": point.version,
            "arms": {arm or "main": stats.summary() for arm, stats in point.stats.items()},
            "apprenticeAgreement": agreed / seen if seen else None,
            "history": {arm or "main": stats.history() for arm, stats in point.stats.items()},
            "openDecisions": sum(1 for k in self._pending if k[0] == workspace),
        }
