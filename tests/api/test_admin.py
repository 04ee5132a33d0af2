"""Workspace administration over HTTP (``/v1/admin``): shapes, statuses, validation, and
isolation between workspaces."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from auie.errors import InvalidRequest
from auie.eventlog import EVENTS_TOPIC
from auie.ids import utcnow
from auie.runtime import Bootstrap, Runtime
from conftest import App
from helpers import basic, bearer, get_token

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
EVENT = {"userId": "u-1", "event": "Signed Up"}


@pytest.fixture
def admin(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    """Headers with an admin token of the bootstrap workspace."""
    return bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))


def track(client: TestClient, write_key: str, body: dict[str, Any] = EVENT) -> Any:
    return client.post(
        "/v1/track",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **basic(write_key)},
    )


def assert_timestamp(value: str | None, *, recent: bool = True) -> None:
    assert value is not None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), f"{value} is not a UTC timestamp"
    if recent:
        assert abs(utcnow() - parsed) < timedelta(minutes=1)


def assert_error(reply: Any, status: int, code: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"}
    assert body["message"]
    if code is not None:
        assert body["code"] == code


def assert_camel(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            assert_camel(item)
    elif isinstance(value, dict):
        for key in value:
            assert CAMEL.match(key), f"{key!r} is not camelCase"


# -- the endpoints, one by one ------------------------------------------------------------


def test_workspace(client: TestClient, boot: Bootstrap, admin: dict[str, str]) -> None:
    reply = client.get("/v1/admin/workspace", headers=admin)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"id", "name", "createdAt"}
    assert body["id"] == boot.workspace
    assert body["name"] == "default"
    assert_timestamp(body["createdAt"])


def test_sources_list_and_create(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    [default] = client.get("/v1/admin/sources", headers=admin).json()
    assert default["id"] == boot.source
    assert default["kind"] == "web"

    reply = client.post("/v1/admin/sources", json={"name": "iOS app", "kind": "ios"}, headers=admin)
    assert reply.status_code == 201
    created = reply.json()
    assert set(created) == {"id", "workspaceId", "name", "kind", "createdAt"}
    assert created["id"].startswith("src_")
    assert created["workspaceId"] == boot.workspace
    assert (created["name"], created["kind"]) == ("iOS app", "ios")
    assert_timestamp(created["createdAt"])

    web = client.post("/v1/admin/sources", json={"name": "site"}, headers=admin).json()
    assert web["kind"] == "web"

    listed = client.get("/v1/admin/sources", headers=admin).json()
    assert [s["id"] for s in listed] == [boot.source, created["id"], web["id"]]
    assert listed[1] == created
    for source in listed:
        assert_camel(source)
        assert_timestamp(source["createdAt"])


def test_keys_create_list_and_revoke(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**{"collect.write_key_cache_seconds": 0})
    client, boot = app.client, app.boot
    headers = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
    [bootstrap_key] = client.get("/v1/admin/keys", headers=headers).json()
    assert bootstrap_key["sourceId"] == boot.source
    assert boot.write_key.startswith(bootstrap_key["prefix"])

    reply = client.post(f"/v1/admin/sources/{boot.source}/keys", headers=headers)
    assert reply.status_code == 201
    new = reply.json()
    assert set(new) == {
        "id",
        "sourceId",
        "workspaceId",
        "prefix",
        "createdAt",
        "revokedAt",
        "key",
    }
    assert new["id"].startswith("wk_")
    assert (new["sourceId"], new["workspaceId"]) == (boot.source, boot.workspace)
    assert new["key"].startswith(new["prefix"])
    assert len(new["key"]) >= 32
    assert new["revokedAt"] is None
    assert_timestamp(new["createdAt"])

    # The new key works at once, next to the old one.
    assert track(client, new["key"]).status_code == 200
    assert track(client, boot.write_key).status_code == 200

    listed = client.get("/v1/admin/keys", headers=headers).json()
    assert [k["id"] for k in listed] == [bootstrap_key["id"], new["id"]]
    assert all("key" not in k for k in listed), "a listing never shows a key"
    assert new["key"] not in json.dumps(listed)
    assert (
        client.get("/v1/admin/keys", params={"source_id": boot.source}, headers=headers).json()
        == listed
    )
    unknown = client.get("/v1/admin/keys", params={"source_id": "src_none"}, headers=headers)
    assert_error(unknown, 404, "not_found")  # as any id that is not the workspace's

    reply = client.delete(f"/v1/admin/keys/{new['id']}", headers=headers)
    assert reply.status_code == 204
    assert reply.content == b""
    stopped = track(client, new["key"])
    assert stopped.status_code == 401
    assert stopped.json()["code"] == "invalid_write_key"
    assert track(client, boot.write_key).status_code == 200, "other keys keep working"

    revoked = {k["id"]: k for k in client.get("/v1/admin/keys", headers=headers).json()}
    assert_timestamp(revoked[new["id"]]["revokedAt"])
    assert revoked[bootstrap_key["id"]]["revokedAt"] is None
    # Revoking twice, or a key that never existed, is a 404.
    assert_error(client.delete(f"/v1/admin/keys/{new['id']}", headers=headers), 404, "not_found")
    assert_error(client.delete("/v1/admin/keys/wk_nothing", headers=headers), 404, "not_found")


def test_key_for_a_source_that_does_not_exist(client: TestClient, admin: dict[str, str]) -> None:
    assert_error(client.post("/v1/admin/sources/src_nope/keys", headers=admin), 404, "not_found")


def test_a_clients_scopes_can_be_changed(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    new = client.post(
        "/v1/admin/clients", json={"name": "dash", "scopes": ["profiles:read"]}, headers=admin
    ).json()
    reply = client.patch(
        f"/v1/admin/clients/{new['id']}",
        json={"scopes": ["profiles:read", "pii:read"]},
        headers=admin,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["scopes"] == ["profiles:read", "pii:read"]
    assert "secret" not in reply.json()
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(new["id"], new["secret"]),
    )
    assert token.json()["scope"] == "profiles:read pii:read"
    audit = client.get("/v1/admin/audit", headers=admin).json()
    assert any(
        e["action"] == "client.scopes_changed" and e["target"] == new["id"] for e in audit
    ), audit
    # Unknown scope, no scope, a wrong body: refused, nothing changed.
    for body, status, code in (
        ({"scopes": ["profiles:read", "root"]}, 400, "invalid_scope"),
        ({"scopes": []}, 400, "invalid_request"),
        ({"scopes": "pii:read"}, 400, "invalid_request"),
    ):
        assert_error(
            client.patch(f"/v1/admin/clients/{new['id']}", json=body, headers=admin), status, code
        )
    listed = {c["id"]: c for c in client.get("/v1/admin/clients", headers=admin).json()}
    assert listed[new["id"]]["scopes"] == ["profiles:read", "pii:read"]
    # A revoked client's scopes cannot change; an unknown one is not found.
    client.delete(f"/v1/admin/clients/{new['id']}", headers=admin)
    for target in (new["id"], "cl_nope"):
        reply = client.patch(
            f"/v1/admin/clients/{target}", json={"scopes": ["decide"]}, headers=admin
        )
        assert_error(reply, 404, "not_found")


def test_clients_create_list_and_revoke(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    [bootstrap_client] = client.get("/v1/admin/clients", headers=admin).json()
    assert bootstrap_client["id"] == boot.client_id
    assert bootstrap_client["name"] == "admin"
    assert "admin" in bootstrap_client["scopes"]
    assert "secret" not in bootstrap_client

    reply = client.post(
        "/v1/admin/clients",
        json={"name": "pipeline", "scopes": ["ingest", "decide"]},
        headers=admin,
    )
    assert reply.status_code == 201
    new = reply.json()
    assert set(new) == {"id", "workspaceId", "name", "scopes", "createdAt", "revokedAt", "secret"}
    assert new["id"].startswith("cl_")
    assert new["workspaceId"] == boot.workspace
    assert new["scopes"] == ["ingest", "decide"]
    assert new["revokedAt"] is None
    assert_timestamp(new["createdAt"])

    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(new["id"], new["secret"]),
    )
    assert token.status_code == 200
    assert token.json()["scope"] == "ingest decide"
    # The new client cannot administer: it has no admin scope.
    reply = client.get("/v1/admin/clients", headers=bearer(token.json()["access_token"]))
    assert_error(reply, 403, "insufficient_scope")

    listed = client.get("/v1/admin/clients", headers=admin).json()
    assert [c["id"] for c in listed] == [boot.client_id, new["id"]]
    assert all("secret" not in c for c in listed)
    assert new["secret"] not in json.dumps(listed)
    for item in listed:
        assert_camel(item)
        assert_timestamp(item["createdAt"])

    reply = client.delete(f"/v1/admin/clients/{new['id']}", headers=admin)
    assert reply.status_code == 204
    assert reply.content == b""
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(new["id"], new["secret"]),
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_client"
    [_, revoked] = client.get("/v1/admin/clients", headers=admin).json()
    assert_timestamp(revoked["revokedAt"])
    assert_error(client.delete(f"/v1/admin/clients/{new['id']}", headers=admin), 404, "not_found")
    assert_error(client.delete("/v1/admin/clients/cl_nothing", headers=admin), 404, "not_found")


def test_scopes_may_be_space_separated_in_one_item(
    client: TestClient, admin: dict[str, str]
) -> None:
    reply = client.post(
        "/v1/admin/clients", json={"name": "x", "scopes": ["admin ingest"]}, headers=admin
    )
    assert reply.status_code == 201
    assert reply.json()["scopes"] == ["ingest", "admin"]


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("/v1/admin/sources", {}, "invalid_request"),
        ("/v1/admin/sources", {"name": ""}, "invalid_request"),
        ("/v1/admin/sources", {"name": "x" * 101}, "invalid_request"),
        ("/v1/admin/sources", {"name": 5}, "invalid_request"),
        ("/v1/admin/sources", {"name": "-leading dash"}, "invalid_name"),
        ("/v1/admin/sources", {"name": "semi;colon"}, "invalid_name"),
        ("/v1/admin/sources", {"name": "tv", "kind": "fridge"}, "invalid_kind"),
        ("/v1/admin/sources", {"name": "tv", "colour": "red"}, "invalid_request"),
        ("/v1/admin/sources", ["tv"], "invalid_request"),
        ("/v1/admin/sources", b"{not json", "invalid_request"),
        ("/v1/admin/clients", {"name": "x"}, "invalid_request"),
        ("/v1/admin/clients", {"name": "x", "scopes": []}, "invalid_request"),
        ("/v1/admin/clients", {"name": "x", "scopes": "admin"}, "invalid_request"),
        ("/v1/admin/clients", {"name": "", "scopes": ["admin"]}, "invalid_request"),
        ("/v1/admin/clients", {"name": "x", "scopes": ["root"]}, "invalid_scope"),
        ("/v1/admin/clients", {"name": "x", "scopes": [" "]}, "invalid_scope"),
        ("/v1/admin/clients", {"name": "x", "scopes": ["admin"], "secret": "s"}, "invalid_request"),
    ],
)
def test_validation_errors_are_400_with_code_and_message(
    client: TestClient,
    boot: Bootstrap,
    runtime: Runtime,
    admin: dict[str, str],
    case: tuple[str, Any, str],
) -> None:
    path, body, code = case
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = client.post(
        path, content=content, headers={**admin, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, code)
    # Nothing was created.
    assert len(runtime.tenancy.list_sources(boot.workspace)) == 1
    assert len(runtime.clients.list(boot.workspace)) == 1


def admin_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) the app serves under /v1/admin, with made-up ids."""
    routes = []
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if route.path and route.path.startswith("/v1/admin"):
            for method in sorted(route.methods or ()):
                path = route.path.replace("{source_id}", "src_x").replace("{key_id}", "wk_x")
                routes.append((method, path.replace("{client_id}", "cl_x")))
    return routes


def test_every_admin_route_needs_an_admin_token(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    routes = admin_routes(client)
    assert len(routes) == 11  # 10 tenancy routes and the audit log
    sdk = runtime.clients.create(boot.workspace, "sdk", ["ingest", "profiles:read"])
    ingest_token = bearer(get_token(client, sdk.client.id, sdk.secret))
    for method, path in routes:
        body = {"json": {"name": "x", "scopes": ["admin"]}} if method == "POST" else {}
        reply = client.request(method, path, **body)
        assert_error(reply, 401, "missing_token")
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="auie"', path
        assert_error(client.request(method, path, headers=ingest_token, **body), 403)
    assert len(runtime.clients.list(boot.workspace)) == 2
    assert len(runtime.tenancy.list_sources(boot.workspace)) == 1


# -- isolation between workspaces -----------------------------------------------------------


@dataclass
class Tenant:
    workspace: str
    source: str
    key_id: str
    write_key: str
    client_id: str
    headers: dict[str, str]


def second_tenant(client: TestClient, runtime: Runtime) -> Tenant:
    """Workspace B with its own admin client, made the way an operator would (runtime)."""
    workspace = runtime.tenancy.create_workspace("tenant-b")
    admin = runtime.clients.create(workspace.id, "admin-b", ["admin"])
    headers = bearer(get_token(client, admin.client.id, admin.secret))
    source = client.post("/v1/admin/sources", json={"name": "b-web"}, headers=headers).json()
    key = client.post(f"/v1/admin/sources/{source['id']}/keys", headers=headers).json()
    return Tenant(workspace.id, source["id"], key["id"], key["key"], admin.client.id, headers)


def first_tenant(client: TestClient, boot: Bootstrap, runtime: Runtime) -> Tenant:
    [key] = runtime.tenancy.list_write_keys(boot.workspace)
    headers = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
    return Tenant(boot.workspace, boot.source, key.id, boot.write_key, boot.client_id, headers)


def test_a_workspace_never_sees_another_workspaces_records(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    a = first_tenant(client, boot, runtime)
    b = second_tenant(client, runtime)
    for me, other in ((a, b), (b, a)):
        assert client.get("/v1/admin/workspace", headers=me.headers).json()["id"] == me.workspace
        sources = client.get("/v1/admin/sources", headers=me.headers).json()
        assert [s["id"] for s in sources] == [me.source]
        assert {s["workspaceId"] for s in sources} == {me.workspace}
        keys = client.get("/v1/admin/keys", headers=me.headers).json()
        assert [k["id"] for k in keys] == [me.key_id]
        other_source_keys = client.get(
            "/v1/admin/keys", params={"source_id": other.source}, headers=me.headers
        )
        assert_error(other_source_keys, 404, "not_found")  # not "no keys": no such source
        clients = client.get("/v1/admin/clients", headers=me.headers).json()
        assert [c["id"] for c in clients] == [me.client_id]
        listings = json.dumps([sources, keys, clients])
        for foreign in (other.workspace, other.source, other.key_id, other.client_id):
            assert foreign not in listings


def test_a_workspace_cannot_touch_another_workspaces_records(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**{"collect.write_key_cache_seconds": 0})
    client, runtime = app.client, app.runtime
    a = first_tenant(client, app.boot, runtime)
    b = second_tenant(client, runtime)
    for attempt in (
        client.post(f"/v1/admin/sources/{a.source}/keys", headers=b.headers),
        client.delete(f"/v1/admin/keys/{a.key_id}", headers=b.headers),
        client.delete(f"/v1/admin/clients/{a.client_id}", headers=b.headers),
    ):
        assert_error(attempt, 404, "not_found")
        assert a.workspace not in attempt.text
    # A's records are untouched: its key still ingests, its client still gets tokens,
    # and no key was added to its source.
    assert track(client, a.write_key).status_code == 200
    assert get_token(client, app.boot.client_id, app.boot.client_secret)
    assert [k.id for k in runtime.tenancy.list_write_keys(a.workspace)] == [a.key_id]
    assert [c.revoked_at for c in runtime.clients.list(a.workspace)] == [None]

    # Events sent with B's key are B's.
    assert track(client, b.write_key, {"userId": "u-b", "event": "B"}).status_code == 200
    owners = {}
    log = runtime.eventlog
    for part, start in log.begin_offsets(EVENTS_TOPIC).items():
        for record in log.read(EVENTS_TOPIC, part, start, 100):
            owners[json.loads(record.value)["userId"]] = record.headers["workspaceId"]
    assert owners == {"u-1": a.workspace, "u-b": b.workspace}

    # And B can still manage its own.
    assert client.delete(f"/v1/admin/keys/{b.key_id}", headers=b.headers).status_code == 204
    assert track(client, b.write_key).status_code == 401
    assert track(client, a.write_key).status_code == 200


def test_admin_actions_and_tokens_are_audited_without_secrets(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    token = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
    source = client.post("/v1/admin/sources", json={"name": "ios"}, headers=token).json()
    key = client.post(f"/v1/admin/sources/{source['id']}/keys", headers=token).json()
    client.delete(f"/v1/admin/keys/{key['id']}", headers=token)
    client.get("/v1/admin/workspace", headers=bearer("garbage"))
    entries = client.get("/v1/admin/audit", headers=token).json()
    actions = [e["action"] for e in entries]
    assert actions[:1] == ["token.issued"]
    for expected in ("source.created", "write_key.created", "write_key.revoked"):
        assert expected in actions
    # A failed authentication belongs to no workspace: operators see it with the CLI.
    [failure] = runtime.audit.entries(None, action="auth.failed")
    assert failure.details["code"] == "invalid_token"
    assert key["key"] not in str(entries)
    assert boot.client_secret not in str(entries)
    assert runtime.audit.verify() is None
    other = client.get("/v1/admin/audit?action=write_key.revoked", headers=token).json()
    assert [e["target"] for e in other] == [key["id"]]


def test_the_audit_log_refuses_edits(runtime: Runtime) -> None:
    import sqlalchemy

    runtime.audit.record("test.entry", actor="cli", target="x")
    with pytest.raises(sqlalchemy.exc.IntegrityError), runtime.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE audit_log SET actor = 'mallory'"))
    assert runtime.audit.verify() is None


def test_failed_authentication_audits_the_route_not_the_identifier(
    client: TestClient, runtime: Runtime
) -> None:
    """The concrete path of a refused request may name a person; the audit log keeps the
    route template."""
    for path in (
        "/v1/profiles/email/zed@example.com",
        "/v1/profiles/email/zed@example.com/events",
        "/v1/privacy/consent/user_id/u-zed",
    ):
        assert client.get(path).status_code == 401
    client.post("/oauth/token", data={"grant_type": "client_credentials"})
    failures = runtime.audit.entries(None, action="auth.failed")
    assert [f.target for f in failures] == [
        "/v1/profiles/{id_type}/{id_value}",
        "/v1/profiles/{id_type}/{id_value}/events",
        "/v1/privacy/consent/{id_type}/{id_value}",
        "/oauth/token",
    ]
    assert "zed" not in str([f.to_dict() for f in failures])


def test_a_token_refused_for_its_scopes_is_audited_in_its_workspace(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    reader = bearer(get_token(client, boot.client_id, boot.client_secret, "analytics:read"))
    for _ in range(3):  # once a minute per client, route and code
        assert client.get("/v1/profiles/email/zed@example.com", headers=reader).status_code == 403
    [denied] = runtime.audit.entries(boot.workspace, action="auth.denied")
    assert (denied.actor, denied.target, denied.outcome) == (
        boot.client_id,
        "/v1/profiles/{id_type}/{id_value}",
        "denied",
    )
    assert denied.details == {
        "code": "insufficient_scope",
        "message": "this token lacks the 'profiles:read' scope",
    }
    admin = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
    shown = client.get("/v1/admin/audit?action=auth.denied", headers=admin).json()
    assert [e["target"] for e in shown] == ["/v1/profiles/{id_type}/{id_value}"]
    assert "zed" not in str(shown)


def test_every_time_the_api_shows_is_utc_with_a_z(client: TestClient, boot: Bootstrap) -> None:
    """One format for every time of the API (its models write ``...Z``): privacy requests,
    the audit log and policy versions said ``+00:00`` before."""
    headers = bearer(
        get_token(client, boot.client_id, boot.client_secret, "admin privacy:admin decide")
    )
    started = client.post("/v1/privacy/erase", json={"userId": "u-t"}, headers=headers).json()
    url = f"/v1/privacy/requests/{started['requestId']}"
    deadline = utcnow() + timedelta(seconds=60)
    while (state := client.get(url, headers=headers).json())["status"] != "done":
        assert utcnow() < deadline, state
    point = {"actions": [{"id": "a"}, {"id": "b"}]}
    assert client.put("/v1/decision-points/p", json=point, headers=headers).status_code == 200
    decide = {"decisionPoint": "p", "userId": "u-1", "actions": point["actions"]}
    assert client.post("/v1/decide", json=decide, headers=headers).status_code == 200
    client.app.state.decisions.snapshot(boot.workspace, "p")  # type: ignore[attr-defined]
    [version] = client.get("/v1/decision-points/p/versions", headers=headers).json()
    audit = client.get("/v1/admin/audit", headers=headers).json()
    times = [state["createdAt"], state["finishedAt"], version["createdAt"]]
    times += [entry["at"] for entry in audit]
    for value in times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", value), value
        assert_timestamp(value)


def test_names_scopes_and_filters_are_checked_precisely(
    client: TestClient, boot: Bootstrap, admin: dict[str, str], runtime: Runtime
) -> None:
    """What the pipeline audit found: names with a final newline or only blanks were
    stored, an unknown source listed no keys instead of 404, a 100 KB scope was echoed whole,
    and a client could take admin from itself."""
    for name in ("default\n", "\t", "   ", "a\n\x00b", "x" * 201):
        reply = client.post(
            "/v1/admin/clients", json={"name": name, "scopes": ["decide"]}, headers=admin
        )
        assert_error(reply, 400)
    reply = client.post("/v1/admin/sources", json={"name": "web\n"}, headers=admin)
    assert_error(reply, 400, "invalid_name")
    for bad in ("acme\n", ""):
        with pytest.raises(InvalidRequest):
            runtime.tenancy.create_workspace(bad)
    with pytest.raises(InvalidRequest):
        runtime.clients.create(boot.workspace, "", ["decide"])  # the CLI's path

    reply = client.post(
        "/v1/admin/clients", json={"name": "n", "scopes": ["x" * 100_000]}, headers=admin
    )
    assert_error(reply, 400, "invalid_scope")
    assert len(reply.text) < 500

    source = client.get("/v1/admin/sources", headers=admin).json()[0]["id"]
    for query in (f"sourceId={source}", f"source_id={source}"):
        keys = client.get(f"/v1/admin/keys?{query}", headers=admin)
        assert keys.status_code == 200
        assert [k["sourceId"] for k in keys.json()] == [source]
    other = runtime.tenancy.create_workspace("other")
    theirs = runtime.tenancy.create_source(other.id, "theirs")
    for unknown in ("src_nope", theirs.id):
        assert_error(client.get(f"/v1/admin/keys?sourceId={unknown}", headers=admin), 404)

    own = f"/v1/admin/clients/{boot.client_id}"
    reply = client.patch(own, json={"scopes": ["decide"]}, headers=admin)
    assert_error(reply, 409, "own_admin_scope")
    assert_error(client.delete(own, headers=admin), 409, "own_client")
    assert client.get("/v1/admin/clients", headers=admin).status_code == 200  # still admin
