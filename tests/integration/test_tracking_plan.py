"""Tracking plans through the whole pipeline (collect → processor → lake, profiles, dead
letters): allow / flag / block / unplanned modes, versions and violations over the API,
invalid plans, replay after fixing the plan (CLI and API), and enrichment columns."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import http.server
import json
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from auie.cli.main import cli
from auie.eventlog import EVENTS_TOPIC
from auie.ids import utcnow
from auie.lake.tables import DEAD_LETTERS, EVENTS
from auie.process.enrich import Enricher
from auie.process.replay import replay
from auie.process.tables import tracking_plans
from auie.runtime import Runtime
from conftest import App
from helpers import basic, bearer, get_token
from pipeline import drain, lake_table

#: No AUIE_* variable of the caller and no ./auie.toml reach the commands.
pytestmark = pytest.mark.usefixtures("clean_environment")

ORDER_SCHEMA = {
    "type": "object",
    "required": ["total"],
    "properties": {"total": {"type": "number"}},
}
PLAN: dict[str, Any] = {
    "unplanned": "flag",
    "events": {
        "Order Completed": {"mode": "block", "schema": ORDER_SCHEMA},
        "Signed Up": {
            "mode": "flag",
            "schema": {"type": "object", "properties": {"plan": {"enum": ["free", "pro"]}}},
        },
        "Product Viewed": {"mode": "allow", "schema": {"type": "object", "required": ["sku"]}},
    },
    "identify": {
        "mode": "flag",
        "schema": {"type": "object", "properties": {"email": {"type": "string"}}},
    },
}
#: Version 2 fixes the order schema: totals may be sent as strings.
FIXED: dict[str, Any] = {
    **PLAN,
    "events": {
        **PLAN["events"],
        "Order Completed": {
            "mode": "block",
            "schema": {
                "type": "object",
                "required": ["total"],
                "properties": {"total": {"type": ["number", "string"]}},
            },
        },
    },
}


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app(**{"lake.flush_max_seconds": 0.01})


@pytest.fixture
def admin(app: App) -> dict[str, str]:
    return bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, "admin"))


def send(app: App, messages: Sequence[dict[str, Any]]) -> None:
    reply = app.client.post(
        "/v1/batch",
        content=json.dumps({"batch": list(messages)}),
        headers={"Content-Type": "application/json", **basic(app.boot.write_key)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["rejected"] == []


def process(app: App) -> None:
    """Run a fresh processor (it reads the current plan) until the log is drained."""
    drain(app.runtime.processor())


def lake_events(app: App) -> dict[str, dict[str, Any]]:
    rows = lake_table(app.runtime.lake, app.boot.workspace, EVENTS).to_pylist()
    by_id = {row["message_id"]: row for row in rows}
    assert len(by_id) == len(rows), "an event is in the lake twice"
    return by_id


def put_plan(app: App, admin: dict[str, str], plan: dict[str, Any]) -> int:
    reply = app.client.put("/v1/tracking-plan", json=plan, headers=admin)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["version"])


def track(mid: str, event: str, user: str = "u-1", **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": mid,
        "userId": user,
        "event": event,
        "properties": properties,
        "timestamp": "2025-05-01T10:00:00Z",
    }


# -- modes ----------------------------------------------------------------------------------


def test_allow_flag_block_and_unplanned(app: App, admin: dict[str, str]) -> None:
    assert put_plan(app, admin, PLAN) == 1
    send(
        app,
        [
            track("ok-order", "Order Completed", total=10),
            track("bad-order", "Order Completed", total="ten"),
            track("flagged-signup", "Signed Up", plan="gold"),
            track("clean-signup", "Signed Up", plan="pro"),
            track("allowed-view", "Product Viewed"),
            track("mystery", "Mystery Event"),
            {
                "type": "identify",
                "messageId": "flagged-identify",
                "userId": "u-1",
                "traits": {"email": 42},
            },
            {"type": "page", "messageId": "page", "userId": "u-1", "name": "Home"},
        ],
    )
    process(app)
    rows = lake_events(app)
    assert set(rows) == {
        "ok-order",
        "flagged-signup",
        "clean-signup",
        "allowed-view",
        "mystery",
        "flagged-identify",
        "page",
    }
    assert all(row["plan_version"] == 1 for row in rows.values())
    # flag: the problems are in the row; allow and clean events carry none.
    assert json.loads(rows["flagged-signup"]["plan_violations"]) == [
        'plan: "gold" is not one of "free" or "pro"'
    ]
    assert json.loads(rows["mystery"]["plan_violations"]) == ["event is not in the tracking plan"]
    assert json.loads(rows["flagged-identify"]["plan_violations"]) == [
        'email: 42 is not of type "string"'
    ]
    for clean in ("ok-order", "clean-signup", "allowed-view", "page"):
        assert rows[clean]["plan_violations"] is None, clean

    # block: dead-lettered with stage plan, in the profile store and the lake.
    letters = app.runtime.profile_store.dead_letters(app.boot.workspace)
    assert [(d.stage, d.code) for d in letters] == [("plan", "plan_violation")]
    assert json.loads(letters[0].payload)["messageId"] == "bad-order"
    assert letters[0].message == 'total: "ten" is not of type "number"'
    lake_letters = lake_table(app.runtime.lake, app.boot.workspace, DEAD_LETTERS).to_pylist()
    assert [(r["id"], r["stage"], r["code"]) for r in lake_letters] == [
        (letters[0].id, "plan", "plan_violation")
    ]
    # The blocked event is not part of the profile.
    profile = app.runtime.profiles.profile(app.boot.workspace, "user_id", "u-1")
    assert profile.computed_traits["eventCounts"]["Order Completed"] == 1

    counts = {
        (v.event_key, v.plan_version): (v.violations, v.blocked)
        for v in app.runtime.profile_store.violations(app.boot.workspace)
    }
    assert counts == {
        ("Order Completed", 1): (1, 1),
        ("Signed Up", 1): (1, 0),
        ("Product Viewed", 1): (1, 0),
        ("Mystery Event", 1): (1, 0),
        ("identify", 1): (1, 0),
    }

    # Version 2 blocks unplanned events; its violations are counted under version 2.
    assert put_plan(app, admin, {**PLAN, "unplanned": "block"}) == 2
    send(app, [track("mystery-2", "Mystery Event"), track("mystery-3", "Mystery Event")])
    process(app)
    assert "mystery-2" not in lake_events(app)
    counts = {
        (v.event_key, v.plan_version): (v.violations, v.blocked)
        for v in app.runtime.profile_store.violations(app.boot.workspace)
    }
    assert counts[("Mystery Event", 1)] == (1, 0)
    assert counts[("Mystery Event", 2)] == (2, 2)

    # unplanned = allow says nothing about events the plan does not name.
    assert put_plan(app, admin, {**PLAN, "unplanned": "allow"}) == 3
    send(app, [track("mystery-4", "Mystery Event")])
    process(app)
    assert lake_events(app)["mystery-4"]["plan_violations"] is None
    assert lake_events(app)["mystery-4"]["plan_version"] == 3
    assert ("Mystery Event", 3) not in {
        (v.event_key, v.plan_version)
        for v in app.runtime.profile_store.violations(app.boot.workspace)
    }


def test_events_without_a_plan_have_no_plan_version(app: App) -> None:
    send(app, [track("free", "Anything", total="x")])
    process(app)
    row = lake_events(app)["free"]
    assert row["plan_version"] is None
    assert row["plan_violations"] is None
    assert app.runtime.profile_store.violations(app.boot.workspace) == []


# -- versions over the API ------------------------------------------------------------------


def test_plan_versions_and_violations_api(app: App, admin: dict[str, str]) -> None:
    missing = app.client.get("/v1/tracking-plan", headers=admin)
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "message"}
    assert app.client.get("/v1/tracking-plan/versions", headers=admin).json() == []

    first = app.client.put("/v1/tracking-plan", json=PLAN, headers=admin)
    assert first.status_code == 200
    assert first.json() == {"version": 1, "plan": PLAN}
    second = app.client.put("/v1/tracking-plan", json=FIXED, headers=admin)
    assert second.json() == {"version": 2, "plan": FIXED}
    assert app.client.get("/v1/tracking-plan", headers=admin).json() == {
        "version": 2,
        "plan": FIXED,
    }
    past = app.client.get("/v1/tracking-plan", params={"version": 1}, headers=admin)
    assert past.json() == {"version": 1, "plan": PLAN}
    absent = app.client.get("/v1/tracking-plan", params={"version": 3}, headers=admin)
    assert absent.status_code == 404
    assert absent.json()["message"] == "tracking plan version 3 does not exist"
    huge = app.client.get("/v1/tracking-plan", params={"version": 2**70}, headers=admin)
    assert huge.status_code == 400, huge.text  # found by schemathesis: was a 500
    versions = app.client.get("/v1/tracking-plan/versions", headers=admin).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert all(set(v) == {"version", "createdAt"} for v in versions)
    assert versions[0]["createdAt"] <= versions[1]["createdAt"]

    send(app, [track("s1", "Signed Up", plan="gold"), track("s2", "Signed Up", plan="x")])
    process(app)
    violations = app.client.get("/v1/tracking-plan/violations", headers=admin)
    assert violations.status_code == 200
    [row] = violations.json()
    assert set(row) == {
        "eventKey",
        "planVersion",
        "violations",
        "blocked",
        "lastMessage",
        "lastSeenAt",
    }
    assert (row["eventKey"], row["planVersion"], row["violations"], row["blocked"]) == (
        "Signed Up",
        2,
        2,
        0,
    )
    assert "plan" in row["lastMessage"]

    # Tokens without the admin scope see nothing.
    reader = bearer(
        get_token(app.client, app.boot.client_id, app.boot.client_secret, "profiles:read")
    )
    for path in ("/v1/tracking-plan", "/v1/tracking-plan/versions", "/v1/tracking-plan/violations"):
        assert app.client.get(path, headers=reader).status_code == 403
    assert app.client.put("/v1/tracking-plan", json=PLAN, headers=reader).status_code == 403
    assert app.client.get("/v1/tracking-plan").status_code == 401


@pytest.mark.parametrize(
    "plan",
    [
        {"unplanned": "sometimes"},
        {"events": []},
        {"events": {"Order Completed": "block"}},
        {"events": {"Order Completed": {"mode": "reject"}}},
        {"events": {"Order Completed": {"mode": "block", "schema": {"type": "nonsense"}}}},
        {"events": {"Order Completed": {"schema": []}}},
        {"identify": {"mode": "flag", "schema": {"minProperties": "two"}}},
        {"page": "flag"},
        {"unknown_key": {}},
        {"events": {}, "track": {"mode": "block"}},
        {"events": {"Order Completed": {"mode": "flag", "shema": {"required": ["x"]}}}},
        {"identify": {"mode": "flag", "junk": 1}},
        {"events": {"": {"mode": "block"}}},
        {"events": {"  ": {"mode": "block"}}},
    ],
)
def test_invalid_plans_are_rejected(app: App, admin: dict[str, str], plan: dict[str, Any]) -> None:
    reply = app.client.put("/v1/tracking-plan", json=plan, headers=admin)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"code", "message"}
    assert reply.json()["code"] == "invalid_plan"
    assert reply.json()["message"]
    # Nothing was stored.
    assert app.client.get("/v1/tracking-plan/versions", headers=admin).json() == []


def test_a_plan_must_be_an_object(app: App, admin: dict[str, str]) -> None:
    for body in ("[]", "42", "not json"):
        reply = app.client.put(
            "/v1/tracking-plan",
            content=body,
            headers={**admin, "Content-Type": "application/json"},
        )
        assert reply.status_code == 400, reply.text
        assert set(reply.json()) == {"code", "message"}
    assert app.client.get("/v1/tracking-plan/versions", headers=admin).json() == []


def test_a_schema_may_refer_only_inside_itself(
    app: App, admin: dict[str, str], tmp_path: Path
) -> None:
    """A $ref to a URL or a file made the server fetch it (and a host that then failed
    stopped the processor): refused, with nothing fetched; a $ref inside the schema works."""
    secret = tmp_path / "schema.json"
    secret.write_text('{"type": "object"}')
    fetched: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for ref in (f"http://127.0.0.1:{server.server_port}/s.json", secret.as_uri(), "x.json"):
            plan = {"events": {"Remote": {"mode": "block", "schema": {"$ref": ref}}}}
            reply = app.client.put("/v1/tracking-plan", json=plan, headers=admin)
            assert reply.status_code == 400, reply.text
            assert reply.json()["code"] == "invalid_plan"
            assert "a $ref may only point inside the schema" in reply.json()["message"]
    finally:
        server.shutdown()
        server.server_close()
    assert fetched == []
    assert app.client.get("/v1/tracking-plan/versions", headers=admin).json() == []
    inside = {
        "$defs": {"money": {"type": "number", "minimum": 0}},
        "properties": {"total": {"$ref": "#/$defs/money"}},
    }
    put_plan(app, admin, {"events": {"Order": {"mode": "block", "schema": inside}}})
    send(app, [track("m-1", "Order", total=5), track("m-2", "Order", total=-1)])
    process(app)
    assert set(lake_events(app)) == {"m-1"}


def test_a_stored_rule_that_no_longer_compiles_dead_letters_rather_than_stopping(
    app: App, admin: dict[str, str]
) -> None:
    """A version stored before a rule was tightened (here: a $ref to a URL, accepted
    before) still loads: its broken rule fails every event it names, in its mode, and the
    processor goes on with the rest."""
    broken = {"mode": "block", "schema": {"$ref": "http://127.0.0.1:9/gone.json"}}
    document = {"events": {"Remote": broken, "Order": {"mode": "block"}}}
    with app.runtime.engine.begin() as conn:  # as an older version stored it
        conn.execute(
            insert(tracking_plans).values(
                workspace_id=app.boot.workspace,
                version=1,
                plan=json.dumps(document),
                created_at=utcnow(),
            )
        )
    shown = app.client.get("/v1/tracking-plan", headers=admin)
    assert shown.status_code == 200, shown.text
    assert shown.json()["plan"] == document
    send(app, [track("m-1", "Remote"), track("m-2", "Order")])
    process(app)
    assert set(lake_events(app)) == {"m-2"}
    [letter] = app.client.get("/v1/dead-letters", headers=admin).json()
    assert "no longer compiles" in letter["message"], letter


def test_a_plan_with_a_lone_surrogate_is_refused_and_not_stored(
    app: App, admin: dict[str, str]
) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    for body in (
        r'{"events": {"Y\udbff": {"mode": "flag"}}}',
        r'{"events": {"Z\ud800": {"mode": "nope"}}}',
        r'{"identify": {"schema": {"pattern": "\udfff"}}}',
    ):
        reply = app.client.put("/v1/tracking-plan", content=body, headers=headers)
        assert reply.status_code == 400, reply.text
        assert "lone surrogate" in reply.json()["message"]
    assert app.client.get("/v1/tracking-plan/versions", headers=admin).json() == []
    assert app.client.get("/v1/tracking-plan", headers=admin).status_code in (200, 404)


def test_plans_put_at_once_all_get_a_version(app: App, admin: dict[str, str]) -> None:
    """Concurrent writers read the same latest version: each retries with the next one
    (48 at once gave 23 errors 500 before)."""
    plans = [{"events": {f"E{i}": {"mode": "flag"}}} for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda plan: app.client.put("/v1/tracking-plan", json=plan, headers=admin), plans
            )
        )
    assert [r.status_code for r in replies] == [200] * len(plans), [r.text for r in replies]
    assert sorted(r.json()["version"] for r in replies) == list(range(1, len(plans) + 1))


def test_plan_set_refuses_a_file_that_is_not_an_object(app: App, tmp_path: Path) -> None:
    for body in ("[]", "42", '"plan"'):
        path = tmp_path / "plan.json"
        path.write_text(body)
        result = CliRunner().invoke(
            cli, ["plan", "set", str(path), "--data-dir", str(app.runtime.settings.data_dir)]
        )
        assert result.exit_code == 2, (result.output, result.exception)
        assert result.stdout == ""
        assert result.stderr.strip() == "error (invalid_plan): tracking plan must be a JSON object"
    assert app.runtime.plans.current(app.boot.workspace) is None


# -- replay -----------------------------------------------------------------------------------

BLOCKED = ["order-a", "order-b", "order-c"]


def block_orders(app: App, admin: dict[str, str]) -> None:
    put_plan(app, admin, PLAN)
    send(
        app,
        [
            track("order-a", "Order Completed", total="12.50"),
            track("order-b", "Order Completed", user="u-2", total="3"),
            track("order-ok", "Order Completed", total=7),
            track("order-c", "Order Completed", total="1.25"),
        ],
    )
    process(app)
    assert set(lake_events(app)) == {"order-ok"}
    pending = app.runtime.profile_store.dead_letters(app.boot.workspace, stage="plan")
    assert sorted(json.loads(d.payload)["messageId"] for d in pending) == BLOCKED
    put_plan(app, admin, FIXED)


def assert_replayed_once(app: App) -> None:
    rows = lake_events(app)
    assert set(rows) == {"order-ok", *BLOCKED}
    assert rows["order-a"]["plan_version"] == 2
    assert rows["order-a"]["plan_violations"] is None
    profiles = app.runtime.profiles
    ws = app.boot.workspace
    u1 = profiles.profile(ws, "user_id", "u-1").computed_traits["eventCounts"]
    u2 = profiles.profile(ws, "user_id", "u-2").computed_traits["eventCounts"]
    assert u1 == {"Order Completed": 3}
    assert u2 == {"Order Completed": 1}
    assert app.runtime.profile_store.dead_letters(ws) == []
    replayed = app.runtime.profile_store.dead_letters(ws, pending=False)
    assert len(replayed) == 3
    assert all(d.replayed_at is not None for d in replayed)


def replayed_by(app: App, runtime: Runtime) -> int:
    """How many letters a replay with ``runtime``'s stores and log writer appended."""
    return len(
        replay(
            runtime.eventlog,
            runtime.profile_store,
            runtime.plans,
            workspace=app.boot.workspace,
            max_event_bytes=runtime.settings.collect.max_event_bytes,
            data_dir=runtime.settings.data_dir,
        ).replayed
    )


def replayed_records(app: App) -> list[Any]:
    """The log's records that replays appended."""
    log = app.runtime.eventlog
    return [
        r
        for partition in range(log.partitions(EVENTS_TOPIC))
        for r in log.read(EVENTS_TOPIC, partition, 0, 10_000)
        if "replayOf" in r.headers
    ]


def replay_cli(app: App, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["replay", "--json", *args, "--data-dir", str(app.runtime.settings.data_dir)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_replay_with_the_cli_after_fixing_the_plan(app: App, admin: dict[str, str]) -> None:
    block_orders(app, admin)
    # A filter that matches nothing replays nothing.
    assert replay_cli(app, "--stage", "enrich") == {"replayed": 0, "failed": []}
    assert replay_cli(app, "--stage", "plan") == {"replayed": 3, "failed": []}
    process(app)
    assert_replayed_once(app)
    # A second replay, by either path, replays nothing and the lake is unchanged.
    assert replay_cli(app) == {"replayed": 0, "failed": []}
    reply = app.client.post("/v1/dead-letters/replay", json={}, headers=admin)
    assert reply.json() == {"replayed": 0, "failed": []}
    process(app)
    assert_replayed_once(app)


def test_two_replays_at_once_append_each_letter_once(app: App, admin: dict[str, str]) -> None:
    """A replay from the CLI and one from the server at the same moment are two writers of
    the log, each with its own dedupe index: both read the same pending letters and both
    appended them (every replayed event twice in the lake). They take turns now: the second
    reads the letters after the first has marked them."""
    block_orders(app, admin)
    other = Runtime(app.runtime.settings)  # another process's stores and log writer
    read_both = threading.Barrier(2)

    def racing(store: Any) -> None:
        original = store.dead_letters

        def dead_letters(*args: Any, **kwargs: Any) -> Any:
            letters = original(*args, **kwargs)
            with contextlib.suppress(threading.BrokenBarrierError):
                read_both.wait(timeout=2)  # the other replay reads too, if it can
            return letters

        store.dead_letters = dead_letters

    racing(app.runtime.profile_store)
    racing(other.profile_store)
    for runtime in (app.runtime, other):  # long-running writers: their indexes loaded before
        runtime.eventlog.prepare_appends()

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(functools.partial(replayed_by, app), [app.runtime, other]))
    finally:
        other.close()
    assert sorted(counts) == [0, 3]
    process(app)
    assert_replayed_once(app)
    assert len(replayed_records(app)) == 3


def test_a_replay_that_stopped_after_appending_in_another_process_is_not_appended_again(
    app: App, admin: dict[str, str]
) -> None:
    """A replay in another process (the CLI) appends the letters and stops before marking
    them (a crash). The server's log writer loaded its dedupe index before that append, so
    its next replay used to append every letter again: each replayed event twice in the
    lake. It now learns the other writer's keys first, marks the letters, and appends
    nothing."""
    block_orders(app, admin)
    app.runtime.eventlog.prepare_appends()  # the server's writer: its index loaded before
    other = Runtime(app.runtime.settings)  # the CLI's process

    def crash(ids: Any, at: Any) -> None:
        raise KeyboardInterrupt  # stopped after the append, before the marking

    other.profile_store.mark_replayed = crash  # type: ignore[method-assign]

    try:
        with pytest.raises(KeyboardInterrupt):
            replayed_by(app, other)
    finally:
        other.close()
    assert len(app.runtime.profile_store.dead_letters(app.boot.workspace)) == 3  # unmarked
    assert replayed_by(app, app.runtime) == 0  # marked, not appended again
    process(app)
    assert_replayed_once(app)
    assert len(replayed_records(app)) == 3


def test_the_cli_replay_and_plan_set_are_audited_and_bounded(
    app: App, admin: dict[str, str], tmp_path: Path
) -> None:
    block_orders(app, admin)
    data_dir = str(app.runtime.settings.data_dir)
    runner = CliRunner()
    for command in (["replay", "--limit", "0"], ["deadletters", "list", "--limit", "-1"]):
        result = runner.invoke(cli, [*command, "--data-dir", data_dir])
        assert result.exit_code == 2, result.output
        assert "--limit" in result.output
    assert replay_cli(app, "--stage", "plan") == {"replayed": 3, "failed": []}
    [entry] = app.runtime.audit.entries(None, action="dead_letters.replayed")
    assert (entry.actor, entry.target, entry.details["replayed"]) == ("cli", "plan", 3)

    plan_file = tmp_path / "plan.json"
    for body, message in (
        (b'{"events": {"A": {"schema": {"default": NaN}}}}', "NaN is not a JSON number"),
        (b'{"events": {"caf\xe9": {}}}', "the file is not UTF-8 text: byte 0xe9 at offset 16"),
        (b'{"events": {"A\\ud800": {}}}', "lone surrogate"),
    ):
        plan_file.write_bytes(body)
        result = runner.invoke(cli, ["plan", "set", str(plan_file), "--data-dir", data_dir])
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
    plan_file.write_bytes(b'\xef\xbb\xbf{"unplanned": "flag"}')  # a BOM, as Windows writes
    result = runner.invoke(cli, ["plan", "set", str(plan_file), "--data-dir", data_dir])
    assert result.exit_code == 0, result.output
    [updated] = app.runtime.audit.entries(None, action="tracking_plan.updated")[-1:]
    assert (updated.actor, updated.target) == ("cli", "v3")
    for version in ("0", "-1", "99999999999999999999"):
        result = runner.invoke(cli, ["plan", "show", "--version", version, "--data-dir", data_dir])
        assert result.exit_code == 2, result.output
        assert "--version" in result.output


def test_the_dead_letter_api_filters_and_bounds(app: App, admin: dict[str, str]) -> None:
    block_orders(app, admin)
    for query, count in (("stage=plan", 3), ("stage=enrich", 0), ("code=plan_violation", 3)):
        listed = app.client.get(f"/v1/dead-letters?{query}", headers=admin)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == count, query
    for body in ({"limit": True}, {"limit": "10"}, {"limit": 0}, {"stage": "x" * 51}):
        reply = app.client.post("/v1/dead-letters/replay", json=body, headers=admin)
        assert reply.status_code == 400, (body, reply.text)
    reply = app.client.post("/v1/dead-letters/replay", headers=admin)  # no body: all pending
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"replayed": 3, "failed": []}


def test_replay_with_the_api_after_fixing_the_plan(app: App, admin: dict[str, str]) -> None:
    block_orders(app, admin)
    listed = app.client.get("/v1/dead-letters", headers=admin)
    assert listed.status_code == 200
    assert sorted(d["payload"]["messageId"] for d in listed.json()) == BLOCKED
    assert {d["stage"] for d in listed.json()} == {"plan"}

    reply = app.client.post(
        "/v1/dead-letters/replay", json={"stage": "plan", "code": "plan_violation"}, headers=admin
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"replayed": 3, "failed": []}
    process(app)
    assert_replayed_once(app)
    assert app.client.get("/v1/dead-letters", headers=admin).json() == []
    everything = app.client.get("/v1/dead-letters?pending=false", headers=admin).json()
    assert len(everything) == 3
    assert all(d["replayedAt"] for d in everything)

    again = app.client.post("/v1/dead-letters/replay", json={}, headers=admin)
    assert again.json() == {"replayed": 0, "failed": []}
    assert replay_cli(app) == {"replayed": 0, "failed": []}
    process(app)
    assert_replayed_once(app)


def test_replay_filters_before_the_limit(app: App, admin: dict[str, str]) -> None:
    """20 pending collector rejects ahead of the plan's: ``--stage plan --limit 5`` still
    finds the plan's (the filter is not applied to the first 5 letters only)."""
    nameless = [{"type": "track", "userId": "u-1", "messageId": f"no-name-{i}"} for i in range(20)]
    reply = app.client.post(
        "/v1/batch", json={"batch": nameless}, headers=basic(app.boot.write_key)
    )
    assert len(reply.json()["rejected"]) == 20
    process(app)
    block_orders(app, admin)
    assert len(app.runtime.profile_store.dead_letters(app.boot.workspace)) == 23

    assert replay_cli(app, "--stage", "plan", "--limit", "2") == {"replayed": 2, "failed": []}
    reply = app.client.post(
        "/v1/dead-letters/replay",
        json={"stage": "plan", "code": "plan_violation", "limit": 5},
        headers=admin,
    )
    assert reply.json() == {"replayed": 1, "failed": []}
    process(app)
    assert set(lake_events(app)) == {"order-ok", *BLOCKED}
    pending = app.runtime.profile_store.dead_letters(app.boot.workspace)
    assert {d.stage for d in pending} == {"collect"}
    assert len(pending) == 20


def test_replay_keeps_letters_the_plan_still_blocks(app: App, admin: dict[str, str]) -> None:
    """Replayed before the plan is fixed, a blocked event stays the same pending letter: no
    new letter, no second violation, nothing in the lake; after the fix it goes through."""
    put_plan(app, admin, PLAN)
    send(app, [track("order-a", "Order Completed", total="12.50")])
    process(app)
    [letter] = app.runtime.profile_store.dead_letters(app.boot.workspace)
    still = f"still blocked by tracking plan version 1: {letter.message}"
    for report in (
        replay_cli(app),
        app.client.post("/v1/dead-letters/replay", json={}, headers=admin).json(),
    ):
        assert report == {"replayed": 0, "failed": [{"id": letter.id, "message": still}]}
        process(app)
        assert app.runtime.profile_store.dead_letters(app.boot.workspace, pending=False) == [letter]
    counts = app.runtime.profile_store.violations(app.boot.workspace)
    assert [(v.event_key, v.violations, v.blocked) for v in counts] == [("Order Completed", 1, 1)]
    assert lake_events(app) == {}

    put_plan(app, admin, FIXED)
    assert replay_cli(app) == {"replayed": 1, "failed": []}
    process(app)
    assert set(lake_events(app)) == {"order-a"}
    assert app.runtime.profile_store.dead_letters(app.boot.workspace) == []


def test_letters_that_still_fail_do_not_hold_back_newer_ones(
    app: App, admin: dict[str, str]
) -> None:
    """``limit`` counts letters replayed: two old letters the fixed plan still blocks were
    returned by every limit-2 replay, and the newer, replayable ones were never reached."""
    put_plan(app, admin, PLAN)
    send(app, [track("old-1", "Order Completed"), track("old-2", "Order Completed")])
    process(app)  # no total at all: blocked by every version
    send(app, [track(f"new-{i}", "Order Completed", total=f"{i}.50") for i in range(3)])
    process(app)
    put_plan(app, admin, FIXED)
    old = [d.id for d in app.runtime.profile_store.dead_letters(app.boot.workspace)][:2]
    first = app.client.post("/v1/dead-letters/replay", json={"limit": 2}, headers=admin).json()
    assert first["replayed"] == 2
    assert [f["id"] for f in first["failed"]] == old
    assert replay_cli(app, "--limit", "2")["replayed"] == 1
    process(app)
    assert set(lake_events(app)) == {"new-0", "new-1", "new-2"}
    pending = app.runtime.profile_store.dead_letters(app.boot.workspace)
    assert [d.id for d in pending] == old


def test_replay_needs_the_admin_scope(app: App) -> None:
    reader = bearer(
        get_token(app.client, app.boot.client_id, app.boot.client_secret, "profiles:read")
    )
    reply = app.client.post("/v1/dead-letters/replay", json={}, headers=reader)
    assert reply.status_code == 403
    assert app.client.post("/v1/dead-letters/replay", json={}).status_code == 401


def test_replay_keeps_letters_that_still_fail(app: App, admin: dict[str, str]) -> None:
    """A collector reject (here: a track without an event name) is normalised again on
    replay; it fails again, is reported, and stays pending."""
    reply = app.client.post(
        "/v1/batch",
        json={"batch": [{"type": "track", "userId": "u-1", "messageId": "no-name"}]},
        headers=basic(app.boot.write_key),
    )
    assert reply.status_code == 200
    assert [r["code"] for r in reply.json()["rejected"]] == ["missing_field"]
    process(app)
    [letter] = app.runtime.profile_store.dead_letters(app.boot.workspace)
    assert (letter.stage, letter.code) == ("collect", "missing_field")
    for _ in range(2):
        again = app.client.post("/v1/dead-letters/replay", json={}, headers=admin)
        assert again.status_code == 200
        assert again.json()["replayed"] == 0
        assert [f["id"] for f in again.json()["failed"]] == [letter.id]
    assert [d.id for d in app.runtime.profile_store.dead_letters(app.boot.workspace)] == [letter.id]


def test_replay_holds_collector_rejects_to_the_event_size_limit(
    app: App, admin: dict[str, str]
) -> None:
    """An event the collector refused as too large stays too large on replay: it is
    reported with the collector's code and message, stays pending and never reaches the lake."""
    big = track("too-big", "Clicked", blob="x" * 40_000)
    reply = app.client.post("/v1/batch", json={"batch": [big]}, headers=basic(app.boot.write_key))
    assert reply.status_code == 200
    [rejected] = reply.json()["rejected"]
    assert rejected["code"] == "event_too_large"
    process(app)
    [letter] = app.runtime.profile_store.dead_letters(app.boot.workspace)
    assert (letter.stage, letter.code, letter.message) == (
        "collect",
        "event_too_large",
        rejected["message"],
    )

    # The size differs by a few bytes: the collector also recorded the sender's IP.
    too_large = re.compile(r"event is 40\d\d\d bytes; the limit is 32768")
    for report in (
        app.client.post("/v1/dead-letters/replay", json={}, headers=admin).json(),
        replay_cli(app, "--stage", "collect"),
    ):
        assert report["replayed"] == 0
        [failed] = report["failed"]
        assert failed["id"] == letter.id
        assert too_large.fullmatch(failed["message"]), failed
    assert too_large.fullmatch(letter.message)
    process(app)
    assert app.runtime.profile_store.dead_letters(app.boot.workspace) == [letter]
    assert "too-big" not in lake_events(app)


# -- enrichment -------------------------------------------------------------------------------

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
URL = (
    "https://shop.example.com/sale/shoes?utm_source=news&utm_medium=email"
    "&utm_campaign=spring&utm_term=red+shoes&utm_content=banner&x=1"
)


def enrichment_events() -> list[dict[str, Any]]:
    return [
        {
            "type": "page",
            "messageId": "desktop",
            "anonymousId": "a-1",
            "name": "Sale",
            "context": {
                "userAgent": CHROME_WINDOWS,
                "ip": "198.51.100.77",
                "page": {"url": URL, "path": "/sale/shoes"},
            },
        },
        {
            "type": "track",
            "messageId": "phone",
            "anonymousId": "a-2",
            "event": "Tapped",
            "properties": {"url": "http://m.example.org/p/1?utm_source=app"},
            "context": {
                "userAgent": IPHONE,
                "ip": "2001:db8:1234:5678::1",
                "campaign": {"source": "ignored", "medium": "push", "name": "winter"},
            },
        },
        {
            "type": "track",
            "messageId": "tablet",
            "anonymousId": "a-3",
            "event": "Swiped",
            "context": {"userAgent": IPAD},
        },
        {
            "type": "page",
            "messageId": "bot",
            "anonymousId": "a-4",
            "context": {"userAgent": BOT, "ip": "not an ip"},
        },
        {
            "type": "track",
            "messageId": "bare",
            "anonymousId": "a-5",
            "event": "Nothing",
            "context": {"page": {"url": "::not a url::"}},
        },
    ]


def columns(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: row[name] for name in names}


def test_enrichment_columns(app: App) -> None:
    send(app, enrichment_events())
    process(app)
    rows = lake_events(app)
    device = ("browser_name", "browser_version", "os_name", "os_version", "device_type")
    assert columns(rows["desktop"], *device) == {
        "browser_name": "Chrome",
        "browser_version": "124.0",
        "os_name": "Windows",
        "os_version": "10",
        "device_type": "desktop",
    }
    assert columns(rows["phone"], *device, "device_brand", "device_model") == {
        "browser_name": "Mobile Safari",
        "browser_version": "17.4",
        "os_name": "iOS",
        "os_version": "17.4",
        "device_type": "mobile",
        "device_brand": "Apple",
        "device_model": "iPhone",
    }
    assert rows["tablet"]["device_type"] == "tablet"
    assert rows["bot"]["device_type"] == "bot"
    assert rows["bare"]["browser_name"] is None
    assert rows["bare"]["device_type"] is None

    utm = (
        "page_host",
        "page_path",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
    )
    assert columns(rows["desktop"], *utm) == {
        "page_host": "shop.example.com",
        "page_path": "/sale/shoes",
        "utm_source": "news",
        "utm_medium": "email",
        "utm_campaign": "spring",
        "utm_term": "red shoes",
        "utm_content": "banner",
    }
    # properties.url when there is no context.page.url; context.campaign fills the gaps.
    assert columns(rows["phone"], *utm) == {
        "page_host": "m.example.org",
        "page_path": "/p/1",
        "utm_source": "app",
        "utm_medium": "push",
        "utm_campaign": "winter",
        "utm_term": None,
        "utm_content": None,
    }
    assert rows["tablet"]["page_host"] is None
    assert rows["desktop"]["context_page_url"] == URL
    # Without truncation addresses are kept as sent (or the collector's peer address).
    assert rows["desktop"]["context_ip"] == "198.51.100.77"
    assert rows["phone"]["context_ip"] == "2001:db8:1234:5678::1"
    assert rows["tablet"]["context_ip"] == "203.0.113.9"


def test_ip_truncation(make_app: Callable[..., App]) -> None:
    app = make_app(**{"process.ip_truncation": "network", "lake.flush_max_seconds": 0.01})
    send(app, enrichment_events())
    process(app)
    rows = lake_events(app)
    expected = {
        "desktop": "198.51.100.0",
        "phone": "2001:db8:1234::",
        "tablet": "203.0.113.0",  # the collector's peer address, truncated too
        "bot": "",  # not an address: dropped
    }
    for mid, ip in expected.items():
        assert rows[mid]["context_ip"] == ip, mid
        assert json.loads(rows[mid]["context"])["ip"] == ip, mid
    # Truncation never reaches the other enrichment.
    assert rows["desktop"]["browser_name"] == "Chrome"


def test_enricher_does_not_fail_on_odd_shapes() -> None:
    enrich = Enricher("network")
    assert enrich({"type": "track"}) == {}
    assert enrich({"context": "not an object", "properties": []}) == {}
    event = {"context": {"ip": 12, "userAgent": 5, "page": "x", "campaign": ["a"]}}
    assert enrich(event) == {}
    assert event["context"]["ip"] == 12


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/p?q=1&ref=x", {"page_host": "a.example", "page_path": "/p"}),
        (
            "https://a.example/p?utm%5Fsource=news&utm_medium=%65mail",  # escaped name, value
            {
                "page_host": "a.example",
                "page_path": "/p",
                "utm_source": "news",
                "utm_medium": "email",
            },
        ),
        (
            "https://a.example/p?utm%5Fsource=news",  # an escaped name alone
            {"page_host": "a.example", "page_path": "/p", "utm_source": "news"},
        ),
        ("https://a.example/?UTM_SOURCE=x", {"page_host": "a.example", "page_path": "/"}),
    ],
)
def test_page_url_columns(url: str, expected: dict[str, str]) -> None:
    """Only the UTM parameters named exactly, after unescaping, become columns."""
    assert Enricher()({"properties": {"url": url}}) == expected
