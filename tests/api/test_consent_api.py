"""The consent API (``/v1/privacy/consent``): what it accepts, what it refuses, and how it
is audited."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from auie.runtime import Bootstrap, Runtime
from helpers import REPO, bearer, get_token

URL = "/v1/privacy/consent/user_id/u-carl"


@pytest.fixture
def admin(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    """Headers with a privacy:admin token of the bootstrap workspace."""
    return bearer(get_token(client, boot.client_id, boot.client_secret, "privacy:admin"))


def test_a_statement_is_audited_under_the_documented_action(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    docs = (REPO / "docs" / "privacy.md").read_text()
    [documented] = re.findall(r"durable before the reply, audited as `([^`]+)`", docs)
    reply = client.put(URL, json={"analytics": False}, headers=admin)
    assert reply.status_code == 200, reply.text
    [entry] = runtime.audit.entries(None, action=documented)
    assert entry.target == reply.json()["messageId"]
    assert entry.details == {"purposes": ["analytics"]}
    assert "u-carl" not in str(entry.to_dict())


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "false", [], {}])
def test_purposes_must_be_json_booleans(
    client: TestClient, admin: dict[str, str], runtime: Runtime, value: object
) -> None:
    reply = client.put(URL, json={"analytics": True, "marketing": value}, headers=admin)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"}
    assert body["message"].startswith("marketing: "), body
    assert runtime.audit.entries(None, action="consent.recorded") == []  # nothing recorded


def test_a_statement_dated_in_the_future_is_refused(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    ahead = {"analytics": True, "timestamp": "2999-01-01T00:00:00Z"}
    reply = client.put(URL, json=ahead, headers=admin)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == "invalid_timestamp"
    assert "2999-01-01T00:00:00" in body["message"]
    assert "5 minutes" in body["message"]
    # Clock skew within the allowance is fine; null purposes leave the others unchanged.
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    accepted = {"analytics": True, "marketing": None, "timestamp": soon}
    assert client.put(URL, json=accepted, headers=admin).status_code == 200
    assert runtime.audit.entries(None, action="consent.recorded")[0].outcome == "ok"


def test_an_identifier_with_a_slash_is_stated_and_read(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Ids may hold "/" (the profile API reads them too): the route takes the rest of the
    path, escaped or not."""
    url = "/v1/privacy/consent/user_id/team%2Fa b"
    reply = client.put(url, json={"analytics": False}, headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json()["consent"] == {"analytics": False}
    # Read back once the processor has folded it; until then the id is named whole.
    shown = client.get(url, headers=admin)
    assert shown.json()["message"] == "no profile has user_id 'team/a b'"


@pytest.mark.parametrize(
    "path", ["user_id/undefined", "anonymous_id/null", "user_id/%20%20", f"user_id/{'x' * 513}"]
)
def test_a_statement_about_nobody_is_refused_not_acknowledged(
    client: TestClient, admin: dict[str, str], runtime: Runtime, path: str
) -> None:
    """A junk value links nobody: the processor would dead-letter the statement, so the
    API refuses it rather than answer "recorded" for a statement that takes no effect."""
    reply = client.put(f"/v1/privacy/consent/{path}", json={"analytics": False}, headers=admin)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_identifier"
    assert "identifies nobody" in reply.json()["message"]
    assert runtime.audit.entries(None, action="consent.recorded") == []


def test_a_statement_about_an_erased_identifier_is_refused(
    client: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    started = client.post("/v1/privacy/erase", json={"userId": "u-gone"}, headers=admin)
    assert started.status_code == 202, started.text
    url = f"/v1/privacy/requests/{started.json()['requestId']}"
    deadline = time.monotonic() + 60
    while client.get(url, headers=admin).json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runtime.privacy.is_suppressed(boot.workspace, "user_id", "u-gone")
    reply = client.put(
        "/v1/privacy/consent/user_id/%20u-gone", json={"analytics": True}, headers=admin
    )
    assert reply.status_code == 409, reply.text
    assert reply.json() == {
        "code": "identifier_erased",
        "message": "user_id 'u-gone' was erased: a statement about it would be dropped"
        " like its events",
    }
    assert runtime.audit.entries(None, action="consent.recorded") == []
    # Another person is unaffected.
    assert client.put(URL, json={"analytics": True}, headers=admin).status_code == 200


def test_an_impossible_identifier_type_is_a_bad_request_an_unseen_one_is_not_found(
    client: TestClient, admin: dict[str, str]
) -> None:
    for method in ("get", "put"):
        reply = client.request(
            method, "/v1/privacy/consent/User-Id/u-1", json={"analytics": True}, headers=admin
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_id_type"
        assert reply.json()["message"].startswith("'User-Id' is not an identifier type")
    # An external id type nobody has sent yet may still come: not found, not invalid.
    reply = client.put("/v1/privacy/consent/crm_id/c-1", json={"analytics": True}, headers=admin)
    assert reply.status_code == 404, reply.text
    assert reply.json()["message"] == "no profile has crm_id 'c-1'"
