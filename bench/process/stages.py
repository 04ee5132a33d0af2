"""Where the processor's time goes: py-spy samples sorted into the pipeline's stages.

Each sampled stack (``--format raw``: ``thread (tid): name;frame;frame;... count``) is
given the stage of the most specific pipeline function on it, by priority: anything in
pyiceberg is the Iceberg commit (Parquet, manifests, metadata, catalog), then Arrow
table building, then lake row building, the profile store write, identity resolution
and profile state folding, the node cache's upkeep (dropping what other members wrote,
taking in what was written), the privacy stage, the exports from the profile store (their
Parquet, Arrow and rows count above), decode/plan/enrich, the log read, the log's
committed offsets, and freeing a polled batch (time spent in the poll's own frames once
the stages returned: the batch's objects are deallocated there). Stacks that are in the
processor but in none of these are ``other``; stacks outside the processor (start-up,
idle pool threads) are left out.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rule = tuple[str, Callable[[str, bool], bool]]


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0]


def _has(*names: str) -> Callable[[str, bool], bool]:
    wanted = frozenset(names)
    return lambda frame, _leaf: _name(frame) in wanted


def _leaf_in(*names: str) -> Callable[[str, bool], bool]:
    wanted = frozenset(names)
    return lambda frame, leaf: leaf and _name(frame) in wanted


def _arrow(frame: str, leaf: bool) -> bool:
    name = _name(frame)
    return (
        "pyarrow/" in frame
        or (leaf and name == "LakeWriter.flush")  # pa.Table.from_pylist (C) in the old writer
        or name in ("Columns.to_arrow", "_array")
    )


#: Highest priority first.
RULES: tuple[Rule, ...] = (
    ("Iceberg commit", lambda frame, _leaf: "pyiceberg/" in frame),
    ("lake: Arrow table", _arrow),
    (
        "lake: row building",
        _has(
            "Processor._lake_event",
            "Processor._identity_changes",
            "event_row",
            "add_event",
            "Columns.add",
            "Columns.add_values",
            "LakeWriter.add",
            "LakeWriter.add_event",
        ),
    ),
    ("profile store write", _has("SqlProfileStore.write")),
    ("identity + profile state", _has("ProfileService.resolve", "Processor._replayed_profiles")),
    ("node cache upkeep", _has("NodeCache.check", "NodeCache.written")),
    ("privacy stage", _has("Processor._privacy")),
    ("profile exports", _has("ProfileExports.run")),
    ("decode, plan, enrich", _has("Processor._check_and_enrich", "Processor._decode")),
    ("log read", _has("Processor._poll")),
    ("log commit", _has("SQLiteEventLog.commit")),
    ("freeing the batch", _leaf_in("Processor._poll_and_apply", "Processor._apply")),
)
ORDER = (*(name for name, _ in RULES), "other")
_INSIDE = ("Processor.", "LakeWriter.", "_Committer.")


def classify(frames: list[str]) -> str | None:
    """The stage of one stack (root first), or None if it is not the processor's work."""
    inside = any(marker in frame for frame in frames for marker in (*_INSIDE, "pyiceberg/"))
    if not inside:
        return None
    last = len(frames) - 1
    for stage, matches in RULES:
        if any(matches(frame, i == last) for i, frame in enumerate(frames)):
            return stage
    return "other"


def split(path: Path) -> dict[str, Any]:
    """Samples per stage and per thread, and the shares of all processor samples."""
    stages: collections.Counter[str] = collections.Counter()
    threads: dict[str, collections.Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        thread, *frames = stack.split(";")
        stage = classify(frames)
        if stage is None:
            continue
        name = thread.split(": ", 1)[-1]
        stages[stage] += int(count_text)
        threads.setdefault(name, collections.Counter())[stage] += int(count_text)
    total = sum(stages.values()) or 1
    return {
        "samples": total,
        "shares": {stage: stages[stage] / total for stage in ORDER if stages[stage]},
        "threads": {
            name: {stage: count / total for stage, count in counts.most_common()}
            for name, counts in threads.items()
        },
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"processor time by stage (py-spy, {summary['samples']} samples, CPU only):"]
    for stage, share in summary["shares"].items():
        lines.append(f"  {share:6.1%}  {stage}")
    if len(summary["threads"]) > 1:
        for name, shares in summary["threads"].items():
            lines.append(f"  thread {name}: {sum(shares.values()):.0%} of the samples")
    return "\n".join(lines)
