"""Which context features a policy's reward model relies on: permutation importance.

A context feature (``device``, ``page.section``, ``user.traits.plan``; the indicator
columns of one categorical feature — ``device=mobile``, ``device=desktop`` — form one
feature) is shuffled across the logged rounds, breaking its link with everything else,
and the model's predictions are recomputed. Its importance is

* ``score``: the mean absolute change of the predicted reward over every candidate of
  every round — how much the policy's view of the world moves without the feature;
* ``mseIncrease``: how much worse the predictions of the logged rewards get — whether
  what the model learned from the feature is borne out by the rewards.

Shuffling a feature also shuffles its interactions with action features (the ``x × a``
columns of the shared model). A slot that several features were hashed into (beyond the
vocabulary: high-cardinality values) is shuffled with each of them. Scores are averaged
over ``repeats`` shuffles drawn from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from auie.decide.features import Featurizer
from auie.decide.model import HybridRidge
from auie.decide.ope import LoggedBandit, predict_rewards


@dataclass(frozen=True, slots=True)
class FeatureScore:
    feature: str
    score: float
    mse_increase: float

    def to_dict(self) -> dict[str, object]:
        return {"feature": self.feature, "score": self.score, "mseIncrease": self.mse_increase}


@dataclass
class FeatureGroup:
    """The context slots of one feature (with signs) and the interaction slots built from
    them, as ``(interaction slot, sign, context slot, sign, action-feature slot, sign)``."""

    slots: set[int] = field(default_factory=set)
    interactions: set[tuple[int, float, int, float, int, float]] = field(default_factory=set)


def base_name(name: str) -> str:
    """``device=mobile`` → ``device``; ``tags[]=x`` → ``tags``; ``age`` → ``age``."""
    return name.split("=", 1)[0].removesuffix("[]")


def context_groups(
    featurizer: Featurizer,
    context_names: Iterable[str],
    action_feature_names: Iterable[str] = (),
) -> dict[str, FeatureGroup]:
    """The context features seen in a log (flattened names, as :func:`flatten` gives them),
    grouped by base name, with their slots in ``featurizer`` — which keeps only digests of
    names, so the caller supplies the names it featurized."""
    groups: dict[str, FeatureGroup] = {}
    own = {a: featurizer.actions.slot(f"a.{a}") for a in action_feature_names}
    for name in context_names:
        slot, sign = featurizer.context.slot(name)
        group = groups.setdefault(base_name(name), FeatureGroup())
        group.slots.add(slot)
        if featurizer.interactions:
            for action_name, (own_slot, own_sign) in own.items():
                pair, pair_sign = featurizer.actions.slot(f"{name}*{action_name}")
                group.interactions.add((pair, pair_sign, slot, sign, own_slot, own_sign))
    return groups


def permutation_importance(
    model: HybridRidge,
    log: LoggedBandit,
    groups: Mapping[str, FeatureGroup],
    *,
    top: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> list[FeatureScore]:
    """The ``top`` feature groups (:func:`context_groups`) by ``score`` (see the module
    docstring); ``log``'s vectors and ``model`` must share the groups' featurizer."""
    if log.x is None or log.n == 0:
        return []
    x = log.x
    z = log.z if log.z is not None else np.zeros((*log.candidates.shape, 0))
    mask = log.mask
    rows = np.arange(log.n)
    base = predict_rewards(model, log)
    base_error = float(np.mean((base[rows, log.chosen] - log.reward) ** 2))
    rng = np.random.default_rng(seed)
    scores: list[FeatureScore] = []
    for feature, group in groups.items():
        slots = sorted(group.slots)
        change = error = 0.0
        for _ in range(repeats):
            order = rng.permutation(log.n)
            x_perm = x.copy()
            x_perm[:, slots] = x[order][:, slots]
            z_perm = z
            if group.interactions and z.shape[2]:
                z_perm = z.copy()
                for pair, pair_sign, slot, sign, own, own_sign in sorted(group.interactions):
                    # x holds sign·value and z the signed products: undo the signs, redo.
                    delta = (x_perm[:, slot] - x[:, slot]) * sign
                    z_perm[:, :, pair] += pair_sign * delta[:, None] * z[:, :, own] * own_sign
            moved = predict_rewards(model, log, x=x_perm, z=z_perm)
            change += float(np.abs(moved - base)[mask].mean())
            error += float(np.mean((moved[rows, log.chosen] - log.reward) ** 2)) - base_error
        scores.append(FeatureScore(feature, change / repeats, error / repeats))
    scores.sort(key=lambda s: (-s.score, s.feature))
    return scores[:top]
