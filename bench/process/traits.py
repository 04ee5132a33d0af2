"""What the trait bound (``profiles.max_traits``) costs an identify:
``.venv/bin/python -m bench.process.traits``.

Folds identifies into one identifier's state already holding ``--traits`` traits (the
default bound, 1000) and times :meth:`auie.profiles.state.StateFolder.apply` for an
identify of one new trait, newer than every kept one (the oldest is dropped), one older
than every kept one (itself dropped), and, as the baseline, an identify of a trait the
state already holds (no drop). Prints the median and p99 microseconds of each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from auie.profiles.state import NodeState, StateFolder


def _timed(
    folder: StateFolder, state: NodeState, events: list[tuple[dict[str, Any], int]]
) -> list[float]:
    """Microseconds of each event's fold into ``state``."""
    times = []
    for event, ts in events:
        started = time.perf_counter()
        folder.apply(state, event, ts)
        times.append((time.perf_counter() - started) * 1e6)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traits", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args(argv)
    folder = StateFolder(30 * 60_000, max_traits=args.traits)
    full = NodeState()
    for i in range(args.traits):
        event = {"type": "identify", "messageId": f"m{i:06d}", "traits": {f"k{i}": i}}
        folder.apply(full, event, 1_000_000 + i)
    known = NodeState()
    folder.apply(known, {"type": "identify", "messageId": "m", "traits": {"plan": "x"}}, 0)

    def identify(tag: str, j: int, trait: str) -> dict[str, Any]:
        return {"type": "identify", "messageId": f"{tag}{j:06d}", "traits": {trait: j}}

    cases = {
        "new trait, newer": (
            full,
            [(identify("n", j, f"new{j}"), 2_000_000 + j) for j in range(args.events)],
        ),
        "new trait, older": (full, [(identify("o", j, f"old{j}"), j) for j in range(args.events)]),
        "known trait (baseline)": (
            known,
            [(identify("p", j, "plan"), 10 + j) for j in range(args.events)],
        ),
    }
    for name, (state, events) in cases.items():
        times = _timed(folder, state, events)
        p99 = sorted(times)[int(len(times) * 0.99)]
        print(
            f"{name:<24} median {statistics.median(times):6.1f} us  p99 {p99:6.1f} us"
            f"  (state: {len(state.traits)} traits)"
        )


if __name__ == "__main__":
    main()
