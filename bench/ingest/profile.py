"""Optional sampling profile of the server with py-spy (``--profile``).

py-spy is not a project dependency: install it into the virtualenv by hand
(``.venv/bin/pip install py-spy``). It samples the running ``auie serve`` process from
outside (``--nonblocking``: the server is never paused) and writes collapsed stacks,
which :func:`summarize` turns into the top functions per thread, by own time and by
inclusive time.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    script = Path(sys.executable).with_name("py-spy")
    return str(script) if script.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, output: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    binary = py_spy()
    if binary is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _frame(raw: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``."""
    name, _, where = raw.partition(" (")
    where = _LINE.sub(")", "(" + where) if where else ""
    short = where.rsplit("/", 1)[-1] if where else ""
    if short and not short.startswith("("):
        short = "(" + short
    return f"{name} {short}".strip()


def _line(raw: str) -> str:
    """``func (/long/path/pkg/file.py:123)`` → ``func (pkg/file.py:123)``."""
    name, _, where = raw.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def _shares(
    counter: collections.Counter[str], samples: int, top: int, below: float = 1.01
) -> list[tuple[str, float]]:
    ranked = [(name, count / samples) for name, count in counter.most_common()]
    return [pair for pair in ranked if pair[1] < below][:top]


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Samples per thread, and per thread the top functions by self and inclusive samples
    and the top source lines by self samples (time in C calls such as sqlite3's
    ``execute`` or msgspec's ``decode`` counts on the Python line that made the call)."""
    threads: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        entry = threads.setdefault(
            thread,
            {
                "samples": 0,
                "self": collections.Counter(),
                "total": collections.Counter(),
                "lines": collections.Counter(),
            },
        )
        entry["samples"] += count
        names = [_frame(f) for f in frames[1:]]
        if names:
            entry["self"][names[-1]] += count
            entry["lines"][_line(frames[-1])] += count
            for name in set(names):
                entry["total"][name] += count
    grand = sum(t["samples"] for t in threads.values()) or 1
    summary: dict[str, Any] = {"samples": grand, "threads": []}
    for thread, entry in sorted(threads.items(), key=lambda kv: -kv[1]["samples"]):
        samples = entry["samples"]

        summary["threads"].append(
            {
                "thread": thread,
                "samples": samples,
                "share": samples / grand,
                "self": _shares(entry["self"], samples, top),
                "lines": _shares(entry["lines"], samples, top),
                # frames on (nearly) every stack are the server's start-up chain: skip them
                "inclusive": _shares(entry["total"], samples, top, below=0.9),
            }
        )
    return summary


def render(title: str, summary: dict[str, Any], top: int = 10) -> str:
    lines = [f"== profile: {title} ({summary['samples']} samples, non-idle) =="]
    for thread in summary["threads"][:3]:
        lines.append(f"-- {thread['thread']}: {thread['share']:.0%} of samples")
        for label, key in (
            ("self time", "self"),
            ("hot lines", "lines"),
            ("inclusive", "inclusive"),
        ):
            lines.append(f"   {label}:")
            lines += [f"     {share:6.1%}  {name}" for name, share in thread[key][:top]]
    return "\n".join(lines)
