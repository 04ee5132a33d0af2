"""Evaluating candidate policies of a decision point on its decision log.

:func:`logged_decisions` reads what the decision service logged (the ``decisions`` and
``rewards`` topics of the event log; see :mod:`auie.decide.service`) and joins each
decision with its rewards. Every evaluation reads through it, so switching to the lake's
``decisions`` and ``rewards`` tables is a change of that one function.

:func:`evaluate_decision_point` then featurizes the decisions as the decision point does,
replays the current policy configuration and every candidate on them
(:func:`auie.decide.ope.replay`: progressive validation by default), and reports IPS,
SNIPS, DM and DR with bootstrap intervals for each, plus the logging policy's own value
and each candidate's difference from the current configuration
(:func:`auie.decide.ope.evaluate`). See docs/decide.md, "Evaluation".
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auie.decide import ope
from auie.decide.config import DecisionPointConfig, RewardSpec
from auie.decide.features import Featurized, Featurizer, flatten
from auie.decide.importance import FeatureGroup, context_groups, permutation_importance
from auie.decide.policies import Policy, make_policy
from auie.decide.registry import DecisionStore
from auie.errors import InvalidRequest
from auie.eventlog import DECISIONS_TOPIC, REWARDS_TOPIC, EventLog, StoredRecord

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


def _records(log: EventLog, topic: str) -> Iterator[StoredRecord]:
    """Every record of a topic, merged across partitions in append-time order."""

    def partition(part: int, start: int) -> Iterator[StoredRecord]:
        offset = start
        while True:
            batch = log.read(topic, part, offset, _CHUNK)
            yield from batch
            if len(batch) < _CHUNK:
                return
            offset = batch[-1].offset + 1

    streams = [partition(p, start) for p, start in log.begin_offsets(topic).items()]
    return heapq.merge(*streams, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def read_event_log(
    log: EventLog, workspace: str, decision_point: str, *, limit: int | None = None
) -> list[LoggedDecision]:
    """The decision point's decisions (the latest ``limit``), oldest first, with their
    rewards, from the event log's ``decisions`` and ``rewards`` topics."""
    decisions: list[LoggedDecision] = []
    for record in _records(log, DECISIONS_TOPIC):
        if record.headers.get("workspaceId") != workspace:
            continue
        value = json.loads(record.value)
        if value.get("decisionPoint") != decision_point:
            continue
        actions = [(str(a["id"]), dict(a.get("features") or {})) for a in value["actions"]]
        decisions.append(
            LoggedDecision(
                event_id=str(value["eventId"]),
                timestamp_ms=record.timestamp_ms,
                context=dict(value.get("context") or {}),
                actions=actions,
                excluded=frozenset(value.get("excludedActions") or ()),
                probabilities=[float(p) for p in value["probabilities"]],
                chosen_action=str(value["chosenAction"]),
                arm=str(value.get("arm") or ""),
                learn=bool(value.get("learn", True)),
                deferred=bool(value.get("deferActivation", False)),
            )
        )
    if limit is not None:
        decisions = decisions[-limit:] if limit > 0 else []
    wanted = {d.event_id: d for d in decisions}
    for record in _records(log, REWARDS_TOPIC):
        if record.headers.get("workspaceId") != workspace:
            continue
        value = json.loads(record.value)
        found = wanted.get(str(value.get("eventId")))
        if found is not None:
            found.rewards.append(float(value["value"]))
    return decisions


def logged_decisions(
    eventlog: EventLog, workspace: str, decision_point: str, *, limit: int | None = None
) -> list[LoggedDecision]:
    """Where evaluation reads the decision log from: the event log today; the lake's
    ``decisions`` and ``rewards`` tables once they land (only this function changes)."""
    return read_event_log(eventlog, workspace, decision_point, limit=limit)


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
        if name in (CURRENT, LOGGING) or name in {c.name for c in found}:
            raise InvalidRequest(
                f"candidate name {name!r} is taken (reserved: current, logging)",
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
    context_names: set[str] = field(default_factory=set)
    action_feature_names: set[str] = field(default_factory=set)

    def feature_groups(self) -> dict[str, FeatureGroup]:
        return context_groups(self.featurizer, self.context_names, self.action_feature_names)


def featurize(config: DecisionPointConfig, decisions: Sequence[LoggedDecision]) -> FeaturizedLog:
    """See :class:`FeaturizedLog`; decisions without a usable reward or propensity are
    skipped (counted)."""
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
        reward = aggregate_reward(decision, config.reward)
        ids = [a for a, _ in decision.actions]
        probabilities = np.asarray(decision.probabilities, dtype=np.float64)
        if (
            reward is None
            or not math.isfinite(reward)
            or decision.chosen_action not in ids
            or len(probabilities) != len(ids)
        ):
            out.skipped += 1
            continue
        chosen = ids.index(decision.chosen_action)
        if not 0 < probabilities[chosen] <= 1:
            out.skipped += 1
            continue
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
) -> dict[str, Any]:
    """Evaluate the logging policy, the current configuration and ``candidates`` on the
    decision point's log; a JSON-ready report (see docs/decide.md, "Evaluation")."""
    point = store.require(workspace, name)
    config = point.config
    configs = {c.name: dict(config.policy) if c.policy is None else c.policy for c in candidates}
    configs.setdefault(CURRENT, dict(config.policy))
    configs = {CURRENT: configs.pop(CURRENT), **configs}
    for policy in configs.values():
        _policy(config, policy, options.seed)  # invalid configurations fail before any work
    decisions = logged_decisions(eventlog, workspace, name, limit=options.limit)
    featurized = featurize(config, decisions)
    rounds = featurized.rounds
    if not rounds:
        raise InvalidRequest(
            f"decision point {name!r} has no logged decisions to evaluate",
            code="no_logged_decisions",
        )
    log = ope.logged_bandit(rounds)
    assert log.logging is not None
    targets: dict[str, Any] = {LOGGING: log.logging}
    policies: dict[str, Policy] = {}
    for candidate, policy_config in configs.items():
        policies[candidate] = _policy(config, policy_config, options.seed)
        targets[candidate] = ope.replay(
            policies[candidate], rounds, learn=options.learn, width=log.n_candidates
        )
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
    return {
        "decisionPoint": name,
        "decisions": len(decisions),
        "skipped": featurized.skipped,
        "meanReward": float(log.reward.mean()),
        "baseline": CURRENT,
        "learn": options.learn,
        **result,
        "featureImportance": importance,
    }
