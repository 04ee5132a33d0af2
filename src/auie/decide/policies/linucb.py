"""LinUCB: the action with the highest upper confidence bound ``mean + α·√s``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy, greedy


class LinUCB(Policy):
    kind = "linucb"

    def __init__(self, model: HybridRidge, *, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha

    def _best(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int:
        means, widths = self.model.predict(
            decision.action_ids, decision.x, decision.z, decision.extent
        )
        bounds = np.sqrt(widths, out=widths)  # predict's own arrays: computed in place
        bounds *= self.alpha
        bounds += means
        return greedy(bounds, allowed, self.rng)

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        p = np.zeros(len(decision.action_ids))
        p[self._best(decision, allowed)] = 1.0
        return p

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}
