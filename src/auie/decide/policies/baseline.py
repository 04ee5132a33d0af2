"""The fixed baseline: always the configured action (or the first candidate).

It still learns (its model is updated), so switching a decision point from the baseline to
a learning policy, or running in apprentice mode, starts from what the baseline saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy


class Baseline(Policy):
    kind = "baseline"

    def __init__(self, model: HybridRidge, *, action: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.action = action

    def index(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int:
        if self.action in decision.action_ids:
            i = decision.action_ids.index(self.action)
            if allowed[i]:
                return i
        return int(np.flatnonzero(allowed)[0])

    def _best(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int:
        return self.index(decision, allowed)

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        p = np.zeros(len(decision.action_ids))
        p[self.index(decision, allowed)] = 1.0
        return p

    def params(self) -> dict[str, Any]:
        return {"action": self.action}
