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
of each vector is a constant bias. ``action_dim = 0`` gives no action vector (``z`` has no
columns): feature-less actions only need the per-action models.

:class:`Featurized` also keeps the flattened ``(name, value)`` pairs, for backends that
featurize on their own (Vowpal Wabbit reads names, not slots).

The hot path is a plain loop over cached slots into one ``np.bincount`` per vector; rows of
feature-less actions are one shared read-only array per candidate count.
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]
Pairs = list[tuple[str, float]]
_MAX_DEPTH = 8
_MAX_FEATURES = 2000
_MAX_LIST = 50
#: Numbers are clamped to ±this: larger ones overflow the models' squared terms (a value
#: of 1e200 made the ridge matrices infinite, then every decision of the point failed).
_MAX_VALUE = 1e6
_CACHE_LIMIT = 100_000
_NONE: Pairs = []
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_FLOATS = {float}
_PLAN_LIMIT = 256


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Pairs:
    """(name, value) pairs of a JSON value; see the module docstring."""
    out: Pairs = []
    if not prefix and not depth and isinstance(value, Mapping):
        _flatten_top(value, out)
    else:
        _flatten_into(value, prefix, depth, out)
    return out


def _flatten_top(mapping: Mapping[Any, Any], out: Pairs) -> None:
    """A top-level object: the common flat case (string keys, numbers) without recursion."""
    append = out.append
    for key, inner in mapping.items():
        name = key if type(key) is str else str(key)
        kind = type(inner)
        if kind is float:
            if -_MAX_VALUE <= inner <= _MAX_VALUE:  # also false for NaN
                append((name, inner))
            elif math.isfinite(inner):
                append((name, math.copysign(_MAX_VALUE, inner)))
        elif kind is str:
            append((f"{name}={inner[:200]}", 1.0))
        else:
            _flatten_into(inner, name, 1, out)


def _flatten_into(value: Any, prefix: str, depth: int, out: Pairs) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            _flatten_into(inner, name, depth + 1, out)
    elif isinstance(value, bool):
        out.append((f"{prefix}={str(value).lower()}", 1.0))
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float: as large as a feature gets
            number = _MAX_VALUE if value > 0 else -_MAX_VALUE
        if math.isfinite(number):
            out.append((prefix, max(-_MAX_VALUE, min(_MAX_VALUE, number))))
    elif isinstance(value, str):
        out.append((f"{prefix}={value[:200]}", 1.0))
    elif isinstance(value, list):
        for item in value[:_MAX_LIST]:
            if isinstance(item, str | bool | int | float):
                out.append((f"{prefix}[]={str(item)[:200]}", 1.0))


def _stable_hash(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogatepass"))


def _digest(name: str) -> str:
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass
class FeatureSpace:
    """Maps feature names to slots of a fixed-size vector (vocabulary, then hashing).

    ``dim = 0`` is the empty space (vectors without slots)."""

    dim: int
    hashed_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.dim != 0 and self.dim < 4:
            raise ValueError("feature dimension must be 0 or at least 4")
        self.vocab: dict[str, int] = {}
        self._capacity = max(1, int((self.dim - 1) * (1 - self.hashed_fraction)))
        self._hashed_start = 1 + self._capacity
        self._hash_cache: dict[str, tuple[int, float]] = {}
        #: Names of a flat object of numbers whose slots are 1..n in their order → n: such
        #: a context (a fixed schema of numeric features) is vectorised by one slice.
        self._plans: dict[tuple[Any, ...], int] = {}

    def slot(self, name: str) -> tuple[int, float]:
        """(index, sign) of a feature name."""
        cached = self._hash_cache.get(name)
        if cached is not None:
            return cached
        if self.dim == 0:
            raise ValueError("the feature space is empty")
        key = _digest(name)
        index = self.vocab.get(key)
        if index is None and len(self.vocab) < self._capacity:
            index = self.vocab[key] = 1 + len(self.vocab)
        if index is not None:
            if len(self._hash_cache) < _CACHE_LIMIT:
                self._hash_cache[name] = (index, 1.0)
            return index, 1.0
        hashed = _stable_hash(name)
        width = max(1, self.dim - self._hashed_start)
        found = (self._hashed_start + hashed % width, 1.0 if hashed & 1 << 31 else -1.0)
        if len(self._hash_cache) < _CACHE_LIMIT:
            self._hash_cache[name] = found
        return found

    def vector(self, features: Iterable[tuple[str, float]]) -> Vector:
        if self.dim == 0:
            return np.zeros(0)
        return cast(Vector, np.bincount(*self._slots(features), minlength=self.dim))

    def flatten_vector(self, mapping: Mapping[Any, Any]) -> tuple[Pairs, Vector, int]:
        """``flatten(mapping)``, its :meth:`vector` and the vector's extent (1 + its last
        slot written) in one pass (the hot path: a flat object of numbers, every name
        already in the cache)."""
        if self.dim == 0:
            return flatten(mapping), np.zeros(0), 0
        keys = tuple(mapping)
        width = self._plans.get(keys)
        if width is not None:  # these names fill slots 1..width, in order: one slice
            values = list(mapping.values())
            if set(map(type, values)) == _FLOATS:
                total = sum(values)  # NaN if any value is NaN (or +inf and -inf)
                lowest, highest = min(values), max(values)
                if not math.isnan(total) and lowest >= -_MAX_VALUE and highest <= _MAX_VALUE:
                    x = np.zeros(self.dim)
                    x[0] = 1.0
                    x[1 : width + 1] = values
                    return list(zip(keys, values, strict=True)), x, width + 1
        cache = self._hash_cache
        pairs: Pairs = []
        indices = [0]
        values = [1.0]
        for key, inner in mapping.items():
            kind = type(inner)
            if (
                (kind is float or kind is int)
                and type(key) is str
                and -_MAX_VALUE <= inner <= _MAX_VALUE
            ):
                found = cache.get(key)
                if found is not None and len(pairs) < _MAX_FEATURES:
                    number = inner if kind is float else float(inner)
                    pairs.append((key, number))
                    indices.append(found[0])
                    values.append(found[1] * number)
                    continue
            pairs = flatten(mapping)  # anything else: the general path
            indices, values = self._slots(pairs)
            break
        else:
            width = len(pairs)
            if (
                width == len(keys)
                and width <= self._capacity  # vocabulary slots only: no hashing, no signs
                and indices == list(range(width + 1))
                and len(self._plans) < _PLAN_LIMIT
            ):
                self._plans[keys] = width
        vector = np.bincount(indices, values, minlength=self.dim)
        return pairs, cast(Vector, vector), max(indices) + 1

    def _slots(self, features: Iterable[tuple[str, float]]) -> tuple[list[int], list[float]]:
        """Slot indices and signed values (slot 0, the bias, first) for ``np.bincount``."""
        cache = self._hash_cache
        slot = self.slot
        indices = [0]
        values = [1.0]
        for count, (name, value) in enumerate(features):
            if count >= _MAX_FEATURES:
                break
            found = cache.get(name) or slot(name)
            indices.append(found[0])
            values.append(found[1] * value)
        return indices, values

    def state(self) -> dict[str, Any]:
        return {"dim": self.dim, "hashed_fraction": self.hashed_fraction, "vocab": self.vocab}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeatureSpace:
        space = cls(int(state["dim"]), float(state["hashed_fraction"]))
        space.vocab = {str(k): int(v) for k, v in state["vocab"].items()}
        return space


class Featurized(NamedTuple):
    """One decision's vectors: the context ``x`` and one row of ``z`` per candidate.

    ``context_features`` and ``action_features`` are the flattened pairs the vectors came
    from (empty when a decision is rebuilt from vectors alone). ``extent``: ``x`` is zero
    from this slot on (-1: not known). A named tuple: built once per decision, it costs a
    third of a frozen dataclass."""

    action_ids: tuple[str, ...]
    x: Vector
    z: npt.NDArray[np.float64]
    context_features: Sequence[tuple[str, float]] = ()
    action_features: Sequence[Sequence[tuple[str, float]]] = ()
    extent: int = -1


@functools.lru_cache(maxsize=1024)
def _no_columns(rows: int) -> npt.NDArray[np.float64]:
    """A shared read-only ``rows × 0`` array (no action vector)."""
    empty = np.zeros((rows, 0))
    empty.flags.writeable = False
    return empty


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
        self._setup()

    def _setup(self) -> None:
        self._bias_rows: dict[int, npt.NDArray[np.float64]] = {}
        self._pair_cache: dict[tuple[str, str], tuple[int, float]] = {}

    def __call__(
        self, context: Mapping[str, Any], actions: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> Featurized:
        shared, x, extent = self.context.flatten_vector(context)
        actions = actions if isinstance(actions, list | tuple) else list(actions)
        ids = list(map(_first, actions))
        featured = any(map(_second, actions))
        owns: list[Pairs] = (
            [flatten(features) if features else _NONE for _, features in actions]
            if featured
            else []
        )
        featured = featured and any(owns)
        k = self.actions.dim
        z: npt.NDArray[np.float64]
        if k == 0:
            z = _no_columns(len(ids))
        elif not featured:
            cached = self._bias_rows.get(len(ids))
            if cached is None:
                cached = np.zeros((len(ids), k))
                cached[:, 0] = 1.0
                cached.flags.writeable = False
                if len(self._bias_rows) < 1024:
                    self._bias_rows[len(ids)] = cached
            z = cached
        else:
            z = np.vstack([self._action_row(shared, own) for own in owns])
        # Tuples of (str, float) tuples: the cyclic GC stops tracking them after one pass, so
        # decisions waiting for their reward cost it nothing.
        return Featurized(
            tuple(ids), x, z, tuple(shared), tuple(map(tuple, owns)) if featured else (), extent
        )

    def _action_row(self, shared: Pairs, own: Pairs) -> Vector:
        indices, values = self.actions._slots((f"a.{n}", v) for n, v in own)
        budget = _MAX_FEATURES + 1 - len(indices)
        if self.interactions and own and shared and budget > 0:
            cache = self._pair_cache
            slot = self.actions.slot
            for cn, cv in shared:
                for an, av in own:
                    found = cache.get((cn, an))
                    if found is None:
                        found = slot(f"{cn}*{an}")
                        if len(cache) < _CACHE_LIMIT:
                            cache[(cn, an)] = found
                    indices.append(found[0])
                    values.append(found[1] * (cv * av))
                    budget -= 1
                    if budget == 0:
                        break
                if budget == 0:
                    break
        return cast(Vector, np.bincount(indices, values, minlength=self.actions.dim))

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
        featurizer._setup()
        return featurizer
