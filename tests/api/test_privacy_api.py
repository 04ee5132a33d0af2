"""The privacy request API: validation, statuses, the archive's rules, the CLI's erase."""

from __future__ import annotations

import time
from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient

from auie.cli.main import cli
from auie.runtime import Bootstrap, Runtime
from helpers import basic, bearer, get_token
from pipeline import drain


def _token(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    return bearer(get_token(client, boot.client_id, boot.client_secret, "privacy:admin"))


def _wait(client: TestClient, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        state: dict[str, Any] = client.get(
            f"/v1/privacy/requests/{request_id}", headers=headers
        ).json()
        if state["status"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def test_a_request_must_name_somebody(client: TestClient, boot: Bootstrap) -> None:
    headers = _token(client, boot)
    for body in (
        {},
        {"userId": "  "},
        {"idType": "phone"},
        {"userId": "null"},
        {"anonymousId": "undefined"},
        {"idType": "Bad Type", "idValue": "x"},
    ):
        reply = client.post("/v1/privacy/erase", json=body, headers=headers)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["code"] == "invalid_subject"
    reply = client.post("/v1/privacy/export", json={"nickname": "x"}, headers=headers)
    assert reply.status_code in {422, 400}


def test_an_identifier_that_is_not_unicode_text_is_refused_at_once(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """A lone surrogate (valid JSON, not valid text) is a 400 when submitted, not a request
    that fails later with an encoding error (every JSON route of the API refuses it, naming
    the field; the CLI's subjects are checked by the privacy service itself)."""
    headers = {**_token(client, boot), "Content-Type": "application/json"}
    for path in ("/v1/privacy/export", "/v1/privacy/erase"):
        for body, field in (
            (r'{"userId": "\ud800"}', "userId"),
            (r'{"email": "a\udfffb@example.com"}', "email"),
            (r'{"userId": "u-1", "idType": "phone", "idValue": "+49\ud83d"}', "idValue"),
        ):
            reply = client.post(path, content=body, headers=headers)
            assert reply.status_code == 400, (path, body, reply.text)
            assert set(reply.json()) == {"code", "message"}
            assert reply.json()["code"] == "invalid_request"
            expected = f"body: {field}: the text has a lone surrogate"
            assert reply.json()["message"].startswith(expected)
    assert client.get("/v1/privacy/requests", headers=headers).json() == []
    assert runtime.audit.entries(None, action="privacy.export.requested") == []


def test_unknown_requests_and_the_archive_rules(client: TestClient, boot: Bootstrap) -> None:
    headers = _token(client, boot)
    assert client.get("/v1/privacy/requests/pr_nope", headers=headers).status_code == 404
    started = client.post("/v1/privacy/erase", json={"userId": "nobody-1"}, headers=headers)
    assert started.status_code == 202
    request_id = started.json()["requestId"]
    state = _wait(client, headers, request_id)
    assert state["status"] == "done"
    assert state["kind"] == "erasure"
    assert state["result"]["identifiers"] == 1
    reply = client.get(f"/v1/privacy/requests/{request_id}/archive", headers=headers)
    assert reply.status_code == 400
    assert reply.json()["code"] == "not_an_export"
    listed = client.get("/v1/privacy/requests", headers=headers).json()
    assert [r["requestId"] for r in listed] == [request_id]


def test_an_erased_person_is_gone_and_the_cli_erases_too(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    headers = _token(client, boot)
    batch = [
        {
            "type": "identify",
            "userId": "api-erase-1",
            "anonymousId": "api-anon-1",
            "traits": {"email": "api.erase@example.com"},
            "messageId": "m-1",
            "timestamp": "2024-05-01T10:00:00Z",
        },
        {
            "type": "track",
            "event": "X",
            "userId": "api-keep-2",
            "messageId": "m-2",
            "timestamp": "2024-05-01T10:01:00Z",
        },
        {
            "type": "track",
            "event": "X",
            "userId": "cli-erase-3",
            "messageId": "m-3",
            "timestamp": "2024-05-01T10:02:00Z",
        },
    ]
    assert (
        client.post("/v1/batch", json={"batch": batch}, headers=basic(boot.write_key)).status_code
        == 200
    )
    time.sleep(0.2)
    drain(runtime.processor())
    reader = bearer(get_token(client, boot.client_id, boot.client_secret, "profiles:read"))
    assert client.get("/v1/profiles/user_id/api-erase-1", headers=reader).status_code == 200
    started = client.post(
        "/v1/privacy/erase", json={"email": "API.Erase@example.com"}, headers=headers
    )
    state = _wait(client, headers, started.json()["requestId"])
    assert state["status"] == "done", state
    assert state["result"]["profileStore"]["identityNodes"] == 3
    assert state["result"]["lake"]["events"]["rows"] == 1
    assert client.get("/v1/profiles/user_id/api-erase-1", headers=reader).status_code == 404
    assert client.get("/v1/profiles/user_id/api-keep-2", headers=reader).status_code == 200
    assert runtime.privacy.is_suppressed(boot.workspace, "anonymous_id", "api-anon-1")

    result = CliRunner().invoke(
        cli,
        [
            "privacy",
            "erase",
            "--user-id",
            "cli-erase-3",
            "--yes",
            "--json",
            "--data-dir",
            str(runtime.settings.data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert client.get("/v1/profiles/user_id/cli-erase-3", headers=reader).status_code == 404
    assert client.get("/v1/profiles/user_id/api-keep-2", headers=reader).status_code == 200
    refused = CliRunner().invoke(
        cli,
        [
            "privacy",
            "erase",
            "--user-id",
            "api-keep-2",
            "--data-dir",
            str(runtime.settings.data_dir),
        ],
        input="n\n",
    )
    assert refused.exit_code == 1
    assert client.get("/v1/profiles/user_id/api-keep-2", headers=reader).status_code == 200
