"""Small lake reads for the API: a person's recent events; a decision point's decisions and
rewards (for off-policy evaluation)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import BooleanExpression, EqualTo, In, Or
from pyiceberg.table import Table

from auie.events import format_time
from auie.lake.catalog import Lake, committed_offsets

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
    person's user id (a shared device) is the other person's: ``belongs`` decides."""
    row_filter = _filter(users, anonymous)
    if row_filter is None:
        return []
    columns = (*_FIELDS, *_JSON_COLUMNS)
    data = table.scan(row_filter=row_filter, selected_fields=columns).to_arrow()
    ids = zip(data["user_id"].to_pylist(), data["anonymous_id"].to_pylist(), strict=True)
    data = data.filter(pa.array([belongs(user, anonymous) for user, anonymous in ids]))
    if data.num_rows == 0:
        return []
    data = data.sort_by([("timestamp", "descending"), ("message_id", "ascending")])
    events = []
    for row in data.slice(0, limit).to_pylist():
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
        events.append(event)
    return events


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
