"""The Segment HTTP Tracking API, in process: shapes, auth, limits, dedupe, dead letters."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auie.runtime import Bootstrap, Runtime
from conftest import App
from helpers import basic, bearer, get_token, stored_events

SINGLE = {
    "track": {"event": "Order Completed", "properties": {"revenue": 42.5}},
    "identify": {"traits": {"email": "ada@example.com", "plan": "pro"}},
    "page": {"name": "Pricing", "category": "Docs", "properties": {"url": "https://x.test/p"}},
    "screen": {"name": "Home", "properties": {"tab": 2}},
    "group": {"groupId": "acme", "traits": {"employees": 50}},
    "alias": {"previousId": "anon-7"},
}
SHORT = {"track": "t", "identify": "i", "page": "p", "screen": "s", "group": "g", "alias": "a"}


def post(client: TestClient, path: str, body: Any, key: str | None, **kwargs: Any) -> Any:
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    if key is not None:
        headers.update(basic(key))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=data, headers=headers, **kwargs)


@pytest.mark.parametrize("kind", sorted(SINGLE))
@pytest.mark.parametrize("short", [False, True])
def test_every_call_type_is_stored_in_the_normalised_shape(
    client: TestClient, boot: Bootstrap, runtime: Runtime, kind: str, short: bool
) -> None:
    path = f"/v1/{SHORT[kind] if short else kind}"
    body = {"userId": "u-1", "messageId": f"m-{kind}-{short}", **SINGLE[kind]}
    reply = post(client, path, body, boot.write_key)
    assert reply.status_code == 200
    assert reply.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    [event] = stored_events(runtime)
    assert event["type"] == kind
    assert event["userId"] == "u-1"
    assert event["messageId"] == f"m-{kind}-{short}"
    for field, value in SINGLE[kind].items():
        assert event[field] == value
    assert event["context"]["ip"] == "203.0.113.9"
    assert event["receivedAt"].endswith("Z")
    assert event["timestamp"] == event["receivedAt"]


def test_write_key_in_body_and_text_plain(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    body = {"anonymousId": "a-1", "event": "Clicked", "writeKey": boot.write_key}
    reply = client.post(
        "/v1/t", content=json.dumps(body), headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert reply.status_code == 200, reply.text
    [event] = stored_events(runtime)
    assert "writeKey" not in event
    assert event["anonymousId"] == "a-1"


def test_gzip_body_is_accepted(client: TestClient, boot: Bootstrap, runtime: Runtime) -> None:
    body = gzip.compress(
        json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]}).encode()
    )
    reply = post(client, "/v1/batch", body, boot.write_key, headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 200, reply.text
    assert len(stored_events(runtime)) == 1


def test_gzip_bomb_is_refused_without_inflating(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100_000
    reply = post(client, "/v1/batch", bomb, boot.write_key, headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 413
    assert reply.json()["code"] == "request_too_large"
    assert stored_events(runtime) == []


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/json; charset=latin-1"}, 415, "unsupported_charset"),
        ({"Content-Encoding": "br"}, 415, "unsupported_encoding"),
        ({"Content-Encoding": "gzip"}, 400, "invalid_gzip"),
    ],
)
def test_unaccepted_encodings(
    client: TestClient, boot: Bootstrap, headers: dict[str, str], status: int, code: str
) -> None:
    reply = post(
        client, "/v1/track", {"userId": "u", "event": "E"}, boot.write_key, headers=headers
    )
    assert reply.status_code == status
    assert reply.json()["code"] == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b'{"batch": {"type": "track"}}', "invalid_batch"),
        (b'{"batch": [], "context": "x"}', "invalid_batch"),
    ],
)
def test_malformed_requests_store_nothing(
    client: TestClient, boot: Bootstrap, runtime: Runtime, body: bytes, code: str
) -> None:
    reply = post(client, "/v1/batch", body, boot.write_key)
    assert reply.status_code == 400
    assert reply.json()["code"] == code
    assert set(reply.json()) == {"code", "message"}
    assert stored_events(runtime) == []
    assert stored_events(runtime, "deadletters") == []


@pytest.mark.parametrize(
    ("key", "code"),
    [(None, "missing_write_key"), ("nope", "invalid_write_key")],
)
def test_bad_write_keys(client: TestClient, runtime: Runtime, key: str | None, code: str) -> None:
    reply = post(client, "/v1/track", {"userId": "u", "event": "E"}, key)
    assert reply.status_code == 401
    assert reply.json()["code"] == code
    assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert stored_events(runtime) == []


def test_revoked_key_stops_working(make_app: Callable[..., App]) -> None:
    app = make_app(**{"collect.write_key_cache_seconds": 0})
    event = {"userId": "u", "event": "E"}
    assert post(app.client, "/v1/track", event, app.boot.write_key).status_code == 200
    [info] = app.runtime.tenancy.list_write_keys(app.boot.workspace)
    app.runtime.tenancy.revoke_write_key(info.id)
    reply = post(app.client, "/v1/track", event, app.boot.write_key)
    assert reply.status_code == 401
    assert reply.json()["code"] == "invalid_write_key"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "track", "userId": "u"}, "missing_field"),
        ({"type": "track", "event": "E"}, "missing_identity"),
        ({"type": "group", "userId": "u"}, "missing_field"),
        ({"type": "alias", "userId": "u"}, "missing_field"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "missing_field"),
        ({"type": "shout", "userId": "u"}, "invalid_type"),
        ({"userId": "u", "event": "E"}, "invalid_type"),
        ({"type": "track", "userId": True, "event": "E"}, "invalid_field"),
        ({"type": "track", "userId": "u", "event": "E", "properties": [1]}, "invalid_field"),
        (
            {"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"},
            "invalid_timestamp",
        ),
        ({"type": "track", "userId": "u" * 600, "event": "E"}, "field_too_long"),
        ("not an object", "invalid_item"),
        (
            {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 40_000}},
            "event_too_large",
        ),
    ],
)
def test_invalid_items_are_dead_lettered_and_neighbours_kept(
    client: TestClient, boot: Bootstrap, runtime: Runtime, message: Any, code: str
) -> None:
    good = {"type": "track", "userId": "u", "event": "Good"}
    reply = post(client, "/v1/batch", {"batch": [good, message, good]}, boot.write_key)
    assert reply.status_code == 200
    body = reply.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, code)]
    assert [e["event"] for e in stored_events(runtime)] == ["Good", "Good"]
    [dead] = stored_events(runtime, "deadletters")
    assert dead["code"] == code
    assert dead["stage"] == "collect"
    assert dead["payload"] == message
    assert dead["workspaceId"] == boot.workspace


def test_invalid_single_event_is_a_400(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    reply = post(client, "/v1/track", {"userId": "u"}, boot.write_key)
    assert reply.status_code == 400
    assert reply.json() == {"code": "missing_field", "message": "event is required"}
    assert stored_events(runtime) == []


def test_batch_limits(client: TestClient, boot: Bootstrap, runtime: Runtime) -> None:
    many = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2501}
    reply = post(client, "/v1/batch", many, boot.write_key)
    assert reply.status_code == 400
    assert reply.json()["code"] == "batch_too_large"
    big = {
        "batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 30_000}}]
        * 20
    }
    reply = post(client, "/v1/import", big, boot.write_key)
    assert reply.status_code == 413
    assert stored_events(runtime) == []


def test_duplicates_are_acknowledged_but_stored_once(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    event = {"type": "track", "userId": "u", "event": "E", "messageId": "dup-1"}
    first = post(client, "/v1/batch", {"batch": [event, event]}, boot.write_key).json()
    second = post(client, "/v1/track", event, boot.write_key).json()
    assert first == {"success": True, "accepted": 2, "duplicates": 1, "rejected": []}
    assert second["duplicates"] == 1
    assert len(stored_events(runtime)) == 1


def test_batch_context_and_integrations_merge_into_items(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "A", "context": {"app": {"version": "2"}}},
            {"type": "identify", "userId": "u", "context": {"traits": {"email": "x@y.z"}}},
        ],
        "context": {"library": {"name": "analytics-python"}, "app": {"version": "1", "build": 7}},
        "integrations": {"All": False},
    }
    assert post(client, "/v1/batch", body, boot.write_key).status_code == 200
    first, second = sorted(stored_events(runtime), key=lambda e: e["type"], reverse=True)
    assert first["context"]["app"] == {"version": "2", "build": 7}
    assert first["context"]["library"] == {"name": "analytics-python"}
    assert first["integrations"] == {"All": False}
    assert second["traits"] == {"email": "x@y.z"}


def test_clock_skew_is_corrected(client: TestClient, boot: Bootstrap, runtime: Runtime) -> None:
    # The client's clock runs one hour fast: it says it sent now+1h an event of now+1h-10s.
    now = datetime.now(UTC)
    sent = now + timedelta(hours=1)
    happened = sent - timedelta(seconds=10)
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "timestamp": happened.isoformat()}
        ],
        "sentAt": sent.isoformat(),
    }
    assert post(client, "/v1/batch", body, boot.write_key).status_code == 200
    [event] = stored_events(runtime)
    received = datetime.fromisoformat(event["receivedAt"])
    corrected = datetime.fromisoformat(event["timestamp"])
    assert abs((received - corrected).total_seconds() - 10) < 0.01
    assert datetime.fromisoformat(event["originalTimestamp"]) - happened < timedelta(milliseconds=1)


def test_forwarded_for_is_only_believed_from_trusted_proxies(make_app: Callable[..., App]) -> None:
    headers = {"X-Forwarded-For": "198.51.100.7, 10.0.0.2"}
    event = {"userId": "u", "event": "E"}
    untrusted = make_app("untrusted", peer=("10.0.0.1", 1))
    post(untrusted.client, "/v1/track", event, untrusted.boot.write_key, headers=headers)
    [stored] = stored_events(untrusted.runtime)
    assert stored["context"]["ip"] == "10.0.0.1"

    trusted = make_app(
        "trusted", peer=("10.0.0.1", 1), **{"server.trusted_proxies": ["10.0.0.0/8"]}
    )
    key = trusted.boot.write_key
    post(trusted.client, "/v1/track", event, key, headers=headers)
    post(
        trusted.client, "/v1/track", {**event, "context": {"ip": "192.0.2.1"}}, key, headers=headers
    )
    ips = sorted(e["context"]["ip"] for e in stored_events(trusted.runtime))
    assert ips == ["192.0.2.1", "198.51.100.7"]


def test_rate_limit_answers_429_with_retry_after(make_app: Callable[..., App]) -> None:
    app = make_app(
        **{
            "collect.rate_limit_events_per_second": 1.0,
            "collect.rate_limit_burst": 3,
            "collect.max_batch_events": 3,
        }
    )
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 3}
    assert post(app.client, "/v1/batch", batch, app.boot.write_key).status_code == 200
    reply = post(app.client, "/v1/track", {"userId": "u", "event": "E"}, app.boot.write_key)
    assert reply.status_code == 429
    assert reply.json()["code"] == "rate_limited"
    assert int(reply.headers["Retry-After"]) >= 1
    assert len(stored_events(app.runtime)) == 3


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = client.get("/v1/track")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


def test_overload_answers_503_with_retry_after_and_stores_nothing(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    writer = client.app.state.collector.writer  # type: ignore[attr-defined]
    writer.backlog += writer.max_backlog + 1  # as if that many records were waiting
    try:
        reply = post(client, "/v1/track", {"userId": "u", "event": "E"}, boot.write_key)
    finally:
        writer.backlog -= writer.max_backlog + 1
    assert reply.status_code == 503
    assert reply.json()["code"] == "overloaded"
    assert reply.headers["Retry-After"] == "1"
    assert stored_events(runtime) == []
    assert (
        post(client, "/v1/track", {"userId": "u", "event": "E"}, boot.write_key).status_code == 200
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"batch": [{"type": "track", "event": "caf\xe9", "userId": "u"}]}',
            "body is not UTF-8 text: byte 0xe9 at offset 42: invalid continuation byte",
        ),
        (
            b'{"batch": [{"type": "track", "event": "x", "userId": "\xff"}]}',
            "body is not UTF-8 text: byte 0xff at offset 54: invalid start byte",
        ),
        (
            b'{"batch": [{"type": "track", "event": "x\\ud800", "userId": "u"}]}',
            "a \\ud800-\\udfff escape must be one half of a pair",
        ),
    ],
)
def test_text_that_is_not_unicode_is_named_where_it_breaks(
    client: TestClient, boot: Bootstrap, runtime: Runtime, body: bytes, message: str
) -> None:
    """Latin-1 from an old client, or a lone surrogate escape: the offset is the body's
    (the decoder's own message counted from somewhere inside it)."""
    reply = post(client, "/v1/batch", body, boot.write_key)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_json"
    assert message in reply.json()["message"]
    assert stored_events(runtime) == []


def test_a_leading_byte_order_mark_is_ignored_everywhere(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """RFC 8259 lets a parser ignore a UTF-8 BOM (Windows tools write one); the collector
    does, like the rest of the API, whose JSON reader always has."""
    bom = b"\xef\xbb\xbf"
    reply = post(client, "/v1/track", bom + b'{"userId": "u", "event": "E"}', boot.write_key)
    assert reply.status_code == 200, reply.text
    assert [e["event"] for e in stored_events(runtime)] == ["E"]
    admin = bearer(get_token(client, boot.client_id, boot.client_secret, "privacy:admin"))
    headers = {**admin, "Content-Type": "application/json"}
    reply = client.post("/v1/privacy/export", content=bom + b'{"userId": "u"}', headers=headers)
    assert reply.status_code == 202, reply.text
    # Outside the collector, bytes that are no UTF-8 are named as precisely.
    bad = b'{"userId": "\xff"}'
    reply = client.post("/v1/privacy/export", content=bad, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "code": "invalid_request",
        "message": "body is not UTF-8 text: byte 0xff at offset 12: invalid start byte",
    }
    huge = b'{"userId": 1' + b"0" * 5000 + b"}"  # Python itself refuses to read it
    reply = client.post("/v1/privacy/export", content=huge, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"] == (
        "body: an integer of 5001 digits is beyond the 4300 digits read"
    )


def test_review_cases_of_text_that_is_not_unicode(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """UTF-16 (which Python's JSON reader also decodes) hid a lone surrogate from the check;
    a BOM shifted the collector's offset; a surrogate at a string's end read "truncated"."""
    admin = bearer(get_token(client, boot.client_id, boot.client_secret, "privacy:admin"))
    headers = {**admin, "Content-Type": "application/json"}
    for body in ('{"userId": "\\ud800"}'.encode("utf-16"), '{"userId": "u"}'.encode("utf-16")):
        reply = client.post("/v1/privacy/export", content=body, headers=headers)
        assert reply.status_code == 400, reply.text
        assert reply.json()["message"].startswith("body is not UTF-8 text: byte 0xff at offset 0")
    reply = post(client, "/v1/track", b'\xef\xbb\xbf{"userId": "\xff"}', boot.write_key)
    assert reply.json()["message"].endswith("byte 0xff at offset 15: invalid start byte")
    reply = post(client, "/v1/track", b'{"userId": "u", "event": "\\ud800"}', boot.write_key)
    assert "must be one half of a pair" in reply.json()["message"], reply.text
    negative = b'{"userId": -' + b"1" * 4300 + b"}"  # 4,300 digits: read
    reply = client.post("/v1/privacy/export", content=negative, headers=headers)
    assert reply.status_code == 400, reply.text
    assert "digits" not in reply.json()["message"]
    assert stored_events(runtime) == []
