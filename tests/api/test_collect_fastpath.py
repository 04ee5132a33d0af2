"""The collect routes' fast path answers exactly like the FastAPI routes.

Two real in-process apps on their own data directories, one with the fast path (as
``auie serve`` runs) and one without. Every request, good or bad, must give the same
status, body and error headers on both, store the same events, and count the same
metrics; the fast path must be the one that answered."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auie.api.fastpath import CollectFastPath
from auie.metrics import HTTP_REQUESTS, REQUESTS_REJECTED
from auie.runtime import Runtime
from helpers import basic, in_process_app, stored_events

EVENT = {"userId": "u-1", "event": "Signed Up", "properties": {"plan": "pro"}}
BATCH = {
    "batch": [{"type": "track", "messageId": "m-1", **EVENT}, {"type": "page", "userId": "u-1"}],
    "context": {"library": {"name": "analytics-python"}},
}


@dataclass
class Side:
    client: TestClient
    runtime: Runtime
    write_key: str


def _side(path: Path, fast: bool) -> Iterator[Side]:
    limits = {"max_request_bytes": 20_000}
    peer = ("203.0.113.9", 1)
    with in_process_app(path, fast_paths=fast, client=peer, collect=limits) as app:
        client, runtime, boot = app
        yield Side(client, runtime, boot.write_key)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    yield from _side(tmp_path_factory.mktemp("fast") / "data", fast=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    yield from _side(tmp_path_factory.mktemp("full") / "data", fast=False)


def _gzip(value: Any) -> bytes:
    return gzip.compress(json.dumps(value).encode())


CASES: dict[str, dict[str, Any]] = {
    "track": {"path": "/v1/track", "json": EVENT},
    "short track": {"path": "/v1/t", "json": {**EVENT, "messageId": "m-2"}},
    "batch with an invalid item": {
        "path": "/v1/batch",
        "json": {**BATCH, "batch": [*BATCH["batch"], {"type": "track", "userId": "u"}]},
    },
    "import": {"path": "/v1/import", "json": BATCH},
    "write key in the body, text/plain": {
        "path": "/v1/identify",
        "json": {"userId": "u-2", "traits": {"a": 1}, "writeKey": "{key}"},
        "auth": None,
        "headers": {"Content-Type": "text/plain"},
    },
    "gzip": {
        "path": "/v1/b",
        "content": _gzip(BATCH),
        "headers": {"Content-Encoding": "gzip"},
    },
    "gzip bomb": {
        "path": "/v1/b",
        "content": gzip.compress(b'{"batch": [' + b" " * 10_000_000 + b"]}"),
        "headers": {"Content-Encoding": "gzip"},
    },
    "unknown encoding": {"path": "/v1/track", "json": EVENT, "headers": {"Content-Encoding": "br"}},
    "no write key": {"path": "/v1/track", "json": EVENT, "auth": None},
    "unknown write key": {"path": "/v1/track", "json": EVENT, "auth": "nope"},
    "bearer instead of basic": {
        "path": "/v1/track",
        "json": EVENT,
        "headers": {"Authorization": "Bearer abc"},
    },
    "not JSON": {"path": "/v1/track", "content": b"{nope"},
    "JSON array": {"path": "/v1/batch", "json": [EVENT]},
    "invalid single event": {"path": "/v1/track", "json": {"userId": "u"}},
    "wrong content type": {
        "path": "/v1/track",
        "json": EVENT,
        "headers": {"Content-Type": "application/xml"},
    },
    "body over the limit": {"path": "/v1/track", "json": {**EVENT, "x": "y" * 30_000}},
    "batch not a list": {"path": "/v1/batch", "json": {"batch": {"a": 1}}},
}


def _post(side: Side, case: dict[str, Any]) -> Any:
    headers = {"Content-Type": "application/json", **case.get("headers", {})}
    auth = case.get("auth", side.write_key)
    if auth is not None and "Authorization" not in headers:
        headers.update(basic(auth))
    content = case.get("content")
    if content is None:
        content = json.dumps(case["json"]).replace("{key}", side.write_key).encode()
    return side.client.post(case["path"], content=content, headers=headers)


def _counted(path: str, status: int) -> float:
    return HTTP_REQUESTS.labels("POST", path, str(status))._value.get()


def _rejected() -> dict[str, float]:
    return {
        s.labels["code"]: s.value
        for s in REQUESTS_REJECTED.collect()[0].samples
        if s.name.endswith("_total")
    }


@pytest.mark.parametrize("name", list(CASES))
def test_fast_and_full_paths_answer_alike(
    fast: Side, full: Side, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    served: list[str] = []
    original = CollectFastPath.__call__

    async def spy(self: CollectFastPath, scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(CollectFastPath, "__call__", spy)
    stored_before = (len(stored_events(fast.runtime)), len(stored_events(full.runtime)))
    rejected_before = _rejected()
    mine = _post(fast, case)
    rejected_between = _rejected()
    theirs = _post(full, case)
    rejected_after = _rejected()
    assert served == [case["path"]]
    assert mine.status_code == theirs.status_code, (mine.text, theirs.text)
    assert mine.json() == theirs.json()
    if mine.status_code != 200:
        assert set(mine.json()) == {"code", "message"}
    for header in ("content-type", "www-authenticate", "retry-after"):
        assert mine.headers.get(header) == theirs.headers.get(header), header
    stored = (len(stored_events(fast.runtime)), len(stored_events(full.runtime)))
    assert stored[0] - stored_before[0] == stored[1] - stored_before[1]
    # Rejections are counted once per request, the same way on both paths.
    fast_delta = {k: v - rejected_before.get(k, 0) for k, v in rejected_between.items()}
    full_delta = {k: v - rejected_between.get(k, 0) for k, v in rejected_after.items()}
    assert {k: v for k, v in fast_delta.items() if v} == {k: v for k, v in full_delta.items() if v}


def test_the_fast_path_counts_requests_under_the_route(fast: Side) -> None:
    before = _counted("/v1/t", 200), _counted("/v1/t", 401)
    assert _post(fast, {"path": "/v1/t", "json": {**EVENT, "messageId": "m-9"}}).status_code == 200
    assert _post(fast, {"path": "/v1/t", "json": EVENT, "auth": None}).status_code == 401
    assert (_counted("/v1/t", 200), _counted("/v1/t", 401)) == (before[0] + 1, before[1] + 1)


def test_basic_credentials_with_a_password_are_accepted_like_the_sdks_send_them(
    fast: Side,
) -> None:
    token = base64.b64encode(f"{fast.write_key}:ignored".encode()).decode()
    reply = fast.client.post(
        "/v1/track",
        content=json.dumps({**EVENT, "messageId": "m-10"}).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 1
