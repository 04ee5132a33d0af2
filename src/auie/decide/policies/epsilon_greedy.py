"""Epsilon-greedy: the best action by the model, and every action with probability ε/K."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy, greedy


class EpsilonGreedy(Policy):
    kind = "epsilon_greedy"

    def __init__(self, model: HybridRidge, *, epsilon: float = 0.05, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not 0 <= epsilon <= 1:
            raise ValueError("epsilon must be in [0, 1]")
        self.epsilon = epsilon

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        means = self.scores(decision)
        p = allowed * (self.epsilon / max(1, int(allowed.sum())))
        p[greedy(means, allowed, self.rng)] += 1.0 - self.epsilon
        return np.asarray(p, dtype=np.float64)

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}
