"""The analytics API (scope ``analytics:read``): auth, workspace isolation, request
validation, segment CRUD and paging, and the SQL sandbox."""

from __future__ import annotations

import glob
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import analytics_data as ad
from auie.analytics import segments as segments_module
from auie.analytics.funnels import funnels
from auie.analytics.models import FunnelsIn, RetentionIn, TrendsIn
from auie.analytics.persons import Scope
from auie.analytics.retention import retention
from auie.analytics.trends import trends
from auie.api.app import create_app
from auie.errors import InvalidRequest, StorageUnavailable
from auie.runtime import Runtime
from conftest import App
from helpers import basic, bearer, get_token, make_settings

pytestmark = pytest.mark.slow
RANGE = {"from": ad.START.isoformat(), "to": ad.END.isoformat()}
TRENDS = {"events": ["page", "Order Completed"], "measure": "people", **RANGE}
FUNNEL = {"steps": [{"event": e} for e in ad.FUNNEL], "conversionWindow": 3600, **RANGE}
RETENTION = {"startEvent": "page", "returnEvent": "Order Completed", "period": "week", **RANGE}
SEGMENT = {
    "name": "buyers",
    "description": "bought twice",
    "definition": {
        "or": [
            {"event": "Order Completed", "atLeast": 2, "inLastDays": 3650},
            {"trait": "plan", "op": "eq", "value": "team"},
        ]
    },
}


@dataclass
class Space:
    """A workspace with data and a token that may read its analytics."""

    id: str
    headers: dict[str, str]
    data: ad.Dataset


@dataclass
class Setup:
    client: TestClient
    runtime: Runtime
    a: Space
    b: Space
    #: A token of workspace A without the analytics:read scope.
    admin_only: dict[str, str]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    runtime = Runtime(make_settings(tmp_path_factory.mktemp("api") / "data"))
    boot = runtime.bootstrap()
    assert boot is not None
    ws_b = runtime.tenancy.create_workspace("other").id
    client_b = runtime.clients.create(ws_b, "analyst", ["analytics:read"])
    data_a, _ = ad.generate(seed=21, users=25, visitors=5)
    data_b, _ = ad.generate(seed=22, users=12, visitors=2)
    ad.load(runtime, boot.workspace, data_a.events)
    ad.load(runtime, ws_b, data_b.events)
    with TestClient(create_app(runtime)) as client:
        a = bearer(get_token(client, boot.client_id, boot.client_secret, "analytics:read"))
        b = bearer(get_token(client, client_b.client.id, client_b.secret))
        admin = bearer(get_token(client, boot.client_id, boot.client_secret, "admin"))
        yield Setup(
            client,
            runtime,
            Space(boot.workspace, a, data_a),
            Space(ws_b, b, data_b),
            admin,
        )
    runtime.close()


def assert_error(reply: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert set(body) == {"code", "message"}
    assert body["message"]
    if code is not None:
        assert body["code"] == code
    return body


def camel_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield key
            if key not in {"definition"}:
                yield from camel_keys(child)
    elif isinstance(value, list):
        for child in value:
            yield from camel_keys(child)


# -- auth -----------------------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/analytics/trends", TRENDS),
    ("POST", "/v1/analytics/funnels", FUNNEL),
    ("POST", "/v1/analytics/retention", RETENTION),
    ("GET", "/v1/analytics/segments", None),
    ("POST", "/v1/analytics/segments", SEGMENT),
    ("GET", "/v1/analytics/segments/seg_x", None),
    ("PUT", "/v1/analytics/segments/seg_x", SEGMENT),
    ("DELETE", "/v1/analytics/segments/seg_x", None),
    ("GET", "/v1/analytics/segments/seg_x/members", None),
    ("POST", "/v1/sql", {"query": "SELECT 1"}),
    ("GET", "/v1/sql/tables", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_needs_a_token_with_analytics_read(
    setup: Setup, method: str, path: str, body: dict[str, Any] | None
) -> None:
    reply = setup.client.request(method, path, json=body)
    assert_error(reply, 401, "missing_token")
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = setup.client.request(method, path, json=body, headers=bearer("not-a-token"))
    assert_error(reply, 401)
    reply = setup.client.request(method, path, json=body, headers=setup.admin_only)
    assert_error(reply, 403)


# -- analyses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "model", "run"),
    [
        ("trends", TRENDS, TrendsIn, trends),
        ("funnels", FUNNEL, FunnelsIn, funnels),
        ("retention", RETENTION, RetentionIn, retention),
    ],
)
def test_analyses_answer_for_the_token_workspace_only(
    setup: Setup, path: str, body: dict[str, Any], model: Any, run: Callable[..., Any]
) -> None:
    for space, other in ((setup.a, setup.b), (setup.b, setup.a)):
        reply = setup.client.post(f"/v1/analytics/{path}", json=body, headers=space.headers)
        assert reply.status_code == 200, reply.text
        found = reply.json()
        expected = run(Scope.of(setup.runtime, space.id), model.model_validate(body))
        assert found == expected.model_dump(mode="json", by_alias=True)
        elsewhere = run(Scope.of(setup.runtime, other.id), model.model_validate(body))
        assert found != elsewhere.model_dump(mode="json", by_alias=True)
        assert all(key[0].islower() and "_" not in key for key in camel_keys(found))


def test_trends_reply_shape(setup: Setup) -> None:
    body = {**TRENDS, "breakdown": {"trait": "plan"}, "breakdownLimit": 1, "interval": "week"}
    reply = setup.client.post("/v1/analytics/trends", json=body, headers=setup.a.headers)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["buckets"][0] == "2026-09-07T00:00:00Z"
    assert len(data["buckets"]) == 6
    assert data["from"] == "2026-09-07T00:00:00Z"
    series = data["series"]
    assert {s["event"] for s in series} == {"page", "Order Completed"}
    assert [s["other"] for s in series if s["event"] == "page"] == [False, True]
    assert all(len(s["values"]) == 6 for s in series)


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("trends", {**TRENDS, "events": []}),
    ("trends", {**TRENDS, "events": ["a", "a"]}),
    ("trends", {k: v for k, v in TRENDS.items() if k != "from"}),
    ("trends", {**TRENDS, "to": RANGE["from"]}),
    ("trends", {**TRENDS, "from": "yesterday"}),
    ("trends", {**TRENDS, "interval": "month"}),
    ("trends", {**TRENDS, "measure": "sessions"}),
    ("trends", {**TRENDS, "unknown": 1}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "like", "value": "y"}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "trait": "y", "op": "eq", "value": 1}]}),
    ("trends", {**TRENDS, "filters": [{"op": "eq", "value": 1}]}),
    ("trends", {**TRENDS, "filters": [{"field": "password", "op": "eq", "value": 1}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "in", "value": "y"}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "in", "value": []}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "eq"}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "gt", "value": True}]}),
    ("trends", {**TRENDS, "filters": [{"property": "x", "op": "contains", "value": 3}]}),
    ("trends", {**TRENDS, "filters": [{"property": 'a"b', "op": "eq", "value": 1}]}),
    ("trends", {**TRENDS, "breakdown": "plan"}),
    ("trends", {**TRENDS, "breakdownLimit": 0}),
    ("trends", {**TRENDS, "interval": "hour", "from": "2020-01-01", "to": "2026-01-01"}),
    ("funnels", {**FUNNEL, "steps": [{"event": "a"}]}),
    ("funnels", {**FUNNEL, "conversionWindow": 0}),
    ("funnels", {**FUNNEL, "steps": [{"event": ""}, {"event": "b"}]}),
    ("retention", {**RETENTION, "period": "month"}),
    ("retention", {**RETENTION, "periods": 0}),
    ("retention", {k: v for k, v in RETENTION.items() if k != "returnEvent"}),
    ("segments", {**SEGMENT, "name": ""}),
    ("segments", {**SEGMENT, "definition": {"and": []}}),
    ("segments", {**SEGMENT, "definition": {"property": "x", "op": "eq", "value": 1}}),
    ("segments", {**SEGMENT, "definition": {"event": "x", "atLeast": 0, "inLastDays": 3}}),
    ("segments", {**SEGMENT, "definition": {"event": "x"}}),
    ("segments", {**SEGMENT, "definition": {"event": "x", "inLastDays": 3,
                                             "filters": [{"trait": "a", "op": "is_set"}]}}),
    ("segments", {**SEGMENT, "definition": {"nor": []}}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), INVALID)
def test_invalid_bodies_are_refused(setup: Setup, path: str, body: dict[str, Any]) -> None:
    reply = setup.client.post(f"/v1/analytics/{path}", json=body, headers=setup.a.headers)
    assert_error(reply, 400)


def test_a_body_that_is_not_json_is_refused(setup: Setup) -> None:
    reply = setup.client.post(
        "/v1/analytics/trends",
        content=b"{not json",
        headers={**setup.a.headers, "Content-Type": "application/json"},
    )
    assert_error(reply, 400)


# -- segments -------------------------------------------------------------------------------------


def test_segment_crud_and_members(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    client, headers = setup.client, setup.a.headers
    reply = client.post("/v1/analytics/segments", json=SEGMENT, headers=headers)
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert created["id"].startswith("seg_")
    # Stored normalised: defaults filled in.
    first, second = SEGMENT["definition"]["or"]
    assert created["definition"] == {"or": [{**first, "filters": []}, second]}
    assert created["createdAt"].endswith("Z")
    assert created["createdAt"] == created["updatedAt"]
    sid = created["id"]
    assert_error(client.post("/v1/analytics/segments", json=SEGMENT, headers=headers), 409)
    assert client.get(f"/v1/analytics/segments/{sid}", headers=headers).json() == created
    listed = client.get("/v1/analytics/segments", headers=headers).json()
    assert [s["id"] for s in listed] == [sid]

    monkeypatch.setattr(segments_module, "evaluation_time", lambda: ad.END)
    everyone: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        reply = client.get(f"/v1/analytics/segments/{sid}/members", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        assert page["segmentId"] == sid
        assert len(page["members"]) <= 3
        everyone += [m["profileId"] for m in page["members"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert page["count"] == len(everyone) > 3
    assert everyone == sorted(set(everyone))
    # Members are profiles of this workspace: each has a profile here.
    for pid in everyone:
        assert setup.runtime.profiles.profile_by_id(setup.a.id, pid).profile_id == pid

    changed = {**SEGMENT, "name": "team plan", "definition": {"trait": "plan", "op": "eq",
                                                              "value": "team"}}  # fmt: skip
    reply = client.put(f"/v1/analytics/segments/{sid}", json=changed, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == "team plan"
    assert reply.json()["updatedAt"] >= created["updatedAt"]
    page = client.get(f"/v1/analytics/segments/{sid}/members", headers=headers).json()
    team = [k for k in setup.a.data.people if setup.a.data.traits(k).get("plan") == "team"]
    assert page["count"] == len(team)

    other = client.post("/v1/analytics/segments", json=SEGMENT, headers=headers).json()
    reply = client.put(f"/v1/analytics/segments/{other['id']}", json=changed, headers=headers)
    assert_error(reply, 409)
    for bad in ({"limit": 0}, {"limit": 10_001}, {"cursor": "%%%"}):
        reply = client.get(f"/v1/analytics/segments/{sid}/members", params=bad, headers=headers)
        assert_error(reply, 400)
    for segment in (sid, other["id"]):
        assert (
            client.delete(f"/v1/analytics/segments/{segment}", headers=headers).status_code == 204
        )
    assert_error(client.get(f"/v1/analytics/segments/{sid}", headers=headers), 404)
    assert_error(client.delete(f"/v1/analytics/segments/{sid}", headers=headers), 404)
    assert client.get("/v1/analytics/segments", headers=headers).json() == []


def test_segments_of_another_workspace_are_invisible(setup: Setup) -> None:
    client = setup.client
    reply = client.post("/v1/analytics/segments", json=SEGMENT, headers=setup.b.headers)
    sid = reply.json()["id"]
    try:
        assert client.get("/v1/analytics/segments", headers=setup.a.headers).json() == []
        for method, path in (
            ("GET", f"/v1/analytics/segments/{sid}"),
            ("GET", f"/v1/analytics/segments/{sid}/members"),
            ("DELETE", f"/v1/analytics/segments/{sid}"),
        ):
            assert_error(client.request(method, path, headers=setup.a.headers), 404)
        reply = client.put(f"/v1/analytics/segments/{sid}", json=SEGMENT, headers=setup.a.headers)
        assert_error(reply, 404)
        # The same name is free in workspace A.
        reply = client.post("/v1/analytics/segments", json=SEGMENT, headers=setup.a.headers)
        assert reply.status_code == 201
        client.delete(f"/v1/analytics/segments/{reply.json()['id']}", headers=setup.a.headers)
        members = client.get(f"/v1/analytics/segments/{sid}/members", headers=setup.b.headers)
        pids = [m["profileId"] for m in members.json()["members"]]
        assert pids
        for pid in pids:
            setup.runtime.profiles.profile_by_id(setup.b.id, pid)
    finally:
        client.delete(f"/v1/analytics/segments/{sid}", headers=setup.b.headers)


# -- SQL ------------------------------------------------------------------------------------------


def sql(setup: Setup, query: str, space: Space | None = None) -> Any:
    headers = (space or setup.a).headers
    return setup.client.post("/v1/sql", json={"query": query}, headers=headers)


def test_sql_reads_the_workspace_lake(setup: Setup) -> None:
    reply = sql(setup, "SELECT count(*) AS n, count(DISTINCT event) AS names FROM events")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "columns": ["n", "names"],
        "rows": [
            [len(setup.a.data.events), len({e.get("event") for e in setup.a.data.events} - {None})]
        ],
        "truncated": False,
    }
    reply = sql(setup, "SELECT count(*) FROM events", setup.b)
    assert reply.json()["rows"] == [[len(setup.b.data.events)]]
    query = (
        "SELECT message_id, user_id, anonymous_id, timestamp, received_at, properties,"
        " browser_name, utm_source, context_page_path FROM events"
        " WHERE type = 'track' ORDER BY timestamp, message_id LIMIT 2"
    )
    reply = sql(setup, query)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["columns"][:3] == ["message_id", "user_id", "anonymous_id"]
    assert body["rows"][0][3].startswith("2026-09-")
    for table in ("identities", "profiles", "dead_letters"):
        assert sql(setup, f"SELECT * FROM {table} LIMIT 1").status_code == 200


PERSONAL_TARGETS: list[dict[str, Any]] = [
    {"field": "user_id"},
    {"field": "anonymous_id"},
    {"field": "previous_id"},
    {"field": "group_id"},
    {"field": "context_ip"},
    {"trait": "email"},
    {"trait": "Phone"},  # the PII names match in any case, as in the processor
    {"property": "email"},
]


@pytest.mark.parametrize("target", PERSONAL_TARGETS, ids=lambda t: "-".join(next(iter(t.items()))))
def test_analyses_by_personal_data_need_pii_read(setup: Setup, target: dict[str, Any]) -> None:
    """Without pii:read, trends, funnels and segments refuse a filter or breakdown by an
    identifier, the IP, a PII trait or a PII property (403 pii_read_required): a breakdown
    by user_id would list the raw ids SQL hashes, a filter on a guessed id or e-mail would
    tell what that person did. With pii:read they run."""
    client = setup.client
    pii = setup.runtime.clients.create(setup.a.id, "pii", ["analytics:read", "pii:read"])
    raw = bearer(get_token(client, pii.client.id, pii.secret))
    kind, name = next(iter(target.items()))
    condition = {**target, "op": "eq", "value": "ada@example.com"}
    steps = [{"event": "page", "filters": [condition]}, {"event": "Order Completed"}]
    behaviour = {"event": "page", "atLeast": 1, "inLastDays": 3650, "filters": [condition]}
    # A trait is a segment's condition on the profile; the others filter a behaviour.
    segment = {
        "name": f"by {kind} {name}",
        "definition": condition if kind == "trait" else behaviour,
    }
    asked = [
        ("/v1/analytics/trends", {**TRENDS, "filters": [condition]}),
        ("/v1/analytics/trends", {**TRENDS, "breakdown": target}),
        ("/v1/analytics/funnels", {**FUNNEL, "steps": steps}),
        ("/v1/analytics/funnels", {**FUNNEL, "breakdown": target}),
        ("/v1/analytics/segments", segment),
    ]
    for path, body in asked:
        refused = assert_error(client.post(path, json=body, headers=setup.a.headers), 403)
        assert refused["code"] == "pii_read_required", body
        assert f"{kind} {name!r}" in refused["message"]
        if not path.endswith("segments"):
            assert client.post(path, json=body, headers=raw).status_code == 200, body
    # A segment saved by a token with pii:read: its members and a replacement are refused
    # to a token without, which reads its definition with the personal value hidden (it
    # used to read the e-mail address or id the condition names).
    reply = client.post("/v1/analytics/segments", json=segment, headers=raw)
    assert reply.status_code == 201, reply.text
    sid = reply.json()["id"]
    members = f"/v1/analytics/segments/{sid}/members"
    assert client.get(members, headers=raw).status_code == 200
    refused = assert_error(client.get(members, headers=setup.a.headers), 403)
    assert refused["code"] == "pii_read_required"
    update = client.put(f"/v1/analytics/segments/{sid}", json=segment, headers=setup.a.headers)
    assert assert_error(update, 403)["code"] == "pii_read_required"
    for headers, shown in ((setup.a.headers, "[needs pii:read]"), (raw, "ada@example.com")):
        one = client.get(f"/v1/analytics/segments/{sid}", headers=headers)
        assert one.status_code == 200, one.text
        listed = client.get("/v1/analytics/segments", headers=headers).json()
        for definition in (one.json()["definition"], *(s["definition"] for s in listed)):
            condition_seen = definition if kind == "trait" else definition["filters"][0]
            assert condition_seen["value"] == shown
            if shown != "ada@example.com":
                assert "ada@example.com" not in json.dumps(definition)
    assert client.delete(f"/v1/analytics/segments/{sid}", headers=raw).status_code == 204


def test_sql_without_pii_read_sees_keyed_hashes(setup: Setup) -> None:
    """analytics:read alone: every identifier is the workspace's keyed hash (the same value
    in every table, so joins and distinct counts still work), PII fields and IPs are gone;
    with pii:read the same query sees the raw values."""
    boot_client = setup.runtime.clients.create(setup.a.id, "pii", ["analytics:read", "pii:read"])
    raw = bearer(get_token(setup.client, boot_client.client.id, boot_client.secret))
    users = {e["userId"] for e in setup.a.data.events if e.get("userId")}
    anonymous = {e["anonymousId"] for e in setup.a.data.events if e.get("anonymousId")}
    pseudonyms = setup.runtime.privacy.pseudonyms
    ws = setup.a.id

    def query(text: str, headers: dict[str, str]) -> list[list[Any]]:
        reply = setup.client.post("/v1/sql", json={"query": text}, headers=headers)
        assert reply.status_code == 200, reply.text
        rows: list[list[Any]] = reply.json()["rows"]
        return rows

    ids = "SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL"
    assert {r[0] for r in query(ids, raw)} == users
    hashed = {r[0] for r in query(ids, setup.a.headers)}
    assert hashed == {pseudonyms.pseudonym(ws, f"user_id:{u}") for u in users}
    anon = "SELECT DISTINCT anonymous_id FROM events WHERE anonymous_id IS NOT NULL"
    assert {r[0] for r in query(anon, setup.a.headers)} == {
        pseudonyms.pseudonym(ws, f"anonymous_id:{a}") for a in anonymous
    }
    # Hashes join across tables exactly as raw ids do.
    join = (
        "SELECT count(*) FROM events e JOIN identities i"
        " ON i.id_type = 'user_id' AND i.id_value = e.user_id"
    )
    assert query(join, setup.a.headers) == query(join, raw) != [[0]]
    # Nothing raw in any column of any table, as text.
    for table in ("events", "identities", "profiles", "dead_letters", "decisions"):
        text = query(
            f"SELECT coalesce(string_agg(t::VARCHAR, ' '), '') FROM {table} t", setup.a.headers
        )
        found = [value for value in users | anonymous if value in text[0][0]]
        assert not found, f"{table} shows raw ids: {found[:3]}"
    emails = "SELECT count(*) FROM events WHERE traits::VARCHAR LIKE '%@example.com%'"
    assert query(emails, setup.a.headers) == [[0]]
    assert query("SELECT count(context_ip) FROM events", setup.a.headers) == [[0]]
    # The table listing shows the pseudonymised shape (no separate hash columns).
    listed = setup.client.get("/v1/sql/tables", headers=setup.a.headers).json()["tables"]
    events = next(t for t in listed if t["name"] == "events")
    names = {c["name"] for c in events["columns"]}
    assert "user_id" in names
    assert "user_hash" not in names
    listed = setup.client.get("/v1/sql/tables", headers=raw).json()["tables"]
    assert "user_hash" in {c["name"] for t in listed if t["name"] == "events" for c in t["columns"]}


def test_sql_without_pii_read_cannot_call_the_hash_functions(setup: Setup) -> None:
    """The views' keyed hash would hash any guessed id, and a join of the guess with the
    views would re-identify the person: untrusted SQL may not call it, in any spelling."""
    user = next(e["userId"] for e in setup.a.data.events if e.get("userId"))
    calls = [
        f"SELECT auie_pseudonym('user_id', '{user}')",
        f"SELECT count(*) FROM events WHERE user_id = auie_pseudonym('user_id', '{user}')",
        f"SELECT 'user_id'.AUIE_PSEUDONYM('{user}')",
        f"SELECT main.\"auie_pseudonym\"('user_id', '{user}')",
        f"SELECT list_transform(['{user}'], x -> auie_pseudonym('user_id', x))",
        f"SELECT auie_person('user:{user}')",
        "SELECT max(auie_person(person_id)) FROM events",
    ]
    for query in calls:
        body = assert_error(sql(setup, query), 400, "forbidden_function")
        assert user not in body["message"]
    # The views that call them still work.
    hashed = setup.runtime.privacy.pseudonyms.pseudonym(setup.a.id, f"user_id:{user}")
    reply = sql(setup, f"SELECT count(*) > 0 FROM events WHERE user_id = '{hashed}'")
    assert reply.json()["rows"] == [[True]]


def test_sql_values_are_json(setup: Setup) -> None:
    query = (
        "SELECT 1.50::DECIMAL(5,2) AS d, 2::DECIMAL(5,2) AS i, [1, 2] AS l,"
        " {'a': 1, 'b': [TIMESTAMPTZ '2026-01-01 00:00:00+00']} AS s,"
        " 'ab'::BLOB AS b, INTERVAL 90 SECOND AS iv, DATE '2026-01-02' AS dt,"
        " 'nan'::DOUBLE AS nan, uuid() IS NOT NULL AS u, MAP {'k': 2} AS m, NULL AS n"
    )
    reply = sql(setup, query)
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["rows"]
    assert row[:4] == [1.5, 2, [1, 2], {"a": 1, "b": ["2026-01-01T00:00:00+00:00"]}]
    assert row[4:] == ["YWI=", 90.0, "2026-01-02", "nan", True, {"k": 2}, None]


REFUSED = [
    "COPY events TO '/tmp/auie-leak.csv'",
    "COPY (SELECT 1) TO '/tmp/auie-leak.parquet' (FORMAT parquet)",
    "ATTACH '/tmp/auie-attack.db' AS x",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('/etc/*')",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP VIEW events",
    "DROP VIEW events",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO events SELECT * FROM events",
    "SET enable_external_access = true",
    "RESET allowed_directories",
    "PRAGMA database_list",
    "INSTALL httpfs",
    "LOAD httpfs",
    "EXPORT DATABASE '/tmp/auie-export'",
    "CALL pragma_version()",
    "SELECT * FROM query('DROP VIEW events')",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "",
    "   ",
    "SELEC 1",
    "SELECT * FROM no_such_table",
]


@pytest.mark.parametrize("query", REFUSED)
def test_sql_sandbox_refuses(setup: Setup, query: str) -> None:
    assert_error(sql(setup, query), 400)
    # Nothing changed: the views are intact.
    assert sql(setup, "SELECT count(*) FROM events").json()["rows"] == [[len(setup.a.data.events)]]
    assert not Path("/tmp/auie-leak.csv").exists()


def test_sql_refuses_statements_with_codes(setup: Setup) -> None:
    assert_error(sql(setup, "COPY events TO '/tmp/x.csv'"), 400, "read_only")
    assert_error(sql(setup, "SELECT 1; SELECT 2"), 400, "invalid_query")
    assert_error(sql(setup, "SELECT * FROM no_such_table"), 400, "unknown_table")


def test_sql_does_not_show_view_definitions(setup: Setup) -> None:
    """The views' SQL names the lake's files on the server and internal tables: not for
    callers. Table and column listings stay (BI tools read them)."""
    warehouse = setup.runtime.settings.lake_warehouse.removeprefix("file://")
    for query in (
        "SELECT view_definition FROM information_schema.views",
        "SELECT sql FROM sqlite_master",
        'SELECT sql FROM "SQLITE_SCHEMA"',
        "SELECT definition FROM pg_catalog.pg_views",
    ):
        reply = sql(setup, query)
        assert_error(reply, 400, "unknown_table")
        assert warehouse not in reply.text
    for query in ("SELECT current_setting('temp_directory')", "SELECT * FROM pg_settings"):
        reply = sql(setup, query)
        assert reply.status_code == 400, reply.text
        assert warehouse not in reply.text
    tables = sql(setup, "SELECT table_name FROM information_schema.tables")
    assert tables.status_code == 200, tables.text
    assert ["events"] in tables.json()["rows"]


@pytest.mark.parametrize("scopes", ["analytics:read", "analytics:read pii:read"])
def test_sql_lists_the_workspace_tables_and_nothing_of_the_engine(
    setup: Setup, scopes: str
) -> None:
    """SHOW TABLES and DESCRIBE are what an analyst types first: they show the tables of
    GET /v1/sql/tables, with the same columns, and no helper table of the engine."""
    made = setup.runtime.clients.create(setup.a.id, f"lister {scopes}", scopes.split())
    headers = bearer(get_token(setup.client, made.client.id, made.secret))

    def run(query: str) -> list[list[Any]]:
        reply = setup.client.post("/v1/sql", json={"query": query}, headers=headers)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["rows"])

    listed = setup.client.get("/v1/sql/tables", headers=headers).json()
    names = sorted(table["name"] for table in listed["tables"])
    assert "events" in names
    assert sorted(row[0] for row in run("SHOW TABLES")) == names
    assert sorted({row[2] for row in run("SHOW ALL TABLES") if row[0] == "memory"}) == names
    columns = [row[0] for row in run("DESCRIBE events")]
    assert columns == [
        c["name"] for t in listed["tables"] if t["name"] == "events" for c in t["columns"]
    ]
    assert run("SELECT count(*) FROM events")[0][0] == len(setup.a.data.events)


def test_sql_cannot_read_another_workspace_files(setup: Setup) -> None:
    warehouse = setup.runtime.settings.lake_warehouse.removeprefix("file://")
    theirs = sorted(glob.glob(f"{warehouse}/{setup.b.id}/events/data/**/*.parquet", recursive=True))
    ours = sorted(glob.glob(f"{warehouse}/{setup.a.id}/events/data/**/*.parquet", recursive=True))
    assert theirs
    assert ours
    for path in (theirs[0], f"{warehouse}/{setup.b.id}/events/data/**/*.parquet"):
        for reader in ("read_parquet", "read_blob", "read_text"):
            assert_error(sql(setup, f"SELECT count(*) FROM {reader}('{path}')"), 400)
    escape = f"{warehouse}/{setup.a.id}/../{setup.b.id}/events/data/**/*.parquet"
    assert_error(sql(setup, f"SELECT count(*) FROM read_parquet('{escape}')"), 400)
    # Its own files are not read by path either: that would go around the views that
    # pseudonymise identifiers for tokens without pii:read.
    reply = sql(setup, f"SELECT count(*) > 0 FROM read_parquet('{ours[0]}')")
    assert_error(reply, 400, "forbidden_function")
    # And the other workspace's tables are not in its catalog.
    assert_error(sql(setup, f'SELECT * FROM "{setup.b.id}".events'), 400)
    # Under the SQL check, the engine's own sandbox: the workspace's connection reads its
    # own lake directory and nothing else, even for AUIE's trusted queries.
    engine = setup.runtime.analytics
    found = engine.query(setup.a.id, f"SELECT count(*) > 0 FROM read_parquet('{ours[0]}')")
    assert found.rows == [(True,)]
    for path in (theirs[0], escape):
        with pytest.raises(InvalidRequest, match="Permission Error"):
            engine.query(setup.a.id, f"SELECT count(*) FROM read_parquet('{path}')")


def test_sql_row_limit_and_timeout(make_app: Callable[..., App]) -> None:
    app = make_app(**{"analytics.sql_row_limit": 5, "analytics.query_timeout_seconds": 0.3})
    headers = bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret))
    reply = app.client.post("/v1/sql", json={"query": "SELECT * FROM range(7)"}, headers=headers)
    assert reply.json() == {
        "columns": ["range"],
        "rows": [[i] for i in range(5)],
        "truncated": True,
    }
    reply = app.client.post("/v1/sql", json={"query": "SELECT * FROM range(5)"}, headers=headers)
    assert reply.json()["truncated"] is False
    slow = "SELECT sum(hash(a.range * b.range)) FROM range(100000) a, range(100000) b"
    reply = app.client.post("/v1/sql", json={"query": slow}, headers=headers)
    assert_error(reply, 400, "query_timeout")
    # An empty lake still has its tables.
    reply = app.client.post("/v1/sql", json={"query": "SELECT * FROM events"}, headers=headers)
    assert reply.json()["rows"] == []
    assert "user_id" in reply.json()["columns"]


def test_sql_tables(setup: Setup) -> None:
    reply = setup.client.get("/v1/sql/tables", headers=setup.a.headers)
    assert reply.status_code == 200, reply.text
    tables = {t["name"]: t["columns"] for t in reply.json()["tables"]}
    assert {"events", "identities", "profiles", "dead_letters"} <= set(tables)
    columns = {c["name"]: c["type"] for c in tables["events"]}
    assert columns["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["user_id"] == "VARCHAR"
    assert {"message_id", "anonymous_id", "properties", "context_page_url"} <= set(columns)


# -- OpenAPI --------------------------------------------------------------------------------------


def test_openapi_documents_the_analytics(setup: Setup) -> None:
    document = setup.client.get("/openapi.json").json()
    paths = document["paths"]
    for method, path, _body in ENDPOINTS:
        template = path.replace("seg_x", "{segment_id}")
        operation = paths[template][method.lower()]
        assert operation["tags"] == ["analytics"]
        for status in ("400", "401", "403"):
            assert status in operation["responses"]
        created = path.endswith("segments") and method == "POST"
        ok = "204" if method == "DELETE" else "201" if created else "200"
        if ok != "204":
            assert operation["responses"][ok]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    trends_in = schemas.get("TrendsIn") or schemas["TrendsIn-Input"]
    assert {"events", "measure", "interval", "from", "to", "breakdownLimit"} <= set(
        trends_in["properties"]
    )
    funnel_step = schemas.get("FunnelStepOut") or schemas["FunnelStepOut-Output"]
    assert "medianSecondsToConvert" in funnel_step["properties"]


def test_a_segment_window_is_measured_from_now(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"name": "recent", "definition": {"event": "page", "inLastDays": 1}}
    client, headers = setup.client, setup.a.headers
    sid = client.post("/v1/analytics/segments", json=body, headers=headers).json()["id"]
    try:
        monkeypatch.setattr(segments_module, "evaluation_time", lambda: ad.END + timedelta(days=30))
        page = client.get(f"/v1/analytics/segments/{sid}/members", headers=headers).json()
        assert page["count"] == 0
        monkeypatch.setattr(segments_module, "evaluation_time", lambda: ad.END)
        page = client.get(f"/v1/analytics/segments/{sid}/members", headers=headers).json()
        assert page["count"] > 0
    finally:
        client.delete(f"/v1/analytics/segments/{sid}", headers=headers)


def test_sql_cannot_see_another_workspace_spill_files(setup: Setup) -> None:
    # DuckDB allows its temp directory implicitly: each workspace must have its own.
    root = setup.runtime.settings.data_dir / "analytics"
    # (read as the server, trusted: callers' SQL may not read the settings, paths among them)
    [[spill]] = setup.runtime.analytics.query(
        setup.a.id, "SELECT current_setting('temp_directory')", pseudonymous=True
    ).rows
    assert Path(spill).resolve().is_relative_to((root / setup.a.id).resolve())
    theirs = (root / setup.b.id / "tmp").resolve()
    theirs.mkdir(parents=True, exist_ok=True)
    (theirs / "spill.tmp").write_text("secret")
    for query in (f"SELECT * FROM glob('{theirs}/*')", f"SELECT * FROM read_text('{theirs}/*')"):
        reply = sql(setup, query)
        assert reply.status_code == 400 or reply.json()["rows"] == []


def test_sql_works_before_and_after_the_lake_has_data(make_app: Callable[..., App]) -> None:
    """The first query on an empty lake must not break later queries (a regression)."""
    app = make_app()
    headers = bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret))
    query = {"query": "SELECT count(*) FROM events"}
    assert app.client.post("/v1/sql", json=query, headers=headers).json()["rows"] == [[0]]
    ok = app.client.post(
        "/v1/track",
        json={"userId": "u1", "event": "Signed Up"},
        headers=basic(app.boot.write_key),
    )
    assert ok.status_code == 200
    processor = app.runtime.processor()
    while processor.step().events:
        pass
    processor.flush()
    assert app.client.post("/v1/sql", json=query, headers=headers).json()["rows"] == [[1]]


def test_a_query_racing_the_engines_close_gets_503_and_opens_nothing(
    make_app: Callable[..., App],
) -> None:
    """At shutdown the engine interrupts the queries in flight: they fail with 503
    ``shutting_down`` (not a 400 timeout or a raw DuckDB error), and a query asked for
    after the close opens no new connection."""
    app = make_app()
    engine, workspace = app.runtime.analytics, app.boot.workspace
    slow = "SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3"
    failures: list[BaseException] = []

    def run() -> None:
        try:
            engine.query(workspace, slow, timeout=120)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not any(state.running for state in list(engine._workspaces.values())):
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.01)
    engine.close()
    worker.join(30)
    assert not worker.is_alive()
    [failure] = failures
    assert isinstance(failure, StorageUnavailable)
    assert (failure.code, failure.http_status) == ("shutting_down", 503)
    with pytest.raises(StorageUnavailable):
        engine.query(workspace, "SELECT 1")
    with pytest.raises(StorageUnavailable):
        engine.tables(workspace)
    assert engine._workspaces == {}


def test_values_no_analysis_can_use_are_refused_not_500(setup: Setup) -> None:
    """An audit's 500s: an integer literal beyond the float range in a filter (saved in a
    segment, it broke its members and the decisions' segments for good), dates at the
    ends of the calendar, an empty step in a computed trait's path, and SQL values Python
    cannot hold. Each is a 400 naming the problem, and the server stays healthy."""
    client, headers = setup.client, setup.a.headers
    huge = 10**400
    for body in (
        {**TRENDS, "filters": [{"property": "total", "op": "eq", "value": huge}]},
        {**TRENDS, "filters": [{"property": "total", "op": "in", "value": [1, -huge]}]},
    ):
        error = assert_error(client.post("/v1/analytics/trends", json=body, headers=headers), 400)
        assert "beyond the float range" in error["message"]
    big = {"name": "big", "definition": {"trait": "age", "op": "gt", "value": huge}}
    error = assert_error(client.post("/v1/analytics/segments", json=big, headers=headers), 400)
    assert "beyond the float range" in error["message"]
    for dates in (
        {"from": "9999-12-25", "to": "9999-12-31T23:59:59"},
        {"from": "0001-01-01T00:00:00+01:00", "to": "2026-01-01"},
        {"from": "2026-01-01", "to": "9999-12-31T23:00:00-05:00"},
    ):
        body = {**TRENDS, **dates, "interval": "week"}
        error = assert_error(client.post("/v1/analytics/trends", json=body, headers=headers), 400)
        assert "from 1900-01-01 to 3000-01-01" in error["message"]
    longest = {**TRENDS, "from": "2020-01-01", "to": "2030-01-08T23:59:00", "interval": "week"}
    error = assert_error(client.post("/v1/analytics/trends", json=longest, headers=headers), 400)
    assert "at most 3660 days" in error["message"]
    for path in ("a..b", ".", "a."):
        body = {**TRENDS, "filters": [{"computedTrait": path, "op": "eq", "value": 1}]}
        error = assert_error(client.post("/v1/analytics/trends", json=body, headers=headers), 400)
        assert "a name between its dots" in error["message"]
    for query in ("select INTERVAL '1000000000 days' b", "select INTERVAL '100000000 years' b"):
        reply = client.post("/v1/sql", json={"query": query}, headers=headers)
        assert assert_error(reply, 400)["code"] == "unrepresentable_value"
    reply = client.get("/v1/analytics/segments/" + "x" * 5000, headers=headers)
    assert len(assert_error(reply, 404)["message"]) < 200
    assert client.get("/readyz").status_code == 200


def test_numbers_and_dates_are_taken_as_their_json_types(setup: Setup) -> None:
    """The request models are documented as strict: ``"breakdownLimit": "5"`` and ``true``
    used to run with 5 and 1, and a number for ``from`` as seconds since 1970."""
    client, headers = setup.client, setup.a.headers
    for path, body in (
        ("/v1/analytics/trends", {**TRENDS, "breakdown": {"field": "type"}, "breakdownLimit": "5"}),
        (
            "/v1/analytics/trends",
            {**TRENDS, "breakdown": {"field": "type"}, "breakdownLimit": True},
        ),
        ("/v1/analytics/trends", {**TRENDS, "from": 1_700_000_000}),
        ("/v1/analytics/trends", {**TRENDS, "from": "1700000000"}),
        ("/v1/analytics/funnels", {**FUNNEL, "conversionWindow": "86400"}),
        ("/v1/analytics/retention", {**RETENTION, "periods": 4.0}),
    ):
        assert_error(client.post(path, json=body, headers=headers), 400)
    ok = {**TRENDS, "breakdown": {"field": "type"}, "breakdownLimit": 5}
    assert client.post("/v1/analytics/trends", json=ok, headers=headers).status_code == 200
