"""Turn one Segment message, in any of the shapes real SDKs send, into AUIE's event model.

The normalised event is a plain JSON object in the Segment spec's shape (camelCase keys):
``type``, ``messageId``, ``userId``, ``anonymousId``, the type's own fields (``event``,
``name``, ``category``, ``groupId``, ``previousId``), ``properties``, ``traits``,
``context``, ``integrations``, and the timestamps ``timestamp``, ``originalTimestamp``,
``sentAt``, ``receivedAt`` as ISO-8601 UTC strings with milliseconds. Unknown top-level
fields pass through untouched; ``writeKey`` is dropped.

Rules (each violation raises :class:`~auie.errors.InvalidEvent` with a precise code):

* every event has ``userId`` or ``anonymousId`` (non-empty string, or a number, which is
  turned into its decimal string, as analytics.js does); surrounding white space is
  removed from both, and ``previousId`` and ``groupId``;
* track needs ``event``; group needs ``groupId``; alias needs ``previousId`` and ``userId``;
* ``properties``, ``traits``, ``context``, ``integrations`` are objects when present;
* identify traits sent in ``context.traits`` (some mobile SDKs) become ``traits``;
* ``timestamp = receivedAt - (sentAt - originalTimestamp)`` when the client sent both,
  which removes the client's clock skew; ``originalTimestamp`` keeps what it sent;
* a ``timestamp`` more than :data:`MAX_FUTURE` (a day) after ``receivedAt`` becomes
  ``receivedAt`` (``originalTimestamp`` keeps it): event time orders traits and consent,
  and one event from a clock set to 2999 would otherwise win over every later one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from auie.errors import InvalidEvent

EVENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_ID_LENGTH = 512
MAX_NAME_LENGTH = 1024
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
#: Fields the normaliser owns: never copied through as given.
_MANAGED = frozenset(
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
        "writeKey",
    }
)


#: How far after its arrival an event's time may lie; later ones take the arrival time.
MAX_FUTURE = timedelta(days=1)
#: The exact text :func:`format_time` writes; a timestamp sent like this is kept as sent.
_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
#: "YYYY-MM-DDTHH:MM:SS" by whole second since the epoch: the events of a request mostly
#: fall in a few seconds, and isoformat was a sixth of the collector's time per event.
_SECOND_TEXT: dict[int, str] = {}
_SECOND_TEXT_LIMIT = 4096


def check_size(encoded: bytes, limit: int) -> None:
    """Reject an encoded event longer than ``limit`` bytes (``event_too_large``)."""
    if len(encoded) > limit:
        raise InvalidEvent(
            f"event is {len(encoded)} bytes; the limit is {limit}", code="event_too_large"
        )


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z``, the format every AUIE event uses."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    second = (utc - _EPOCH) // _SECOND
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_LIMIT:
            _SECOND_TEXT.clear()
        # isoformat, unlike strftime("%Y"), pads years before 1000 to four digits
        text = _SECOND_TEXT[second] = utc.isoformat(timespec="seconds")[:19]
    return f"{text}.{utc.microsecond // 1000:03d}Z"


def _formatted(raw: object, parsed: datetime) -> str:
    """``format_time(parsed)`` for a value parsed from ``raw``: the text itself when it is
    already in that form (most SDKs send exactly this), so it is not formatted again."""
    if isinstance(raw, str) and _CANONICAL_TIME.fullmatch(raw):
        return raw
    return format_time(parsed)


def parse_time(value: object, field: str) -> datetime:
    """Parse an ISO-8601 timestamp; a time without offset is taken as UTC."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise InvalidEvent(f"{field} must be an ISO-8601 string", code="invalid_timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(
            f"{field} {value!r} is not an ISO-8601 timestamp", code="invalid_timestamp"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _identifier(message: Mapping[str, Any], field: str) -> str | None:
    """The id without surrounding white space (identity resolution ignores it, so the lake
    and the profile agree); None when missing, empty or only white space."""
    value = message.get(field)
    if type(value) is str:
        value = value.strip()
        if 0 < len(value) <= MAX_ID_LENGTH:  # the common case, first
            return value
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent(f"{field} must be a string", code="invalid_field")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(
            f"{field} is longer than {MAX_ID_LENGTH} characters", code="field_too_long"
        )
    return text


def _identities(message: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``userId`` and ``anonymousId``; at least one is required."""
    user_id = _identifier(message, "userId")
    anonymous_id = _identifier(message, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("userId or anonymousId is required", code="missing_identity")
    return user_id, anonymous_id


def _name(message: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = message.get(field)
    if value is None or value == "":
        if required:
            raise InvalidEvent(f"{field} is required", code="missing_field")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{field} must be a string", code="invalid_field")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidEvent(
            f"{field} is longer than {MAX_NAME_LENGTH} characters", code="field_too_long"
        )
    return value


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge where ``top`` wins; used for batch-level context and integrations."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


class Normalizer:
    """Normalises messages of one request (shared batch fields, receive time, peer IP)."""

    __slots__ = (
        "_batch_context",
        "_batch_integrations",
        "_batch_sent_at",
        "_ip",
        "_received",
        "_received_text",
        "_sent_cache",
    )

    def __init__(
        self,
        *,
        received_at: datetime,
        peer_ip: str | None,
        batch_context: Mapping[str, Any] | None = None,
        batch_integrations: Mapping[str, Any] | None = None,
        batch_sent_at: object = None,
    ) -> None:
        self._received = received_at
        # Formatted and parsed once per request, not once per event.
        self._received_text = format_time(received_at)
        self._sent_cache: tuple[object, datetime, str] | None = None
        self._ip = peer_ip
        self._batch_context = batch_context or None
        self._batch_integrations = batch_integrations or None
        self._batch_sent_at = batch_sent_at

    def normalize(self, message: object, forced_type: str | None = None) -> dict[str, Any]:
        """Validate and normalise one message; raise :class:`InvalidEvent` if it is wrong."""
        if not isinstance(message, dict):
            raise InvalidEvent("each event must be a JSON object", code="invalid_item")
        kind = forced_type or message.get("type")
        if not isinstance(kind, str) or kind not in EVENT_TYPES:
            raise InvalidEvent(
                f"type must be one of {', '.join(sorted(EVENT_TYPES))}", code="invalid_type"
            )
        user_id, anonymous_id = _identities(message)
        for field in _OBJECT_FIELDS:
            value = message.get(field)
            if value is not None and not isinstance(value, dict):
                raise InvalidEvent(f"{field} must be a JSON object", code="invalid_field")

        event: dict[str, Any] = {"type": kind, "messageId": self._message_id(message)}
        if user_id is not None:
            event["userId"] = user_id
        if anonymous_id is not None:
            event["anonymousId"] = anonymous_id
        self._type_fields(kind, message, event, user_id)
        context = self._context(message.get("context"))
        self._payload(kind, message, event, context)
        event["context"] = context
        integrations = message.get("integrations")
        if self._batch_integrations is not None:
            integrations = _merge(self._batch_integrations, integrations or {})
        if integrations:
            event["integrations"] = integrations
        self._timestamps(message, event)
        if not _MANAGED.issuperset(message):  # unknown fields pass through, in order
            for key, value in message.items():
                if key not in _MANAGED:
                    event[key] = value
        return event

    @staticmethod
    def _message_id(message: Mapping[str, Any]) -> str:
        value = message.get("messageId")
        if value is None or value == "":
            return f"auie-{uuid.uuid4()}"
        if not isinstance(value, str):
            raise InvalidEvent("messageId must be a string", code="invalid_field")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidEvent(
                f"messageId is longer than {MAX_ID_LENGTH} characters", code="field_too_long"
            )
        return value

    @staticmethod
    def _type_fields(
        kind: str, message: Mapping[str, Any], event: dict[str, Any], user_id: str | None
    ) -> None:
        if kind == "track":
            event["event"] = _name(message, "event", required=True)
        elif kind in ("page", "screen"):
            for field in ("name", "category"):
                value = _name(message, field, required=False)
                if value is not None:
                    event[field] = value
        elif kind == "group":
            group_id = _identifier(message, "groupId")
            if group_id is None:
                raise InvalidEvent("groupId is required", code="missing_field")
            event["groupId"] = group_id
        elif kind == "alias":
            previous_id = _identifier(message, "previousId")
            if previous_id is None:
                raise InvalidEvent("previousId is required", code="missing_field")
            if user_id is None:
                raise InvalidEvent("alias needs userId", code="missing_field")
            event["previousId"] = previous_id

    def _context(self, given: dict[str, Any] | None) -> dict[str, Any]:
        if self._batch_context is not None:
            context = _merge(self._batch_context, given or {})
        else:
            context = dict(given) if given else {}
        if self._ip is not None and not context.get("ip"):
            context["ip"] = self._ip
        return context

    @staticmethod
    def _payload(
        kind: str, message: Mapping[str, Any], event: dict[str, Any], context: dict[str, Any]
    ) -> None:
        if kind in ("track", "page", "screen"):
            event["properties"] = message.get("properties") or {}
        elif kind in ("identify", "group"):
            traits = message.get("traits")
            context_traits = context.get("traits") if kind == "identify" else None
            if isinstance(context_traits, dict) and context_traits:
                traits = _merge(context_traits, traits or {})
            event["traits"] = traits or {}
        elif message.get("properties") is not None:
            event["properties"] = message["properties"]

    def _timestamps(self, message: Mapping[str, Any], event: dict[str, Any]) -> None:
        received = self._received
        original_raw = message.get("originalTimestamp")
        if original_raw is None:
            original_raw = message.get("timestamp")
        sent_raw = message.get("sentAt")
        if sent_raw is None:
            sent_raw = self._batch_sent_at
        original = parse_time(original_raw, "timestamp") if original_raw is not None else None
        sent = self._sent(sent_raw) if sent_raw is not None else None
        try:
            original_text = None if original is None else _formatted(original_raw, original)
            if original is not None and sent is not None:
                corrected = received - (sent[0] - original)
                event["timestamp"] = (
                    format_time(corrected)
                    if corrected <= received + MAX_FUTURE
                    else self._received_text
                )
            elif original is not None and original <= received + MAX_FUTURE:
                event["timestamp"] = original_text
            else:
                event["timestamp"] = self._received_text
            if original_text is not None:
                event["originalTimestamp"] = original_text
            if sent is not None:
                event["sentAt"] = sent[1]
        except (OverflowError, ValueError):
            raise InvalidEvent(
                "timestamp is out of range (after clock-skew correction)", code="invalid_timestamp"
            ) from None
        event["receivedAt"] = self._received_text

    def _sent(self, raw: object) -> tuple[datetime, str]:
        """``sentAt`` parsed and formatted, once per request for a batch's shared value."""
        cached = self._sent_cache
        if cached is not None and cached[0] == raw:
            return cached[1], cached[2]
        parsed = parse_time(raw, "sentAt")
        self._sent_cache = (raw, parsed, _formatted(raw, parsed))
        return parsed, self._sent_cache[2]
