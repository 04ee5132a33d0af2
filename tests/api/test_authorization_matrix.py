"""The authorisation matrix: every route the app serves × every kind of caller × a token of
the resource's own workspace or of another one, and the shape of every error.

The routes are enumerated from the app when the tests run, so a route added later is in the
matrix at once. What a route requires comes from its dependencies (``Depends(scope(...))``
in ``auie.api.security``), cross-checked with the scope of its path family; a route with no
scope dependency must be listed below as public, or declare the write-key or client-Basic
security scheme. Anything else fails the test: an unclassified route is a route nobody has
decided the access rule of.

Callers (the matrix columns): no credentials, an invalid token (real ``kid``, wrong
signature), a token with no scope at all (signed with the instance's key: the token
endpoint never issues one), one token per scope holding exactly that scope, the write key
of a source, and the OAuth2 client id and secret as HTTP Basic. Each caller exists in
workspace A (own) and workspace B (other).

Every request addresses workspace A's data: a route with path parameters gets ids of A's
real objects, fresh for each request (so a ``DELETE`` in one cell does not disturb the
next). Expected:

* denied — 401 without a valid token (``missing_token``/``invalid_token``), 403 with a
  valid token lacking the scope (``insufficient_scope``); write-key and client-credential
  routes answer 401 to anything but their own credential;
* allowed, own workspace — not 401/403 (the body may be refused: 400/404/422); with path
  ids (A's real objects and a valid body) a 2xx;
* allowed, other workspace — a route with a path id answers 404 and leaves A's object as
  it was; any reply to B (a list, a query, an error) holds none of A's ids or names;
* the collector stores what a write key sends into that key's workspace only; the token
  endpoint issues tokens of the client's workspace only.

Every 4xx/5xx body is exactly ``{"code", "message"}`` (the token endpoint adds RFC 6749's
``error``/``error_description``), as JSON, and a 401 carries ``WWW-Authenticate``.
"""

from __future__ import annotations

import inspect
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from auie.api.app import create_app
from auie.auth.scopes import (
    ADMIN,
    ALL_SCOPES,
    ANALYTICS_READ,
    DECIDE,
    PRIVACY_ADMIN,
    PROFILES_READ,
)
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC
from auie.runtime import Runtime
from helpers import basic, bearer, get_token, make_settings, route_template
from pipeline import drain

pytestmark = pytest.mark.slow

PUBLIC = "public"
WRITE_KEY = "write key"
CLIENT = "client credentials"
SCOPE = "scope"

#: Routes anyone may call: liveness, readiness, metrics, the public keys, the OpenAPI
#: document and its pages, the dashboard's shell and static files (they hold no data).
PUBLIC_ROUTES = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/jwks.json",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/",
        "/static",
    }
)

#: The scope(s) a route of a path family may require (docs/auth.md). A route of a family
#: that depends on another scope, or on none, fails.
FAMILIES: dict[str, frozenset[str]] = {
    "/v1/admin/": frozenset({ADMIN}),
    "/v1/tracking-plan": frozenset({ADMIN}),
    "/v1/dead-letters": frozenset({ADMIN}),
    "/v1/profiles/": frozenset({PROFILES_READ}),
    "/v1/analytics/": frozenset({ANALYTICS_READ}),
    "/v1/sql": frozenset({ANALYTICS_READ}),
    "/v1/decide": frozenset({DECIDE}),
    "/v1/decisions/": frozenset({DECIDE}),
    # Reading decision points needs decide; configuring them (PUT, rollback) needs admin.
    "/v1/decision-points": frozenset({DECIDE, ADMIN}),
    "/v1/privacy": frozenset({PRIVACY_ADMIN}),
}

CALLERS = ("no credentials", "invalid token", "no scopes", *ALL_SCOPES, WRITE_KEY, CLIENT)
WORKSPACES = ("own", "other")
#: A path value no object has (the matrix's requests to routes without fixtures).
MISSING = "zz-missing"


# -- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: tuple[str, ...]
    access: str
    scope: str | None = None
    #: Path of the request body's schema in the OpenAPI components (collector routes).
    schema: str | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def _scopes_required(dependant: Any) -> tuple[set[str], bool]:
    """The scopes ``Depends(scope(name))`` dependencies require, and whether a bearer token
    is needed at all (``Depends(principal)``)."""
    scopes: set[str] = set()
    token = False
    for sub in dependant.dependencies:
        call = sub.call
        module = getattr(call, "__module__", "")
        if module == "auie.api.security":
            if getattr(call, "__qualname__", "") == "scope.<locals>.check":
                scopes.add(inspect.getclosurevars(call).nonlocals["name"])
            if getattr(call, "__name__", "") == "principal":
                token = True
        inner, inner_token = _scopes_required(sub)
        scopes |= inner
        token = token or inner_token
    return scopes, token


def _security(route: Any) -> set[str]:
    extra = getattr(route, "openapi_extra", None) or {}
    return {name for option in extra.get("security", ()) for name in option}


def _rule(context: Any, method: str) -> Route | str:
    """The access rule of one method of a route, or why it has none."""
    path = route_template(context.path)
    name = f"{method} {path}"
    params = tuple(p.name for p in context.dependant.path_params)
    scopes, token = _scopes_required(context.dependant)
    family = next((f for f in FAMILIES if path.startswith(f)), None)
    if len(scopes) > 1:
        return f"{name}: requires several scopes {sorted(scopes)}"
    if scopes:
        [needed] = scopes
        if family is not None and needed not in FAMILIES[family]:
            allowed = sorted(FAMILIES[family])
            return f"{name}: requires {needed!r}, but routes under {family} require {allowed}"
        return Route(method, path, params, SCOPE, needed)
    if token:
        return f"{name}: takes any token whatever its scopes (give it a scope)"
    if family is not None:
        return f"{name}: under {family} but requires no scope"
    return _unscoped_rule(context, method, params)


def _unscoped_rule(context: Any, method: str, params: tuple[str, ...]) -> Route | str:
    """Routes without a bearer token: the collector, the token endpoint, public ones."""
    security = _security(context)
    if "writeKey" in security:
        body = context.openapi_extra["requestBody"]["content"]["application/json"]["schema"]
        schema = body["$ref"].rsplit("/", 1)[1]
        return Route(method, context.path, params, WRITE_KEY, schema=schema)
    if "clientBasic" in security:
        return Route(method, context.path, params, CLIENT)
    if context.path in PUBLIC_ROUTES:
        return Route(method, context.path, params, PUBLIC)
    return (
        f"{method} {context.path}: no expectation — it depends on no scope, declares neither "
        "the writeKey nor the clientBasic security scheme and is not in PUBLIC_ROUTES"
    )


def classify(app: FastAPI) -> tuple[list[Route], list[str]]:
    """Every (method, path) the app serves, with its access rule; and the problems: routes
    nobody decided the rule of, or whose scope is not their family's."""
    routes: list[Route] = []
    problems: list[str] = []
    for context in iter_route_contexts(app.routes):
        assert context.path, f"a route without a path: {context!r}"
        if isinstance(context.original_route, Mount):
            if context.path not in PUBLIC_ROUTES:
                problems.append(f"mount {context.path}: not classified (PUBLIC_ROUTES?)")
            routes.append(Route("GET", f"{context.path}/{MISSING}.js", (), PUBLIC))
            continue
        if getattr(context, "dependant", None) is None:  # Starlette routes: the docs pages
            methods = sorted((context.methods or set()) - {"HEAD"})
            for method in methods:
                if context.path in PUBLIC_ROUTES:
                    routes.append(Route(method, context.path, (), PUBLIC))
                else:
                    problems.append(f"{method} {context.path}: not classified")
            continue
        for method in sorted((context.methods or set()) - {"HEAD"}):
            rule = _rule(context, method)
            if isinstance(rule, str):
                problems.append(rule)
            else:
                routes.append(rule)
    return routes, problems


# -- the two workspaces ------------------------------------------------------------------------


def _marker(letter: str) -> str:
    return f"mk{letter}{secrets.token_hex(5)}"


@dataclass
class Space:
    """One workspace: its credentials, one caller's headers per matrix column, its marker
    (in every name and value it stores) and the ids of everything it holds."""

    id: str
    mark: str
    source: str
    write_key: str
    client_id: str
    client_secret: str
    callers: dict[str, dict[str, str]] = field(default_factory=dict)
    #: A token with every scope, to set up and observe this workspace's objects.
    everything: dict[str, str] = field(default_factory=dict)
    #: Strings only this workspace's data holds (ids, names); none may reach another one.
    secrets: set[str] = field(default_factory=set)


@dataclass
class World:
    client: TestClient
    runtime: Runtime
    a: Space
    b: Space
    routes: list[Route]
    problems: list[str]
    serial: Iterator[int] = field(default_factory=count)

    def space(self, workspace: str) -> Space:
        return self.a if workspace == "own" else self.b


def _unsigned_scope_token(runtime: Runtime, space: Space, scope: str) -> str:
    """A token exactly like the server's, with the given scope string, signed with the
    instance's own key (the token endpoint never issues a token without scopes)."""
    key = [k for k in runtime.signing_keys.load() if k.retired_at is None][-1]
    now = int(time.time())
    claims = {
        "iss": runtime.settings.auth.issuer,
        "aud": runtime.settings.auth.audience,
        "sub": space.client_id,
        "ws": space.id,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": secrets.token_hex(12),
    }
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


def _forged_token(runtime: Runtime, space: Space) -> str:
    """Every scope, the instance's ``kid``, but signed by a key that is not the instance's."""
    key = [k for k in runtime.signing_keys.load() if k.retired_at is None][-1]
    assert key.algorithm == "ES256"
    now = int(time.time())
    claims = {
        "iss": runtime.settings.auth.issuer,
        "aud": runtime.settings.auth.audience,
        "sub": space.client_id,
        "ws": space.id,
        "scope": " ".join(ALL_SCOPES),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    foreign = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, foreign, algorithm="ES256", headers={"kid": key.kid})


def _plan(mark: str) -> dict[str, Any]:
    """A tracking plan that blocks one event (so dead letters exist) and names the marker."""
    return {
        "unplanned": "allow",
        "events": {
            f"Blocked {mark}": {
                "mode": "block",
                "schema": {"type": "object", "required": ["revenue"]},
            }
        },
    }


def _seed(world: World, space: Space) -> None:
    """Data of every kind in the workspace, each holding the workspace's marker."""
    client, mark, auth = world.client, space.mark, space.everything
    ok = client.put("/v1/tracking-plan", json=_plan(mark), headers=auth)
    assert ok.status_code == 200, ok.text
    batch = {
        "batch": [
            {"type": "identify", "userId": f"u-{mark}", "traits": {"plan": f"plan-{mark}"}},
            {"type": "track", "userId": f"u-{mark}", "event": f"Viewed {mark}"},
            {"type": "track", "userId": f"u-{mark}", "event": f"Blocked {mark}"},
            {"type": "track", "userId": f"u-{mark}", "properties": {"why": mark}},  # no event
        ]
    }
    reply = client.post("/v1/batch", json=batch, headers=basic(space.write_key))
    assert reply.status_code == 200, reply.text
    drain(world.runtime.processor())
    for path, body in (
        ("/v1/admin/sources", {"name": f"source-{mark}", "kind": "ios"}),
        ("/v1/admin/clients", {"name": f"client-{mark}", "scopes": ["decide"]}),
        (
            "/v1/analytics/segments",
            {"name": f"segment-{mark}", "definition": _segment_definition(mark)},
        ),
    ):
        if _serves(world, "POST", path):
            reply = client.post(path, json=body, headers=auth)
            assert reply.status_code == 201, reply.text
    _decision_point(world, space)
    # Collect the ids of everything the workspace holds.
    space.secrets |= {space.id, space.source, space.client_id, mark}
    for path in ("/v1/admin/sources", "/v1/admin/keys", "/v1/admin/clients"):
        space.secrets |= {item["id"] for item in client.get(path, headers=auth).json()}
    letters = client.get("/v1/dead-letters", params={"pending": "false"}, headers=auth).json()
    assert len(letters) == 2, letters
    space.secrets |= {letter["id"] for letter in letters}
    profile = client.get(f"/v1/profiles/user_id/u-{mark}", headers=auth)
    assert profile.status_code == 200, profile.text
    space.secrets.add(profile.json()["profileId"])
    if _serves(world, "GET", "/v1/analytics/segments"):
        segments = client.get("/v1/analytics/segments", headers=auth).json()
        space.secrets |= {s["id"] for s in segments}


def _segment_definition(mark: str) -> dict[str, Any]:
    return {"event": f"Viewed {mark}", "atLeast": 1, "inLastDays": 3650}


def _decision_config(mark: str) -> dict[str, Any]:
    return {"actions": [{"id": f"act-{mark}-1"}, {"id": f"act-{mark}-2"}]}


def _decision_point(world: World, space: Space) -> str:
    """A new decision point of the workspace with a saved policy version 1."""
    name = f"dp-{space.mark}-{next(world.serial)}"
    client, auth = world.client, space.everything
    reply = client.put(
        f"/v1/decision-points/{name}", json=_decision_config(space.mark), headers=auth
    )
    assert reply.status_code == 200, reply.text
    _decision(world, space, name)
    service = world.client.app.state.decisions  # type: ignore[attr-defined]
    assert service.snapshot(space.id, name) is not None
    return name


def _decision(world: World, space: Space, point: str) -> str:
    """A new open, deferred decision of the workspace; its event id."""
    body = {
        "decisionPoint": point,
        "userId": f"u-{space.mark}",
        "actions": _decision_config(space.mark)["actions"],
        "deferActivation": True,
    }
    reply = world.client.post("/v1/decide", json=body, headers=space.everything)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["eventId"])


def _serves(world: World, method: str, path: str) -> bool:
    return any(r.method == method and r.path == path for r in world.routes)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    runtime = Runtime(make_settings(tmp_path_factory.mktemp("matrix") / "data"))
    boot = runtime.bootstrap()
    assert boot is not None
    other = runtime.tenancy.create_workspace("other")
    other_source = runtime.tenancy.create_source(other.id, "web", "web")
    other_key = runtime.tenancy.create_write_key(other_source.id)
    other_client = runtime.clients.create(other.id, "admin", ALL_SCOPES)
    a = Space(
        boot.workspace,
        _marker("a"),
        boot.source,
        boot.write_key,
        boot.client_id,
        boot.client_secret,
    )
    b = Space(
        other.id,
        _marker("b"),
        other_source.id,
        other_key.key,
        other_client.client.id,
        other_client.secret,
    )
    try:
        with TestClient(create_app(runtime), client=("203.0.113.9", 50000)) as client:
            routes, problems = classify(client.app)  # type: ignore[arg-type]
            world = World(client, runtime, a, b, routes, problems)
            for space in (a, b):
                space.everything = bearer(get_token(client, space.client_id, space.client_secret))
                space.callers = {
                    "no credentials": {},
                    "invalid token": bearer(_forged_token(runtime, space)),
                    "no scopes": bearer(_unsigned_scope_token(runtime, space, "")),
                    WRITE_KEY: basic(space.write_key),
                    CLIENT: basic(space.client_id, space.client_secret),
                }
                for name in ALL_SCOPES:
                    token = get_token(client, space.client_id, space.client_secret, name)
                    space.callers[name] = bearer(token)
            for space in (a, b):
                _seed(world, space)
            assert not a.secrets & b.secrets
            yield world
    finally:
        runtime.close()


# -- requests and expectations -----------------------------------------------------------------


@dataclass
class Target:
    """A's objects a request with path parameters addresses, and how to look at them."""

    values: dict[str, str]
    observe: Callable[[], Any] | None = None


def _get(world: World, path: str, **params: Any) -> Any:
    reply = world.client.get(path, params=params, headers=world.a.everything)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _one(items: list[dict[str, Any]], id_: str) -> dict[str, Any] | None:
    return next((item for item in items if item["id"] == id_), None)


def _source(world: World, n: int) -> Target:
    source = world.runtime.tenancy.create_source(world.a.id, f"src-{world.a.mark}-{n}")
    world.a.secrets.add(source.id)
    return Target(
        {"source_id": source.id}, lambda: _get(world, "/v1/admin/keys", source_id=source.id)
    )


def _key(world: World, n: int) -> Target:
    key = world.runtime.tenancy.create_write_key(world.a.source).info.id
    world.a.secrets.add(key)
    return Target({"key_id": key}, lambda: _one(_get(world, "/v1/admin/keys"), key))


def _client(world: World, n: int) -> Target:
    new = world.runtime.clients.create(world.a.id, f"cl-{world.a.mark}-{n}", ["decide"])
    world.a.secrets.add(new.client.id)
    return Target(
        {"client_id": new.client.id},
        lambda: _one(_get(world, "/v1/admin/clients"), new.client.id),
    )


def _profile(world: World, n: int) -> Target:
    user = f"u-{world.a.mark}"
    return Target(
        {"id_type": "user_id", "id_value": user},
        lambda: _get(world, f"/v1/profiles/user_id/{user}"),
    )


def _point(world: World, n: int) -> Target:
    name = _decision_point(world, world.a)
    world.a.secrets.add(name)
    return Target(
        {"name": name},
        lambda: (
            _get(world, f"/v1/decision-points/{name}"),
            _get(world, f"/v1/decision-points/{name}/versions"),
        ),
    )


def _event(world: World, n: int) -> Target:
    event = _decision(world, world.a, f"dp-{world.a.mark}-events")
    world.a.secrets.add(event)
    return Target({"event_id": event})


def _segment(world: World, n: int) -> Target:
    a = world.a
    body = {"name": f"segment-{a.mark}-{n}", "definition": _segment_definition(a.mark)}
    reply = world.client.post("/v1/analytics/segments", json=body, headers=a.everything)
    assert reply.status_code == 201, reply.text
    segment = reply.json()["id"]
    a.secrets.add(segment)
    return Target({"segment_id": segment}, lambda: _get(world, f"/v1/analytics/segments/{segment}"))


def _privacy_request(world: World, n: int) -> Target:
    from auie.privacy.person import Subject

    requests = world.runtime.privacy.requests
    subject = Subject.of([("user_id", f"u-{world.a.mark}")])
    request = requests.submit(world.a.id, "export", subject, actor="matrix")
    assert requests.run(request.id).status == "done"
    world.a.secrets.add(request.id)
    return Target(
        {"request_id": request.id}, lambda: _get(world, f"/v1/privacy/requests/{request.id}")
    )


#: Fresh objects of workspace A for each kind of path parameters. A route whose parameters
#: are not here fails the matrix: add the kind of object it addresses.
TARGETS: dict[tuple[str, ...], Callable[[World, int], Target]] = {
    ("source_id",): _source,
    ("key_id",): _key,
    ("client_id",): _client,
    ("id_type", "id_value"): _profile,
    ("name",): _point,
    ("event_id",): _event,
    ("segment_id",): _segment,
    ("request_id",): _privacy_request,
}


#: Request bodies; ``{mark}`` becomes the caller's workspace marker. Routes with a path id
#: need a valid one (A's own request must succeed, B's must get as far as the lookup).
#: Routes not listed get ``{}`` (enough to tell allowed from denied).
BODIES: dict[str, Any] = {
    "POST /v1/decisions/{event_id}/reward": {"value": 1.0},
    "PUT /v1/decision-points/{name}": {"actions": [{"id": "act-{mark}-x"}]},
    "POST /v1/decision-points/{name}/rollback": {"version": 1},
    "PATCH /v1/admin/clients/{client_id}": {"scopes": ["decide", "profiles:read"]},
    "PUT /v1/analytics/segments/{segment_id}": {
        "name": "renamed-{mark}",
        "definition": {"event": "Viewed {mark}", "atLeast": 1, "inLastDays": 3650},
    },
    # Bodies that do something in the caller's workspace, so B's reply can be searched.
    "PUT /v1/tracking-plan": _plan("{mark}"),
    "POST /v1/sql": {"query": "select * from events"},
    "PUT /v1/privacy/consent/{id_type}/{id_value}": {"personalization": False},
}
#: Query parameters (the matrix also looks at replayed dead letters).
QUERIES: dict[str, dict[str, str]] = {"GET /v1/dead-letters": {"pending": "false"}}

#: Routes with a path id that create the object in the caller's own workspace when it does
#: not exist there (B's request makes B's own decision point with the same name).
UPSERTS = frozenset(
    {
        "PUT /v1/decision-points/{name}",
        # Consent may be stated for someone not seen yet (a banner before any event): B's
        # statement is recorded in B's workspace, never A's.
        "PUT /v1/privacy/consent/{id_type}/{id_value}",
    }
)

#: Lists and reads that must show A's data to A (so that B seeing none of it means
#: something).
SHOWS_OWN_DATA = frozenset(
    {
        "GET /v1/admin/workspace",
        "GET /v1/admin/sources",
        "GET /v1/admin/keys",
        "GET /v1/admin/clients",
        "GET /v1/admin/audit",
        "GET /v1/tracking-plan",
        "GET /v1/tracking-plan/violations",
        "GET /v1/dead-letters",
        "GET /v1/decision-points",
        "GET /v1/analytics/segments",
        "POST /v1/sql",
    }
)

COLLECT_SAMPLES: dict[str, dict[str, Any]] = {
    "TrackMessage": {"userId": "u-{mark}", "event": "Matrix {mark}"},
    "IdentifyMessage": {"userId": "u-{mark}", "traits": {"seen": "{mark}"}},
    "PageMessage": {"anonymousId": "anon-{mark}", "name": "page-{mark}"},
    "ScreenMessage": {"userId": "u-{mark}", "name": "screen-{mark}"},
    "GroupMessage": {"userId": "u-{mark}", "groupId": "g-{mark}"},
    "AliasMessage": {"userId": "u-{mark}", "previousId": "anon-{mark}"},
    "BatchRequest": {"batch": [{"type": "track", "userId": "u-{mark}", "event": "B {mark}"}]},
}


def _fill(template: Any, mark: str) -> Any:
    return json.loads(json.dumps(template).replace("{mark}", mark))


def _send(
    world: World, route: Route, headers: dict[str, str], values: dict[str, str], mark: str
) -> httpx.Response:
    path = route.path
    for name, value in values.items():
        path = path.replace(f"{{{name}}}", value)
    assert "{" not in path, path
    params = QUERIES.get(route.name)
    if route.access == WRITE_KEY:
        body = _fill(COLLECT_SAMPLES[route.schema or ""], mark)
        return world.client.post(path, json=body, headers=headers)
    if route.access == CLIENT:
        form = {"grant_type": "client_credentials"}
        return world.client.post(path, data=form, headers=headers)
    if route.method in {"POST", "PUT", "PATCH"}:
        body = _fill(BODIES.get(route.name, {}), mark)
        return world.client.request(route.method, path, json=body, params=params, headers=headers)
    return world.client.request(route.method, path, params=params, headers=headers)


def error_shape(route: str, reply: httpx.Response) -> list[str]:
    """What is wrong with an error reply's shape (nothing for a success)."""
    if reply.status_code < 400:
        return []
    where = f"{route} -> {reply.status_code}"
    if reply.headers.get("content-type", "").split(";")[0] != "application/json":
        return [f"{where}: error content type {reply.headers.get('content-type')!r}"]
    try:
        body = reply.json()
    except ValueError:
        return [f"{where}: error body is not JSON: {reply.text[:200]!r}"]
    shapes = [{"code", "message"}]
    if route.endswith(" /oauth/token"):  # OAuth errors add RFC 6749's names of the same
        shapes.append({"code", "message", "error", "error_description"})
    problems = []
    if not isinstance(body, dict) or set(body) not in shapes:
        problems.append(f"{where}: error body {body!r} is not {sorted(shapes[-1])}")
    elif not (isinstance(body["code"], str) and body["code"] and isinstance(body["message"], str)):
        problems.append(f"{where}: error body {body!r}: code and message must be strings")
    if reply.status_code == 401 and not reply.headers.get("www-authenticate"):
        problems.append(f"{where}: a 401 without WWW-Authenticate")
    return problems


def _denial(route: Route, caller: str) -> tuple[int, str | None] | None:
    """(status, code) a caller gets refused with, or None when the caller is allowed."""
    match route.access:
        case "public":
            refusal = None
        case "write key":
            refusal = None if caller == WRITE_KEY else (401, None)
        case "client credentials":
            refusal = None if caller == CLIENT else (401, "invalid_client")
        case _ if caller in {"no credentials", WRITE_KEY, CLIENT}:  # Basic is not a bearer
            refusal = (401, "missing_token")
        case _ if caller == "invalid token":
            refusal = (401, "invalid_token")
        case _:
            refusal = None if route.scope == caller else (403, "insufficient_scope")
    return refusal


def _leaks(world: World, reply: httpx.Response, values: dict[str, str]) -> list[str]:
    """A's secrets in a reply to B (the ids B itself put in the request path aside)."""
    text = reply.text
    for value in values.values():
        text = text.replace(value, "")
        text = text.replace(json.dumps(value)[1:-1], "")
    return sorted(s for s in world.a.secrets if s in text)


def _new_records(world: World, before: dict[str, dict[int, int]]) -> list[Any]:
    log = world.runtime.eventlog
    records = []
    for topic, offsets in before.items():
        for part, end in log.end_offsets(topic).items():
            start = offsets.get(part, 0)
            if end > start:
                records.extend(log.read(topic, part, start, end - start))
    return records


def _log_ends(world: World) -> dict[str, dict[int, int]]:
    log = world.runtime.eventlog
    return {topic: log.end_offsets(topic) for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC)}


@dataclass
class Cell:
    """One request of the matrix and what is known around it."""

    world: World
    route: Route
    caller: str
    workspace: str
    values: dict[str, str]
    target: Target | None = None
    before: Any = None
    reply: httpx.Response | None = None

    @property
    def space(self) -> Space:
        return self.world.space(self.workspace)

    @property
    def name(self) -> str:
        return f"{self.route.name} [{self.caller}, {self.workspace} workspace]"

    @property
    def response(self) -> httpx.Response:
        assert self.reply is not None
        return self.reply

    def changed(self) -> bool:
        """Whether A's object looks different now than before the request."""
        observe = self.target.observe if self.target is not None else None
        return observe is not None and observe() != self.before


def _prepare(world: World, route: Route, caller: str, workspace: str) -> Cell | str:
    """The cell, with fresh objects of A when the request may reach them."""
    cell = Cell(world, route, caller, workspace, dict.fromkeys(route.params, MISSING))
    if route.access == WRITE_KEY and route.schema not in COLLECT_SAMPLES:
        return f"{route.name}: no sample message for {route.schema} in COLLECT_SAMPLES"
    if route.params and route.access == SCOPE and _denial(route, caller) is None:
        make = TARGETS.get(route.params)
        if make is None:
            return (
                f"{route.name}: no fixture makes A's objects for the path parameters "
                f"{route.params} (add the kind to TARGETS)"
            )
        cell.target = make(world, next(world.serial))
        cell.values = cell.target.values
        if cell.target.observe is not None:
            cell.before = cell.target.observe()
    return cell


def check_cell(world: World, route: Route, caller: str, workspace: str) -> list[str]:
    """Send one matrix cell's request; the problems found (empty: as expected)."""
    cell = _prepare(world, route, caller, workspace)
    if isinstance(cell, str):
        return [cell]
    ends = _log_ends(world) if route.access == WRITE_KEY else {}
    reply = cell.reply = _send(
        world, route, cell.space.callers[caller], cell.values, cell.space.mark
    )
    status = reply.status_code
    problems = [f"{cell.name}: {p}" for p in error_shape(route.name, reply)]
    denial = _denial(route, caller)
    if status >= 500:
        problems.append(f"{cell.name}: {status} {reply.text[:300]}")
    elif denial is not None:
        want, code = denial
        if status != want:
            problems.append(f"{cell.name}: {status}, expected {want} ({reply.text[:200]})")
        elif code is not None and reply.json().get("code") != code:
            problems.append(f"{cell.name}: code {reply.json().get('code')!r}, not {code!r}")
    elif status in {401, 403}:
        problems.append(f"{cell.name}: {status}, expected to be allowed ({reply.text[:200]})")
    elif route.access == WRITE_KEY:
        problems += _check_collected(cell, ends)
    elif route.access == CLIENT:
        problems += _check_token(cell)
    elif route.access == SCOPE:
        problems += _check_own(cell) if workspace == "own" else _check_other(cell)
    return problems


def _check_collected(cell: Cell, ends: dict[str, dict[int, int]]) -> list[str]:
    reply, space = cell.response, cell.space
    if reply.status_code != 200 or reply.json().get("accepted") != 1:
        return [f"{cell.name}: {reply.status_code} {reply.text[:200]}"]
    records = _new_records(cell.world, ends)
    if not records:
        return [f"{cell.name}: nothing was stored"]
    return [
        f"{cell.name}: stored into workspace {r.headers.get('workspaceId')}, not {space.id}"
        for r in records
        if r.headers.get("workspaceId") != space.id or space.mark.encode() not in r.value
    ]


def _check_token(cell: Cell) -> list[str]:
    reply, space = cell.response, cell.space
    if reply.status_code != 200:
        return [f"{cell.name}: {reply.status_code} {reply.text[:200]}"]
    claims = jwt.decode(reply.json()["access_token"], options={"verify_signature": False})
    if claims["ws"] != space.id or claims["sub"] != space.client_id:
        return [f"{cell.name}: a token for {claims['ws']}/{claims['sub']}"]
    return []


def _check_own(cell: Cell) -> list[str]:
    reply, a = cell.response, cell.world.a
    problems = []
    if cell.target is not None and not 200 <= reply.status_code < 300:
        problems.append(f"{cell.name}: {reply.status_code} for A's own object: {reply.text[:200]}")
    shows = a.mark in reply.text or any(s in reply.text for s in a.secrets)
    if cell.route.name in SHOWS_OWN_DATA and not shows:
        problems.append(f"{cell.name}: A's reply shows none of A's data: {reply.text[:200]}")
    return problems


def _check_other(cell: Cell) -> list[str]:
    reply, world = cell.response, cell.world
    problems = []
    leaked = _leaks(world, reply, cell.values)
    if leaked:
        problems.append(f"{cell.name}: B's reply holds A's {leaked}: {reply.text[:300]}")
    if cell.target is None:
        return problems
    if cell.route.name in UPSERTS:
        if not 200 <= reply.status_code < 300:
            problems.append(f"{cell.name}: {reply.status_code}, expected B's own object made")
        # B now has an object of that name too: the name is no longer A's alone.
        world.a.secrets -= set(cell.values.values())
    elif reply.status_code != 404:
        problems.append(
            f"{cell.name}: {reply.status_code} for A's object, not 404: {reply.text[:200]}"
        )
    if cell.changed():
        problems.append(f"{cell.name}: B's request changed A's object")
    return problems


# -- the tests ---------------------------------------------------------------------------------


def test_every_route_has_an_access_rule(world: World) -> None:
    assert not world.problems, "\n".join(world.problems)
    kinds = {route.access for route in world.routes}
    assert kinds == {PUBLIC, WRITE_KEY, CLIENT, SCOPE}
    assert {route.scope for route in world.routes if route.scope} >= {
        ADMIN,
        PROFILES_READ,
        DECIDE,
    }


@pytest.mark.parametrize("workspace", WORKSPACES)
@pytest.mark.parametrize("caller", CALLERS)
def test_matrix(world: World, caller: str, workspace: str) -> None:
    problems: list[str] = []
    for route in world.routes:
        problems += check_cell(world, route, caller, workspace)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_matrix_size(world: World) -> None:
    """Keeps the size of the matrix in the test log."""
    cells = len(world.routes) * len(CALLERS) * len(WORKSPACES)
    print(
        f"authorisation matrix: {len(world.routes)} routes x {len(CALLERS)} callers x "
        f"{len(WORKSPACES)} workspaces = {cells} requests"
    )
    assert len(world.routes) >= 40


def test_a_write_key_in_the_body_stores_into_its_own_workspace(world: World) -> None:
    """``writeKey`` in a batch body works like Basic auth, for its own workspace only."""
    for space in (world.a, world.b):
        ends = _log_ends(world)
        body = {
            "writeKey": space.write_key,
            "batch": [{"type": "track", "userId": f"u-{space.mark}", "event": "In body"}],
        }
        reply = world.client.post("/v1/batch", json=body)
        assert reply.status_code == 200, reply.text
        records = _new_records(world, ends)
        assert records
        assert {r.headers["workspaceId"] for r in records} == {space.id}


def test_other_workspace_cannot_replay_or_replace_the_plan(world: World) -> None:
    """Writes without a path id act on the caller's workspace only."""
    a, b, client = world.a, world.b, world.client
    letters = client.get("/v1/dead-letters", headers=a.everything).json()
    plan = client.get("/v1/tracking-plan", headers=a.everything).json()
    reply = client.post("/v1/dead-letters/replay", json={}, headers=b.everything)
    assert reply.status_code == 200, reply.text
    reply = client.put("/v1/tracking-plan", json={"unplanned": "block"}, headers=b.everything)
    assert reply.status_code == 200, reply.text
    assert client.get("/v1/dead-letters", headers=a.everything).json() == letters
    assert client.get("/v1/tracking-plan", headers=a.everything).json() == plan


_OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_unknown_paths_wrong_methods_and_bad_bodies_answer_code_and_message(
    world: World,
) -> None:
    """Errors the framework raises (404, 405, unreadable JSON, failed validation) have the
    same shape as AUIE's own."""
    client, a = world.client, world.a
    problems: list[str] = []
    for path in ("/nope", "/v1/nope", "/v1/admin/nope", "/v1/profiles"):
        problems += error_shape(f"GET {path}", client.get(path, headers=a.everything))
    served: dict[str, set[str]] = {}
    for route in world.routes:
        served.setdefault(route.path, set()).add(route.method)
    for route in world.routes:
        path = re.sub(r"\{[^}]+\}", MISSING, route.path)
        for method in _OTHER_METHODS:
            if method in served[route.path] or (method == "GET" and route.access == PUBLIC):
                continue
            reply = client.request(method, path, headers=a.everything)
            if reply.status_code not in {404, 405}:
                problems.append(f"{method} {path}: {reply.status_code}, expected 404/405")
            problems += error_shape(f"{method} {route.path}", reply)
        if route.access == SCOPE and route.method in {"POST", "PUT", "PATCH"}:
            for body in (b"{not json", b"[]", b'"text"'):
                reply = client.request(
                    route.method,
                    path,
                    content=body,
                    headers={**a.everything, "Content-Type": "application/json"},
                )
                if reply.status_code not in {400, 404, 415, 422}:
                    problems.append(f"{route.name} with {body!r}: {reply.status_code}")
                problems += error_shape(route.name, reply)
    assert not problems, "\n".join(problems)
