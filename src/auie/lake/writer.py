"""Micro-batch writes to the lake, exactly once.

Rows are buffered per (workspace, table) until the buffer holds ``flush_max_records`` rows
or its oldest row is ``flush_max_seconds`` old. A flush appends each buffer as one Iceberg
commit whose snapshot summary records the log offsets the processor has consumed
(``auie.log-offsets``: topic → partition → next offset). Every row read from the log up to
those offsets is in that commit or an earlier one, so after a crash the writer asks each
table for its offsets and skips rows below them: the lake holds every event exactly once,
whatever moment the process died at.

A flush can also run in a background thread (:meth:`LakeWriter.begin_flush`): it takes
the buffered rows out together with the offsets of that moment, and rows added meanwhile
buffer for the next flush. :meth:`LakeWriter.end_flush` waits for it; if it failed, the
rows it did not commit are buffered again, in front. The caller moves the log's committed
offsets only after ``end_flush`` returned, to the offsets the flush recorded.

A flush may carry more work for the same thread, run after its tables are committed
(``after``): the processor exports the profile store's changes there
(:mod:`auie.process.exports`), so that they, too, are in the lake before the log's committed
offsets move.

The writers of a processor group (several processes, each consuming its own partitions)
share the tables: with ``shared`` (a lock over the group), a commit holds the lock, reloads
the table and records the table's offsets with its own partitions' offsets replaced by its
own, so each commit's summary covers every member's partitions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from auie.lake.catalog import Lake, committed_offsets, offsets_property
from auie.lake.rows import Columns, add_event
from auie.lake.tables import EVENTS
from auie.process.lock import SectionLock

logger = logging.getLogger(__name__)

Offsets = dict[str, dict[int, int]]
_Key = tuple[str, str]
#: Work a flush runs after its tables are committed; returns reports of its commits.
After = Callable[[], "list[FlushReport]"]


@dataclass(slots=True)
class _Buffer:
    columns: Columns
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class FlushReport:
    workspace: str
    table: str
    rows: int
    seconds: float


@dataclass(slots=True)
class PendingFlush:
    """Rows taken out of the buffers, with the offsets their commits record."""

    offsets: Offsets
    #: Tables not committed yet: (workspace, table) → (rows, when the oldest was added).
    tables: dict[_Key, tuple[Columns, float]] = field(default_factory=dict)
    future: Future[list[FlushReport]] | None = None
    after: After | None = None

    def done(self) -> bool:
        return self.future is None or self.future.done()


def replacing(offsets: Offsets) -> Callable[[Offsets], Offsets]:
    """A ``merge`` for :func:`append`: the table's offsets with those in ``offsets``
    replaced (a member of a processor group records its own partitions)."""

    def merge(recorded: Offsets) -> Offsets:
        for topic, parts in offsets.items():
            recorded[topic] = {**recorded.get(topic, {}), **parts}
        return recorded

    return merge


def append(
    lake: Lake,
    workspace: str,
    name: str,
    data: pa.Table,
    offsets: Offsets,
    *,
    merge: Callable[[Offsets], Offsets] | None = None,
) -> None:
    """Append rows to a table in one commit whose snapshot records ``offsets``; with
    ``merge`` (several processes commit to the table), the table is reloaded first and the
    offsets recorded are what ``merge`` makes of the table's (``offsets`` is not used)."""
    table = lake.refresh(workspace, name) if merge is not None else lake.table(workspace, name)
    for attempt in (1, 2):
        recorded = offsets if merge is None else merge(committed_offsets(table))
        try:
            table.append(data, snapshot_properties=offsets_property(recorded))
            return
        except (CommitFailedException, FileNotFoundError):
            if attempt == 2:
                raise
            # Someone else committed (maintenance, erasure): reload and retry once. An
            # erasure also expires the snapshots before its own and deletes their files, so
            # a table loaded before it cannot even read its current manifest list.
            table = lake.refresh(workspace, name)


class LakeWriter:
    """See the module docstring."""

    def __init__(
        self,
        lake: Lake,
        *,
        max_records: int,
        max_seconds: float,
        shared: SectionLock | None = None,
    ) -> None:
        self.lake = lake
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.shared = shared
        self._buffers: dict[_Key, _Buffer] = {}
        self._committed: dict[_Key, Offsets] = {}
        self._pending = 0

    def committed(self, workspace: str, table: str) -> Offsets:
        """Offsets the table's commits already cover (read once, then tracked)."""
        key = (workspace, table)
        offsets = self._committed.get(key)
        if offsets is None:
            with self.commit_lock():
                offsets = committed_offsets(self.lake.table(workspace, table))
            self._committed[key] = offsets
        return offsets

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        """Held around a lake commit (and lake maintenance) of a shared writer."""
        if self.shared is None:
            yield
            return
        with self.shared.held():
            yield

    def accepts(self, workspace: str, table: str, topic: str, partition: int, offset: int) -> bool:
        """False for a row the table already holds (read again after a crash)."""
        return offset >= self.committed(workspace, table).get(topic, {}).get(partition, 0)

    def add(self, workspace: str, table: str, row: Mapping[str, Any]) -> None:
        self._buffer(workspace, table).columns.add(row)
        self._pending += 1

    def add_event(
        self,
        workspace: str,
        event: Mapping[str, Any],
        *,
        enrichment: Mapping[str, Any],
        source_id: str | None,
        plan_version: int | None,
        violations: tuple[str, ...] | None,
        partition: int,
        offset: int,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Add the ``events`` row of a normalised event (see :func:`auie.lake.rows.add_event`)."""
        add_event(
            self._buffer(workspace, EVENTS).columns,
            event,
            enrichment=enrichment,
            source_id=source_id,
            plan_version=plan_version,
            violations=violations,
            partition=partition,
            offset=offset,
            extra=extra,
        )
        self._pending += 1

    def _buffer(self, workspace: str, table: str) -> _Buffer:
        buffer = self._buffers.get((workspace, table))
        if buffer is None:
            buffer = self._buffers[(workspace, table)] = _Buffer(Columns(table), time.monotonic())
        elif not buffer.columns:
            buffer.since = time.monotonic()
        return buffer

    @property
    def pending(self) -> int:
        """Rows buffered (not counting those of a flush in progress)."""
        return self._pending

    def due(self) -> bool:
        if self._pending >= self.max_records:
            return True
        now = time.monotonic()
        return any(b.columns and now - b.since >= self.max_seconds for b in self._buffers.values())

    # -- flushing ---------------------------------------------------------------------------

    def flush(
        self, positions: Mapping[str, Mapping[int, int]], *, after: After | None = None
    ) -> list[FlushReport]:
        """Commit every buffer, each recording ``positions`` as the offsets it covers, then
        run ``after``."""
        pending = self._take(positions, after)
        try:
            return self._commit(pending)
        except BaseException:
            self._give_back(pending)
            raise

    def begin_flush(
        self, positions: Mapping[str, Mapping[int, int]], *, after: After | None = None
    ) -> PendingFlush:
        """Like :meth:`flush`, in a background thread; finish it with :meth:`end_flush`."""
        pending = self._take(positions, after)
        if pending.tables or pending.after is not None:
            future: Future[list[FlushReport]] = Future()
            pending.future = future
            threading.Thread(
                target=self._commit_into, args=(pending, future), name="auie-lake-commit"
            ).start()
        return pending

    def end_flush(self, pending: PendingFlush) -> list[FlushReport]:
        """Wait for a background flush. If it failed, the rows it did not commit are
        buffered again (before any added since) and its error is raised."""
        if pending.future is None:
            return []
        try:
            return pending.future.result()
        except BaseException:
            self._give_back(pending)
            raise

    def _take(
        self, positions: Mapping[str, Mapping[int, int]], after: After | None = None
    ) -> PendingFlush:
        pending = PendingFlush({t: dict(p) for t, p in positions.items()}, after=after)
        for key, buffer in self._buffers.items():
            if buffer.columns:
                pending.tables[key] = (buffer.columns, buffer.since)
                self._pending -= len(buffer.columns)
                buffer.columns = Columns(key[1])
        return pending

    def _commit_into(self, pending: PendingFlush, future: Future[list[FlushReport]]) -> None:
        try:
            future.set_result(self._commit(pending))
        except BaseException as exc:
            future.set_exception(exc)

    def _commit(self, pending: PendingFlush) -> list[FlushReport]:
        """Commit each table of ``pending`` in turn (in any thread); committed tables
        leave it."""
        reports = []
        for key in list(pending.tables):
            columns = pending.tables[key][0]
            started = time.perf_counter()
            self._append(key, columns.to_arrow(), pending.offsets)
            reports.append(FlushReport(*key, len(columns), time.perf_counter() - started))
            self._committed[key] = pending.offsets
            del pending.tables[key]
        after, pending.after = pending.after, None
        if after is not None:
            reports.extend(after())
        return reports

    def _append(self, key: _Key, data: pa.Table, offsets: Offsets) -> None:
        with self.commit_lock():
            append(
                self.lake,
                *key,
                data,
                offsets,
                merge=replacing(offsets) if self.shared is not None else None,
            )

    def _give_back(self, pending: PendingFlush) -> None:
        for key, (columns, since) in pending.tables.items():
            buffer = self._buffers[key]
            self._pending += len(columns)
            columns.extend(buffer.columns)
            buffer.columns, buffer.since = columns, since
        pending.tables.clear()
