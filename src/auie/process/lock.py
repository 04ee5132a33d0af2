"""Processor locks: which processor consumes which log partitions, and the sections
the members of a processor group take turns in.

A processor group has ``members`` processes; member ``i`` consumes partition ``p`` of every
topic when ``p % members == i`` (:func:`owns`). Each member holds an exclusive ``flock`` on
one file per partition it owns (``processor.d/<p>.lock``) for as long as it runs, and a
shared one on ``processor.lock`` (which tells erasure that a processor is running). Two
processors that would consume the same partition, whatever the sizes of their groups,
therefore never run at once: after ``kill -9`` of ``auie serve`` its processor children may
live on for a few seconds until they notice; a new member waits for their locks instead of
consuming the same partitions at the same time (which would break exactly-once). ``auie
process`` on its own does not wait: while any processor holds ``processor.lock`` it refuses
at once (:func:`processor_running`; it can be run again once they are gone).

:class:`SectionLock` is an exclusive ``flock`` for the critical sections of a group of
more than one member: identity resolution with its profile-store write, and lake commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

from auie.filelock import exclusive

logger = logging.getLogger(__name__)


def owns(member: int, members: int, partition: int) -> bool:
    """Whether member ``member`` of a group of ``members`` consumes ``partition``."""
    return partition % members == member


def _lock(fd: int, path: Path, mode: int, deadline: float) -> None:
    warned = False
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"another processor holds {path}; is `auie process` running?"
                ) from None
            if not warned:
                logger.warning("waiting for another processor to release %s", path)
                warned = True
            time.sleep(0.2)


class ProcessorLock:
    """``with ProcessorLock(data_dir, member, members, partitions):`` holds the locks of a
    processor that consumes the partitions below ``partitions`` it owns (module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        member: int = 0,
        members: int = 1,
        partitions: int = 1,
        wait_seconds: float = 120.0,
    ) -> None:
        if not 0 <= member < members:
            raise ValueError(f"member {member} of a group of {members}")
        self.path = data_dir / "processor.lock"
        self.parts = [
            data_dir / "processor.d" / f"{p}.lock"
            for p in range(max(partitions, members))
            if owns(member, members, p)
        ]
        self.wait_seconds = wait_seconds
        self._fds: list[int] = []

    def __enter__(self) -> ProcessorLock:
        deadline = time.monotonic() + self.wait_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "processor.d").mkdir(exist_ok=True)
        try:
            for path, mode in [(self.path, fcntl.LOCK_SH)] + [
                (p, fcntl.LOCK_EX) for p in self.parts
            ]:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                self._fds.append(fd)
                _lock(fd, path, mode, deadline)
        except BaseException:
            self._release()
            raise
        return self

    def _release(self) -> None:
        for fd in reversed(self._fds):
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fds.clear()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._release()


def processor_running(data_dir: Path) -> bool:
    """Whether a processor holds ``data_dir``'s ``processor.lock`` (it may be committing)."""
    path = data_dir / "processor.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def others_running(data_dir: Path, member: int, members: int, partitions: int) -> bool:
    """Whether a processor holds a partition lock that member ``member`` of the group does
    not own (another member has not exited yet)."""
    for p in range(max(partitions, members)):
        if owns(member, members, p):
            continue
        path = data_dir / "processor.d" / f"{p}.lock"
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the probe's lock, if it got one
    return False


class SectionLock:
    """An exclusive ``flock`` on ``path`` for ``with lock.held():`` sections, across the
    processes of a group (and the threads of one: the file is opened per section)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def held(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(self.path)
