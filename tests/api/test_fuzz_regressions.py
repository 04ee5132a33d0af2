"""What schemathesis found (tests/e2e/test_schemathesis.py), each pinned down by a plain test:
the OpenAPI document's validation errors, a sequence number beyond SQLite's integers, the
SQL engine after new data, and decision points fed huge numbers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from auie.runtime import Bootstrap, Runtime
from helpers import bearer, get_token
from pipeline import drain, log_record


def _admin(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    return bearer(get_token(client, boot.client_id, boot.client_secret))


def test_validation_errors_are_documented_as_400_not_422(client: TestClient) -> None:
    """The app answers failed validation with 400 ``Error`` (never FastAPI's 422)."""
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, f"{method} {path}"
    audit = document["paths"]["/v1/admin/audit"]["get"]["responses"]["400"]
    assert audit["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_an_audit_position_beyond_sqlite_integers_is_a_400(
    client: TestClient, boot: Bootstrap
) -> None:
    admin = _admin(client, boot)
    reply = client.get("/v1/admin/audit", params={"after": 2**80}, headers=admin)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_request"
    reply = client.get("/v1/admin/audit", params={"after": 2**63 - 1}, headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json() == []


def _add_events(runtime: Runtime, workspace: str, count: int) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    events = [
        {
            "messageId": str(uuid.uuid4()),
            "type": "track",
            "event": "Fuzzed",
            "userId": f"u-{i}",
            "timestamp": now,
            "receivedAt": now,
            "properties": {},
            "context": {},
        }
        for i in range(count)
    ]
    runtime.eventlog.append([log_record(event, workspace) for event in events])
    drain(runtime.processor())


def test_sql_keeps_answering_as_new_data_arrives(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    """Empty lake (a placeholder table), then data (a view), then more data (the view is
    replaced): each refresh used to drop a view as a table, a 500 for every query."""
    admin = _admin(client, boot)
    query = {"query": "select count(*) as n from events"}
    totals = []
    for count in (0, 3, 2, 1):
        if count:
            _add_events(runtime, boot.workspace, count)
        reply = client.post("/v1/sql", json=query, headers=admin)
        assert reply.status_code == 200, reply.text
        totals.append(reply.json()["rows"][0][0])
        assert client.get("/v1/sql/tables", headers=admin).status_code == 200
    assert totals == [0, 3, 5, 6]


def _decide(client: TestClient, admin: dict[str, str], point: str, **extra: Any) -> Any:
    body = {
        "decisionPoint": point,
        "userId": "u-1",
        "context": {"x": 1.0},
        "actions": [{"id": "a", "features": {"f": 1.0}}, {"id": "b"}],
        **extra,
    }
    reply = client.post("/v1/decide", json=body, headers=admin)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_huge_numbers_do_not_break_a_decision_point(client: TestClient, boot: Bootstrap) -> None:
    """Feature values near the float limit once made the ridge matrices infinite or singular
    (a 500 on the reward, then on every decision of the point); rewards are bounded."""
    admin = _admin(client, boot)
    huge: list[Any] = [1e300, -1e300, 1.7e308, 10**400, -(10**400)]
    for round_ in range(3):
        for value in huge:
            decision = _decide(
                client,
                admin,
                "huge",
                context={"x": value, "nested": {"y": value}},
                actions=[
                    {"id": "a", "features": {"f": value, "g": -1e6}},
                    {"id": "b", "features": {"f": 1e6}},
                ],
            )
            reply = client.post(
                f"/v1/decisions/{decision['eventId']}/reward",
                json={"value": float(round_ % 2)},
                headers=admin,
            )
            assert reply.status_code == 200, reply.text
    decision = _decide(client, admin, "huge")
    assert {r["id"] for r in decision["ranking"]} == {"a", "b"}
    assert all(0 <= r["probability"] <= 1 for r in decision["ranking"])
    for value in (1e300, -1e300, 1e6 + 1):
        event = _decide(client, admin, "huge")["eventId"]
        reply = client.post(f"/v1/decisions/{event}/reward", json={"value": value}, headers=admin)
        assert reply.status_code == 400, reply.text
        assert set(reply.json()) == {"code", "message"}
    config = {"actions": [{"id": "a"}], "reward": {"default": 1e300}}
    reply = client.put("/v1/decision-points/huge", json=config, headers=admin)
    assert reply.status_code == 400, reply.text
