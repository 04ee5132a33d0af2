"""Columnar lake rows: the ``events`` rows :func:`add_event` appends become exactly the Arrow
table the previous row-dict builder gave through ``pa.Table.from_pylist``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auie.lake.rows import Columns, add_event
from auie.lake.tables import DEAD_LETTERS, EVENTS, IDENTITIES, TABLES

_json = msgspec.json.Encoder()

# -- the reference: the row-dict builder the columns replaced --------------------------------

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
_TOP_LEVEL = {
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


def _text(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _dig(context: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = context
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:4096]


def reference_row(event: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    context = event.get("context") or {}
    extra = {k: v for k, v in event.items() if k not in _TOP_LEVEL}
    violations = fields["violations"]
    row: dict[str, Any] = {
        "message_id": event["messageId"],
        "type": event["type"],
        "event": event.get("event"),
        "name": event.get("name"),
        "category": event.get("category"),
        "user_id": event.get("userId"),
        "anonymous_id": event.get("anonymousId"),
        "group_id": event.get("groupId"),
        "previous_id": event.get("previousId"),
        "source_id": fields["source_id"],
        "timestamp": _time(event["timestamp"]),
        "original_timestamp": _time(event.get("originalTimestamp")),
        "sent_at": _time(event.get("sentAt")),
        "received_at": _time(event["receivedAt"]),
        "properties": _text(event.get("properties")),
        "traits": _text(event.get("traits")),
        "context": _text(context),
        "integrations": _text(event.get("integrations")),
        "extra": _text(extra) if extra else None,
        "plan_version": fields["plan_version"],
        "plan_violations": _text(list(violations)) if violations else None,
        "log_partition": fields["partition"],
        "log_offset": fields["offset"],
    }
    for column, path in _CONTEXT_COLUMNS:
        row[column] = _dig(context, path)
    row.update(fields["enrichment"])
    row.update(fields.get("extra") or {})
    return row


def both(events: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[pa.Table, pa.Table]:
    columns = Columns(EVENTS)
    for event, fields in events:
        add_event(columns, event, **fields)
    expected = pa.Table.from_pylist(
        [reference_row(event, **fields) for event, fields in events], schema=TABLES[EVENTS].arrow
    )
    return columns.to_arrow(), expected


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "enrichment": {},
        "source_id": "src_1",
        "plan_version": None,
        "violations": None,
        "partition": 2,
        "offset": 41,
    }
    return {**base, **changes}


BROWSER_EVENT: dict[str, Any] = {
    "type": "page",
    "messageId": "m-1",
    "anonymousId": "a-1",
    "userId": "u-1",
    "name": "Home",
    "properties": {"path": "/", "price": 12.5, "tags": ["a", "b"]},
    "context": {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "library": {"name": "analytics.js", "version": 170},
        "page": {"url": "https://x.example/?utm_source=a", "path": "/", "title": None},
        "app": "not an object",
        "os": {"name": {"nested": True}},
    },
    "integrations": {"All": True},
    "timestamp": "2026-11-25T12:00:00.123Z",
    "originalTimestamp": "2026-11-25T13:00:00.100+01:00",
    "sentAt": "2026-11-25T12:00:01.000Z",
    "receivedAt": "2026-11-25T12:00:01.500Z",
    "custom": {"x": 1},
}


def test_a_browser_event_with_enrichment_and_flagged_violations() -> None:
    enrichment = {"browser_name": "Chrome", "page_host": "x.example", "utm_source": "a"}
    got, expected = both(
        [
            (
                BROWSER_EVENT,
                fields(enrichment=enrichment, plan_version=3, violations=("bad", "worse")),
            )
        ]
    )
    assert got.equals(expected)
    assert got.column("context_os_name").to_pylist() == [None]
    assert got.column("browser_name").to_pylist() == ["Chrome"]
    assert got.column("timestamp").to_pylist() == [
        datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    ]


def test_extra_columns_by_name_are_set_last() -> None:
    """The privacy stage's columns (hashed ids, PII flags) come by name and win over an
    enrichment value of the same column."""
    extra = {"user_hash": "h-u", "anonymous_hash": "h-a", "pii_flags": "email"}
    enrichment = {"browser_name": "Chrome", "user_hash": "from-enrichment"}
    got, expected = both([(BROWSER_EVENT, fields(enrichment=enrichment, extra=extra))])
    assert got.equals(expected)
    assert got.select(["user_hash", "anonymous_hash", "pii_flags"]).to_pylist() == [extra]
    # A name that is no column is ignored, as in the enrichment.
    ignored, _ = both([(BROWSER_EVENT, fields(extra={**extra, "no_such_column": "x"}))])
    assert ignored.select(["user_hash", "anonymous_hash", "pii_flags"]).to_pylist() == [extra]


def test_minimal_events_and_strange_shapes() -> None:
    minimal = {
        "type": "track",
        "messageId": "m-2",
        "userId": "u",
        "event": "E",
        "timestamp": "2026-11-25T12:00:00Z",
        "receivedAt": "2026-11-25T12:00:00Z",
    }
    no_context_object = {**minimal, "messageId": "m-3", "context": ["not", "an", "object"]}
    numbers_as_times = {**minimal, "messageId": "m-4", "sentAt": 17, "originalTimestamp": None}
    got, expected = both(
        [(minimal, fields()), (no_context_object, fields()), (numbers_as_times, fields())]
    )
    assert got.equals(expected)


def test_timestamps_arrow_cannot_read_fall_back_to_python() -> None:
    naive = {**BROWSER_EVENT, "messageId": "m-5", "sentAt": "2026-11-25T12:00:00"}
    nanos = {**BROWSER_EVENT, "messageId": "m-6", "timestamp": "2026-11-25T12:00:00.123456789Z"}
    got, expected = both([(BROWSER_EVENT, fields()), (naive, fields()), (nanos, fields())])
    assert got.equals(expected)


def test_enrichment_may_set_any_column_and_unknown_keys_are_ignored() -> None:
    enrichment = {"context_locale": "xx", "not_a_column": 1, "utm_term": "t"}
    got, expected = both([(BROWSER_EVENT, fields(enrichment=enrichment))])
    assert got.equals(expected)
    assert got.column("context_locale").to_pylist() == ["xx"]


def test_a_bad_timestamp_still_fails_like_before() -> None:
    broken = {**BROWSER_EVENT, "receivedAt": "yesterday"}
    columns = Columns(EVENTS)
    add_event(columns, broken, **fields())
    with pytest.raises(ValueError, match="yesterday"):
        columns.to_arrow()


@pytest.mark.parametrize("table", [DEAD_LETTERS, IDENTITIES])
def test_mapping_rows_become_what_from_pylist_made(table: str) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [dict.fromkeys(TABLES[table].columns, f"v{i}") | {"ignored": 1} for i in range(3)]
    for row in rows:
        for field in TABLES[table].arrow:
            if pa.types.is_timestamp(field.type):
                row[field.name] = moment
            elif pa.types.is_integer(field.type):
                row[field.name] = 7
    del rows[1][TABLES[table].columns[-1]]
    columns = Columns(table)
    for row in rows:
        columns.add(row)
    assert columns.to_arrow().equals(pa.Table.from_pylist(rows, schema=TABLES[table].arrow))


def test_extend_appends_the_other_rows_in_order() -> None:
    first, second = Columns(EVENTS), Columns(EVENTS)
    add_event(first, BROWSER_EVENT, **fields(offset=1))
    add_event(second, {**BROWSER_EVENT, "messageId": "m-9"}, **fields(offset=2))
    first.extend(second)
    assert len(first) == 2
    assert first.to_arrow().column("log_offset").to_pylist() == [1, 2]


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.isoformat().replace("+00:00", "Z"))


@settings(max_examples=150, deadline=None)
@given(
    context=st.one_of(
        _values, st.fixed_dictionaries({}, optional={"page": _values, "ip": _values})
    ),
    extra=st.dictionaries(st.sampled_from(["a", "b", "writeKey"]), _values, max_size=2),
    times=st.lists(st.one_of(st.none(), _times), min_size=2, max_size=2),
    received=_times,
)
def test_any_event_becomes_the_same_row(
    context: Any, extra: dict[str, Any], times: list[str | None], received: str
) -> None:
    event: dict[str, Any] = {
        "type": "identify",
        "messageId": "m",
        "userId": "u",
        "traits": {"t": 1},
        "context": context,
        "timestamp": received,
        "originalTimestamp": times[0],
        "sentAt": times[1],
        "receivedAt": received,
        **extra,
    }
    got, expected = both([(event, fields())])
    assert got.equals(expected)
