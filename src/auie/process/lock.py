"""One processor per data directory: an exclusive file lock.

After ``kill -9`` of ``auie serve`` its processor child may live on for a few seconds until
it notices; a new processor waits for the lock instead of consuming the same log at the
same time (which would break exactly-once).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


class ProcessorLock:
    """``with ProcessorLock(path):`` holds an exclusive ``flock`` on ``path``."""

    def __init__(self, path: Path, wait_seconds: float = 120.0) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> ProcessorLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_seconds
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(
                        f"another processor holds {self.path}; is `auie process` running?"
                    ) from None
                if not warned:
                    logger.warning("waiting for another processor to release %s", self.path)
                    warned = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
