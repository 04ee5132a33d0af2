"""Offline training (``auie train``): fit candidate policies on a decision point's logged
decisions, judge them off-policy on the latest ones, and promote the best into the model
registry only when it beats the current policy with confidence (see docs/decide.md,
"Offline training").

1. **Data.** :func:`~auie.decide.evaluation.logged_decisions` (the reader evaluation uses),
   rewards aggregated as the decision point does. Only decisions the service learned from
   are used (``learn``): people without ``personalization`` consent, an experiment's
   holdout and frozen decision points are not learned from offline either. Decisions still
   in their reward wait (:func:`~auie.decide.evaluation.settled`) are left out as pending:
   a reward may still come for them.
2. **Features.** The decision point's own featurizer: the active version's vocabulary when
   there is one (slots keep their meaning for the server), else a fresh one as configured.
3. **Split.** By time: the oldest ``1 - holdout`` of the decisions train, the latest
   ``holdout`` judge.
4. **Fit.** Every policy — the current configuration and each candidate — starts fresh and
   learns the training decisions with :meth:`Policy.fit <auie.decide.policies.Policy.fit>`:
   the logged (context, actions, chosen action, propensity, reward) replayed through
   ``update`` in log order, exactly the updates the online service makes (the neural policy
   trains on them in epochs instead). Rewards are not importance-weighted: every native
   policy and the neural one regress the reward of the *shown* action on its context,
   which the logging policy's choices do not bias (it chose from the context alone);
   weights would only add variance. Vowpal Wabbit receives each propensity with its label
   and applies its own ``--cb_type`` correction.
5. **Judge.** On the holdout each policy is replayed with progressive validation (its
   probabilities for a decision come from what it learned before it, then it learns that
   decision, as it would serving), and :func:`auie.decide.ope.evaluate` estimates IPS,
   SNIPS, DM and DR with paired bootstrap intervals against ``current``.
6. **Promote** (see :func:`verdicts`): a candidate *beats the current policy with
   confidence* when both the lower end of its own DR interval is above the current
   policy's DR estimate and the lower end of the paired DR difference (candidate −
   current) is above 0, at the level ``1 − (1 − confidence) / m`` for ``m`` candidates
   (Bonferroni: with several candidates, the chance that one which is not better passes
   stays within ``1 − confidence``). Of those that pass, the highest DR is promoted: its
   configuration becomes the decision point's ``policy`` and its state — trained on every
   decision, the holdout included — a new registry version (``source`` ``offline``), which
   a running server loads within a second and which the usual rollback undoes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from auie.decide import ope
from auie.decide.config import DecisionPointConfig
from auie.decide.evaluation import (
    CURRENT,
    LOGGING,
    Candidate,
    LoggedDecision,
    logged_decisions,
    now_ms,
    settled,
    usable,
)
from auie.decide.features import Featurizer
from auie.decide.policies import Policy, make_policy
from auie.decide.registry import DecisionPoint, DecisionStore
from auie.errors import InvalidRequest
from auie.eventlog import EventLog
from auie.lake.catalog import Lake

MAIN_ARM = ""
#: Candidates when none are given: the native policy types with their defaults.
DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("linucb", {"type": "linucb", "alpha": 1.0}),
    Candidate("thompson", {"type": "thompson"}),
    Candidate("squarecb", {"type": "squarecb"}),
    Candidate("epsilon_greedy", {"type": "epsilon_greedy"}),
)
NEURAL = Candidate("neural", {"type": "neural"})
_MIN_HOLDOUT = 20
_CHUNK = 250

#: (policy name, rounds done, rounds in all) — for a progress bar.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class TrainOptions:
    #: Share of the latest decisions kept to judge the policies.
    holdout: float = 0.3
    confidence: float = 0.95
    bootstrap_rounds: int = 1000
    seed: int = 0
    folds: int = 3
    clip: float | None = None
    limit: int | None = 50_000
    #: Save the winner as the active version (False: a dry run).
    promote: bool = True


@dataclass
class TrainingData:
    """Featurized decisions, oldest first, split by time."""

    train: list[ope.LoggedRound]
    holdout: list[ope.LoggedRound]
    featurizer: Featurizer
    decisions: int
    not_learned: int
    skipped: int
    #: Decisions still in their reward wait, left out.
    pending: int = 0


def _featurizer(store: DecisionStore, point: DecisionPoint) -> Featurizer:
    saved = store.load(point.workspace_id, point.name, arm=MAIN_ARM, version=point.active_version)
    if saved is not None:
        return Featurizer.from_state(saved[2])
    spec = point.config.features
    return Featurizer(
        spec.context_dim,
        point.config.action_dim,
        interactions=spec.interactions,
        hashed_fraction=spec.hashed_fraction,
    )


def _round(
    config: DecisionPointConfig, decision: LoggedDecision, featurizer: Featurizer
) -> ope.LoggedRound | None:
    found = usable(decision, config.reward)
    if found is None:
        return None
    reward, probabilities, chosen = found
    vectors = featurizer(decision.context, decision.actions)
    return ope.LoggedRound(vectors, probabilities, chosen, reward, decision.excluded)


def training_data(
    store: DecisionStore,
    eventlog: EventLog,
    point: DecisionPoint,
    options: TrainOptions,
    lake: Lake | None = None,
    *,
    now: int | None = None,
) -> TrainingData:
    """Steps 1-3 of the module docstring (decisions from the lake and the log's tail, or
    the log alone without a lake); ``now`` (ms, default: the clock) decides which decisions
    are still in their reward wait."""
    now = now_ms() if now is None else now
    decisions = logged_decisions(
        eventlog, point.workspace_id, point.name, limit=options.limit, lake=lake
    )
    featurizer = _featurizer(store, point)
    rounds: list[ope.LoggedRound] = []
    not_learned = skipped = pending = 0
    for decision in decisions:
        if not decision.learn:
            not_learned += 1
            continue
        if not settled(decision, point.config.reward, now):
            pending += 1
            continue
        found = _round(point.config, decision, featurizer)
        if found is None:
            skipped += 1
        else:
            rounds.append(found)
    held = math.ceil(len(rounds) * options.holdout)
    if held < _MIN_HOLDOUT or held >= len(rounds):
        raise InvalidRequest(
            f"decision point {point.name!r} has {len(rounds)} usable logged decisions"
            + (f" ({pending} more are still in their reward wait)" if pending else "")
            + "; "
            f"training needs at least {_MIN_HOLDOUT} to judge on (holdout "
            f"{options.holdout:g}) and some to train on",
            code="not_enough_decisions",
        )
    split = len(rounds) - held
    return TrainingData(
        rounds[:split], rounds[split:], featurizer, len(decisions), not_learned, skipped, pending
    )


def _make(config: DecisionPointConfig, policy: Mapping[str, Any], seed: int) -> Policy:
    """A fresh policy configured as the decision service configures its own."""
    params = dict(policy)
    floor = params.pop("explorationFloor", params.pop("exploration_floor", None))
    params["exploration_floor"] = config.exploration_floor if floor is None else floor
    return make_policy(
        params, context_dim=config.features.context_dim, action_dim=config.action_dim, seed=seed
    )


def fit_and_judge(
    policy: Policy,
    data: TrainingData,
    width: int,
    progress: Callable[[int], None] = lambda _done: None,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Steps 4-5 for one policy: fit on the training decisions, then its progressive
    distribution over the holdout, ``(n_holdout, width)``."""
    policy.fit([(r.decision, r.chosen, r.reward, r.propensity) for r in data.train])
    done = len(data.train)
    progress(done)
    parts = []
    for start in range(0, len(data.holdout), _CHUNK):
        chunk = data.holdout[start : start + _CHUNK]
        parts.append(ope.replay(policy, chunk, learn=True, width=width))
        done += len(chunk)
        progress(done)
    return np.concatenate(parts)


def _reporter(progress: Progress | None, name: str, total: int) -> Callable[[int], None]:
    if progress is None:
        return lambda _done: None
    return lambda done: progress(name, done, total)


def verdicts(report: ope.OffPolicyReport, candidates: Sequence[str]) -> list[dict[str, Any]]:
    """Each candidate against the current policy by the rule of the module docstring."""
    current = report.policies[CURRENT].estimates["dr"].value
    out = []
    for name in candidates:
        own = report.policies[name].estimates["dr"]
        difference = report.comparisons[name].differences["dr"]
        above_estimate = own.lower is not None and own.lower > current
        above_zero = difference.lower is not None and difference.lower > 0
        out.append(
            {
                "name": name,
                "dr": own.to_dict(),
                "difference": difference.to_dict(),
                "lowerAboveCurrent": above_estimate,
                "differenceAboveZero": above_zero,
                "beatsCurrent": above_estimate and above_zero,
            }
        )
    return out


def _check(point: DecisionPoint, candidates: Sequence[Candidate], options: TrainOptions) -> None:
    if not candidates:
        raise InvalidRequest("give at least one candidate policy", code="invalid_candidate")
    if not 0 < options.holdout < 1:
        raise InvalidRequest("holdout must be between 0 and 1", code="invalid_training")
    if options.promote and point.config.experiment is not None:
        raise InvalidRequest(
            f"decision point {point.name!r} runs an experiment: promotion replaces the main "
            "policy, which its arms do not serve (use --dry-run, or end the experiment)",
            code="invalid_training",
        )
    names = [c.name for c in candidates]
    if len(set(names)) != len(names) or {CURRENT, LOGGING} & set(names):
        raise InvalidRequest(
            "candidate names must be unique and not current or logging", code="invalid_candidate"
        )
    for candidate in candidates:  # invalid configurations fail before any work
        _make(point.config, candidate.policy or point.config.policy, options.seed)


def train_decision_point(
    store: DecisionStore,
    eventlog: EventLog,
    workspace: str,
    name: str,
    candidates: Sequence[Candidate],
    *,
    options: TrainOptions = TrainOptions(),
    progress: Progress | None = None,
    lake: Lake | None = None,
) -> dict[str, Any]:
    """Fit, judge and (maybe) promote; a JSON-ready report (see the module docstring)."""
    point = store.require(workspace, name)
    _check(point, candidates, options)
    data = training_data(store, eventlog, point, options, lake)
    configs = {CURRENT: dict(point.config.policy)}
    configs.update({c.name: dict(c.policy or point.config.policy) for c in candidates})
    log = ope.logged_bandit(data.holdout)
    assert log.logging is not None
    targets: dict[str, Any] = {LOGGING: log.logging}
    policies: dict[str, Policy] = {}
    total = len(data.train) + len(data.holdout)
    for policy_name, config in configs.items():
        policies[policy_name] = _make(point.config, config, options.seed)
        targets[policy_name] = fit_and_judge(
            policies[policy_name], data, log.n_candidates, _reporter(progress, policy_name, total)
        )
    level = 1 - (1 - options.confidence) / len(candidates)
    try:
        report = ope.evaluate(
            log,
            targets,
            baseline=CURRENT,
            clip=options.clip,
            rounds=options.bootstrap_rounds,
            confidence=level,
            seed=options.seed,
            folds=options.folds,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="invalid_evaluation") from None
    judged = verdicts(report, [c.name for c in candidates])
    passing = [v for v in judged if v["beatsCurrent"]]
    winner = max(passing, key=lambda v: v["dr"]["value"])["name"] if passing else None
    version = None
    if winner is not None and options.promote:
        entry = next(v for v in judged if v["name"] == winner)
        version = promote(
            store,
            point,
            config=configs[winner],
            policy=policies[winner],
            featurizer=data.featurizer,
            note=_note(winner, entry, len(data.holdout)),
        )
    result = ope.report_to_dict(report)
    for entry in result["policies"]:
        entry["policy"] = configs.get(entry["name"])
    return {
        "decisionPoint": name,
        "decisions": data.decisions,
        "notLearned": data.not_learned,
        "skipped": data.skipped,
        "pending": data.pending,
        "trainDecisions": len(data.train),
        "holdoutDecisions": len(data.holdout),
        "requestedConfidence": options.confidence,
        "previousVersion": point.active_version,
        **result,
        "candidates": judged,
        "winner": winner,
        "promote": options.promote,
        "promoted": version is not None,
        "version": version,
    }


def _note(winner: str, entry: Mapping[str, Any], holdout: int) -> str:
    dr, difference = entry["dr"], entry["difference"]
    return (
        f"auie train: {winner} DR {dr['value']:.4g} [{dr['lower']:.4g}, {dr['upper']:.4g}], "
        f"DR - current {difference['value']:.4g} [{difference['lower']:.4g}, "
        f"{difference['upper']:.4g}] on {holdout} holdout decisions"
    )


def promote(
    store: DecisionStore,
    point: DecisionPoint,
    *,
    config: Mapping[str, Any],
    policy: Policy,
    featurizer: Featurizer,
    note: str,
) -> int:
    """The winner's configuration becomes the decision point's policy and its state the
    active version; returns the version."""
    params = dict(config)
    floor = params.pop("explorationFloor", params.pop("exploration_floor", None))
    updated = point.config.model_dump(by_alias=True)
    updated["policy"] = params
    if floor is not None:
        updated["explorationFloor"] = floor
    return store.save(  # the configuration and the version in one transaction
        point.workspace_id,
        point.name,
        arm=MAIN_ARM,
        blob=policy.save(),
        featurizer=featurizer.state(),
        kind=policy.kind,
        updates=policy.steps,
        source="offline",
        note=note,
        config=DecisionPointConfig.model_validate(updated),
    )
