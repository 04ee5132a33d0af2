"""The contract every policy shares.

``choose`` turns one featurized decision into a probability for every candidate action
and draws one; ``update`` learns from the reward of the action that was shown. Both wrap
small private methods (``_scores`` / ``_probabilities``). Every policy:

* is reproducible: all randomness comes from its own seeded ``numpy`` generator;
* never gives probability to an excluded action;
* gives every allowed action at least ``exploration_floor`` (when the floor fits), so
  logged propensities are never zero and off-policy evaluation stays possible;
* saves and restores its whole state (model, generator, step count) with
  :meth:`Policy.save` / :func:`~auie.decide.policies.load_policy`.

Example::

    >>> from auie.decide.features import Featurizer
    >>> from auie.decide.policies import make_policy
    >>> featurize = Featurizer(context_dim=8)
    >>> policy = make_policy({"type": "linucb", "alpha": 1.0}, context_dim=8, seed=7)
    >>> decision = featurize({"device": "mobile"}, [("a", {}), ("b", {})])
    >>> choice = policy.choose(decision)
    >>> round(float(choice.probabilities.sum()), 6)
    1.0
    >>> policy.update(decision, choice.index, reward=1.0, propensity=choice.probability)
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge

Array = npt.NDArray[np.float64]
#: One logged decision to learn from: (decision, chosen index, reward, propensity).
Example = tuple[Featurized, int, float, float]


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a microsecond per decision
class Choice:
    """Probabilities over the candidates (in input order) and the drawn one."""

    probabilities: Array
    index: int

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.index])


def apply_floor(probabilities: Array, allowed: npt.NDArray[np.bool_], floor: float) -> Array:
    """Mix in the exploration floor over allowed actions; excluded ones stay at zero."""
    count = int(np.count_nonzero(allowed))
    if count == 0:
        raise ValueError("every action is excluded")
    everything = count == len(allowed)
    p = probabilities if everything else np.where(allowed, probabilities, 0.0)
    total = float(p.sum())
    p = p / total if total > 0 else allowed / count
    if floor > 0 and count > 1:
        floor = min(floor, 1.0 / count)
        p = floor + (1.0 - floor * count) * p
        if not everything:
            p = np.where(allowed, p, 0.0)
    return np.asarray(p / p.sum(), dtype=np.float64)


def _everything(allowed: npt.NDArray[np.bool_]) -> bool:
    """Whether every candidate is allowed (the shared mask of :func:`everything_allowed` is
    recognised without looking at it: a numpy call costs a microsecond here)."""
    return allowed is _ALL.get(len(allowed)) or bool(allowed.all())


def floor_one_hot(best: int, allowed: npt.NDArray[np.bool_], floor: float) -> Array:
    """:func:`apply_floor` of a distribution that puts everything on ``best``."""
    everything = _everything(allowed)
    count = len(allowed) if everything else int(np.count_nonzero(allowed))
    if floor <= 0 or count == 1:
        one = np.zeros(len(allowed))
        one[best] = 1.0
        return one
    floor = min(floor, 1.0 / count)
    if everything:
        p = _floors.get((count, floor))
        if p is None:
            p = np.full(count, floor)
            if len(_floors) < 4096:
                _floors[(count, floor)] = p
        p = p.copy()  # one call, where np.full is a Python function of two
    else:
        p = np.where(allowed, floor, 0.0)
    p[best] = 1.0 - floor * (count - 1)
    return p


_floors: dict[tuple[int, float], Array] = {}


def draw(probabilities: Array, rng: np.random.Generator) -> int:
    """One index drawn from ``probabilities`` (summing to 1): a binary search of one uniform
    draw in the cumulative sums, never an index of probability zero. (On Python floats: for
    a few dozen candidates that is several times faster than numpy's cumsum and
    searchsorted, and gives the same index: the same sums in the same order.)"""
    values = probabilities.tolist()
    cumulative = list(itertools.accumulate(values))
    index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
    if index >= len(values) or values[index] <= 0:  # rounding at the very top
        index = max(i for i, p in enumerate(values) if p > 0)
    return index


_ALL: dict[int, npt.NDArray[np.bool_]] = {}


def everything_allowed(n: int) -> npt.NDArray[np.bool_]:
    """A shared read-only all-true mask of length ``n``."""
    found = _ALL.get(n)
    if found is None:
        found = np.ones(n, dtype=bool)
        found.flags.writeable = False
        if len(_ALL) < 4096:
            _ALL[n] = found
    return found


class Policy(ABC):
    """See the module docstring."""

    kind: ClassVar[str]

    def __init__(
        self,
        model: HybridRidge,
        *,
        seed: int = 0,
        exploration_floor: float = 0.0,
        **params: Any,
    ) -> None:
        if params:
            raise TypeError(f"{self.kind}: unknown parameter(s) {', '.join(sorted(params))}")
        if not 0 <= exploration_floor <= 0.5:  # a decision point's range; also refuses NaN
            raise ValueError("exploration_floor must be in [0, 0.5]")
        self.model = model
        self.seed = seed
        self.exploration_floor = exploration_floor
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    # -- public contract ------------------------------------------------------------------

    def choose(self, decision: Featurized, excluded: Collection[str] = ()) -> Choice:
        """Probabilities for every candidate and one action drawn from them."""
        ids = decision.action_ids
        if excluded and any(a in excluded for a in ids):
            allowed = np.array([a not in excluded for a in ids], dtype=bool)
            if not allowed.any():
                raise ValueError("every action is excluded")
        else:
            allowed = everything_allowed(len(ids))
        best = self._best(decision, allowed)
        if best is None:
            raw = self._probabilities(decision, allowed)
            probabilities = apply_floor(raw, allowed, self.exploration_floor)
        else:
            probabilities = floor_one_hot(best, allowed, self.exploration_floor)
        return Choice(probabilities, draw(probabilities, self.rng))

    def update(
        self,
        decision: Featurized,
        index: int,
        reward: float,
        propensity: float,
        weight: float = 1.0,
    ) -> None:
        """Learn from the reward of ``decision.action_ids[index]`` (shown with ``propensity``)."""
        if not 0 < propensity <= 1:
            raise ValueError(f"propensity must be in (0, 1], got {propensity}")
        self.steps += 1
        self._learn(decision, index, float(reward), weight, float(propensity))

    def fit(self, examples: Sequence[Example]) -> None:
        """Learn from logged decisions at once (offline training, ``auie train``). The
        default learns them one by one in order, exactly as :meth:`update` would online;
        a policy with a batch learner (the neural one) overrides it."""
        for decision, index, reward, propensity in examples:
            self.update(decision, index, reward, propensity)

    def scores(self, decision: Featurized) -> Array:
        """The model's expected reward of every candidate (no exploration)."""
        return self.model.means(decision.action_ids, decision.x, decision.z)

    # -- to implement ---------------------------------------------------------------------

    @abstractmethod
    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        """Unnormalised probabilities before the floor (excluded entries are ignored)."""

    def _best(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int | None:
        """A deterministic policy's one allowed action (it then gets everything but the
        floor), without building the distribution; None: use :meth:`_probabilities`."""
        return None

    def _learn(
        self, decision: Featurized, index: int, reward: float, weight: float, propensity: float
    ) -> None:
        self.model.update(
            decision.action_ids[index],
            decision.x,
            decision.z[index],
            reward,
            weight,
            extent=decision.extent,
        )

    def params(self) -> dict[str, Any]:
        return {}

    # -- persistence ----------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, Any]:
        """State of the policy's own beyond the shared model (saved beside it)."""
        return {}

    def _restore_state(self, arrays: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Take back what :meth:`_state_arrays` saved."""

    def save(self) -> bytes:
        """The whole state as one ``.npz`` blob."""
        meta = {
            "kind": self.kind,
            "params": self.params(),
            "seed": self.seed,
            "exploration_floor": self.exploration_floor,
            "steps": self.steps,
            "rng": self.rng.bit_generator.state,
            "model": self.model.meta(),
        }
        buffer = io.BytesIO()
        arrays: dict[str, Any] = dict(self.model.arrays())
        arrays.update(self._state_arrays())
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()


def greedy(means: Array, allowed: npt.NDArray[np.bool_], rng: np.random.Generator) -> int:
    """The best allowed action, ties broken at random."""
    return greedy_values(means.tolist(), allowed, rng)


def greedy_values(
    values: list[float], allowed: npt.NDArray[np.bool_], rng: np.random.Generator
) -> int:
    """:func:`greedy` of scores already in a list."""
    if not _everything(allowed):
        values = [v if ok else -math.inf for v, ok in zip(values, allowed.tolist(), strict=True)]
    if any(map(math.isnan, values)):  # max() would depend on where a NaN is
        raise ValueError("the model's scores are not numbers")
    top = max(values)
    if values.count(top) == 1:
        return int(values.index(top))
    return int(rng.choice(np.flatnonzero(np.asarray(values) == top)))
