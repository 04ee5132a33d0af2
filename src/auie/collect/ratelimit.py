"""Per-source token buckets: a sustained rate with a burst allowance."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from auie.errors import RateLimited


class RateLimiter:
    """Token buckets keyed by source; ``rate`` tokens a second up to ``burst``.

    A rate of 0 disables limiting.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, amount: int) -> None:
        """Spend ``amount`` tokens or raise :class:`RateLimited` (spending nothing)."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if amount > tokens:
            self._buckets[key] = (tokens, now)
            wait = (min(amount, self.burst) - tokens) / self.rate
            raise RateLimited(
                f"source is over its rate limit of {self.rate:g} events/s",
                retry_after=max(1, math.ceil(wait)),
            )
        self._buckets[key] = (tokens - amount, now)
