"""Turning contexts and actions into vectors, as Vowpal Wabbit's ``--cb_explore_adf`` does.

A decision has a *shared* context (any JSON object, nested allowed) and candidate actions,
each with its own features. Nested objects flatten to dotted names; numbers keep their
value, strings and booleans become indicators (``device=mobile``), lists give one
indicator per element.

Two vectors feed the policies:

* ``x`` (dimension ``context_dim``): the context, for each action's own model;
* ``z_a`` (dimension ``action_dim``): the action's features and their interactions with the
  context (``context feature × action feature``, VW's ``-q sa``), for a model shared across
  actions, so knowledge carries over to actions the policy has rarely or never tried.

Names get a slot from a vocabulary (first come, first served) while it has room: small
feature sets never collide. The vocabulary keeps a 64-bit digest of each name, never the
name: a saved model holds no feature values (no e-mail addresses, no ids). Once
``1 - hashed_fraction`` of the dimension is assigned, further names (high-cardinality
values such as ids) are hashed with a stable signed hash into the remaining slots. Slot 0
of each vector is a constant bias.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]
_MAX_DEPTH = 8
_MAX_FEATURES = 2000
_MAX_LIST = 50


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Iterable[tuple[str, float]]:
    """(name, value) pairs of a JSON value; see the module docstring."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from flatten(inner, name, depth + 1)
    elif isinstance(value, bool):
        yield (f"{prefix}={str(value).lower()}", 1.0)
    elif isinstance(value, int | float):
        number = float(value)
        if np.isfinite(number):
            yield (prefix, number)
    elif isinstance(value, str):
        yield (f"{prefix}={value[:200]}", 1.0)
    elif isinstance(value, list):
        for item in value[:_MAX_LIST]:
            if isinstance(item, str | bool | int | float):
                yield (f"{prefix}[]={str(item)[:200]}", 1.0)


def _stable_hash(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogatepass"))


def _digest(name: str) -> str:
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass
class FeatureSpace:
    """Maps feature names to slots of a fixed-size vector (vocabulary, then hashing)."""

    dim: int
    hashed_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.dim < 4:
            raise ValueError("feature dimension must be at least 4")
        self.vocab: dict[str, int] = {}
        self._capacity = max(1, int((self.dim - 1) * (1 - self.hashed_fraction)))
        self._hashed_start = 1 + self._capacity
        self._hash_cache: dict[str, tuple[int, float]] = {}

    def slot(self, name: str) -> tuple[int, float]:
        """(index, sign) of a feature name."""
        cached = self._hash_cache.get(name)
        if cached is not None:
            return cached
        key = _digest(name)
        index = self.vocab.get(key)
        if index is None and len(self.vocab) < self._capacity:
            index = self.vocab[key] = 1 + len(self.vocab)
        if index is not None:
            if len(self._hash_cache) < 100_000:
                self._hash_cache[name] = (index, 1.0)
            return index, 1.0
        hashed = _stable_hash(name)
        width = max(1, self.dim - self._hashed_start)
        found = (self._hashed_start + hashed % width, 1.0 if hashed & 1 << 31 else -1.0)
        if len(self._hash_cache) < 100_000:
            self._hash_cache[name] = found
        return found

    def vector(self, features: Iterable[tuple[str, float]]) -> Vector:
        out = np.zeros(self.dim)
        out[0] = 1.0
        for count, (name, value) in enumerate(features):
            if count >= _MAX_FEATURES:
                break
            index, sign = self.slot(name)
            out[index] += sign * value
        return out

    def state(self) -> dict[str, Any]:
        return {"dim": self.dim, "hashed_fraction": self.hashed_fraction, "vocab": self.vocab}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeatureSpace:
        space = cls(int(state["dim"]), float(state["hashed_fraction"]))
        space.vocab = {str(k): int(v) for k, v in state["vocab"].items()}
        return space


@dataclass(frozen=True, slots=True)
class Featurized:
    """One decision's vectors: the context ``x`` and one row of ``z`` per candidate."""

    action_ids: tuple[str, ...]
    x: Vector
    z: npt.NDArray[np.float64]


class Featurizer:
    """Builds :class:`Featurized` inputs from JSON contexts and actions."""

    def __init__(
        self,
        context_dim: int = 64,
        action_dim: int = 64,
        *,
        interactions: bool = True,
        hashed_fraction: float = 0.25,
    ) -> None:
        self.context = FeatureSpace(context_dim, hashed_fraction)
        self.actions = FeatureSpace(action_dim, hashed_fraction)
        self.interactions = interactions

    def __call__(
        self, context: Mapping[str, Any], actions: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> Featurized:
        shared = list(flatten(context))
        x = self.context.vector(shared)
        ids: list[str] = []
        rows: list[Vector] = []
        for action_id, features in actions:
            own = list(flatten(features))
            pairs = [(f"a.{n}", v) for n, v in own]
            if self.interactions:
                pairs += [(f"{cn}*{an}", cv * av) for cn, cv in shared for an, av in own]
            ids.append(action_id)
            rows.append(self.actions.vector(pairs))
        z = np.vstack(rows) if rows else np.zeros((0, self.actions.dim))
        return Featurized(tuple(ids), x, z)

    def state(self) -> dict[str, Any]:
        return {
            "context": self.context.state(),
            "actions": self.actions.state(),
            "interactions": self.interactions,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Featurizer:
        featurizer = cls.__new__(cls)
        featurizer.context = FeatureSpace.from_state(state["context"])
        featurizer.actions = FeatureSpace.from_state(state["actions"])
        featurizer.interactions = bool(state["interactions"])
        return featurizer
