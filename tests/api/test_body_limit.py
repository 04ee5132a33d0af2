"""Request bodies of the API (outside the collector) are bounded before they are parsed:
a caller without a token cannot make the server read megabytes of JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from conftest import App
from helpers import basic, bearer, get_token

LIMIT = 1000


def assert_too_large(reply: object) -> None:
    assert reply.status_code == 413, reply.text  # type: ignore[attr-defined]
    assert reply.json() == {  # type: ignore[attr-defined]
        "code": "request_too_large",
        "message": f"request body larger than {LIMIT} bytes",
    }


def test_a_body_over_the_limit_is_refused_before_the_token_is_checked(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**{"server.max_body_bytes": LIMIT})
    big = json.dumps({"query": "select 1", "pad": "x" * LIMIT})
    assert_too_large(app.client.post("/v1/sql", content=big))  # no token: not even parsed
    assert_too_large(app.client.post("/v1/sql", content="{" * 5000))  # nor malformed

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(10):
            yield b" " * 200

    assert_too_large(app.client.post("/v1/sql", content=chunks()))
    # Under the limit the request goes on as before: the token is checked, then the body.
    assert app.client.post("/v1/sql", content=json.dumps({"query": "x"})).status_code == 401
    token = get_token(app.client, app.boot.client_id, app.boot.client_secret, "analytics:read")
    reply = app.client.post("/v1/sql", json={"query": "select 42 AS answer"}, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    assert_too_large(app.client.post("/v1/sql", content=big, headers=bearer(token)))


def test_the_collector_keeps_its_own_limits(make_app: Callable[..., App]) -> None:
    app = make_app(**{"server.max_body_bytes": LIMIT})
    batch = [{"type": "track", "userId": f"u-{i}", "event": "Bulk"} for i in range(50)]
    body = json.dumps({"batch": batch})
    assert len(body) > LIMIT
    reply = app.client.post(
        "/v1/batch",
        content=body,
        headers={"Content-Type": "application/json", **basic(app.boot.write_key)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 50
