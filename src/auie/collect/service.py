"""The collector: write-key auth → limits → normalisation → dedupe → durable event log.

One request is one of:

* a single message (``/v1/track`` ...): if it is invalid the request is refused with 400
  and nothing is stored;
* a batch (``/v1/batch``, ``/v1/import``): invalid items are rejected one by one, kept
  in the ``deadletters`` topic with the reason, and listed in the 200 reply; the valid
  ones are stored. The whole batch is refused (4xx, nothing stored) only when the
  request itself is wrong: bad JSON, too large, too many events, bad write key.

Events and dead letters of one request are appended in one transaction, shared with
concurrent requests (group commit), before the reply is sent.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from auie.collect.body import decode_json
from auie.collect.ratelimit import RateLimiter
from auie.collect.writer import LogWriter
from auie.config import CollectConfig
from auie.errors import AuthenticationFailed, InvalidEvent, InvalidRequest, Overloaded
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC, LogRecord
from auie.events import Normalizer, check_size, format_time
from auie.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from auie.tenancy import KeyIdentity, TenancyStore

_encoder = msgspec.json.Encoder()
_KEY_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What the collector did with one request."""

    accepted: int
    duplicates: int
    rejected: Sequence[Rejection] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": True,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.to_dict() for r in self.rejected],
        }


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the HTTP layer knows about a request besides its body."""

    authorization: str | None
    peer_ip: str | None
    forwarded_for: str | None = None


def basic_write_key(authorization: str | None) -> str | None:
    """The write key from ``Authorization: Basic base64("<key>:")``, if that header is there."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed(
            "use HTTP Basic auth with the write key as user", code="invalid_write_key"
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or a non-ASCII header value
        raise AuthenticationFailed(
            "malformed Basic credentials", code="invalid_write_key"
        ) from None
    return decoded.split(":", 1)[0]


class WriteKeyCache:
    """Caches write key lookups for a few seconds (revocation reaches us within that)."""

    def __init__(self, tenancy: TenancyStore, ttl: float) -> None:
        self.tenancy = tenancy
        self.ttl = ttl
        self._entries: dict[str, tuple[KeyIdentity | None, float]] = {}

    def resolve(self, key: str) -> KeyIdentity:
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[1] > now:
            identity = cached[0]
        else:
            identity = self.tenancy.resolve_write_key(key) if 0 < len(key) <= 256 else None
            if len(self._entries) >= _KEY_CACHE_LIMIT:
                self._entries.clear()
            self._entries[key] = (identity, now + self.ttl)
        if identity is None:
            raise AuthenticationFailed("unknown or revoked write key", code="invalid_write_key")
        return identity


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str | None:
    """The client's address: the peer, or, behind a trusted proxy, X-Forwarded-For's first
    untrusted hop counted from the right."""
    if peer is None or not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def _is_trusted(
    address: str, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class Collector:
    """Validates requests and appends their events durably; see the module docstring."""

    def __init__(
        self,
        config: CollectConfig,
        keys: WriteKeyCache,
        writer: LogWriter,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.keys = keys
        self.writer = writer
        self.limiter = RateLimiter(config.rate_limit_events_per_second, config.rate_limit_burst)
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    async def ingest(
        self, body: bytes, meta: RequestMeta, message_type: str | None
    ) -> IngestResult:
        """Handle one request; ``message_type`` is None for ``/v1/batch`` and ``/v1/import``."""
        payload = decode_json(body)
        key = basic_write_key(meta.authorization) or payload.get("writeKey")
        if not isinstance(key, str) or not key:
            raise AuthenticationFailed(
                "a write key is required (Basic auth user, or writeKey in the body)",
                code="missing_write_key",
            )
        identity = self.keys.resolve(key)
        items = self._items(payload, message_type)
        if self.writer.overloaded:
            raise Overloaded(
                "the event log is behind; retry shortly (nothing of this request was stored)",
                retry_after=1,
            )
        self.limiter.take(identity.source_id, len(items))
        received = datetime.now(UTC)
        normalizer = Normalizer(
            received_at=received,
            peer_ip=client_ip(meta.peer_ip, meta.forwarded_for, self.trusted),
            batch_context=_object_or_none(payload, "context") if message_type is None else None,
            batch_integrations=(
                _object_or_none(payload, "integrations") if message_type is None else None
            ),
            batch_sent_at=payload.get("sentAt") if message_type is None else None,
        )
        headers = {"workspaceId": identity.workspace_id, "sourceId": identity.source_id}
        received_ms = int(received.timestamp() * 1000)
        records, types, rejected = self._records(
            items, message_type, normalizer, headers, received_ms
        )
        outcomes = await self.writer.append(records)
        duplicates = sum(1 for outcome in outcomes[: len(types)] if outcome.duplicate)
        for kind, count in Counter(types).items():
            EVENTS_ACCEPTED.labels(kind).inc(count)
        if duplicates:
            EVENTS_DUPLICATE.inc(duplicates)
        return IngestResult(len(types), duplicates, rejected)

    def _items(self, payload: dict[str, Any], message_type: str | None) -> list[Any]:
        if message_type is not None:
            return [payload]
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise InvalidRequest("body must have a 'batch' array", code="invalid_batch")
        if len(batch) > self.config.max_batch_events:
            raise InvalidRequest(
                f"batch has {len(batch)} events; the limit is {self.config.max_batch_events}",
                code="batch_too_large",
            )
        for name in ("context", "integrations"):
            if payload.get(name) is not None and not isinstance(payload[name], dict):
                raise InvalidRequest(f"batch {name} must be a JSON object", code="invalid_batch")
        return batch

    def _records(
        self,
        items: list[Any],
        message_type: str | None,
        normalizer: Normalizer,
        headers: Mapping[str, str],
        received_ms: int,
    ) -> tuple[list[LogRecord], list[str], list[Rejection]]:
        events: list[LogRecord] = []
        types: list[str] = []
        dead: list[LogRecord] = []
        rejected: list[Rejection] = []
        workspace = headers["workspaceId"]
        limit = self.config.max_event_bytes
        for index, item in enumerate(items):
            try:
                event = normalizer.normalize(item, message_type)
                value = _encoder.encode(event)
                check_size(value, limit)
            except InvalidEvent as exc:
                if message_type is not None:
                    raise
                EVENTS_REJECTED.labels(exc.code).inc()
                rejected.append(Rejection(index, exc.code, exc.message))
                dead.append(_dead_letter(item, index, exc, headers, received_ms))
                continue
            person = event.get("userId") or event["anonymousId"]
            events.append(
                LogRecord(
                    topic=EVENTS_TOPIC,
                    key=person.encode("utf-8", "surrogatepass"),
                    value=value,
                    timestamp_ms=received_ms,
                    headers=headers,
                    dedupe_key=f"{workspace}:{event['messageId']}",
                )
            )
            types.append(event["type"])
        return events + dead, types, rejected


def _object_or_none(payload: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = payload.get(name)
    return value if isinstance(value, dict) else None


def _dead_letter(
    item: Any, index: int, error: InvalidEvent, headers: Mapping[str, str], received_ms: int
) -> LogRecord:
    value = _encoder.encode(
        {
            "stage": "collect",
            "code": error.code,
            "message": error.message,
            "index": index,
            "receivedAt": format_time(datetime.fromtimestamp(received_ms / 1000, UTC)),
            "workspaceId": headers["workspaceId"],
            "sourceId": headers["sourceId"],
            "payload": item,
        }
    )
    return LogRecord(
        topic=DEAD_LETTERS_TOPIC,
        key=headers["sourceId"].encode(),
        value=value,
        timestamp_ms=received_ms,
        headers=headers,
    )
