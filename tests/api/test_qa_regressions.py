"""What exploratory QA found in the decision and analytics APIs, each pinned down through
the in-process app: the person's segments and ``user_features`` row in the context,
non-finite numbers, unbounded sizes (policies, segment depth, SQL replies) and the
policies' defaults."""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from auie.decide.config import DEFAULT_POLICY, JoinSpec
from auie.decide.context import PersonContext
from auie.decide.policies import make_policy
from auie.decide.service import MAIN_ARM
from auie.errors import InvalidRequest
from auie.eventlog import DECISIONS_TOPIC
from auie.privacy.fields import PiiRules
from auie.runtime import Bootstrap, Runtime
from conftest import App
from helpers import bearer, get_token
from pipeline import drain, log_record

ACTIONS = [{"id": "a"}, {"id": "b"}]


def _admin(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    return bearer(get_token(client, boot.client_id, boot.client_secret))


def _logged(runtime: Runtime, event_id: str) -> dict[str, Any]:
    log = runtime.eventlog
    for part, start in log.begin_offsets(DECISIONS_TOPIC).items():
        for record in log.read(DECISIONS_TOPIC, part, start, 1_000_000):
            value: dict[str, Any] = json.loads(record.value)
            if value["eventId"] == event_id:
                return value
    raise AssertionError(f"decision {event_id} is not in the log")


def _identify(runtime: Runtime, workspace: str, user: str, traits: dict[str, Any]) -> str:
    """Identifies ``user`` with ``traits`` through the processor; returns the profile id."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event = {
        "messageId": str(uuid.uuid4()),
        "type": "identify",
        "userId": user,
        "traits": traits,
        "timestamp": now,
        "receivedAt": now,
        "context": {},
    }
    runtime.eventlog.append([log_record(event, workspace)])
    drain(runtime.processor())
    return runtime.profiles.profile(workspace, "user_id", user).profile_id


def _user_features(runtime: Runtime, workspace: str, rows: list[dict[str, Any]]) -> None:
    """A ``user_features`` mart as the transformation writes it (its Parquet file)."""
    marts = runtime.analytics.marts_dir(workspace)  # type: ignore[attr-defined]
    marts.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), marts / "user_features.parquet")


def test_a_decision_never_waits_for_the_lake_reads_of_segments_and_features(
    runtime: Runtime, boot: Bootstrap
) -> None:
    """Segments and the mart row are lake queries (up to seconds): they load in the
    background into the cached person, while decisions go on without them."""
    _identify(runtime, boot.workspace, "u-slow", {"plan": "pro"})
    release = threading.Event()

    def slow_segments(workspace: str, profile_id: str) -> list[str]:
        release.wait(10)
        return ["seg_1"]

    person = PersonContext(runtime.profiles, segments_of=slow_segments)
    join = JoinSpec()
    started = time.monotonic()
    _, first = person.lookup(boot.workspace, "u-slow", None, join)
    assert time.monotonic() - started < 1
    assert first["traits"] == {"plan": "pro"}
    assert "segments" not in first
    release.set()
    deadline = time.monotonic() + 10
    while "segments" not in person.lookup(boot.workspace, "u-slow", None, join)[1]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert person.lookup(boot.workspace, "u-slow", None, join)[1]["segments"] == ["seg_1"]


def test_computed_traits_of_a_pii_property_are_not_joined(make_app: Callable[..., App]) -> None:
    computed = [
        {"name": "last_email", "kind": "last", "property": "email"},
        {"name": "orders", "kind": "count", "event": "Order Completed"},
    ]
    app = make_app(**{"profiles.computed": computed})
    runtime, workspace = app.runtime, app.boot.workspace
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event = {
        "messageId": str(uuid.uuid4()),
        "type": "track",
        "event": "Order Completed",
        "userId": "u-mail",
        "properties": {"email": "m@example.com"},
        "timestamp": now,
        "receivedAt": now,
        "context": {},
    }
    runtime.eventlog.append([log_record(event, workspace)])
    drain(runtime.processor())
    assert runtime.profiles.profile(workspace, "user_id", "u-mail").computed_traits["orders"] == 1
    person = PersonContext(runtime.profiles, pii_rules=PiiRules.of(runtime.settings.privacy))
    _, context = person.lookup(workspace, "u-mail", None, JoinSpec())
    assert context["computed"]["orders"] == 1
    assert "last_email" not in context["computed"]
    assert "m@example.com" not in json.dumps(context)


def test_the_context_joins_segments_and_user_features_when_the_point_asks(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    admin = _admin(client, boot)
    profile = _identify(runtime, boot.workspace, "u-pro", {"plan": "pro"})
    segment = {"name": "pro", "definition": {"trait": "plan", "op": "eq", "value": "pro"}}
    reply = client.post("/v1/analytics/segments", json=segment, headers=admin)
    assert reply.status_code == 201, reply.text
    segment_id = reply.json()["id"]
    other = {"name": "free", "definition": {"trait": "plan", "op": "eq", "value": "free"}}
    assert client.post("/v1/analytics/segments", json=other, headers=admin).status_code == 201
    seen = datetime(2026, 1, 2, tzinfo=UTC)
    row = {"person_id": profile, "first_seen": seen, "last_seen": seen, "recency_days": 3}
    _user_features(
        runtime,
        boot.workspace,
        [{**row, "frequency": 12, "engagement_score": 41.5, "top_event": "page", "as_of": seen}],
    )

    contexts = {}
    for point, join in (
        ("joined", {"segments": True, "userFeatures": True}),
        ("not-joined", {"segments": False, "userFeatures": False}),
    ):
        config = {"actions": ACTIONS, "join": join}
        reply = client.put(f"/v1/decision-points/{point}", json=config, headers=admin)
        assert reply.status_code == 200, reply.text
        body = {"decisionPoint": point, "userId": "u-pro", "context": {}, "actions": ACTIONS}
        # The lake reads run in the background: a decision never waits for them, so the
        # first ones may go without; later ones of the same cache period have them.
        deadline = time.monotonic() + 15
        while True:
            reply = client.post("/v1/decide", json=body, headers=admin)
            assert reply.status_code == 200, reply.text
            contexts[point] = _logged(runtime, reply.json()["eventId"])["context"]["user"]
            if point == "not-joined" or {"segments", "features"} <= contexts[point].keys():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

    joined = contexts["joined"]
    assert joined["segments"] == [segment_id]
    assert joined["features"] == {
        "recency_days": 3,
        "frequency": 12,
        "engagement_score": 41.5,
        "top_event": "page",
    }
    assert joined["traits"] == {"plan": "pro"}
    assert "segments" not in contexts["not-joined"]
    assert "features" not in contexts["not-joined"]
    assert contexts["not-joined"]["traits"] == {"plan": "pro"}


def _raw(client: TestClient, method: str, url: str, body: str, headers: dict[str, str]) -> Any:
    """A request whose body is sent as written (``json=`` cannot send NaN)."""
    return client.request(
        method, url, content=body, headers={**headers, "content-type": "application/json"}
    )


def test_non_finite_numbers_are_refused_before_anything_is_stored(
    client: TestClient, boot: Bootstrap
) -> None:
    admin = _admin(client, boot)
    actions = '[{"id": "a"}, {"id": "b"}]'
    for number in ("NaN", "Infinity", "-Infinity", "1e400"):
        config = f'{{"actions": {actions}, "policy": {{"type": "linucb", "alpha": {number}}}}}'
        reply = _raw(client, "PUT", "/v1/decision-points/nan", config, admin)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_request"
        assert number.lstrip("-") in reply.json()["message"]
        decide = (
            f'{{"decisionPoint": "nan", "userId": "u-1", "context": {{"x": {number}}},'
            f' "actions": {actions}}}'
        )
        reply = _raw(client, "POST", "/v1/decide", decide, admin)
        assert reply.status_code == 400, reply.text
        assert set(reply.json()) == {"code", "message"}
        featured = f'[{{"id": "a", "features": {{"f": [1, {number}]}}}}, {{"id": "b"}}]'
        decide = f'{{"decisionPoint": "nan", "userId": "u-1", "actions": {featured}}}'
        assert _raw(client, "POST", "/v1/decide", decide, admin).status_code == 400
        evaluate = (
            f'{{"decisionPoint": "nan", "candidates": [{{"type": "linucb", "alpha": {number}}}]}}'
        )
        reply = _raw(client, "POST", "/v1/decisions/evaluate", evaluate, admin)
        assert reply.status_code == 400, reply.text
    assert client.get("/v1/decision-points/nan", headers=admin).status_code == 404
    # Standard JSON is read as before.
    config = f'{{"actions": {actions}, "policy": {{"type": "linucb", "alpha": 0.5e0}}}}'
    assert _raw(client, "PUT", "/v1/decision-points/nan", config, admin).status_code == 200
    decide = (
        f'{{"decisionPoint": "nan", "userId": "u-1", "context": {{"x": 1e300}},'
        f' "actions": {actions}}}'
    )
    assert _raw(client, "POST", "/v1/decide", decide, admin).status_code == 200


@pytest.mark.parametrize(
    ("policy", "name"),
    [
        ({"type": "linucb"}, "alpha"),
        ({"type": "thompson"}, "v"),
        ({"type": "squarecb"}, "gamma_scale"),
        ({"type": "squarecb"}, "gamma_exponent"),
        ({"type": "epsilon_greedy"}, "epsilon"),
        ({"type": "linucb"}, "l2"),
        ({"type": "thompson"}, "exploration_floor"),
    ],
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_policy_parameter_must_be_finite(
    policy: dict[str, Any], name: str, value: float
) -> None:
    """Python callers (the CLI's ``-c``, training) too: ``json.loads`` reads NaN."""
    with pytest.raises(InvalidRequest) as caught:
        make_policy({**policy, name: value}, context_dim=8)
    assert caught.value.code == "invalid_policy"
    assert name in caught.value.message


def test_analytics_bodies_refuse_non_finite_numbers(client: TestClient, boot: Bootstrap) -> None:
    admin = _admin(client, boot)
    segment = '{"name": "n", "definition": {"trait": "age", "op": "gte", "value": NaN}}'
    reply = _raw(client, "POST", "/v1/analytics/segments", segment, admin)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "code": "invalid_request",
        "message": "body: NaN is not a JSON number; numbers must be finite",
    }
    assert client.get("/v1/analytics/segments", headers=admin).json() == []


def test_policy_sizes_are_bounded(client: TestClient, boot: Bootstrap) -> None:
    """``samples`` of 100,000,000 took 6 GB per decision (and evaluation)."""
    admin = _admin(client, boot)
    config = {"actions": ACTIONS, "policy": {"type": "thompson", "samples": 4096}}
    assert client.put("/v1/decision-points/roll", json=config, headers=admin).status_code == 200
    body = {"decisionPoint": "roll", "userId": "u-1", "actions": ACTIONS}
    assert client.post("/v1/decide", json=body, headers=admin).status_code == 200
    for samples in (4097, 100_000_000, 0, 64.5, True):
        config = {"actions": ACTIONS, "policy": {"type": "thompson", "samples": samples}}
        reply = client.put("/v1/decision-points/roll", json=config, headers=admin)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_policy"
        assert "samples must be" in reply.json()["message"]
        evaluate = {"decisionPoint": "roll", "candidates": [config["policy"]]}
        reply = client.post("/v1/decisions/evaluate", json=evaluate, headers=admin)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_policy"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"type": "neural", "epochs": 1001}, "at most 1000 epochs"),
        ({"type": "neural", "batch_size": 65_537}, "batches of 65536"),
        ({"type": "neural", "hidden": 4097}, "at most 4096 hidden units"),
        ({"type": "vw", "args": "--cb_explore_adf -b 32"}, "--bit_precision is at most 24"),
        ({"type": "vw", "args": "--cb_explore_adf -b25"}, "--bit_precision is at most 24"),
        ({"type": "vw", "args": "--cb_explore_adf --bit_precision=30"}, "at most 24, got 30"),
        ({"type": "vw", "args": "--cb_explore_adf -b 18 --bit_precision 28"}, "got 28"),
    ],
)
def test_optional_policies_sizes_are_bounded(policy: dict[str, Any], message: str) -> None:
    pytest.importorskip({"neural": "torch", "vw": "vowpalwabbit"}[policy["type"]])
    with pytest.raises(InvalidRequest) as caught:
        make_policy(policy, context_dim=8)
    assert caught.value.code == "invalid_policy"
    assert message in caught.value.message


def _documented_defaults() -> dict[str, dict[str, float]]:
    """``{type: {parameter: default}}`` from docs/decide.md's policy table."""
    table = (Path(__file__).parents[2] / "docs" / "decide.md").read_text()
    found = {}
    for kind, parameters in re.findall(r"^\| `(\w+)`[^|]*\| ([^|]*) \|", table, re.MULTILINE):
        found[kind] = {
            name: float(value)
            for name, value in re.findall(r"`(\w+)` \((-?[\d.]+)[,)]", parameters)
        }
    return found


def test_policies_default_to_the_documented_parameters(client: TestClient, boot: Bootstrap) -> None:
    """``{"type": "linucb"}`` ran with alpha 1.0; the docs and new points say 0.3."""
    documented = _documented_defaults()
    assert documented["linucb"] == {"alpha": 0.3}
    for kind in ("linucb", "thompson", "squarecb", "epsilon_greedy"):
        params = make_policy({"type": kind}, context_dim=8).params()
        assert {name: params[name] for name in documented[kind]} == documented[kind], kind
    assert make_policy(DEFAULT_POLICY, context_dim=8).params() == {"alpha": 0.3}

    admin = _admin(client, boot)
    for point, policy in (("typed", {"policy": {"type": "linucb"}}), ("default", {})):
        config = {"actions": ACTIONS, **policy}
        assert client.put(f"/v1/decision-points/{point}", json=config, headers=admin).is_success
        body = {"decisionPoint": point, "userId": "u-1", "actions": ACTIONS}
        assert client.post("/v1/decide", json=body, headers=admin).status_code == 200
        service = client.app.state.decisions  # type: ignore[attr-defined]
        served = service.point(boot.workspace, point, ACTIONS).policies[MAIN_ARM]
        assert served.params() == {"alpha": 0.3}, point


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"trait": "plan", "op": "eq", "value": "pro"}
    for level in range(levels):
        node = {"and" if level % 2 else "or": [node]}
    return node


def test_segment_definitions_are_at_most_20_levels_deep(
    client: TestClient, boot: Bootstrap
) -> None:
    """200 levels answered 500 but were saved; every listing failed from then on."""
    admin = _admin(client, boot)
    for levels in (21, 200):
        segment = {"name": f"deep-{levels}", "definition": _nested(levels)}
        reply = client.post("/v1/analytics/segments", json=segment, headers=admin)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_request"
        assert "at most 20 levels deep" in reply.json()["message"]
    condition = '{"trait": "plan", "op": "eq", "value": "pro"}'
    deepest = '{"name": "deepest", "definition": ' + '{"or": [' * 5000 + condition + "]}" * 5000
    reply = _raw(client, "POST", "/v1/analytics/segments", deepest + "}", admin)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"code": "invalid_request", "message": "body: the JSON nests too deeply"}
    reply = client.get("/v1/analytics/segments", headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json() == []

    segment = {"name": "deep", "definition": _nested(20)}
    reply = client.post("/v1/analytics/segments", json=segment, headers=admin)
    assert reply.status_code == 201, reply.text
    assert reply.json()["definition"] == _nested(20)
    segment_id = reply.json()["id"]
    segment["definition"] = _nested(21)
    reply = client.put(f"/v1/analytics/segments/{segment_id}", json=segment, headers=admin)
    assert reply.status_code == 400, reply.text
    listed = client.get("/v1/analytics/segments", headers=admin)
    assert listed.status_code == 200, listed.text
    assert [s["definition"] for s in listed.json()] == [_nested(20)]


def test_sql_replies_are_capped_in_bytes(make_app: Callable[..., App]) -> None:
    """``select repeat(chr(120), 50000000) from range(10)`` answered 500 MB."""
    app = make_app(**{"analytics.sql_byte_limit": 1000})
    admin = _admin(app.client, app.boot)

    def sql(query: str) -> Any:
        reply = app.client.post("/v1/sql", json={"query": query}, headers=admin)
        assert reply.status_code == 200, reply.text
        return reply.json()

    # Each row is ["xxx…"]: 100 x, 2 quotes, 2 brackets = 104 bytes; 9 fit in 1000.
    body = sql("select repeat('x', 100) as s from range(50)")
    assert body["rows"] == [["x" * 100]] * 9
    assert body["truncated"] is True
    exact = sql("select repeat('x', 96) as s from range(10)")  # 10 rows of 100 bytes
    assert len(exact["rows"]) == 10
    assert exact["truncated"] is False
    # Bytes as sent: "é" is two, an escaped quote two.
    wide = sql("""select repeat('é"', 100) as s from range(3)""")
    assert wide["rows"] == [['é"' * 100]] * 2
    assert wide["truncated"] is True
    huge = sql("select repeat(chr(120), 50000000) as s from range(10)")
    assert huge == {"columns": ["s"], "rows": [], "truncated": True}
    assert sql("select 1 as n") == {"columns": ["n"], "rows": [[1]], "truncated": False}


def test_a_500_mb_sql_reply_is_cut_at_the_default_byte_limit(
    client: TestClient, boot: Bootstrap
) -> None:
    admin = _admin(client, boot)
    reply = client.post(
        "/v1/sql", json={"query": "select repeat(chr(120), 50000000) from range(10)"}, headers=admin
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["truncated"] is True
    assert len(reply.content) < 1000


def test_rollback_of_a_point_with_an_experiment_is_refused(
    client: TestClient, boot: Bootstrap
) -> None:
    """It changed the reported version and nothing else (the arms kept their state)."""
    admin = _admin(client, boot)
    arms = [{"name": n, "policy": {"type": "linucb"}, "share": 1} for n in ("x", "y")]
    config = {"actions": ACTIONS, "experiment": {"arms": arms}, "snapshotMinSeconds": 0}
    assert client.put("/v1/decision-points/exp", json=config, headers=admin).is_success
    body = {"decisionPoint": "exp", "userId": "u-1", "actions": ACTIONS}

    def decide() -> str:
        reply = client.post("/v1/decide", json=body, headers=admin)
        assert reply.status_code == 200, reply.text
        version: str = reply.json()["policyVersion"]
        return version

    service = client.app.state.decisions  # type: ignore[attr-defined]
    for _ in range(2):
        decide()
        service.snapshot(boot.workspace, "exp")
    versions = client.get("/v1/decision-points/exp/versions", headers=admin).json()
    assert {v["arm"] for v in versions} == {"x", "y"}
    before = decide()
    oldest = min(v["version"] for v in versions)
    reply = client.post("/v1/decision-points/exp/rollback", json={"version": oldest}, headers=admin)
    assert reply.status_code == 409, reply.text
    assert reply.json()["code"] == "experiment_running"
    assert "runs an experiment" in reply.json()["message"]
    assert decide().split(".")[0] == before.split(".")[0]
    point = client.get("/v1/decision-points/exp", headers=admin).json()
    assert point["activeVersion"] is None


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", "/v1/tracking-plan", '{"events": {"E": {"schema": {"maximum": NaN}}}}'),
        ("PUT", "/v1/privacy/consent/user_id/u-1", '{"analytics": true, "x": Infinity}'),
        ("POST", "/v1/privacy/export", '{"userId": "u-1", "x": -Infinity}'),
        ("POST", "/v1/admin/sources", '{"name": "web", "x": 1e400}'),
    ],
)
def test_every_json_api_refuses_non_finite_numbers(
    client: TestClient, boot: Bootstrap, method: str, url: str, body: str
) -> None:
    """Not only decide and analytics: a NaN stored in a plan or a request is read back as
    null (or breaks what reads it), so every JSON route reads standard JSON."""
    reply = _raw(client, method, url, body, _admin(client, boot))
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "invalid_request"
    assert "finite" in reply.json()["message"]


def test_a_body_that_is_not_json_gets_a_precise_error(client: TestClient, boot: Bootstrap) -> None:
    admin = _admin(client, boot)
    reply = _raw(client, "PUT", "/v1/tracking-plan", '{"events": {bad', admin)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "code": "invalid_request",
        "message": "body is not valid JSON: Expecting property name enclosed in double quotes "
        "at character 12",
    }
    # curl -d without -H sends a form type: say what to send instead of "not a dictionary".
    for content_type in ("application/x-www-form-urlencoded", "application/xml"):
        reply = client.put(
            "/v1/tracking-plan",
            content=b'{"events": {}}',
            headers={**admin, "content-type": content_type},
        )
        assert reply.status_code == 415, reply.text
        assert reply.json()["code"] == "unsupported_media_type"
        assert "Content-Type: application/json" in reply.json()["message"]
