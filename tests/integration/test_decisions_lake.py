"""Decisions and rewards through the event log into the lake (issue 5), with the real
in-process app making the decisions, the real processor, Iceberg lake and event log:

* each decision and reward is in the workspace's ``decisions`` / ``rewards`` table exactly
  once, also when the processor died after a lake commit and before moving the log's
  offsets; each workspace's rows in its own namespace;
* evaluation reads the lake plus the log's records past the lake's offsets: the same
  decisions and rewards as the whole log, none counted twice, and still everything once the
  log's retention has deleted the records;
* a decision record that is not one becomes a dead letter;
* the dbt mart ``decision_training`` (one row per decision, its rewards aggregated) and the
  ``decisions`` and ``rewards`` tables are queryable with ``POST /v1/sql``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from auie.auth.scopes import ALL_SCOPES
from auie.decide.evaluation import logged_decisions, read_event_log
from auie.eventlog import DECISIONS_TOPIC, REWARDS_TOPIC, LogRecord
from auie.lake.catalog import committed_offsets
from auie.lake.tables import DEAD_LETTERS, DECISIONS, REWARDS
from auie.process import GROUP
from auie.runtime import Bootstrap
from auie.transform.runner import TransformRunner
from conftest import App
from decide_sim import ACTIONS, SHORT_WAIT, drive, settle
from helpers import bearer, get_token, stored_events
from pipeline import drain, lake_table

POINT = "home-hero"
SETTINGS = {"lake.flush_max_seconds": 3600, "lake.maintenance_minutes": 0}


def configure(
    app: App, boot: Bootstrap, aggregation: str = "earliest", wait: dict[str, int] | None = None
) -> None:
    admin = bearer(get_token(app.client, boot.client_id, boot.client_secret, "admin"))
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={
            "actions": ACTIONS,
            "policy": {"type": "epsilon_greedy", "epsilon": 0.5},
            "reward": {"aggregation": aggregation, **(wait or {})},
        },
        headers=admin,
    )
    assert reply.status_code == 200, reply.text


def second_workspace(app: App) -> Bootstrap:
    workspace = app.runtime.tenancy.create_workspace("second")
    client = app.runtime.clients.create(workspace.id, "admin", ALL_SCOPES)
    return Bootstrap(workspace.id, "", "", client.client.id, client.secret)


def logged(app: App, topic: str, workspace: str) -> list[dict[str, Any]]:
    """The records of a topic of one workspace, decoded (the log has no per-workspace read)."""
    log = app.runtime.eventlog
    found = []
    for part, start in log.begin_offsets(topic).items():
        for record in log.read(topic, part, start, 1_000_000):
            if record.headers.get("workspaceId") == workspace:
                found.append(json.loads(record.value))
    return found


def test_each_decision_and_reward_is_in_its_workspace_table_once_after_a_crash(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**SETTINGS)
    other = second_workspace(app)
    for boot in (app.boot, other):
        configure(app, boot)
    drive(app.client, app.boot, POINT, 80, seed=1)
    drive(app.client, other, POINT, 30, seed=2)

    # The first processor commits its micro-batch to the lake and dies before the log's
    # committed offsets move: the next one reads everything again.
    first = app.runtime.processor()
    assert first.step().decisions > 0
    first.writer.flush(first.positions)
    assert app.runtime.eventlog.committed(GROUP, DECISIONS_TOPIC) == {}
    drive(app.client, app.boot, POINT, 20, seed=3)  # and more arrive meanwhile
    drain(app.runtime.processor())

    for boot in (app.boot, other):
        decisions = logged(app, DECISIONS_TOPIC, boot.workspace)
        rewards = logged(app, REWARDS_TOPIC, boot.workspace)
        assert rewards, "the simulation rewards some decisions"
        rows = lake_table(app.runtime.lake, boot.workspace, DECISIONS).to_pylist()
        assert Counter(r["event_id"] for r in rows) == Counter(d["eventId"] for d in decisions)
        by_id = {r["event_id"]: r for r in rows}
        for decision in decisions:
            row = by_id[decision["eventId"]]
            assert row["decision_point"] == POINT
            assert row["user_id"] == decision["userId"]
            assert json.loads(row["context"]) == decision["context"]
            assert json.loads(row["actions"]) == decision["actions"]
            assert json.loads(row["probabilities"]) == decision["probabilities"]
            assert row["chosen_action"] == decision["chosenAction"]
            chosen = [a["id"] for a in decision["actions"]].index(decision["chosenAction"])
            assert row["chosen_probability"] == decision["probabilities"][chosen]
            assert row["policy_version"] == decision["policyVersion"]
            assert row["arm"] == decision["arm"]
            assert (row["learn"], row["deferred"]) == (True, False)
        paid = lake_table(app.runtime.lake, boot.workspace, REWARDS).to_pylist()
        assert sorted((r["event_id"], r["value"]) for r in paid) == sorted(
            (r["eventId"], r["value"]) for r in rewards
        )

    log = app.runtime.eventlog
    for topic, table in ((DECISIONS_TOPIC, DECISIONS), (REWARDS_TOPIC, REWARDS)):
        assert log.committed(GROUP, topic) == log.end_offsets(topic)
        covered = committed_offsets(app.runtime.lake.refresh(app.boot.workspace, table))
        assert covered[topic] == log.end_offsets(topic)


def test_evaluation_reads_the_lake_and_the_log_tail_without_double_counting(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**SETTINGS)
    configure(app, app.boot)
    runtime, ws = app.runtime, app.boot.workspace
    headers = drive(app.client, app.boot, POINT, 60, seed=4)
    drain(runtime.processor())  # 60 in the lake
    drive(app.client, app.boot, POINT, 25, seed=5)  # 25 only in the log

    def summary(decisions: list[Any]) -> list[tuple[str, str, list[float], list[float]]]:
        return [(d.event_id, d.chosen_action, d.probabilities, d.rewards) for d in decisions]

    whole_log = read_event_log(runtime.eventlog, ws, POINT)
    assert len(whole_log) == 85
    both = logged_decisions(runtime.eventlog, ws, POINT, lake=runtime.lake)
    assert summary(both) == summary(whole_log)
    assert both == whole_log
    latest = logged_decisions(runtime.eventlog, ws, POINT, lake=runtime.lake, limit=30)
    assert summary(latest) == summary(whole_log[-30:])

    # The API evaluates the same log, once its rewards are final (a 1 s wait from now on).
    configure(app, app.boot, wait=SHORT_WAIT)
    settle()
    reply = app.client.post(
        "/v1/decisions/evaluate",
        json={"decisionPoint": POINT, "bootstrapRounds": 0, "importanceTop": 0},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["decisions"] == reply.json()["rounds"] == 85

    # The log forgets (retention); once processed, the lake still has everything.
    drain(runtime.processor())
    for topic in (DECISIONS_TOPIC, REWARDS_TOPIC):
        runtime.eventlog.apply_retention(topic, int(time.time() * 1000) + 1000)
    assert read_event_log(runtime.eventlog, ws, POINT) == []
    assert summary(logged_decisions(runtime.eventlog, ws, POINT, lake=runtime.lake)) == summary(
        whole_log
    )


def test_a_record_that_is_not_a_decision_becomes_a_dead_letter(
    make_app: Callable[..., App],
) -> None:
    app = make_app(**SETTINGS)
    ws = app.boot.workspace
    outcome = app.runtime.eventlog.append(
        [
            LogRecord(
                topic=DECISIONS_TOPIC,
                key=b"broken",
                value=json.dumps({"eventId": "broken", "decisionPoint": POINT}).encode(),
                timestamp_ms=int(time.time() * 1000),
                headers={"workspaceId": ws},
            )
        ]
    )[0]
    drain(app.runtime.processor())
    letters = lake_table(app.runtime.lake, ws, DEAD_LETTERS).to_pylist()
    assert [(r["id"], r["stage"], r["code"]) for r in letters] == [
        (f"dl-{DECISIONS_TOPIC}-{outcome.partition}-{outcome.offset}", "decode", "undecodable")
    ]
    assert [d.id for d in app.runtime.profile_store.dead_letters(ws)] == [letters[0]["id"]]
    assert stored_events(app.runtime, DECISIONS_TOPIC)  # the log keeps the record


def test_the_training_mart_and_the_tables_answer_sql(make_app: Callable[..., App]) -> None:
    app = make_app(**SETTINGS)
    configure(app, app.boot, aggregation="sum")
    runtime, ws = app.runtime, app.boot.workspace
    drive(app.client, app.boot, POINT, 40, seed=6)
    decisions = logged(app, DECISIONS_TOPIC, ws)
    first = decisions[0]["eventId"]
    # every scope of the bootstrap client: decide (rewards) and SQL
    admin = bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret))
    for value in (0.25, 2.0):  # a decision rewarded twice more: sum, count, earliest
        reply = app.client.post(
            f"/v1/decisions/{first}/reward", json={"value": value}, headers=admin
        )
        assert reply.status_code == 200, reply.text
    rewards = logged(app, REWARDS_TOPIC, ws)
    drain(runtime.processor())

    result = TransformRunner(runtime.settings, runtime.lake).run(ws)
    assert result.success, result.error
    assert "decision_training" in result.exported
    tests = [n for n in result.nodes if n.resource_type == "test"]
    assert any("decision_training" in n.name for n in tests)
    assert {n.status for n in tests} == {"pass"}

    def sql(query: str) -> list[list[Any]]:
        reply = app.client.post("/v1/sql", json={"query": query}, headers=admin)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["rows"])

    assert sql("SELECT count(*) FROM decisions") == [[len(decisions)]]
    assert sql("SELECT count(*), sum(value) FROM rewards") == [
        [len(rewards), sum(r["value"] for r in rewards)]
    ]
    rows = sql(
        "SELECT event_id, chosen_action, reward_count, reward_sum, reward_earliest,"
        " first_reward_at IS NOT NULL FROM decision_training ORDER BY event_id"
    )
    expected = []
    for decision in sorted(decisions, key=lambda d: d["eventId"]):
        values = [r["value"] for r in rewards if r["eventId"] == decision["eventId"]]
        expected.append(
            [
                decision["eventId"],
                decision["chosenAction"],
                len(values),
                sum(values) if values else None,
                values[0] if values else None,
                bool(values),
            ]
        )
    assert rows == expected
    assert next(r for r in rows if r[0] == first)[2] >= 2
