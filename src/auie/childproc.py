"""Child processes that die with their parent.

``auie serve`` runs its processors as child processes. A processor also notices on its own
that the server is gone (its parent changes; checked between batches), but only once it
runs again: processors run in Linux's idle scheduling class (ADR 14), so on a saturated
machine an orphan may wait many seconds for CPU, still holding its partition locks, which a
restarted server's processors must wait for. :func:`die_with_parent` asks the kernel
instead to kill the child when the thread that started it ends (``PR_SET_PDEATHSIG``), at
once and without needing the CPU.

Killing a processor is safe: its work is redone from the log's committed offsets and every
sink skips what it already holds (exactly once). Only a thread that outlives its children
may start such a child: the main thread, or the processor supervisor's watcher, which ends
after the children it started. (The log writer child, at normal priority, is not one: it
is restarted from a worker thread, and it exits as soon as its socket to the server
closes.)
"""

from __future__ import annotations

import ctypes
import logging
import signal
import sys

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child: be killed (SIGKILL) when the thread that started this process ends.
    Linux only; elsewhere the children's own checks remain."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:
        logger.warning("cannot ask to die with the parent process (%s)", exc)
