"""Runs the processor in a child process of ``auie serve`` and restarts it if it dies.

A child process, not a thread: the processor is CPU-bound Python, and in its own process
it uses the second core instead of competing with the collector for the GIL. The child
stops when asked, when its parent disappears, and never on the terminal's Ctrl+C (the
parent decides).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.synchronize import Event as ProcessEvent

from auie.config import Settings

logger = logging.getLogger(__name__)
_RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


class _StopWhenOrphaned:
    """An Event-like stop flag that also trips when the parent process is gone."""

    def __init__(self, event: ProcessEvent, parent: int) -> None:
        self.event = event
        self.parent = parent

    def is_set(self) -> bool:
        return self.event.is_set() or os.getppid() != self.parent

    def wait(self, timeout: float) -> bool:
        self.event.wait(timeout)
        return self.is_set()


def _lower_priority(settings: Settings) -> None:
    """Serving first, processing with what is left (``process.nice``, ``process.scheduler``)."""
    if settings.process.nice:
        os.nice(settings.process.nice)
    if settings.process.scheduler == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:  # a sandbox that forbids it: stay at nice
            logger.warning("processor: cannot use SCHED_IDLE (%s); running at nice", exc)


def run_child(settings: Settings, stop: ProcessEvent, parent: int) -> None:
    """Entry point of the child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[processor]: %(message)s",
    )
    _lower_priority(settings)
    from auie.process.lock import ProcessorLock
    from auie.runtime import Runtime

    with ProcessorLock(settings.data_dir / "processor.lock"):
        runtime = Runtime(settings)
        try:
            runtime.processor().run(_StopWhenOrphaned(stop, parent))
        finally:
            runtime.close()


class ProcessorSupervisor:
    """Starts the processor child, restarts it with back-off, stops it cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="auie-processor-watch", daemon=True
        )
        self._watcher.start()

    def _spawn(self) -> None:
        self._process = self._context.Process(
            target=run_child,
            args=(self.settings, self._stop, os.getpid()),
            name="auie-processor",
            daemon=False,
        )
        self._process.start()
        logger.info("processor started (pid %s)", self._process.pid)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is not None and not process.is_alive() and not self._stopping.is_set():
                delay = _RESTART_DELAYS[min(self.restarts, len(_RESTART_DELAYS) - 1)]
                logger.error("processor exited with %s; restarting in %gs", process.exitcode, delay)
                self.restarts += 1
                if self._stopping.wait(delay):
                    return
                self._spawn()
            self._stopping.wait(0.5)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._stop.set()
        process = self._process
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                logger.warning("processor did not stop in %gs; terminating", timeout)
                process.terminate()
                process.join(5)
        if self._watcher is not None:
            self._watcher.join(2)
