"""Native, vectorised contextual-bandit policies sharing one contract (see :mod:`.base`).

``make_policy({"type": ...})`` builds one from its configuration; :func:`load_policy`
restores a saved one. Types ``vw`` (:mod:`.vw`, Vowpal Wabbit) and ``neural``
(:mod:`.neural`, an MLP reward model in PyTorch) are imported only when used: they need
the optional extras ``vw`` and ``train``.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import math
import sys
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

#: Types whose module is imported on first use, with the extra that provides it.
OPTIONAL: dict[str, str] = {"vw": "vw", "neural": "train"}

__all__ = [
    "OPTIONAL",
    "POLICIES",
    "Choice",
    "Policy",
    "apply_floor",
    "load_policy",
    "make_policy",
    "policy_class",
]


def policy_class(kind: object) -> type[Policy]:
    """The class of a policy type (importing an optional backend on first use)."""
    cls = POLICIES.get(str(kind))
    if cls is not None:
        return cls
    if kind == "vw":
        try:
            from auie.decide.policies.vw import VowpalWabbit
        except ImportError:
            raise InvalidRequest(
                "policy type 'vw' needs Vowpal Wabbit: install the optional extra "
                "with pip install 'auie[vw]'",
                code="invalid_policy",
            ) from None
        return VowpalWabbit
    if kind == "neural":
        try:
            from auie.decide.policies.neural import NeuralReward
        except ImportError:
            raise InvalidRequest(
                "policy type 'neural' needs PyTorch: install the optional extra "
                "with pip install 'auie[train]'",
                code="invalid_policy",
            ) from None
        return NeuralReward
    known = ", ".join(sorted([*POLICIES, *OPTIONAL]))
    raise InvalidRequest(f"unknown policy type {kind!r}; known: {known}", code="invalid_policy")


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
    cls = policy_class(kind)
    params.setdefault("seed", seed)
    try:
        _check_types(cls, params)
        _check_numbers(params)
        ridge = float(params.pop("l2", l2))
        if not ridge > 0:
            raise ValueError("l2 must be > 0")
        return cls(HybridRidge(context_dim, action_dim, ridge), **params)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"policy {kind}: {exc}", code="invalid_policy") from None


#: What JSON value each annotation of a policy's keyword parameters takes, and its name
#: in messages (``bool`` is refused where a number is wanted: ``true`` is no ``1``).
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "float": ((int, float), "a number"),
    "int": ((int,), "an integer"),
    "str": ((str,), "a string"),
    "str | None": ((str, type(None)), "a string or null"),
    "bool": ((bool,), "true or false"),
}


@functools.cache
def _parameter_types(cls: type[Policy]) -> dict[str, tuple[tuple[type, ...], str]]:
    """The JSON types of a policy class's keyword parameters (its own and its bases')."""
    found: dict[str, tuple[tuple[type, ...], str]] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for parameter in inspect.signature(init).parameters.values():
            wanted = _JSON_TYPES.get(str(parameter.annotation))
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and wanted is not None:
                found[parameter.name] = wanted
    return found


def _check_types(cls: type[Policy], params: Mapping[str, Any]) -> None:
    """Refuses a parameter of the wrong JSON type with its name (``"alpha": "1"`` would
    otherwise fail deep inside the policy, or much later, with Python's words)."""
    types = _parameter_types(cls)
    unknown = sorted(set(params) - set(types) - {"l2"})
    if unknown:
        known = ", ".join(sorted({*types, "l2"}))
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; {cls.kind} takes {known}")
    for name, value in params.items():
        if name not in types:
            continue  # l2, checked by make_policy
        allowed, described = types[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(f"{name} must be {described}, not {shown}")


def _check_numbers(params: Mapping[str, Any]) -> None:
    """Refuses NaN and infinite parameters: comparisons with NaN are false, so a NaN
    passes every range check, and JSON stores it as null, which no policy accepts later."""
    for name, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {value}")
        if isinstance(value, int) and abs(value) > sys.float_info.max:
            raise ValueError(f"{name} is beyond the range of finite numbers")


def saved_config(blob: bytes) -> tuple[dict[str, Any], float]:
    """The ``{"type": ..., <parameters>}`` and exploration floor a saved policy was built
    with (what a decision point's configuration says once that version is served)."""
    with np.load(io.BytesIO(blob)) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
    return {"type": meta["kind"], **meta["params"]}, float(meta["exploration_floor"])


def load_policy(blob: bytes) -> Policy:
    """Restore a policy saved with :meth:`Policy.save`."""
    with np.load(io.BytesIO(blob)) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(bytes(arrays.pop("__meta__")).decode())
    model = HybridRidge.restore(meta["model"], arrays)
    policy = policy_class(meta["kind"])(
        model, seed=meta["seed"], exploration_floor=meta["exploration_floor"], **meta["params"]
    )
    policy._restore_state(arrays)
    policy.steps = int(meta["steps"])
    policy.rng.bit_generator.state = meta["rng"]
    return policy
