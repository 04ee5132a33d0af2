"""Evaluating candidate policies of a decision point on its decision log.

:func:`logged_decisions` reads what the decision service logged and joins each decision
with its rewards: the lake's ``decisions`` and ``rewards`` tables (the processor copies the
``decisions`` and ``rewards`` topics of the event log there; see :mod:`auie.decide.service`),
plus the log's records past the offsets those tables hold, so a decision made a moment ago
counts, and none counts twice. Every evaluation reads through it.

:func:`evaluate_decision_point` then featurizes the decisions as the decision point does,
replays the current policy configuration and every candidate on them
(:func:`auie.decide.ope.replay`: progressive validation by default), and reports IPS,
SNIPS, DM and DR with bootstrap intervals for each, plus the logging policy's own value
and each candidate's difference from the current configuration
(:func:`auie.decide.ope.evaluate`). See docs/decide.md, "Evaluation".
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide import ope
from auie.decide.config import DEFERRED_TTL_SECONDS, DecisionPointConfig, RewardSpec
from auie.decide.features import Featurized, Featurizer, flatten
from auie.decide.importance import FeatureGroup, context_groups, permutation_importance
from auie.decide.policies import Policy, make_policy
from auie.decide.registry import DecisionStore
from auie.errors import InvalidRequest
from auie.eventlog import DECISIONS_TOPIC, REWARDS_TOPIC, EventLog, StoredRecord
from auie.lake.catalog import Lake
from auie.lake.query import decision_point_rows
from auie.lake.tables import DECISIONS, REWARDS

CURRENT = "current"
LOGGING = "logging"
_CHUNK = 5000
_MAX_CANDIDATES = 20


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One logged decision and every reward logged for it, in log order."""

    event_id: str
    timestamp_ms: int
    context: dict[str, Any]
    actions: list[tuple[str, dict[str, Any]]]
    excluded: frozenset[str]
    probabilities: list[float]
    chosen_action: str
    arm: str
    learn: bool
    deferred: bool
    rewards: list[float] = field(default_factory=list)


#: Where a logged record sorts: (decision or reward time in µs, log partition, log offset),
#: the same whether it is read from the lake or from the log.
_Key = tuple[int, int, int]
_DECISION_COLUMNS = (
    "event_id",
    "context",
    "actions",
    "excluded_actions",
    "probabilities",
    "chosen_action",
    "arm",
    "learn",
    "deferred",
    "timestamp",
    "log_partition",
    "log_offset",
)
_REWARD_COLUMNS = ("event_id", "value", "timestamp", "log_partition", "log_offset")


def _records(
    log: EventLog, topic: str, start: Mapping[int, int] | None = None
) -> Iterator[StoredRecord]:
    """Every record of a topic (from ``start``'s offsets where given), partition by
    partition."""
    for part, begin in log.begin_offsets(topic).items():
        offset = max(begin, (start or {}).get(part, begin))
        while True:
            batch = log.read(topic, part, offset, _CHUNK)
            yield from batch
            if len(batch) < _CHUNK:
                break
            offset = batch[-1].offset + 1


def _micros(moment: datetime) -> int:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _record_key(record: StoredRecord, value: Mapping[str, Any]) -> _Key:
    stamp = value.get("timestamp")
    micros = (
        _micros(datetime.fromisoformat(stamp))
        if isinstance(stamp, str)
        else record.timestamp_ms * 1000
    )
    return (micros, record.partition, record.offset)


def _row_key(row: Mapping[str, Any]) -> _Key:
    return (_micros(row["timestamp"]), int(row["log_partition"]), int(row["log_offset"]))


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _decision(
    key: _Key,
    *,
    event_id: Any,
    context: Any,
    actions: Any,
    excluded: Any,
    probabilities: Any,
    chosen: Any,
    arm: Any,
    learn: Any,
    deferred: Any,
) -> LoggedDecision:
    return LoggedDecision(
        event_id=str(event_id),
        timestamp_ms=key[0] // 1000,
        context=dict(context or {}),
        actions=[(str(a["id"]), dict(a.get("features") or {})) for a in actions],
        excluded=frozenset(excluded or ()),
        probabilities=[float(p) for p in probabilities],
        chosen_action=str(chosen),
        arm=str(arm or ""),
        learn=True if learn is None else bool(learn),
        deferred=bool(deferred),
    )


def _log_decisions(
    log: EventLog, workspace: str, decision_point: str, start: Mapping[int, int] | None
) -> list[tuple[_Key, LoggedDecision]]:
    found = []
    for record in _records(log, DECISIONS_TOPIC, start):
        if record.headers.get("workspaceId") != workspace:
            continue
        value = json.loads(record.value)
        if value.get("decisionPoint") != decision_point:
            continue
        key = _record_key(record, value)
        found.append(
            (
                key,
                _decision(
                    key,
                    event_id=value["eventId"],
                    context=value.get("context"),
                    actions=value["actions"],
                    excluded=value.get("excludedActions"),
                    probabilities=value["probabilities"],
                    chosen=value["chosenAction"],
                    arm=value.get("arm"),
                    learn=value.get("learn"),
                    deferred=value.get("deferActivation"),
                ),
            )
        )
    return found


def _log_rewards(
    log: EventLog, workspace: str, start: Mapping[int, int] | None
) -> list[tuple[_Key, str, float]]:
    found = []
    for record in _records(log, REWARDS_TOPIC, start):
        if record.headers.get("workspaceId") != workspace:
            continue
        value = json.loads(record.value)
        found.append((_record_key(record, value), str(value.get("eventId")), float(value["value"])))
    return found


def _joined(
    decisions: list[tuple[_Key, LoggedDecision]],
    rewards: list[tuple[_Key, str, float]],
    limit: int | None,
) -> list[LoggedDecision]:
    """The decisions (the latest ``limit``) oldest first, each with its rewards in order."""
    ordered = [d for _, d in sorted(decisions, key=lambda item: item[0])]
    if limit is not None:
        ordered = ordered[-limit:] if limit > 0 else []
    wanted = {d.event_id: d for d in ordered}
    for _, event_id, value in sorted(rewards, key=lambda item: item[0]):
        found = wanted.get(event_id)
        if found is not None:
            found.rewards.append(value)
    return ordered


def read_event_log(
    log: EventLog, workspace: str, decision_point: str, *, limit: int | None = None
) -> list[LoggedDecision]:
    """The decision point's decisions (the latest ``limit``), oldest first, with their
    rewards, from the event log's ``decisions`` and ``rewards`` topics alone."""
    return _joined(
        _log_decisions(log, workspace, decision_point, None),
        _log_rewards(log, workspace, None),
        limit,
    )


def read_lake(
    lake: Lake, log: EventLog, workspace: str, decision_point: str, *, limit: int | None = None
) -> list[LoggedDecision]:
    """Like :func:`read_event_log`, from the lake's ``decisions`` and ``rewards`` tables and
    the log's records past the offsets each table holds (records the log no longer keeps
    are still in the lake)."""
    stored = decision_point_rows(
        lake,
        workspace,
        DECISIONS,
        topic=DECISIONS_TOPIC,
        decision_point=decision_point,
        columns=_DECISION_COLUMNS,
    )
    paid = decision_point_rows(
        lake,
        workspace,
        REWARDS,
        topic=REWARDS_TOPIC,
        decision_point=decision_point,
        columns=_REWARD_COLUMNS,
    )
    decisions = _log_decisions(log, workspace, decision_point, stored.offsets)
    for row in stored.rows:
        key = _row_key(row)
        decision = _decision(
            key,
            event_id=row["event_id"],
            context=_json(row["context"]),
            actions=_json(row["actions"]),
            excluded=_json(row["excluded_actions"]),
            probabilities=_json(row["probabilities"]),
            chosen=row["chosen_action"],
            arm=row["arm"],
            learn=row["learn"],
            deferred=row["deferred"],
        )
        decisions.append((key, decision))
    rewards = _log_rewards(log, workspace, paid.offsets)
    rewards += [(_row_key(r), str(r["event_id"]), float(r["value"])) for r in paid.rows]
    return _joined(decisions, rewards, limit)


def logged_decisions(
    eventlog: EventLog,
    workspace: str,
    decision_point: str,
    *,
    limit: int | None = None,
    lake: Lake | None = None,
) -> list[LoggedDecision]:
    """Where evaluation reads the decision log from: the lake's ``decisions`` and
    ``rewards`` tables and the log's records they do not hold yet (:func:`read_lake`), or
    the event log alone without a lake."""
    if lake is None:
        return read_event_log(eventlog, workspace, decision_point, limit=limit)
    return read_lake(lake, eventlog, workspace, decision_point, limit=limit)


#: Added to a decision's reward wait before its reward is taken as final: the service closes
#: decisions on a short tick, so a reward can be logged just after the wait's end.
SETTLE_MARGIN_MS = 1000


def settled(decision: LoggedDecision, spec: RewardSpec, now_ms: int) -> bool:
    """Whether the decision's reward can no longer change at ``now_ms``: its reward wait is
    over. Until then it is *pending*: counting it as it stands would take a reward that may
    still come for missing (``reward.default``), and counting only the pending decisions
    that already have a reward would keep the clicks and drop the misses. The wait is the
    point's current ``reward.wait_seconds`` (the log does not hold the one the decision was
    served with), from the decision time; a deferred decision's wait starts at its
    activation, which the log does not hold either, so it is final only once it could no
    longer have been activated (:data:`~auie.decide.config.DEFERRED_TTL_SECONDS`) and
    that wait has passed too."""
    wait_ms = spec.wait_seconds * 1000 + SETTLE_MARGIN_MS
    if decision.deferred:
        wait_ms += DEFERRED_TTL_SECONDS * 1000
    return decision.timestamp_ms + wait_ms <= now_ms


def now_ms() -> int:
    return int(time.time() * 1000)


def aggregate_reward(decision: LoggedDecision, spec: RewardSpec) -> float | None:
    """The reward the decision service learned (or would learn) for a decision, by the
    decision point's aggregation and default; None for a deferred decision without any
    reward (it may never have been shown, so it is not evidence)."""
    if not decision.rewards:
        return None if decision.deferred else spec.default
    if spec.aggregation == "earliest":
        return decision.rewards[0]
    return float(sum(decision.rewards))


# -- candidates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A policy configuration to evaluate; ``policy`` None is the decision point's own."""

    name: str
    policy: dict[str, Any] | None = None


def parse_candidates(items: Sequence[str | Mapping[str, Any]]) -> list[Candidate]:
    """Candidates from ``"current"``, ``{"type": ...}`` or ``{"name": ..., "policy": {...}}``;
    the current configuration is always evaluated (it is the comparison baseline)."""
    if len(items) > _MAX_CANDIDATES:
        raise InvalidRequest(f"at most {_MAX_CANDIDATES} candidates", code="invalid_candidate")
    found: list[Candidate] = [Candidate(CURRENT)]
    for item in items:
        if item == CURRENT:
            continue
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                f'a candidate is "current" or a policy configuration, not {item!r}',
                code="invalid_candidate",
            )
        if "policy" in item:
            extra = set(item) - {"name", "policy"}
            policy, name = item["policy"], item.get("name")
            if extra or not isinstance(policy, Mapping):
                raise InvalidRequest(
                    'a named candidate is {"name": ..., "policy": {"type": ...}}',
                    code="invalid_candidate",
                )
        else:
            policy, name = item, None
        if name is None:
            base = str(policy.get("type", "policy"))
            taken = {c.name for c in found}
            name = (
                base
                if base not in taken
                else next(f"{base}-{i}" for i in range(2, 1000) if f"{base}-{i}" not in taken)
            )
        if not isinstance(name, str) or not 0 < len(name) <= 100:
            raise InvalidRequest("candidate names are 1-100 characters", code="invalid_candidate")
        if name in (CURRENT, LOGGING):
            raise InvalidRequest(
                f"candidate name {name!r} is reserved (current and logging are the policies"
                " every evaluation compares)",
                code="invalid_candidate",
            )
        if name in {c.name for c in found}:
            raise InvalidRequest(
                f"two candidates are named {name!r}: each needs its own name",
                code="invalid_candidate",
            )
        found.append(Candidate(name, dict(policy)))
    return found


def _policy(config: DecisionPointConfig, policy: Mapping[str, Any], seed: int) -> Policy:
    """A fresh policy, configured as the decision service configures its own (the decision
    point's exploration floor unless the candidate sets ``explorationFloor``)."""
    params = dict(policy)
    floor = params.pop("explorationFloor", params.pop("exploration_floor", None))
    params["exploration_floor"] = config.exploration_floor if floor is None else floor
    return make_policy(
        params,
        context_dim=config.features.context_dim,
        action_dim=config.action_dim,
        seed=seed,
    )


# -- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    bootstrap_rounds: int = 1000
    confidence: float = 0.95
    seed: int = 0
    clip: float | None = None
    folds: int = 3
    limit: int | None = 50_000
    #: Progressive validation (learn along the log); False judges fresh policies frozen.
    learn: bool = True
    importance_top: int = 10


@dataclass
class FeaturizedLog:
    """Logged decisions as the decision point's featurizer sees them, with their rewards
    aggregated, and the feature names seen (the featurizer keeps only digests)."""

    rounds: list[ope.LoggedRound]
    featurizer: Featurizer
    skipped: int
    #: Decisions still in their reward wait (:func:`settled`), left out.
    pending: int = 0
    context_names: set[str] = field(default_factory=set)
    action_feature_names: set[str] = field(default_factory=set)

    def feature_groups(self) -> dict[str, FeatureGroup]:
        return context_groups(self.featurizer, self.context_names, self.action_feature_names)


def usable(
    decision: LoggedDecision, spec: RewardSpec
) -> tuple[float, npt.NDArray[np.float64], int] | None:
    """(reward, probabilities, index of the chosen action) of a logged decision that can be
    learned from and judged by: a finite aggregated reward, the chosen action among its
    candidates, a propensity in (0, 1]; None otherwise."""
    reward = aggregate_reward(decision, spec)
    ids = [a for a, _ in decision.actions]
    probabilities = np.asarray(decision.probabilities, dtype=np.float64)
    if (
        reward is None
        or not math.isfinite(reward)
        or decision.chosen_action not in ids
        or len(probabilities) != len(ids)
    ):
        return None
    chosen = ids.index(decision.chosen_action)
    if not 0 < probabilities[chosen] <= 1:
        return None
    return reward, probabilities, chosen


def featurize(
    config: DecisionPointConfig, decisions: Sequence[LoggedDecision], now: int | None = None
) -> FeaturizedLog:
    """See :class:`FeaturizedLog`; decisions still in their reward wait at ``now`` (ms;
    default: the clock) are left out as pending, and decisions without a usable reward or
    propensity skipped (both counted)."""
    now = now_ms() if now is None else now
    spec = config.features
    # Feature-less actions (action dimension 0) have no action vector: the featurizer still
    # needs a minimal action space, whose (empty) columns are dropped below.
    featurizer = Featurizer(
        spec.context_dim,
        max(config.action_dim, 4),
        interactions=spec.interactions and config.action_dim > 0,
        hashed_fraction=spec.hashed_fraction,
    )
    out = FeaturizedLog([], featurizer, 0)
    for decision in decisions:
        if not settled(decision, config.reward, now):
            out.pending += 1
            continue
        found = usable(decision, config.reward)
        if found is None:
            out.skipped += 1
            continue
        reward, probabilities, chosen = found
        out.context_names.update(name for name, _ in flatten(decision.context))
        for _, features in decision.actions:
            out.action_feature_names.update(name for name, _ in flatten(features))
        vectors = featurizer(decision.context, decision.actions)
        if not config.action_dim:
            vectors = Featurized(vectors.action_ids, vectors.x, vectors.z[:, :0])
        out.rounds.append(
            ope.LoggedRound(
                vectors,
                probabilities,
                chosen,
                reward,
                decision.excluded,
            )
        )
    return out


def evaluate_decision_point(
    store: DecisionStore,
    eventlog: EventLog,
    workspace: str,
    name: str,
    candidates: Sequence[Candidate],
    *,
    options: EvaluationOptions = EvaluationOptions(),
    lake: Lake | None = None,
    progress: Callable[[str, int, int], None] = lambda _step, _done, _total: None,
) -> dict[str, Any]:
    """Evaluate the logging policy, the current configuration and ``candidates`` on the
    decision point's log (from ``lake`` and the log, or the log alone; see
    :func:`logged_decisions`); a JSON-ready report (see docs/decide.md, "Evaluation").
    ``progress(step, done, total)`` hears of each step as it starts (for a progress bar)."""
    point = store.require(workspace, name)
    config = point.config
    configs = {c.name: dict(config.policy) if c.policy is None else c.policy for c in candidates}
    configs.setdefault(CURRENT, dict(config.policy))
    configs = {CURRENT: configs.pop(CURRENT), **configs}
    for policy in configs.values():
        _policy(config, policy, options.seed)  # invalid configurations fail before any work
    steps = 3 + len(configs) + (options.importance_top > 0)
    progress("reading the logged decisions", 0, steps)
    decisions = logged_decisions(eventlog, workspace, name, limit=options.limit, lake=lake)
    progress("featurizing", 1, steps)
    featurized = featurize(config, decisions)
    rounds = featurized.rounds
    if not rounds:
        waiting = (
            f" ({featurized.pending} are still in their reward wait)" if featurized.pending else ""
        )
        raise InvalidRequest(
            f"decision point {name!r} has no logged decisions to evaluate{waiting}",
            code="no_logged_decisions",
        )
    log = ope.logged_bandit(rounds)
    assert log.logging is not None
    targets: dict[str, Any] = {LOGGING: log.logging}
    policies: dict[str, Policy] = {}
    for done, (candidate, policy_config) in enumerate(configs.items(), 2):
        progress(f"replaying {candidate}", done, steps)
        policies[candidate] = _policy(config, policy_config, options.seed)
        targets[candidate] = ope.replay(
            policies[candidate], rounds, learn=options.learn, width=log.n_candidates
        )
    progress(f"estimating ({options.bootstrap_rounds} resamples)", 2 + len(configs), steps)
    try:
        report = ope.evaluate(
            log,
            targets,
            baseline=CURRENT,
            clip=options.clip,
            rounds=options.bootstrap_rounds,
            confidence=options.confidence,
            seed=options.seed,
            folds=options.folds,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="invalid_evaluation") from None
    result = ope.report_to_dict(report)
    for entry in result["policies"]:
        entry["policy"] = configs.get(entry["name"])
    importance = []
    if options.importance_top > 0:
        progress("feature importance", 3 + len(configs), steps)
        # The ridge reward model every native policy learns, as learned from the whole log
        # (the same solution in any order; also for frozen replays and other backends).
        model = ope.fit_ridge(log, l2=policies[CURRENT].model.l2)
        importance = [
            score.to_dict()
            for score in permutation_importance(
                model,
                log,
                featurized.feature_groups(),
                top=options.importance_top,
                seed=options.seed,
            )
        ]
    progress("done", steps, steps)
    return {
        "decisionPoint": name,
        "decisions": len(decisions),
        "skipped": featurized.skipped,
        "pending": featurized.pending,
        "meanReward": float(log.reward.mean()),
        "baseline": CURRENT,
        "learn": options.learn,
        **result,
        "featureImportance": importance,
    }
