"""Micro-batch writes to the lake, exactly once.

Rows are buffered per (workspace, table) until the buffer holds ``flush_max_records`` rows
or its oldest row is ``flush_max_seconds`` old. A flush appends each buffer as one Iceberg
commit whose snapshot summary records the log offsets the processor has consumed
(``auie.log-offsets``: topic → partition → next offset). Every row read from the log up to
those offsets is in that commit or an earlier one, so after a crash the writer asks each
table for its offsets and skips rows below them: the lake holds every event exactly once,
whatever moment the process died at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from auie.lake.catalog import Lake, committed_offsets, offsets_property
from auie.lake.tables import TABLES

logger = logging.getLogger(__name__)

Offsets = dict[str, dict[int, int]]


@dataclass(slots=True)
class _Buffer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class FlushReport:
    workspace: str
    table: str
    rows: int
    seconds: float


class LakeWriter:
    """See the module docstring."""

    def __init__(self, lake: Lake, *, max_records: int, max_seconds: float) -> None:
        self.lake = lake
        self.max_records = max_records
        self.max_seconds = max_seconds
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._committed: dict[tuple[str, str], Offsets] = {}
        self._pending = 0

    def committed(self, workspace: str, table: str) -> Offsets:
        """Offsets the table's commits already cover (read once, then tracked)."""
        key = (workspace, table)
        offsets = self._committed.get(key)
        if offsets is None:
            offsets = self._committed[key] = committed_offsets(self.lake.table(workspace, table))
        return offsets

    def accepts(self, workspace: str, table: str, topic: str, partition: int, offset: int) -> bool:
        """False for a row the table already holds (read again after a crash)."""
        return offset >= self.committed(workspace, table).get(topic, {}).get(partition, 0)

    def add(self, workspace: str, table: str, row: dict[str, Any]) -> None:
        buffer = self._buffers.get((workspace, table))
        if buffer is None:
            buffer = self._buffers[(workspace, table)] = _Buffer(since=time.monotonic())
        elif not buffer.rows:
            buffer.since = time.monotonic()
        buffer.rows.append(row)
        self._pending += 1

    @property
    def pending(self) -> int:
        return self._pending

    def due(self) -> bool:
        if self._pending >= self.max_records:
            return True
        now = time.monotonic()
        return any(b.rows and now - b.since >= self.max_seconds for b in self._buffers.values())

    def flush(self, positions: Mapping[str, Mapping[int, int]]) -> list[FlushReport]:
        """Commit every buffer, each recording ``positions`` as the offsets it covers."""
        offsets: Offsets = {t: dict(p) for t, p in positions.items()}
        reports = []
        for (workspace, name), buffer in self._buffers.items():
            if not buffer.rows:
                continue
            started = time.perf_counter()
            table = self.lake.table(workspace, name)
            data = pa.Table.from_pylist(buffer.rows, schema=TABLES[name].arrow)
            try:
                table.append(data, snapshot_properties=offsets_property(offsets))
            except CommitFailedException:
                # Someone else committed (maintenance, another writer): reload and retry once.
                table = self.lake.refresh(workspace, name)
                table.append(data, snapshot_properties=offsets_property(offsets))
            reports.append(
                FlushReport(workspace, name, len(buffer.rows), time.perf_counter() - started)
            )
            self._committed[(workspace, name)] = offsets
            self._pending -= len(buffer.rows)
            buffer.rows = []
        return reports
