"""Liveness, readiness against real store failures, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families

from auie.api.app import create_app
from auie.api.web import UI_PATHS
from auie.runtime import Bootstrap, Runtime
from conftest import App
from helpers import basic, bearer, make_settings, route_template

#: Routes that serve the documentation itself rather than the API.
DOCS_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}
#: The dashboard's shell and static files (tests/api/test_web.py checks them).
NOT_API = DOCS_ROUTES | UI_PATHS
COLLECT = ["track", "identify", "page", "screen", "group", "alias", "batch", "import"]
SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}


def post_json(client: TestClient, path: str, body: Any, key: str) -> Any:
    return client.post(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **basic(key)},
    )


# -- liveness and readiness -----------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_readyz(client: TestClient) -> None:
    reply = client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready"}


def assert_unready(client: TestClient, mentions: str) -> None:
    reply = client.get("/readyz")
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "storage_unavailable"
    assert mentions in body["message"]


def test_readyz_fails_when_the_event_log_directory_is_gone(
    client: TestClient, runtime: Runtime
) -> None:
    log_dir = runtime.settings.eventlog_path.parent
    moved = log_dir.with_name("log-moved-away")
    # Close the log's open connections (SQLite would keep using an unlinked file), then
    # take its directory away, as a lost volume would.
    runtime.eventlog.close()
    log_dir.rename(moved)
    try:
        assert_unready(client, "event log")
        assert client.get("/healthz").status_code == 200, "liveness does not depend on stores"
    finally:
        moved.rename(log_dir)
    assert client.get("/readyz").status_code == 200, "ready again once the log is back"


def test_readyz_fails_when_the_event_log_is_not_a_database(
    client: TestClient, runtime: Runtime
) -> None:
    path = runtime.settings.eventlog_path
    saved = path.with_name("eventlog.saved")
    runtime.eventlog.close()
    path.rename(saved)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a SQLite database" * 100)
    try:
        assert_unready(client, "event log")
    finally:
        runtime.eventlog.close()
        saved.replace(path)
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_the_metadata_database_is_gone(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    db_dir = tmp_path / "metadata"
    app = make_app(**{"database.url": f"sqlite:///{db_dir / 'auie.db'}"})
    assert app.client.get("/readyz").status_code == 200
    moved = db_dir.with_name("metadata-moved-away")
    app.runtime.engine.dispose()  # drop pooled connections, which would keep the old file
    db_dir.rename(moved)
    try:
        assert_unready(app.client, "metadata database")
    finally:
        moved.rename(db_dir)
    assert app.client.get("/readyz").status_code == 200


# -- metrics ----------------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_events_rejections_and_commits(
    client: TestClient, boot: Bootstrap
) -> None:
    before = scrape(client)
    key = boot.write_key
    assert post_json(client, "/v1/track", {"userId": "u", "event": "A"}, key).status_code == 200
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "B"},
            {"type": "identify", "userId": "u", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "u"},  # no event: dead-lettered
            {"type": "shout", "userId": "u"},  # unknown type: dead-lettered
        ]
    }
    reply = post_json(client, "/v1/batch", batch, key)
    assert reply.json()["accepted"] == 2
    assert post_json(client, "/v1/track", {"userId": "u"}, key).status_code == 400
    assert post_json(client, "/v1/track", {"userId": "u", "event": "C"}, "bad").status_code == 401
    # An admin request refused for lack of a token is not a collector rejection.
    assert client.get("/v1/admin/workspace").status_code == 401
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "auie_http_requests_total"
    assert moved(requests, method="POST", route="/v1/track", status="200") == 1
    assert moved(requests, method="POST", route="/v1/batch", status="200") == 1
    assert moved(requests, method="POST", route="/v1/track", status="400") == 1
    assert moved(requests, method="POST", route="/v1/track", status="401") == 1
    assert moved(requests, method="GET", route="/v1/admin/workspace", status="401") == 1
    assert moved(requests, method="GET", route="/metrics", status="200") == 1

    assert moved("auie_events_accepted_total", type="track") == 2
    assert moved("auie_events_accepted_total", type="identify") == 1
    assert moved("auie_events_rejected_total", code="missing_field") == 1
    assert moved("auie_events_rejected_total", code="invalid_type") == 1

    rejected = "auie_collect_requests_rejected_total"
    assert moved(rejected, code="missing_field") == 1
    assert moved(rejected, code="invalid_write_key") == 1
    assert moved(rejected, code="missing_token") == 0

    # One durable commit per accepted request (they came one after the other), holding
    # the events and the dead letters: 1 record, then 2 events + 2 dead letters.
    assert moved("auie_log_append_seconds_count") == 2
    assert moved("auie_log_commit_records_count") == 2
    assert moved("auie_log_commit_records_sum") == 5
    assert moved("auie_log_append_seconds_sum") > 0
    assert moved("auie_http_request_seconds_count", route="/v1/batch") == 1


def test_duplicates_are_counted(client: TestClient, boot: Bootstrap) -> None:
    before = scrape(client)
    event = {"userId": "u", "event": "A", "messageId": "same"}
    for _ in range(3):
        assert post_json(client, "/v1/track", event, boot.write_key).status_code == 200
    after = scrape(client)
    name = "auie_events_duplicate_total"
    assert value(after, name) - value(before, name) == 2
    assert (
        value(after, "auie_events_accepted_total", type="track")
        - value(before, "auie_events_accepted_total", type="track")
        == 3
    )


def test_unknown_paths_share_one_metrics_label(client: TestClient) -> None:
    """Scanners must not create a time series per random path."""
    before = scrape(client)
    for path in ("/wp-admin", "/.env", "/v1/admin/../../etc/passwd"):
        client.get(path)
    after = scrape(client)
    routes = {dict(labels).get("route") for name, labels in after if name.startswith("auie_http")}
    assert not {"/wp-admin", "/.env"} & routes
    name = "auie_http_requests_total"
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, name, **labels) - value(before, name, **labels) == 3


# -- the OpenAPI document -----------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document as served (built once: it does not depend on the data)."""
    runtime = Runtime(make_settings(tmp_path_factory.mktemp("openapi") / "data"))
    try:
        with TestClient(create_app(runtime)) as client:
            reply = client.get("/openapi.json")
    finally:
        runtime.close()
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    document: dict[str, Any] = reply.json()
    return document


def test_openapi_is_a_valid_openapi_3_document(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    validate_openapi(openapi)


def served_routes(client: TestClient) -> set[tuple[str, str]]:
    """(path, method) of every route the app answers, documentation and dashboard aside."""
    served = set()
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if route.path in NOT_API:
            continue
        assert route.path, f"a route without a path: {route!r}"
        for method in route.methods or ():
            if method != "HEAD":
                served.add((route_template(route.path), method.lower()))
    return served


def test_openapi_documents_every_route_the_app_serves(
    client: TestClient, openapi: dict[str, Any]
) -> None:
    served = served_routes(client)
    documented = {
        (path, method)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    }
    assert served == documented
    # Sanity: the families are all there.
    paths = set(openapi["paths"])
    assert {f"/v1/{name}" for name in COLLECT + list(SHORT)} <= paths
    assert {"/oauth/token", "/.well-known/jwks.json", "/healthz", "/readyz", "/metrics"} <= paths
    assert len([p for p in paths if p.startswith("/v1/admin")]) == 8
    operation_ids = [op["operationId"] for ops in openapi["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "$ref" and isinstance(child, str):
                yield child
            else:
                yield from refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from refs(child)


def test_every_reference_resolves(openapi: dict[str, Any]) -> None:
    found = list(refs(openapi))
    assert found
    for ref in found:
        assert isinstance(resolve(openapi, ref), dict), ref


def request_schema(openapi: dict[str, Any], path: str, media: str) -> dict[str, Any]:
    body = openapi["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    schema: dict[str, Any] = body["content"][media]["schema"]
    return schema


@pytest.mark.parametrize("path", [f"/v1/{name}" for name in COLLECT + list(SHORT)])
def test_collector_request_schemas_resolve(openapi: dict[str, Any], path: str) -> None:
    name = SHORT.get(path.removeprefix("/v1/"), path.removeprefix("/v1/"))
    expected = {"batch": "BatchRequest", "import": "BatchRequest"}.get(
        name, f"{name.title()}Message"
    )
    for media in ("application/json", "text/plain"):
        schema = request_schema(openapi, path, media)
        assert schema == {"$ref": f"#/components/schemas/{expected}"}
        resolved = resolve(openapi, schema["$ref"])
        assert resolved["type"] == "object"
        assert resolved["properties"]
    operation = openapi["paths"][path]["post"]
    assert {"writeKey": []} in operation["security"]
    for status in ("400", "401", "413", "415", "429", "503"):
        error = operation["responses"][status]["content"]["application/json"]["schema"]
        assert set(resolve(openapi, error["$ref"])["required"]) == {"code", "message"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert resolve(openapi, ok["$ref"])["title"] == "IngestResponse"


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        (
            "/v1/track",
            {"userId": "u", "event": "Signed Up", "properties": {"plan": "pro"}},
            {"userId": "u", "properties": {"plan": "pro"}},
        ),
        ("/v1/group", {"anonymousId": "a", "groupId": 7}, {"anonymousId": "a"}),
        ("/v1/alias", {"userId": "u", "previousId": "p"}, {"previousId": "p"}),
        (
            "/v1/batch",
            {"batch": [{"type": "track", "userId": "u", "event": "E"}], "sentAt": "x"},
            {"batch": {"type": "track"}},
        ),
    ],
)
def test_collector_schemas_describe_the_segment_shapes(
    openapi: dict[str, Any], path: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    """The resolved schemas accept a Segment message and refuse a broken one."""
    schema = {**request_schema(openapi, path, "application/json"), **openapi}
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(good)
    assert not validator.is_valid(bad)


def test_admin_and_auth_operations_are_documented(
    openapi: dict[str, Any], client: TestClient, boot: Bootstrap
) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["writeKey"]["scheme"] == "basic"
    assert schemes["clientBasic"]["scheme"] == "basic"
    token = openapi["paths"]["/oauth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["grant_type"]
    for status in ("400", "401", "415"):
        error = resolve(
            openapi, token["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        )
        assert {"code", "message", "error", "error_description"} <= set(error["properties"])
    create = openapi["paths"]["/v1/admin/sources"]["post"]
    assert "201" in create["responses"]
    source = resolve(
        openapi, create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    )
    # The documented field names are the ones the API sends.
    admin = bearer(
        client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            headers=basic(boot.client_id, boot.client_secret),
        ).json()["access_token"]
    )
    [sent] = client.get("/v1/admin/sources", headers=admin).json()
    assert set(sent) == set(source["properties"])
    assert "204" in openapi["paths"]["/v1/admin/keys/{key_id}"]["delete"]["responses"]
