"""LinUCB: the action with the highest upper confidence bound ``mean + α·√s``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.config import DEFAULT_ALPHA
from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy, greedy_values


class LinUCB(Policy):
    kind = "linucb"

    def __init__(self, model: HybridRidge, *, alpha: float = DEFAULT_ALPHA, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not alpha >= 0:  # also refuses NaN
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha

    def _best(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int:
        means, widths = self.model.predict(
            decision.action_ids, decision.x, decision.z, decision.extent, clamp=False
        )
        alpha, sqrt = self.alpha, math.sqrt  # on Python floats: 4 numpy calls fewer
        # A width rounding made negative counts as 0; a NaN one makes the bound NaN, which
        # greedy_values refuses, as the other policies' NaN scores.
        bounds = [
            m + alpha * sqrt(w) if w > 0.0 else (m if w == w else math.nan)  # noqa: PLR0124
            for m, w in zip(means.tolist(), widths.tolist(), strict=True)
        ]
        return greedy_values(bounds, allowed, self.rng)

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        p = np.zeros(len(decision.action_ids))
        p[self._best(decision, allowed)] = 1.0
        return p

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}
