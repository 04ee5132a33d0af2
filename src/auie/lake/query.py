"""Small lake reads for the API: a person's recent events; a decision point's decisions and
rewards (for off-policy evaluation)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo, In, Or
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
    ``limit`` of them; only the files holding those are then read whole. The wide JSON
    columns of a file without any of them are never decoded. (The lake is copy-on-write:
    AUIE writes no delete files, as the analytics engine also assumes.)"""
    if not users and not anonymous:
        return []
    files = [local_path(task.file.file_path) for task in table.scan(
        row_filter=_filter(users, anonymous) or AlwaysTrue()
    ).plan_files()]  # fmt: skip
    if not files:
        return []
    ids = [*users, *anonymous]
    where = " OR ".join(
        f"{column} IN ({', '.join('?' * len(values))})"
        for column, values in (("user_id", users), ("anonymous_id", anonymous))
        if values
    )
    with duckdb.connect(":memory:", config={"threads": 2}) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        found = connection.execute(
            "SELECT filename, file_row_number, user_id, anonymous_id,"
            ' epoch_us("timestamp"), message_id FROM read_parquet(?, filename = true,'
            f" file_row_number = true, union_by_name = true) WHERE {where}",
            [files, *ids],
        ).fetchall()
        hits = [h for h in found if belongs(h[2], h[3])]
        hits.sort(key=lambda h: h[5])
        hits.sort(key=lambda h: h[4], reverse=True)  # newest first, then by message id
        top = {(h[0], h[1]): rank for rank, h in enumerate(hits[:limit])}
        if not top:
            return []
        cursor = connection.execute(
            f"SELECT filename, file_row_number, {', '.join(_COLUMNS)} FROM read_parquet(?,"
            f" filename = true, file_row_number = true, union_by_name = true) WHERE {where}",
            [sorted({file for file, _ in top}), *ids],
        )
        names = [column[0] for column in cursor.description or ()]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    ranked = sorted(
        (top[(row["filename"], row["file_row_number"])], row)
        for row in rows
        if (row["filename"], row["file_row_number"]) in top
    )
    return [_segment_shape(row) for _, row in ranked]


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
