"""Group commit: many concurrent requests share one durable log transaction.

Request handlers hand their records to :meth:`GroupCommitWriter.append` and await it.
One writer thread takes everything queued, appends it in one transaction (one fsync),
and then wakes every waiting handler with its own outcomes. While a commit is on disk,
new requests queue up and go together in the next one, so the cost of durability is
shared instead of paid per request; the handler replies 200 only after its records are
committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from auie.eventlog import AppendOutcome, EventLog, LogRecord
from auie.metrics import LOG_APPEND_SECONDS, LOG_COMMIT_RECORDS

logger = logging.getLogger(__name__)


class LogWriter(Protocol):
    """What the collector and the decision service append through: this module's thread
    writer or :class:`auie.collect.writer_process.ProcessLogWriter`."""

    @property
    def overloaded(self) -> bool: ...

    @property
    def alive(self) -> bool: ...

    async def append(self, records: Sequence[LogRecord]) -> list[AppendOutcome]: ...


@dataclass(slots=True)
class _Pending:
    records: Sequence[LogRecord]
    future: asyncio.Future[list[AppendOutcome]]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[list[AppendOutcome]], outcomes: list[AppendOutcome]) -> None:
    if not future.done():
        future.set_result(outcomes)


def _fail(future: asyncio.Future[list[AppendOutcome]], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _call_in_loop(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed while we committed: nobody is waiting any more
        logger.debug("event loop closed before a commit could be acknowledged")


class GroupCommitWriter:
    """Owns the log's write path in one thread; see the module docstring."""

    def __init__(
        self, log: EventLog, *, max_records: int = 5_000, max_backlog: int = 100_000
    ) -> None:
        self.log = log
        self.max_records = max_records
        self.max_backlog = max_backlog
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: Records handed over and not committed yet (read by the collector's back-pressure).
        self.backlog = 0

    def start(self) -> None:
        if self._thread is None:
            self.log.prepare_appends()
            self._thread = threading.Thread(target=self._run, name="auie-log-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @property
    def overloaded(self) -> bool:
        """More records wait for their commit than ``max_backlog``."""
        return self.backlog > self.max_backlog

    @property
    def alive(self) -> bool:
        """The writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    async def append(self, records: Sequence[LogRecord]) -> list[AppendOutcome]:
        """Append durably (shared commit); returns when the records are on disk."""
        if not records:
            return []
        if self._thread is None:
            raise RuntimeError("GroupCommitWriter.start() was not called")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AppendOutcome]] = loop.create_future()
        self.backlog += len(records)
        self._queue.put(_Pending(records, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            size = len(first.records)
            while size < self.max_records:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item.records)
            self._commit(group, size)

    def _commit(self, group: list[_Pending], size: int) -> None:
        try:
            self._append(group, size)
        finally:
            for pending in group:
                _call_in_loop(pending.loop, self._done, len(pending.records))

    def _done(self, count: int) -> None:
        self.backlog -= count

    def _append(self, group: list[_Pending], size: int) -> None:
        records = [record for pending in group for record in pending.records]
        started = time.perf_counter()
        try:
            outcomes = self.log.append(records)
        except Exception as exc:
            logger.exception("event log append of %d records failed", size)
            for pending in group:
                _call_in_loop(pending.loop, _fail, pending.future, exc)
            return
        LOG_APPEND_SECONDS.observe(time.perf_counter() - started)
        LOG_COMMIT_RECORDS.observe(size)
        start = 0
        for pending in group:
            end = start + len(pending.records)
            _call_in_loop(pending.loop, _resolve, pending.future, outcomes[start:end])
            start = end
