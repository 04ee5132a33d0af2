"""Small lake reads for the API: a person's recent events; a decision point's decisions and
rewards (for off-policy evaluation)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import BooleanExpression, EqualTo, In, Or
from pyiceberg.table import Table

from auie.events import format_time
from auie.lake.catalog import Lake, committed_offsets, local_path

_JSON_COLUMNS = {
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
}
_FIELDS = {
    "message_id": "messageId",
    "type": "type",
    "event": "event",
    "name": "name",
    "category": "category",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "timestamp": "timestamp",
    "original_timestamp": "originalTimestamp",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
}


def _filter(users: Sequence[str], anonymous: Sequence[str]) -> BooleanExpression | None:
    parts: list[BooleanExpression] = []
    if users:
        parts.append(In(term="user_id", literals=set(users)))
    if anonymous:
        parts.append(In(term="anonymous_id", literals=set(anonymous)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Or(parts[0], parts[1])


#: Whether an event with this (user id, anonymous id) belongs to the person.
Belongs = Callable[[str | None, str | None], bool]


def person_events(
    table: Table, users: Sequence[str], anonymous: Sequence[str], limit: int, belongs: Belongs
) -> list[dict[str, Any]]:
    """The most recent events of a person with these user and anonymous ids, newest first,
    in the Segment shape. An event carrying one of the person's anonymous ids and another
    person's user id (a shared device) is the other person's: ``belongs`` decides.

    Read by DuckDB from the data files of the table's current snapshot that may hold the ids
    (Iceberg's plan prunes by partition and column statistics), in two passes: the id, time
    and position columns of every such file find the person's rows and the newest
    ``limit`` of them (taken in chunks: a person with millions of events costs time, not
    memory); then only those rows are read whole, from the files that hold them. The wide
    JSON columns of a file without any of them are never decoded. (The lake is copy-on-write:
    AUIE writes no delete files, as the analytics engine also assumes.)"""
    row_filter = _filter(users, anonymous)
    if row_filter is None:
        return []
    files = [local_path(task.file.file_path) for task in table.scan(row_filter).plan_files()]
    if not files:
        return []
    ids = [*users, *anonymous]
    where = " OR ".join(
        f"{column} IN ({', '.join('?' * len(values))})"
        for column, values in (("user_id", users), ("anonymous_id", anonymous))
        if values
    )
    source = "read_parquet(?, filename = true, file_row_number = true, union_by_name = true)"
    with duckdb.connect(":memory:", config={"threads": 2}) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        cursor = connection.execute(
            'SELECT filename, file_row_number, user_id, anonymous_id, epoch_us("timestamp"),'
            f" message_id FROM {source} WHERE {where}",
            [files, *ids],
        )
        top: list[tuple[Any, ...]] = []  # newest first, then by message id; memory bounded
        while chunk := cursor.fetchmany(_CHUNK_ROWS):
            mine = [hit for hit in chunk if belongs(hit[2], hit[3])]
            top = heapq.nsmallest(limit, [*top, *mine], key=lambda h: (-h[4], h[5]))
        if not top:
            return []
        wanted = pa.table(
            {
                "wanted_file": [hit[0] for hit in top],
                "wanted_row": pa.array([hit[1] for hit in top], pa.int64()),
                "wanted_rank": list(range(len(top))),
            }
        )
        connection.register("_auie_wanted", wanted)
        cursor = connection.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM {source} JOIN _auie_wanted"
            " ON filename = wanted_file AND file_row_number = wanted_row"
            f" WHERE {where} ORDER BY wanted_rank",
            [sorted({hit[0] for hit in top}), *ids],
        )
        names = [column[0] for column in cursor.description or ()]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    return [_segment_shape(row) for row in rows]


#: Rows of the first pass taken into Python at a time.
_CHUNK_ROWS = 50_000
_COLUMNS = tuple(f'"{column}"' for column in (*_FIELDS, *_JSON_COLUMNS))


def _segment_shape(row: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for column, key in _FIELDS.items():
        value = row.get(column)
        if isinstance(value, datetime):
            value = format_time(value)
        if value is not None:
            event[key] = value
    for column, key in _JSON_COLUMNS.items():
        if row.get(column) is not None:
            event[key] = json.loads(row[column])
    return event


@dataclass(frozen=True, slots=True)
class TopicRows:
    """Rows of a table, and the log offsets of the topic they come from that the same
    snapshot covers: the log's records at or past them are exactly those it lacks."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    #: partition → next offset.
    offsets: dict[int, int] = field(default_factory=dict)


def decision_point_rows(
    lake: Lake,
    workspace: str,
    table: str,
    *,
    topic: str,
    decision_point: str,
    columns: Sequence[str],
) -> TopicRows:
    """The rows of ``decisions`` or ``rewards`` of one decision point, as of the table's
    current snapshot (loaded afresh: the processor commits from another process)."""
    try:
        loaded = lake.catalog.load_table((workspace, table))
    except NoSuchTableError:
        return TopicRows()
    offsets = committed_offsets(loaded).get(topic, {})
    if loaded.current_snapshot() is None:
        return TopicRows(offsets=offsets)
    data = loaded.scan(
        row_filter=EqualTo(term="decision_point", value=decision_point),
        selected_fields=tuple(columns),
    ).to_arrow()
    return TopicRows(data.to_pylist(), offsets)
