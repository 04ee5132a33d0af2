"""``POST /v1/decide``'s fast path answers exactly like the full route.

Two real in-process apps on their own data directories: the normal one (with the fast
path) and one built without it. Every request, well-formed or not, must give the same
status and the same error body on both; well-formed decisions the same shape, logged
once, counted in the metrics under the route's template."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auie.api.fastpath import MAX_FAST_BODY
from auie.metrics import DECIDE_FAST_PATH
from auie.runtime import Runtime
from helpers import bearer, get_token, in_process_app, stored_events

ACTIONS = [{"id": "a", "features": {"kind": "x"}}, {"id": "b"}, {"id": "c"}]
GOOD = {"decisionPoint": "home", "userId": "u1", "context": {"d": "m"}, "actions": ACTIONS}


@dataclass
class Side:
    client: TestClient
    runtime: Runtime
    decide: dict[str, str]
    admin: dict[str, str]


def _side(path: Path, fast: bool) -> Iterator[Side]:
    with in_process_app(path, fast_paths=fast) as (client, runtime, boot):
        decide = bearer(get_token(client, boot.client_id, boot.client_secret, "decide"))
        admin = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
        yield Side(client, runtime, decide, admin)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    yield from _side(tmp_path_factory.mktemp("fast") / "data", fast=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    yield from _side(tmp_path_factory.mktemp("full") / "data", fast=False)


def _post(side: Side, case: dict[str, Any]) -> Any:
    headers = dict(case.get("headers", side.decide))
    if case.get("auth") == "admin":
        headers = dict(side.admin)
    elif case.get("auth") is not None:
        headers = {"Authorization": case["auth"]} if case["auth"] else {}
    content = case.get("content")
    if content is None:
        content = json.dumps(case.get("json", GOOD)).encode()
    headers.setdefault("Content-Type", "application/json")
    headers.update(case.get("extra_headers", {}))
    return side.client.post("/v1/decide", content=content, headers=headers)


CASES: dict[str, dict[str, Any]] = {
    "no token": {"auth": ""},
    "not a bearer token": {"auth": "Basic dXNlcjpwYXNz"},
    "tampered token": {"auth": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
    "token without decide": {"auth": "admin"},
    "not JSON": {"content": b"{not json"},
    "JSON array": {"json": [GOOD]},
    "no decision point": {"json": {k: v for k, v in GOOD.items() if k != "decisionPoint"}},
    "no identity": {"json": {k: v for k, v in GOOD.items() if k != "userId"}},
    "bad decision point name": {"json": {**GOOD, "decisionPoint": "no spaces allowed"}},
    "actions not a list": {"json": {**GOOD, "actions": {"id": "a"}}},
    "empty actions": {"json": {**GOOD, "actions": []}},
    "duplicate action ids": {"json": {**GOOD, "actions": [{"id": "a"}, {"id": "a"}]}},
    "unknown field": {"json": {**GOOD, "surprise": 1}},
    "slots out of range": {"json": {**GOOD, "slots": 0}},
    "text/plain": {"extra_headers": {"Content-Type": "text/plain"}},
    "gzip body": {
        "content": gzip.compress(json.dumps(GOOD).encode()),
        "extra_headers": {"Content-Encoding": "gzip"},
    },
    "oversized": {"json": {**GOOD, "context": {"blob": "x" * (MAX_FAST_BODY + 10)}}},
    # The fast path decodes strictly; what the route's model accepts by being lax (field
    # names in snake_case, numbers and booleans as strings) goes the full way.
    "snake_case field names": {
        "json": {"decision_point": "home", "user_id": "u2", "actions": ACTIONS}
    },
    "slots as a string": {"json": {**GOOD, "userId": "u3", "slots": "2"}},
    "deferActivation as a string": {"json": {**GOOD, "userId": "u4", "deferActivation": "no"}},
    "null features": {"json": {**GOOD, "actions": [{"id": "a", "features": None}]}},
}


def _fast_path_count(outcome: str) -> float:
    return DECIDE_FAST_PATH.labels(outcome)._value.get()


@pytest.mark.parametrize("name", list(CASES))
def test_fast_and_full_paths_answer_alike(fast: Side, full: Side, name: str) -> None:
    case = CASES[name]
    served = _fast_path_count("served")
    mine, theirs = _post(fast, case), _post(full, case)
    # Only a request the route would accept is answered by the fast path (duplicate ids
    # pass the model and fail in the decision service, whose error the fast path answers).
    fast_answered = name in {"duplicate action ids"}
    assert _fast_path_count("served") == served + fast_answered
    assert mine.status_code == theirs.status_code, (mine.text, theirs.text)
    if mine.status_code == 200:
        assert mine.json().keys() == theirs.json().keys()
    else:
        assert mine.json() == theirs.json()
        assert set(mine.json()) == {"code", "message"}
        for header in ("www-authenticate", "retry-after"):
            assert mine.headers.get(header) == theirs.headers.get(header)


def test_an_unexpected_error_in_the_fast_path_is_a_500_with_the_error_shape(
    fast: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    service = fast.client.app.state.decisions  # type: ignore[attr-defined]
    monkeypatch.setattr(service, "decide", broken)
    reply = _post(fast, {"json": GOOD})
    assert reply.status_code == 500
    assert reply.json() == {
        "code": "internal_error",
        "message": "internal error; the server log has details",
    }
    metrics = fast.client.get("/metrics").text
    assert 'auie_http_requests_total{method="POST",route="/v1/decide",status="500"}' in metrics


def test_a_fast_decision_is_logged_once_and_counted(fast: Side) -> None:
    before = len(stored_events(fast.runtime, "decisions"))
    served = _fast_path_count("served")
    reply = _post(fast, {"json": {**GOOD, "slots": 2, "excludedActions": ["a"]}})
    assert reply.status_code == 200, reply.text
    assert _fast_path_count("served") == served + 1
    body = reply.json()
    assert reply.headers["content-type"] == "application/json"
    assert set(body) == {"eventId", "actionId", "ranking", "policyVersion", "slots"}
    assert body["actionId"] != "a"
    assert sum(r["probability"] for r in body["ranking"]) == pytest.approx(1.0)
    assert len(body["slots"]) == 2
    logged = stored_events(fast.runtime, "decisions")
    assert len(logged) == before + 1
    assert [d["eventId"] for d in logged].count(body["eventId"]) == 1
    # The reward endpoint (full path) finds the decision the fast path made.
    rewarded = fast.client.post(
        f"/v1/decisions/{body['eventId']}/reward", json={"value": 1}, headers=fast.decide
    )
    assert rewarded.status_code == 200, rewarded.text
    metrics = fast.client.get("/metrics").text
    assert 'auie_http_requests_total{method="POST",route="/v1/decide",status="200"}' in metrics
