"""SquareCB (Foster & Rakhlin 2020): inverse-gap weighting over a regression oracle.

Each non-best action gets ``1 / (K + γ·(best − mean_a))``, the best gets the rest;
``γ = gamma_scale · t^gamma_exponent`` grows with the number of updates ``t``, as in
Vowpal Wabbit's ``--squarecb``. The oracle is the shared ridge model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy, greedy


class SquareCB(Policy):
    kind = "squarecb"

    def __init__(
        self,
        model: HybridRidge,
        *,
        gamma_scale: float = 10.0,
        gamma_exponent: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if not (gamma_scale >= 0 and gamma_exponent >= 0):  # also refuses NaN
            raise ValueError("gamma_scale and gamma_exponent must be >= 0")
        self.gamma_scale = gamma_scale
        self.gamma_exponent = gamma_exponent

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        means = self.scores(decision)
        count = int(allowed.sum())
        best = greedy(means, allowed, self.rng)
        gamma = self.gamma_scale * max(1, self.steps) ** self.gamma_exponent
        p = np.where(allowed, 1.0 / (count + gamma * (means[best] - means)), 0.0)
        p[best] = 0.0
        p[best] = max(0.0, 1.0 - p.sum())
        return np.asarray(p, dtype=np.float64)

    def params(self) -> dict[str, Any]:
        return {"gamma_scale": self.gamma_scale, "gamma_exponent": self.gamma_exponent}
