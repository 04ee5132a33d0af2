"""The periodic transform of ``auie serve``: every ``analytics.transform_interval_minutes``
(0 disables it) the marts of every workspace are rebuilt on the DuckDB target.

Each run is a child process (spawned, so dbt's global state and memory go away with it
and parsing SQL never competes with the API for the GIL); a thread of the server waits
for it. The first run comes one interval after start. A failed run is logged and the next
one comes at the next interval; a workspace whose transform is already running (a manual
``auie transform``) is skipped.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading

from auie.config import Settings

logger = logging.getLogger(__name__)


def run_scheduled(settings: Settings) -> None:
    """Entry point of the child process: one transform of every workspace."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[transform]: %(message)s",
    )
    from auie.errors import Conflict
    from auie.runtime import Runtime
    from auie.transform.runner import TransformRunner

    runtime = Runtime(settings)
    failed = 0
    try:
        runner = TransformRunner(settings, runtime.lake)
        for workspace in runner.workspaces():
            try:
                result = runner.run(workspace, wait=False)
            except Conflict:
                logger.info("transform of %s is already running; skipped", workspace)
                continue
            if result.success:
                logger.info(
                    "transform of %s: %d models, %d tests in %.1fs",
                    workspace,
                    result.count("model"),
                    result.count("test"),
                    result.seconds,
                )
            else:
                failed += 1
                logger.error("transform of %s failed: %s", workspace, result.error)
    finally:
        runtime.close()
    if failed:
        raise SystemExit(1)


class TransformScheduler:
    """See the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.analytics.transform_interval_minutes * 60
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.runs = 0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._loop, name="auie-transform", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                logger.exception(
                    "scheduled transform could not start; next try in %gs", self.interval
                )

    def run_once(self) -> bool:
        """One scheduled run, waited for; True if every workspace's build succeeded."""
        process = self._context.Process(
            target=run_scheduled, args=(self.settings,), name="auie-transform", daemon=False
        )
        self._process = process
        process.start()
        while process.is_alive() and not self._stop.is_set():
            process.join(0.5)
        if process.is_alive():  # the server is stopping: let the run finish briefly
            process.join(30)
            if process.is_alive():
                logger.warning("scheduled transform did not stop in time; terminating")
                process.terminate()
                process.join(5)
        self.runs += 1
        ok = process.exitcode == 0
        if not ok:
            self.failures += 1
            logger.error("scheduled transform exited with %s", process.exitcode)
        return ok

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(40)
