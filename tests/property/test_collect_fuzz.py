"""Hostile input at every collector endpoint, in process, with hypothesis.

Properties:

* the server never answers 5xx, whatever the body, headers or credentials;
* every error answer is JSON with exactly ``{code, message}``, and a request refused as a
  whole (any 4xx) stores nothing, not even dedupe keys;
* in a batch mixing valid and invalid items, every valid item is stored exactly once in
  the normalised shape, every invalid one is listed in ``rejected`` (index and code) and
  kept in the ``deadletters`` topic, and ``accepted`` is the number of valid items.

The app (and its event log) lives for the whole test, so every example looks only at the
records appended after its own start.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from auie.api.app import create_app
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC, EventLog
from auie.events.normalize import MAX_FUTURE
from auie.runtime import Bootstrap, Runtime

PEER = "203.0.113.9"
TYPES = ("track", "identify", "page", "screen", "group", "alias")
SHORT = {"track": "t", "identify": "i", "page": "p", "screen": "s", "group": "g", "alias": "a"}
SINGLE_PATHS = {kind: (f"/v1/{kind}", f"/v1/{SHORT[kind]}") for kind in TYPES}
BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import")
ALL_PATHS = tuple(p for paths in SINGLE_PATHS.values() for p in paths) + BATCH_PATHS
MARKER = "fuzzMarker"
TIME_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MAX_REQUEST_BYTES = 512_000

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# -- the app under test and a view of what each example appended ----------------------


@dataclass
class Fuzz:
    client: TestClient
    runtime: Runtime
    boot: Bootstrap


@pytest.fixture
def fuzz(runtime: Runtime, boot: Bootstrap) -> Iterator[Fuzz]:
    """The in-process app; a server error is an answer (5xx) here, not an exception."""
    app = create_app(runtime)
    with TestClient(app, client=(PEER, 50000), raise_server_exceptions=False) as client:
        yield Fuzz(client, runtime, boot)


class Appended:
    """The records appended to both topics since construction."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.marks = {topic: log.end_offsets(topic) for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC)}

    def records(self, topic: str) -> list[dict[str, Any]]:
        found = []
        for part, start in self.marks[topic].items():
            for record in self.log.read(topic, part, start, 100_000):
                found.append(json.loads(record.value))
        return found

    def nothing(self) -> bool:
        return not self.records(EVENTS_TOPIC) and not self.records(DEAD_LETTERS_TOPIC)


def basic(key: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()


def post(client: TestClient, path: str, body: bytes, headers: dict[str, Any]) -> Any:
    return client.post(path, content=body, headers=headers)


def check_error(reply: Any) -> dict[str, Any]:
    """A non-200 answer: never 5xx, JSON with exactly {code, message}."""
    assert reply.status_code < 500, reply.text
    assert reply.status_code >= 400, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert isinstance(body, dict)
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    return body


def check_success(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"success", "accepted", "duplicates", "rejected"}
    assert body["success"] is True
    assert 0 <= body["duplicates"] <= body["accepted"]
    for rejection in body["rejected"]:
        assert set(rejection) == {"index", "code", "message"}
        assert isinstance(rejection["index"], int)
        assert isinstance(rejection["code"], str)
        assert isinstance(rejection["message"], str)
    return body


# -- JSON values, hostile but valid -----------------------------------------------------

HOSTILE_STRINGS = (
    "",
    " ",
    "\x00",
    "\x00\x01\x1f\x7f",
    "\u2028\u2029",
    "\ufeff",
    "\uffff",
    "💥🏳️‍🌈",
    "null",
    "NaN",
    "-Infinity",
    "1e400",
    "\\ud800",
    '"}]',
    "<script>alert(1)</script>",
    "'; DROP TABLE dedupe; --",
    "../../etc/passwd",
    "%00%ff",
    "\u0301" * 20,
)
texts = st.one_of(st.text(max_size=24), st.sampled_from(HOSTILE_STRINGS))
names = texts.filter(bool)
keys = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_STRINGS))
numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(
        [0, -1, 2**63 - 1, -(2**63), 2**64, -(10**300), 1.7976931348623157e308, 5e-324, -0.0]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def nested(depth: int, leaf: Any = 1, as_list: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


json_values = st.one_of(
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=8,
    ),
    st.builds(nested, st.integers(1, 200), scalars, st.booleans()),
)
objects = st.dictionaries(keys, json_values, max_size=4)
#: Ids lose surrounding white space, and one of white space only is missing: the
#: valid items' ids have something else in them.
id_texts = names.filter(lambda t: bool(t.strip()))
identifiers = st.one_of(
    id_texts,
    st.integers(min_value=-(10**100), max_value=10**100),
    st.floats(allow_nan=False, allow_infinity=False),
)
zones = st.one_of(
    st.none(),
    st.sampled_from(
        [
            UTC,
            timezone(timedelta(hours=5, minutes=30)),
            timezone(timedelta(hours=-8)),
            timezone(timedelta(hours=14)),
        ]
    ),
)
moments = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "ip": st.one_of(st.sampled_from(["", "198.51.100.4", "::1"]), texts),
        "library": st.fixed_dictionaries({"name": names, "version": texts}),
        "locale": texts,
        "userAgent": texts,
        "traits": objects,
        "app": objects,
        "campaign": objects,
    },
)
extras = st.dictionaries(st.text(max_size=10).map(lambda k: f"x_{k}"), json_values, max_size=3)


@st.composite
def valid_items(  # noqa: PLR0912 (one branch per field)
    draw: st.DrawFn, kind: str
) -> dict[str, Any]:
    """A message of ``kind`` that the Segment spec accepts, with hostile contents."""
    item: dict[str, Any] = {"type": kind}
    who = draw(st.sampled_from(["user", "anonymous", "both"] if kind != "alias" else ["user"]))
    if who in ("user", "both"):
        item["userId"] = draw(identifiers)
    if who in ("anonymous", "both"):
        item["anonymousId"] = draw(identifiers)
    if kind == "alias" and draw(st.booleans()):
        item["anonymousId"] = draw(identifiers)
    if kind == "track":
        item["event"] = draw(names)
    elif kind in ("page", "screen"):
        for field in ("name", "category"):
            if draw(st.booleans()):
                item[field] = draw(texts)
    elif kind == "group":
        item["groupId"] = draw(identifiers)
    elif kind == "alias":
        item["previousId"] = draw(identifiers)
    for field, values in (
        ("properties", objects),
        ("traits", objects),
        ("context", contexts),
        ("integrations", st.dictionaries(keys, st.booleans() | objects, max_size=3)),
    ):
        if draw(st.booleans()):
            item[field] = draw(st.none() | values)
    if draw(st.booleans()):
        item["messageId"] = draw(names)
    if draw(st.booleans()):
        moment = draw(moments)
        item["timestamp"] = moment.isoformat()
        if draw(st.booleans()):
            skew = timedelta(seconds=draw(st.integers(-86_400, 86_400)))
            item["sentAt"] = (moment + skew).isoformat()
    item.update(draw(extras))
    # Stay well inside the 32 KiB event limit (ASCII-escaped JSON over-counts).
    assume(len(json.dumps(item)) < 24_000)
    return item


# -- invalid items: one valid item broken in one known way -------------------------------

BAD_TIMES = (
    "",
    "yesterday",
    "2024-13-01T00:00:00Z",
    "2024-02-30",
    "2024-01-01T25:00:00",
    "0000-01-01T00:00:00",
    "12:00:00.000",
    "2024-01-01T00:00:00" + "0" * 30,
)
non_strings = st.one_of(
    st.booleans(), numbers, st.lists(scalars, max_size=2), st.dictionaries(keys, scalars)
)
non_objects = st.one_of(
    st.booleans(), numbers, texts, st.lists(scalars, max_size=3)
)  # never None: null means "absent"
bad_ids = st.one_of(st.booleans(), st.lists(scalars, max_size=2), st.dictionaries(keys, scalars))


@st.composite
def invalid_items(  # noqa: PLR0911, PLR0912 (one branch per mutation)
    draw: st.DrawFn, kind: str, single: bool
) -> tuple[Any, str]:
    """(item, the code the collector must reject it with)."""
    item = draw(valid_items(kind))
    # (hypothesis favours the first choice: make it one with many variants)
    choices = [
        "bad_object",
        "no_identity",
        "bad_id",
        "long_id",
        "bad_message_id",
        "long_message_id",
        "bad_timestamp",
        "bad_sent_at",
        "skew_overflow",
        "too_large",
    ]
    if not single:
        choices += ["not_object", "bad_type"]
    if kind in ("track", "group", "alias"):
        choices.append("missing_required")
    if kind in ("track", "page", "screen"):
        choices += ["bad_name", "long_name"]
    if kind == "group":
        choices.append("long_group_id")
    mutation = draw(st.sampled_from(choices))
    if mutation == "not_object":
        return draw(non_objects), "invalid_item"
    if mutation == "bad_type":
        bad = draw(
            st.one_of(
                st.none(),
                non_strings,
                texts.filter(lambda t: t not in TYPES),
                st.sampled_from(["Track", "TRACK", " track", "batch", "import"]),
            )
        )
        item["type"] = bad
        return item, "invalid_type"
    if mutation == "no_identity":
        for field in ("userId", "anonymousId"):
            choice = draw(st.sampled_from(["drop", "null", "empty"]))
            item.pop(field, None)
            if choice != "drop":
                item[field] = None if choice == "null" else ""
        return item, "missing_identity"
    if mutation == "bad_id":
        item[draw(st.sampled_from(["userId", "anonymousId"]))] = draw(bad_ids)
        return item, "invalid_field"
    if mutation == "long_id":
        field = draw(st.sampled_from(["userId", "anonymousId"]))
        item[field] = "u" * draw(st.integers(513, 600))
        return item, "field_too_long"
    if mutation == "bad_object":
        field = draw(st.sampled_from(["properties", "traits", "context", "integrations"]))
        item[field] = draw(non_objects)
        return item, "invalid_field"
    if mutation == "bad_message_id":
        item["messageId"] = draw(non_strings)
        return item, "invalid_field"
    if mutation == "long_message_id":
        item["messageId"] = "m" * draw(st.integers(513, 600))
        return item, "field_too_long"
    if mutation == "bad_timestamp":
        item["timestamp"] = draw(st.sampled_from(BAD_TIMES) | non_strings)
        return item, "invalid_timestamp"
    if mutation == "bad_sent_at":
        item["sentAt"] = draw(st.sampled_from(BAD_TIMES) | non_strings)
        return item, "invalid_timestamp"
    if mutation == "skew_overflow":
        early, late = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"
        item["timestamp"], item["sentAt"] = draw(st.sampled_from([(early, late), (late, early)]))
        return item, "invalid_timestamp"
    if mutation == "too_large":
        item["x_padding"] = "y" * draw(st.integers(33_000, 34_000))
        return item, "event_too_large"
    if mutation == "missing_required":
        if kind == "alias" and draw(st.booleans()):
            item.pop("userId")
            item["anonymousId"] = draw(id_texts)
        else:
            field = {"track": "event", "group": "groupId", "alias": "previousId"}[kind]
            choice = draw(st.sampled_from(["drop", "null", "empty"]))
            item.pop(field)
            if choice != "drop":
                item[field] = None if choice == "null" else ""
        return item, "missing_field"
    if mutation == "bad_name":
        field = "event" if kind == "track" else draw(st.sampled_from(["name", "category"]))
        item[field] = draw(non_strings)
        return item, "invalid_field"
    if mutation == "long_name":
        field = "event" if kind == "track" else draw(st.sampled_from(["name", "category"]))
        item[field] = "n" * draw(st.integers(1025, 1100))
        return item, "field_too_long"
    assert mutation == "long_group_id"
    item["groupId"] = "g" * draw(st.integers(513, 600))
    return item, "field_too_long"


@st.composite
def entries(draw: st.DrawFn, single: bool) -> tuple[str, Any, str | None]:
    """(kind, item, None if the item is valid else the code it must be rejected with)."""
    kind = draw(st.sampled_from(TYPES))
    if draw(st.booleans()):
        return kind, draw(valid_items(kind)), None
    item, code = draw(invalid_items(kind, single))
    return kind, item, code


# -- what a stored event must look like -------------------------------------------------


def identifier(value: Any) -> str | None:
    if value is None:
        return None
    return (value.strip() or None) if isinstance(value, str) else str(value)


def parse(value: str) -> datetime:
    assert TIME_FORMAT.match(value), value
    return datetime.fromisoformat(value)


def aware(iso: str) -> datetime:
    """How the collector reads a client's time: ISO-8601, UTC when it has no offset."""
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def instant(iso: str) -> datetime:
    """The client's time as stored: to the millisecond."""
    moment = aware(iso)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def check_timestamps(event: dict[str, Any], item: dict[str, Any], batch_sent: str | None) -> None:
    received = parse(event["receivedAt"])
    original_raw = item.get("timestamp")
    sent_raw = item.get("sentAt") or batch_sent
    stamp = parse(event["timestamp"])
    if original_raw is None:
        assert "originalTimestamp" not in event
    else:
        assert parse(event["originalTimestamp"]) == instant(original_raw)
    if sent_raw is None:
        assert "sentAt" not in event
    else:
        assert parse(event["sentAt"]) == instant(sent_raw)
    latest = received + MAX_FUTURE  # later event times take the arrival time
    if original_raw is not None and sent_raw is not None:
        skew = aware(sent_raw) - aware(original_raw)
        corrected = received - skew
        if corrected > latest + timedelta(milliseconds=1):
            assert stamp == received
        elif corrected <= latest - timedelta(milliseconds=1):
            assert abs(stamp - corrected) <= timedelta(milliseconds=1)
    elif original_raw is not None and instant(original_raw) > latest:
        assert stamp == received
    elif original_raw is not None:
        assert stamp == instant(original_raw)
    else:
        assert stamp == received


def check_stored(  # noqa: PLR0912 (one branch per event type)
    event: dict[str, Any], kind: str, item: dict[str, Any], batch: dict[str, Any] | None = None
) -> None:
    """``event`` is the normalised form of the valid ``item``."""
    batch = batch or {}
    assert event["type"] == kind
    assert event[MARKER] == item[MARKER]
    if item.get("messageId"):
        assert event["messageId"] == item["messageId"]
    else:
        assert event["messageId"].startswith("auie-")
    for field in ("userId", "anonymousId"):
        assert event.get(field) == identifier(item.get(field))
    if kind == "track":
        assert event["event"] == item["event"]
    if kind in ("page", "screen"):
        for field in ("name", "category"):
            assert event.get(field) == (item.get(field) or None)
    if kind == "group":
        assert event["groupId"] == identifier(item["groupId"])
    if kind == "alias":
        assert event["previousId"] == identifier(item["previousId"])
    if kind in ("track", "page", "screen"):
        assert event["properties"] == roundtrip(item.get("properties") or {})
    elif kind == "alias" and item.get("properties") is not None:
        assert event["properties"] == roundtrip(item["properties"])
    context = item.get("context") or {}
    context_traits = context.get("traits") or (batch.get("context") or {}).get("traits")
    if kind == "group" or (kind == "identify" and not context_traits):
        assert event["traits"] == roundtrip(item.get("traits") or {})
    if "context" not in batch:
        expected = dict(context)
        if not expected.get("ip"):
            expected["ip"] = PEER
        assert event["context"] == roundtrip(expected)
    if "integrations" not in batch:
        assert event.get("integrations") == (roundtrip(item.get("integrations")) or None)
    for key, value in item.items():
        if key.startswith("x_"):
            assert event[key] == roundtrip(value)
    assert "writeKey" not in event
    check_timestamps(event, item, batch.get("sentAt"))


def mark(item: Any, run: str, index: int) -> Any:
    """Tag a (copy of an) item so its stored form can be found; make its messageId unique."""
    item = copy.deepcopy(item)
    if isinstance(item, dict):
        item[MARKER] = f"{run}:{index}"
        message_id = item.get("messageId")
        if isinstance(message_id, str) and 0 < len(message_id) <= 100:
            item["messageId"] = f"{run}-{index}-{message_id}"
    return item


# -- property: mixed batches --------------------------------------------------------------

batch_extras = st.fixed_dictionaries(
    {},
    optional={
        "context": st.none() | contexts,
        "integrations": st.none() | st.dictionaries(keys, st.booleans(), max_size=3),
        "sentAt": st.builds(
            lambda s: (datetime.now(UTC) + timedelta(seconds=s)).isoformat(),
            st.integers(-86_400, 86_400),
        ),
    },
)
transports = st.sampled_from(["json", "ascii", "gzip", "text", "body_key"])


def encode(payload: dict[str, Any], transport: str, key: str) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json", "Authorization": basic(key)}
    if transport == "body_key":
        payload = {**payload, "writeKey": key}
        del headers["Authorization"]
    body = json.dumps(payload, ensure_ascii=transport == "ascii").encode("utf-8")
    if transport == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if transport == "text":
        headers["Content-Type"] = "text/plain;charset=UTF-8"
    return body, headers


@FUZZ
@given(
    batch=st.lists(entries(single=False), min_size=1, max_size=10),
    path=st.sampled_from(BATCH_PATHS),
    extra=batch_extras,
    transport=transports,
)
def test_mixed_batches_store_valid_items_once_and_dead_letter_the_rest(
    fuzz: Fuzz,
    batch: list[tuple[str, Any, str | None]],
    path: str,
    extra: dict[str, Any],
    transport: str,
) -> None:
    run = uuid.uuid4().hex
    items = [mark(item, run, i) for i, (_, item, _) in enumerate(batch)]
    extra = {k: v for k, v in extra.items() if v is not None}
    appended = Appended(fuzz.runtime.eventlog)
    body, headers = encode({"batch": items, **extra}, transport, fuzz.boot.write_key)

    reply = check_success(post(fuzz.client, path, body, headers))

    valid = [i for i, (_, _, code) in enumerate(batch) if code is None]
    invalid = {i: code for i, (_, _, code) in enumerate(batch) if code is not None}
    note(f"{len(valid)} valid, {len(invalid)} invalid")
    for code in invalid.values():
        note(f"rejected {code}")
    assert reply["accepted"] == len(valid)
    assert reply["duplicates"] == 0
    assert {r["index"]: r["code"] for r in reply["rejected"]} == invalid
    assert [r["index"] for r in reply["rejected"]] == sorted(invalid)

    stored = appended.records(EVENTS_TOPIC)
    by_marker: dict[str, list[dict[str, Any]]] = {}
    for event in stored:
        by_marker.setdefault(event[MARKER], []).append(event)
    assert sorted(by_marker) == sorted(f"{run}:{i}" for i in valid)
    assert len(stored) == len(valid)
    assert len({event["messageId"] for event in stored}) == len(stored)
    for i in valid:
        [event] = by_marker[f"{run}:{i}"]
        check_stored(event, batch[i][0], items[i], extra)

    dead = appended.records(DEAD_LETTERS_TOPIC)
    assert sorted(d["index"] for d in dead) == sorted(invalid)
    for letter in dead:
        assert letter["stage"] == "collect"
        assert letter["code"] == invalid[letter["index"]]
        assert letter["payload"] == roundtrip(items[letter["index"]])
        assert letter["workspaceId"] == fuzz.boot.workspace
        assert letter["sourceId"] == fuzz.boot.source
        parse(letter["receivedAt"])


# -- property: single-call endpoints --------------------------------------------------------


@FUZZ
@given(entry=entries(single=True), short=st.booleans(), transport=transports)
def test_single_calls_are_stored_once_or_refused_whole(
    fuzz: Fuzz, entry: tuple[str, Any, str | None], short: bool, transport: str
) -> None:
    kind, item, code = entry
    run = uuid.uuid4().hex
    item = mark(item, run, 0)
    if code is None:  # the path decides the type; another one in the body is ignored
        item["type"] = "page" if kind != "page" else "alias"
    appended = Appended(fuzz.runtime.eventlog)
    body, headers = encode(item, transport, fuzz.boot.write_key)

    reply = post(fuzz.client, SINGLE_PATHS[kind][short], body, headers)

    if code is None:
        assert check_success(reply) == {
            "success": True,
            "accepted": 1,
            "duplicates": 0,
            "rejected": [],
        }
        [event] = appended.records(EVENTS_TOPIC)
        check_stored(event, kind, item)
        assert appended.records(DEAD_LETTERS_TOPIC) == []
    else:
        error = check_error(reply)
        assert reply.status_code == 400
        assert error["code"] == code
        assert appended.nothing()


# -- property: requests refused as a whole ----------------------------------------------------


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


#: fault → (expected status, expected code)
FAULTS: dict[str, tuple[int, str]] = {
    "wrong_key": (401, "invalid_write_key"),
    "no_key": (401, "missing_write_key"),
    "non_ascii_basic": (401, "invalid_write_key"),
    "non_utf8_basic": (401, "invalid_write_key"),
    "not_base64_basic": (401, "invalid_write_key"),
    "bearer": (401, "invalid_write_key"),
    "long_key": (401, "invalid_write_key"),
    "key_of_wrong_type": (401, "missing_write_key"),
    "bad_context": (400, "invalid_batch"),
    "bad_integrations": (400, "invalid_batch"),
    "batch_not_list": (400, "invalid_batch"),
    "too_many": (400, "batch_too_large"),
    "truncated_json": (400, "invalid_json"),
    "trailing_garbage": (400, "invalid_json"),
    "invalid_utf8": (400, "invalid_json"),
    "overlong_utf8": (400, "invalid_json"),
    "encoded_surrogate": (400, "invalid_json"),
    "lone_surrogate_escape": (400, "invalid_json"),
    "nan": (400, "invalid_json"),
    "infinity": (400, "invalid_json"),
    "huge_float": (400, "invalid_json"),
    "huge_int": (400, "invalid_json"),
    "deep": (400, "invalid_json"),
    "xml": (415, "unsupported_media_type"),
    "form": (415, "unsupported_media_type"),
    "latin1": (415, "unsupported_charset"),
    "brotli": (415, "unsupported_encoding"),
    "deflate": (415, "unsupported_encoding"),
    "not_gzip": (400, "invalid_gzip"),
    "truncated_gzip": (400, "invalid_gzip"),
    "too_big": (413, "request_too_large"),
    "gzip_too_big": (413, "request_too_large"),
}


def break_request(  # noqa: PLR0912 (one branch per fault)
    fault: str, payload: dict[str, Any], key: str, noise: bytes
) -> tuple[bytes, dict[str, Any]]:
    """A request carrying ``payload`` that is wrong as a whole in the way ``fault`` says."""
    headers: dict[str, Any] = {"Content-Type": "application/json", "Authorization": basic(key)}
    if fault == "bad_context":
        payload = {**payload, "context": "web"}
    elif fault == "bad_integrations":
        payload = {**payload, "integrations": [True]}
    elif fault == "batch_not_list":
        payload = {**payload, "batch": dict(enumerate(payload["batch"]))}
    elif fault == "too_many":
        payload = {**payload, "batch": payload["batch"] + [0] * 2501}
    elif fault == "key_of_wrong_type":
        payload = {**payload, "writeKey": [key]}
    body = json.dumps(payload).encode()
    printable = bytes(b for b in noise if b >= 0x20 and b != 0x7F)
    auth = {
        "wrong_key": basic("wk_" + noise.hex()),
        "non_ascii_basic": b"Basic " + printable + b"\xe9==",
        "non_utf8_basic": "Basic " + base64.b64encode(b"\xff\xfe" + noise + b":").decode(),
        "not_base64_basic": "Basic !!" + noise.hex() + "!!",
        "bearer": "Bearer " + key,
        "long_key": basic(key * 20),
    }
    if fault in auth:
        headers["Authorization"] = auth[fault]
    elif fault in ("no_key", "key_of_wrong_type"):
        del headers["Authorization"]
    splice = {
        "invalid_utf8": b'"\xff' + noise + b'"',
        "overlong_utf8": b'"\xc0\xaf"',
        "encoded_surrogate": b'"\xed\xa0\x80"',
        "lone_surrogate_escape": b'"\\ud800x"',
        "nan": b"NaN",
        "infinity": b"-Infinity",
        "huge_float": b"1e400",
        "huge_int": b"1" + b"0" * 5000,
        "deep": _deep(10_000),
    }
    if fault in splice:
        body = body[:-1] + b', "x_bad": ' + splice[fault] + b"}"
    elif fault == "truncated_json":
        body = body[: -1 - len(noise) % max(1, len(body) - 1)]
    elif fault == "trailing_garbage":
        body = body + b"}x" + noise
    elif fault == "xml":
        headers["Content-Type"] = "application/xml"
    elif fault == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif fault == "latin1":
        headers["Content-Type"] = "application/json; charset=ISO-8859-1"
    elif fault in ("brotli", "deflate"):
        headers["Content-Encoding"] = "br" if fault == "brotli" else "deflate"
    elif fault == "not_gzip":
        headers["Content-Encoding"] = "gzip"
    elif fault == "truncated_gzip":
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)[:-9]
    elif fault == "too_big":
        body = body[:-1] + b" " * (MAX_REQUEST_BYTES - len(body) + 1) + b"}"
    elif fault == "gzip_too_big":
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body[:-1] + b" " * MAX_REQUEST_BYTES + b"}")
    return body, headers


@settings(FUZZ, max_examples=120)
@given(
    batch=st.lists(entries(single=False), min_size=1, max_size=6),
    fault=st.sampled_from(sorted(FAULTS)),
    noise=st.binary(max_size=8),
)
def test_requests_refused_as_a_whole_store_nothing(
    fuzz: Fuzz, batch: list[tuple[str, Any, str | None]], fault: str, noise: bytes
) -> None:
    run = uuid.uuid4().hex
    payload = {"batch": [mark(item, run, i) for i, (_, item, _) in enumerate(batch)]}
    appended = Appended(fuzz.runtime.eventlog)
    body, headers = break_request(fault, payload, fuzz.boot.write_key, noise)

    reply = post(fuzz.client, "/v1/batch", body, headers)

    status, code = FAULTS[fault]
    error = check_error(reply)
    assert (reply.status_code, error["code"]) == (status, code)
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert appended.nothing()

    # The refusal left no trace, not even dedupe keys: the same batch, sent right, is new.
    body, headers = encode(payload, "json", fuzz.boot.write_key)
    retry = check_success(post(fuzz.client, "/v1/batch", body, headers))
    valid = sum(1 for _, _, c in batch if c is None)
    assert (retry["accepted"], retry["duplicates"]) == (valid, 0)
    assert len(appended.records(EVENTS_TOPIC)) == valid


# -- property: anything at all --------------------------------------------------------------

FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "messageId",
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
    "batch",
)


class _Key:
    """Stands for the real write key, which strategies cannot know."""

    def __repr__(self) -> str:
        return "KEY"


KEY = _Key()
RAW_BODIES = (
    b"",
    b" \n\t",
    b"null",
    b"[]",
    b"{}",
    b'""',
    b"NaN",
    b"Infinity",
    b"1e400",
    b"-0",
    b"\xef\xbb\xbf{}",
    b"\x00",
    b'{"batch": [NaN]}',
    b'{"batch": null}',
    b'{"batch": [null, [], {}, 1, "x", true]}',
    b'{"userId": "u", "event": "E", "userId": null}',
    b'{"userId": "\\ud800", "event": "E"}',
    b'{"userId": "\\udfff\\ud800", "event": "E"}',
    b'{"\\ud800": 1}',
    b'{"userId": "\xff\xfe", "event": "E"}',
    b'{"userId": "\xed\xb2\x80", "event": "E"}',
    b'{"userId": 1' + b"0" * 4400 + b', "event": "E"}',
    b'{"userId": 1e309, "event": "E"}',
    b'{"userId": "u", "event": "E", "properties": ' + _deep(990) + b"}",
    b'{"batch": ' + _deep(100_000) + b"}",
    b'{"userId": "u", "event": "E"' + b", " * 1000 + b"}",
    b'{"userId": "u", "event": "E", "timestamp": "0001-01-01T00:00:00+00:01"}',
    b'{"userId": "u", "event": "E", "timestamp": "9999-12-31T23:59:59+00:00",'
    b' "sentAt": "0001-01-01T00:00:00"}',
    b'{"userId": "u", "event": "E", "timestamp": "0001-01-01T00:00:00Z",'
    b' "sentAt": "0001-01-01T00:00:01Z"}',
)
wild_objects = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), keys),
    st.one_of(json_values, st.just(KEY), st.lists(json_values, max_size=3)),
    max_size=8,
)
wild_payloads = st.one_of(
    json_values,
    wild_objects,
    st.builds(lambda items: {"batch": items}, st.lists(wild_objects | json_values, max_size=5)),
)
wild_bodies = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("json"), entries(single=True).map(lambda entry: entry[1]), st.booleans()),
    st.tuples(
        st.just("json"),
        st.lists(entries(single=False), max_size=5).map(
            lambda batch: {"batch": [item for _, item, _ in batch]}
        ),
        st.booleans(),
    ),
    st.tuples(st.just("raw"), st.sampled_from(RAW_BODIES)),
    st.tuples(st.just("json"), wild_payloads, st.booleans()),
    st.tuples(
        st.just("mangled"),
        wild_payloads,
        st.booleans(),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=4),
    ),
)


def _resolve(value: Any, key: str) -> Any:
    if value is KEY:
        return key
    if isinstance(value, dict):
        return {k: _resolve(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, key) for v in value]
    return value


def build_body(spec: tuple[Any, ...], key: str) -> bytes:
    """The body a ``wild_bodies`` example describes, once the write key is known."""
    if spec[0] in ("bytes", "raw"):
        return bytes(spec[1])
    data = json.dumps(_resolve(spec[1], key), ensure_ascii=spec[2]).encode()
    if spec[0] == "json":
        return data
    at = spec[3] % (len(data) + 1)
    return data[:at] + spec[4] + data[at + 1 :]


latin1_text = st.text(  # what an HTTP header can carry: latin-1 without control characters
    alphabet=st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=30
)
ODD_CONTENT_TYPES = (
    "",
    "text/plain;charset=UTF-8",
    'APPLICATION/JSON; CHARSET="utf8"',
    "application/json; charset",
    "application/json;;; charset=utf-8;",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "*/*",
    ";",
)
#: mostly acceptable, so that bodies get looked at, sometimes odd
content_types = st.one_of(
    st.sampled_from([None, "application/json", "text/plain"]),
    st.sampled_from([None, "application/json", "text/plain"]),
    st.sampled_from(ODD_CONTENT_TYPES),
    latin1_text,
)
compressions = st.sampled_from(
    ["none", "none", "none", "gzip", "gzip", "truncated", "unlabelled", "odd_label"]
)
odd_encodings = st.one_of(
    st.sampled_from(["", "identity", "GZIP", " gzip ", "br", "deflate", "gzip, br"]),
    latin1_text,
)
authorizations = st.one_of(
    st.sampled_from(["key", "key", "key", "none", "key_password", "key_no_colon", "lowercase"]),
    st.tuples(st.just("basic_b64"), st.binary(max_size=40)),
    st.tuples(st.just("basic_raw"), st.binary(max_size=40)),
    st.tuples(st.just("raw"), latin1_text),
)


def authorization(choice: Any, key: str) -> bytes | str | None:
    if isinstance(choice, str):
        return {
            "none": None,
            "key": basic(key),
            "key_password": basic(key, "secret"),
            "key_no_colon": "Basic " + base64.b64encode(key.encode()).decode(),
            "lowercase": "basic " + base64.b64encode(f"{key}:".encode()).decode(),
        }[choice]
    mode, data = choice
    if mode == "basic_b64":
        return "Basic " + base64.b64encode(data).decode()
    if mode == "basic_raw":
        return b"Basic " + bytes(b for b in data if b >= 0x20 and b != 0x7F)
    return str(data)


@settings(FUZZ, max_examples=200)
@given(
    path=st.sampled_from(ALL_PATHS),
    body_spec=wild_bodies,
    wrapping=st.fixed_dictionaries(
        {
            "Content-Type": content_types,
            "Authorization": authorizations,
            "compression": compressions,
            "odd_encoding": odd_encodings,
        }
    ),
)
def test_anything_at_any_endpoint_gets_a_clean_answer(
    fuzz: Fuzz, path: str, body_spec: tuple[Any, ...], wrapping: dict[str, Any]
) -> None:
    body = build_body(body_spec, fuzz.boot.write_key)
    compression = wrapping["compression"]
    wrapping["Content-Encoding"] = {
        "gzip": "gzip",
        "truncated": "gzip",
        "odd_label": wrapping["odd_encoding"],
    }.get(compression)
    if compression in ("gzip", "truncated", "unlabelled"):
        body = gzip.compress(body)
        body = body[: len(body) // 2] if compression == "truncated" else body
    wrapping["Authorization"] = authorization(wrapping["Authorization"], fuzz.boot.write_key)
    headers: dict[str, Any] = {}
    for name in ("Content-Type", "Content-Encoding", "Authorization"):
        value = wrapping[name]
        if value is not None:
            headers[name] = value.encode("latin-1") if isinstance(value, str) else value
    appended = Appended(fuzz.runtime.eventlog)

    reply = post(fuzz.client, path, body, headers)

    if reply.status_code == 200:
        note("answer 200")
        answer = check_success(reply)
        stored = appended.records(EVENTS_TOPIC)
        dead = appended.records(DEAD_LETTERS_TOPIC)
        assert len(stored) == answer["accepted"] - answer["duplicates"]
        assert sorted(d["index"] for d in dead) == [r["index"] for r in answer["rejected"]]
        if path not in BATCH_PATHS:
            assert (answer["accepted"], answer["rejected"]) == (1, [])
        for event in stored:
            for field in ("timestamp", "receivedAt"):
                parse(event[field])
    else:
        error = check_error(reply)
        note(f"answer {reply.status_code} {error['code']}")
        assert appended.nothing()
