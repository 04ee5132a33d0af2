"""Native, vectorised contextual-bandit policies sharing one contract (see :mod:`.base`).

``make_policy({"type": ...})`` builds one from its configuration; :func:`load_policy`
restores a saved one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from auie.decide.model import HybridRidge
from auie.decide.policies.base import Choice, Policy, apply_floor
from auie.decide.policies.baseline import Baseline
from auie.decide.policies.epsilon_greedy import EpsilonGreedy
from auie.decide.policies.linucb import LinUCB
from auie.decide.policies.squarecb import SquareCB
from auie.decide.policies.thompson import LinearThompson
from auie.errors import InvalidRequest

POLICIES: dict[str, type[Policy]] = {
    cls.kind: cls for cls in (EpsilonGreedy, LinUCB, LinearThompson, SquareCB, Baseline)
}

__all__ = ["POLICIES", "Choice", "Policy", "apply_floor", "load_policy", "make_policy"]


def make_policy(
    config: Mapping[str, Any],
    *,
    context_dim: int,
    action_dim: int = 0,
    seed: int = 0,
    l2: float = 1.0,
) -> Policy:
    """A fresh policy from ``{"type": ..., <parameters>}``."""
    params = dict(config)
    kind = params.pop("type", None)
    cls = POLICIES.get(str(kind))
    if cls is None:
        raise InvalidRequest(
            f"unknown policy type {kind!r}; known: {', '.join(sorted(POLICIES))}",
            code="invalid_policy",
        )
    params.setdefault("seed", seed)
    try:
        return cls(HybridRidge(context_dim, action_dim, float(params.pop("l2", l2))), **params)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"policy {kind}: {exc}", code="invalid_policy") from None


def load_policy(blob: bytes) -> Policy:
    """Restore a policy saved with :meth:`Policy.save`."""
    with np.load(io.BytesIO(blob)) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(bytes(arrays.pop("__meta__")).decode())
    model = HybridRidge.restore(meta["model"], arrays)
    policy = POLICIES[meta["kind"]](
        model, seed=meta["seed"], exploration_floor=meta["exploration_floor"], **meta["params"]
    )
    policy.steps = int(meta["steps"])
    policy.rng.bit_generator.state = meta["rng"]
    return policy
