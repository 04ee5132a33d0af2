"""Runs the processor group in child processes of ``auie serve`` (or ``auie process``) and
restarts a child that dies.

Child processes, not threads: the processor is CPU-bound Python, and in processes of their
own the members of the group (``process.workers``, one per CPU by default; see
:mod:`auie.process.processor`) use the other cores instead of competing with the collector
for the GIL. A child stops when asked, when its parent disappears, and never on the
terminal's Ctrl+C (the parent decides).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.synchronize import Event as ProcessEvent

from auie import gcpolicy
from auie.childproc import die_with_parent
from auie.config import Settings
from auie.metrics import PROCESSOR_RESTARTS

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


def group_size(settings: Settings) -> int:
    """Members of the processor group: ``process.workers``, or one per CPU; never more
    than the event log's partitions."""
    wanted = settings.process.workers or os.cpu_count() or 1
    return max(1, min(wanted, settings.eventlog.partitions))


def run_child(
    settings: Settings,
    stop: ProcessEvent,
    parent: int,
    *,
    member: int = 0,
    members: int = 1,
    once: bool = False,
    serving: bool = True,
) -> None:
    """Entry point of a child process: member ``member`` of the group until ``stop`` (with
    ``once``: until its partitions are drained); beside a server (``serving``) at a lower
    CPU priority."""
    die_with_parent()  # and, if the parent was gone before that, _StopWhenOrphaned sees it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[processor {member}]: %(message)s",
    )
    if serving:
        _lower_priority(settings)
    from auie.process.lock import ProcessorLock, SectionLock
    from auie.process.processor import topic_partitions
    from auie.runtime import Runtime

    runtime = Runtime(settings)
    try:
        # Members open a fresh data directory's stores (schemas, catalog) one at a time.
        with SectionLock(settings.data_dir / "processor.d" / "open.lock").held():
            partitions = topic_partitions(runtime.eventlog)
            runtime.lake.workspaces()
        with ProcessorLock(settings.data_dir, member, members, partitions):
            processor = runtime.processor(member, members)
            gcpolicy.settle()  # a process that only processes: collect seldom
            flag = _StopWhenOrphaned(stop, parent)
            if not once:
                processor.run(flag)
                return
            processor.drain(flag)
    finally:
        runtime.close()


class ProcessorSupervisor:
    """Starts the processor group's children, restarts a child that dies with back-off,
    stops them cleanly. With ``once``, the children drain the log and exit (no restarts).
    ``serving``: the children run beside ``auie serve`` and yield the CPU to it."""

    def __init__(
        self,
        settings: Settings,
        members: int | None = None,
        *,
        once: bool = False,
        serving: bool = True,
    ) -> None:
        self.settings = settings
        self.members = members or group_size(settings)
        self.once = once
        self.serving = serving
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._processes: list[multiprocessing.process.BaseProcess | None] = [None] * self.members
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        for member in range(self.members):
            self._spawn(member)
        if not self.once:
            self._watcher = threading.Thread(
                target=self._watch, name="auie-processor-watch", daemon=True
            )
            self._watcher.start()

    def _spawn(self, member: int) -> None:
        process = self._context.Process(
            target=run_child,
            args=(self.settings, self._stop, os.getpid()),
            kwargs={
                "member": member,
                "members": self.members,
                "once": self.once,
                "serving": self.serving,
            },
            name=f"auie-processor-{member}",
            daemon=False,
        )
        process.start()
        self._processes[member] = process
        logger.info("processor %s of %s started (pid %s)", member, self.members, process.pid)

    def _watch(self) -> None:
        """Restart children that die. The thread ends only when :meth:`stop` has joined the
        children: those it restarted die with it (:func:`~auie.childproc.die_with_parent`)."""
        while not self._stopping.is_set():
            for member, process in enumerate(self._processes):
                if process is None or process.is_alive() or self._stop.is_set():
                    continue
                delay = _RESTART_DELAYS[min(self.restarts, len(_RESTART_DELAYS) - 1)]
                logger.error(
                    "processor %s exited with %s; restarting in %gs",
                    member,
                    process.exitcode,
                    delay,
                )
                self.restarts += 1
                PROCESSOR_RESTARTS.inc()
                if not self._stop.wait(delay):
                    self._spawn(member)
            self._stopping.wait(0.5)

    @property
    def alive(self) -> bool:
        """Every child runs."""
        return all(p is not None and p.is_alive() for p in self._processes)

    def failed(self) -> list[bool]:
        """Whether each child has exited with an error."""
        return [p is not None and bool(p.exitcode) for p in self._processes]

    def running(self) -> list[bool]:
        """Whether each child is alive."""
        return [p is not None and p.is_alive() for p in self._processes]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.pid is not None]

    def join(self, timeout: float | None = None) -> list[int | None]:
        """Wait for the children to exit; their exit codes. A child that fails stops the
        others (member 0 of a draining group would wait for it for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(self.running()):
            if any(self.failed()):
                self.stop()
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return [p.exitcode if p is not None else None for p in self._processes]

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()  # the children finish their batch and flush; no more restarts
        for process in self._processes:
            if process is not None:
                process.join(timeout)
                if process.is_alive():
                    logger.warning("processor did not stop in %gs; terminating", timeout)
                    process.terminate()
                    process.join(5)
        self._stopping.set()  # only now: the watcher's children die with it
        if self._watcher is not None:
            self._watcher.join(2)
