"""How AUIE's long-running server processes use Python's cyclic garbage collector.

A young collection runs when the *net* count of new container objects (allocations minus
frees) passes a threshold, 700 by default. A request holding a 100-event batch (a few
thousand dicts, alive until its commit), or a few hundred open decisions, crosses 700
again and again, so the collector walked the same live objects thousands of times a
minute, and its full passes paused the decision tail. Request garbage is freed by
reference counting, not by the collector, so a higher threshold only delays the rare
cycles (an exception and its traceback). See ADR 14 and docs/benchmarks.md.
"""

from __future__ import annotations

import gc

#: Net new container objects before a young collection (CPython's default: 700).
YOUNG_THRESHOLD = 20_000
#: Young collections per middle one, and middle ones per full one (defaults: 10, 10).
OLDER_THRESHOLD = 20


def settle() -> None:
    """After start-up: collect once, move every survivor (modules, engines, caches loaded
    so far) out of the collector's reach for good, then collect seldom."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
