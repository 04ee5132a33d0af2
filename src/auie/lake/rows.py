"""Lake rows built from normalised events and dead letters, held column by column.

A micro-batch of a table is a :class:`Columns`: its rows as structs of values in column
order, turned into one Arrow array per column at flush time. Event rows are built by
:func:`add_event` in that order directly, without a dict per row; their timestamps stay the
ISO-8601 strings of the event until Arrow parses a whole column at once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
from msgspec.structs import astuple

from auie.lake.tables import EVENTS, TABLES

_json = msgspec.json.Encoder()
_CONTEXT_COLUMNS = (
    ("context_ip", ("ip",)),
    ("context_user_agent", ("userAgent",)),
    ("context_locale", ("locale",)),
    ("context_timezone", ("timezone",)),
    ("context_library_name", ("library", "name")),
    ("context_library_version", ("library", "version")),
    ("context_page_url", ("page", "url")),
    ("context_page_path", ("page", "path")),
    ("context_page_referrer", ("page", "referrer")),
    ("context_page_title", ("page", "title")),
    ("context_app_name", ("app", "name")),
    ("context_app_version", ("app", "version")),
    ("context_os_name", ("os", "name")),
)
#: Columns filled from the enrichment (auie.process.enrich), in table order.
ENRICHMENT_COLUMNS = (
    "browser_name",
    "browser_version",
    "os_name",
    "os_version",
    "device_type",
    "device_brand",
    "device_model",
    "page_host",
    "page_path",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)
#: Top-level event fields with columns of their own; any other top-level field goes to
#: the ``extra`` JSON column.
TOP_LEVEL_FIELDS = frozenset(
    {
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "event",
        "name",
        "category",
        "groupId",
        "previousId",
        "properties",
        "traits",
        "context",
        "integrations",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
    }
)
_EVENT_COLUMNS = tuple(TABLES[EVENTS].columns)
_EVENT_INDEX = {name: index for index, name in enumerate(_EVENT_COLUMNS)}
_ENRICHED = frozenset(ENRICHMENT_COLUMNS)


def as_text(value: Any) -> str | None:
    """JSON text for structured values; None stays None."""
    if value is None:
        return None
    return _json.encode(value).decode()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value)


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:4096]
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:4096]


def _is_object(value: Any) -> bool:
    """Whether a value is a JSON object (a dict, as decoded, told apart without the check
    against ``Mapping``'s abstract base class first: absent parts are the common case)."""
    return value is not None and (type(value) is dict or isinstance(value, Mapping))


def _part(parent: Any, key: str) -> Mapping[str, Any] | None:
    value = parent.get(key)
    return value if _is_object(value) else None


def _context_values(context: Any) -> list[str | None]:
    """The ``context_*`` columns: the value at each path of ``_CONTEXT_COLUMNS`` as text, or
    null where a step is not an object or the value is null, an object or an array."""
    if not _is_object(context):
        return [None] * len(_CONTEXT_COLUMNS)
    get = context.get
    library, page = _part(context, "library"), _part(context, "page")
    app, os = _part(context, "app"), _part(context, "os")
    values = [_scalar(get("ip")), _scalar(get("userAgent")), _scalar(get("locale"))]
    values.append(_scalar(get("timezone")))
    if library:
        values += [_scalar(library.get("name")), _scalar(library.get("version"))]
    else:
        values += [None, None]
    if page:
        values += [_scalar(page.get(k)) for k in ("url", "path", "referrer", "title")]
    else:
        values += [None, None, None, None]
    if app:
        values += [_scalar(app.get("name")), _scalar(app.get("version"))]
    else:
        values += [None, None]
    values.append(_scalar(os.get("name")) if os else None)
    return values


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _event_values(
    event: Mapping[str, Any],
    *,
    enrichment: Mapping[str, Any],
    source_id: str | None,
    plan_version: int | None,
    violations: tuple[str, ...] | None,
    partition: int,
    offset: int,
    columns: Mapping[str, Any] | None = None,
) -> list[Any]:
    """The ``events`` row of one normalised event, in column order; timestamps are the
    event's strings (None for anything else). ``columns``: values of other columns by name,
    set last (the privacy stage's hashed ids)."""
    get = event.get
    context = get("context") or {}
    extra = (
        None
        if event.keys() <= TOP_LEVEL_FIELDS
        else {k: v for k, v in event.items() if k not in TOP_LEVEL_FIELDS}
    )
    values = [
        event["messageId"],
        event["type"],
        get("event"),
        get("name"),
        get("category"),
        get("userId"),
        get("anonymousId"),
        get("groupId"),
        get("previousId"),
        source_id,
        _text_or_none(event["timestamp"]),
        _text_or_none(get("originalTimestamp")),
        _text_or_none(get("sentAt")),
        _text_or_none(event["receivedAt"]),
        as_text(get("properties")),
        as_text(get("traits")),
        as_text(context),
        as_text(get("integrations")),
        as_text(extra) if extra else None,
        *_context_values(context),
        *map(enrichment.get, ENRICHMENT_COLUMNS),
        plan_version,
        as_text(list(violations)) if violations else None,
        partition,
        offset,
    ]
    values.extend([None] * (len(_EVENT_COLUMNS) - len(values)))  # later optional columns
    if not enrichment.keys() <= _ENRICHED:  # any other column the enrichment sets wins
        for key, value in enrichment.items():
            index = _EVENT_INDEX.get(key)
            if index is not None:
                values[index] = value
    if columns:
        for key, value in columns.items():
            index = _EVENT_INDEX.get(key)
            if index is not None:  # as for the enrichment: names that are no column are ignored
                values[index] = value
    return values


@functools.cache
def _row_type(table: str) -> type[msgspec.Struct]:
    """The row of a table: its values in column order, never tracked by the cyclic garbage
    collector (``gc=False``; a row holds strings, numbers, times and None, no cycles)."""
    names = TABLES[table].arrow.names
    row = msgspec.defstruct(
        f"_{table}_row",
        [(f"c{i}", Any) for i in range(len(names))],
        frozen=True,
        gc=False,
        module=__name__,
    )
    globals()[row.__name__] = row  # where pickle looks for it
    return row


class Columns:
    """Rows of one lake table, each a struct of its values in column order, until
    :meth:`to_arrow` turns them into one Arrow array per column.

    Not tuples: the collector walks every new tuple once, reading the header of each of
    its values, before it finds that the tuple holds no containers and drops it from its
    lists. For the ``events`` table that walk (about fifty values per row, scattered in
    memory) cost more than building the rows; the structs are never in its lists."""

    __slots__ = ("_row", "names", "rows", "schema")

    def __init__(self, table: str) -> None:
        self.schema: pa.Schema = TABLES[table].arrow
        self.names = tuple(self.schema.names)
        self._row = _row_type(table)
        self.rows: list[msgspec.Struct] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Mapping[str, Any]) -> None:
        """Append a row given as a mapping (missing columns are null, others ignored)."""
        self.rows.append(self._row(*[row.get(name) for name in self.names]))

    def add_values(self, values: Sequence[Any]) -> None:
        """Append a row given as its values in column order."""
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} values for {len(self.names)} columns")
        self.rows.append(self._row(*values))

    def extend(self, other: Columns) -> None:
        """Append every row of ``other`` (of the same table)."""
        self.rows.extend(other.rows)

    def to_arrow(self) -> pa.Table:
        columns = (
            zip(*map(astuple, self.rows), strict=True) if self.rows else ((),) * len(self.names)
        )
        arrays = [
            _array(list(values), field.type)
            for values, field in zip(columns, self.schema, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    if not pa.types.is_timestamp(kind):
        return pa.array(values, type=kind)
    if all(isinstance(v, str) or v is None for v in values):
        try:  # Arrow's ISO-8601 parser, on the whole column at once
            return pa.array(values, type=pa.string()).cast(kind)
        except pa.ArrowInvalid:  # something it does not read (no offset, ...)
            pass
    return pa.array([parse_time(v) if isinstance(v, str) else v for v in values], type=kind)


def add_event(
    columns: Columns,
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
    """Append the ``events`` table row of one normalised event; ``extra``: values of other
    columns by name."""
    columns.add_values(
        _event_values(
            event,
            enrichment=enrichment,
            source_id=source_id,
            plan_version=plan_version,
            violations=violations,
            partition=partition,
            offset=offset,
            columns=extra,
        )
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _record_time(value: Any, timestamp_ms: int) -> datetime:
    """The record's own time (ISO-8601; ValueError if it is not), else the time the log
    received it. Parsed here: a value Arrow could not read would fail the whole flush."""
    if value is None:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def decision_row(
    value: Mapping[str, Any], partition: int, offset: int, timestamp_ms: int
) -> dict[str, Any]:
    """The ``decisions`` row of a record of the ``decisions`` topic (see
    ``auie.decide.service``); KeyError, TypeError or ValueError if it is not one."""
    actions = value["actions"]
    ids = [str(action["id"]) for action in actions]
    probabilities = [float(p) for p in value["probabilities"]]
    chosen = str(value["chosenAction"])
    return {
        "event_id": str(value["eventId"]),
        "decision_point": str(value["decisionPoint"]),
        "user_id": _text(value.get("userId")),
        "anonymous_id": _text(value.get("anonymousId")),
        "profile_id": _text(value.get("profileId")),
        "context": as_text(value.get("context")),
        "actions": as_text(actions),
        "excluded_actions": as_text(value.get("excludedActions")),
        "probabilities": as_text(probabilities),
        "chosen_action": chosen,
        "chosen_probability": probabilities[ids.index(chosen)],
        "policy_version": _text(value.get("policyVersion")),
        "arm": _text(value.get("arm")),
        "learn": _flag(value.get("learn")),
        "deferred": _flag(value.get("deferActivation")),
        "timestamp": _record_time(value.get("timestamp"), timestamp_ms),
        "log_partition": partition,
        "log_offset": offset,
    }


def reward_row(
    value: Mapping[str, Any], partition: int, offset: int, timestamp_ms: int
) -> dict[str, Any]:
    """The ``rewards`` row of a record of the ``rewards`` topic."""
    return {
        "event_id": str(value["eventId"]),
        "decision_point": str(value["decisionPoint"]),
        "value": float(value["value"]),
        "timestamp": _record_time(value.get("timestamp"), timestamp_ms),
        "log_partition": partition,
        "log_offset": offset,
    }
