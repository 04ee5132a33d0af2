"""Lake rows built from normalised events and dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

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
_TOP_LEVEL = frozenset(
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


def as_text(value: Any) -> str | None:
    """JSON text for structured values; None stays None."""
    if value is None:
        return None
    return _json.encode(value).decode()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value)


def _dig(context: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = context
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:4096]


def event_row(
    event: Mapping[str, Any],
    *,
    enrichment: Mapping[str, Any],
    source_id: str | None,
    plan_version: int | None,
    violations: tuple[str, ...] | None,
    partition: int,
    offset: int,
) -> dict[str, Any]:
    """The ``events`` table row of one normalised event."""
    context = event.get("context") or {}
    extra = {k: v for k, v in event.items() if k not in _TOP_LEVEL}
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
        "source_id": source_id,
        "timestamp": parse_time(event["timestamp"]),
        "original_timestamp": parse_time(event.get("originalTimestamp")),
        "sent_at": parse_time(event.get("sentAt")),
        "received_at": parse_time(event["receivedAt"]),
        "properties": as_text(event.get("properties")),
        "traits": as_text(event.get("traits")),
        "context": as_text(context),
        "integrations": as_text(event.get("integrations")),
        "extra": as_text(extra) if extra else None,
        "plan_version": plan_version,
        "plan_violations": as_text(list(violations)) if violations else None,
        "log_partition": partition,
        "log_offset": offset,
    }
    for column, path in _CONTEXT_COLUMNS:
        row[column] = _dig(context, path)
    row.update(enrichment)
    return row
