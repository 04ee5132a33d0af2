"""The consent API (``/v1/privacy/consent``): what it accepts, what it refuses, and how it
is audited."""

from __future__ import annotations

import re

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
