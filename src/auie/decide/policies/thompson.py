"""Linear Thompson sampling: draw every action's reward from the model's posterior and
take the best draw.

Action scores are drawn independently from ``N(mean, v²·s)`` (exact for the per-action part
of the model, whose parameters are independent across actions). The probability of each
action — logged as the propensity — is estimated from ``samples`` draws made at once;
the action shown is drawn from that same estimate, so the logged propensity is the true
probability of what was shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy

#: Each decision draws ``samples × actions`` numbers at once (a few arrays of that size):
#: 4096 × 1000 actions is about 100 MB, where an unbounded count took the server's memory.
MAX_SAMPLES = 4096


class LinearThompson(Policy):
    kind = "thompson"

    def __init__(
        self, model: HybridRidge, *, v: float = 0.5, samples: int = 64, **kwargs: Any
    ) -> None:
        super().__init__(model, **kwargs)
        if not v >= 0:  # also refuses NaN
            raise ValueError("v must be >= 0")
        if isinstance(samples, bool) or not isinstance(samples, int):
            raise ValueError(f"samples must be an integer, not {samples!r}")
        if not 1 <= samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be in [1, {MAX_SAMPLES}], got {samples}")
        self.v = v
        self.samples = samples

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        means, widths = self.model.predict(
            decision.action_ids, decision.x, decision.z, decision.extent
        )
        draws = self.rng.standard_normal((self.samples, len(means)))
        scores = means + self.v * np.sqrt(widths) * draws
        if np.isnan(scores).any():  # argmax would silently pick the first NaN
            raise ValueError("the model's scores are not numbers")
        scores[:, ~allowed] = -np.inf
        winners = scores.argmax(axis=1)
        counts = np.bincount(winners, minlength=len(means)).astype(np.float64)
        return counts / self.samples

    def params(self) -> dict[str, Any]:
        return {"v": self.v, "samples": self.samples}
