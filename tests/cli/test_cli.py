"""The ``auie`` command: tenancy and credentials, signing keys, the event log, settings
and errors. In process with click's runner, plus real runs of the installed script."""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from auie.auth.tables import signing_keys
from auie.cli.main import COMMANDS, cli
from auie.errors import AuthenticationFailed
from auie.ids import utcnow
from auie.runtime import Runtime
from conftest import App
from helpers import AUIE, basic, make_settings

#: No AUIE_* variable of the caller and no ./auie.toml reach the commands.
pytestmark = pytest.mark.usefixtures("clean_environment")

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


Run = Callable[..., Result]


@pytest.fixture
def auie(data_dir: Path) -> Run:
    """``auie(*args)``: run a command on the test's data directory; exit status 0 expected
    unless ``status`` says otherwise."""

    def run(*args: str, status: int = 0, env: dict[str, str] | None = None) -> Result:
        # A narrow "terminal": tables must fold, not cut, and errors stay on one line.
        env = {"COLUMNS": "60", **(env or {})}
        result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], env=env)
        assert result.exit_code == status, (result.output, result.exception)
        return result

    return run


@pytest.fixture
def runtime(data_dir: Path) -> Iterator[Runtime]:
    """The same data directory opened directly, to check what the commands did."""
    rt = Runtime(make_settings(data_dir))
    yield rt
    rt.close()


def out_json(result: Result) -> Any:
    return json.loads(result.stdout)


def assert_camel(value: Any) -> None:
    """Every field name, at every depth, is camelCase."""
    if isinstance(value, list):
        for item in value:
            assert_camel(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert CAMEL.match(key), f"{key!r} is not camelCase"
            assert_camel(item)


def assert_one_line_error(result: Result, code: str, *mentions: str) -> None:
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error ({code}): ")
    for text in mentions:
        assert text in lines[0]
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


# -- workspaces, sources, keys, clients -----------------------------------------------------


def test_workspaces_create_and_list(auie: Run) -> None:
    created = out_json(auie("workspaces", "create", "acme", "--json"))
    assert set(created) == {"id", "name", "createdAt"}
    assert created["id"].startswith("ws_")
    assert created["name"] == "acme"
    assert created["createdAt"].endswith("+00:00")
    other = out_json(auie("workspaces", "create", "globex", "--json"))

    listed = out_json(auie("workspaces", "list", "--json"))
    assert listed == [created, other]
    assert_camel(listed)

    table = auie("workspaces", "list").stdout
    assert "acme" in table
    assert "globex" in table
    assert "createdAt" in table


def test_workspace_names_are_unique_and_checked(auie: Run) -> None:
    auie("workspaces", "create", "acme")
    assert_one_line_error(auie("workspaces", "create", "acme", status=2), "conflict", "acme")
    assert_one_line_error(auie("workspaces", "create", "no/slash", status=2), "invalid_name")


def test_sources_create_and_list(auie: Run) -> None:
    ws = out_json(auie("workspaces", "create", "acme", "--json"))
    web = out_json(auie("sources", "create", "site", "--workspace", "acme", "--json"))
    assert set(web) == {"id", "workspaceId", "name", "kind", "createdAt"}
    assert (web["workspaceId"], web["name"], web["kind"]) == (ws["id"], "site", "web")
    ios = out_json(auie("sources", "create", "app", "-w", ws["id"], "--kind", "ios", "--json"))
    assert ios["kind"] == "ios"

    by_name = out_json(auie("sources", "list", "--workspace", "acme", "--json"))
    by_id = out_json(auie("sources", "list", "--workspace", ws["id"], "--json"))
    assert by_name == by_id == [web, ios]
    assert_camel(by_name)

    result = auie("sources", "create", "tv", "-w", "acme", "--kind", "fridge", status=2)
    assert_one_line_error(result, "invalid_kind")
    assert_one_line_error(
        auie("sources", "list", "-w", "nowhere", status=2), "not_found", "nowhere"
    )


def test_keys_create_list_and_revoke(auie: Run, runtime: Runtime) -> None:
    auie("workspaces", "create", "acme")
    source = out_json(auie("sources", "create", "site", "-w", "acme", "--json"))
    key = out_json(auie("keys", "create", "--source", source["id"], "--json"))
    assert set(key) == {"id", "sourceId", "workspaceId", "prefix", "createdAt", "revokedAt", "key"}
    assert key["key"].startswith(key["prefix"])
    assert key["revokedAt"] is None
    assert_camel(key)
    second = out_json(auie("keys", "create", "-s", source["id"], "--json"))

    identity = runtime.tenancy.resolve_write_key(key["key"])
    assert identity is not None
    assert identity.source_id == source["id"]

    listed = out_json(auie("keys", "list", "--workspace", "acme", "--json"))
    assert [k["id"] for k in listed] == [key["id"], second["id"]]
    assert all("key" not in k for k in listed)
    assert key["key"] not in json.dumps(listed)
    assert_camel(listed)
    only = out_json(auie("keys", "list", "-w", "acme", "--source", source["id"], "--json"))
    assert len(only) == 2
    unknown = auie("keys", "list", "-w", "acme", "--source", "src_nope", status=2)
    assert_one_line_error(unknown, "not_found", "src_nope")  # it listed nothing, silently

    revoked = auie("keys", "revoke", key["id"])
    assert revoked.stdout.strip() == f"revoked {key['id']}"
    assert runtime.tenancy.resolve_write_key(key["key"]) is None
    assert runtime.tenancy.resolve_write_key(second["key"]) is not None
    after = {k["id"]: k for k in out_json(auie("keys", "list", "-w", "acme", "--json"))}
    assert after[key["id"]]["revokedAt"] is not None
    assert after[second["id"]]["revokedAt"] is None

    assert_one_line_error(auie("keys", "revoke", key["id"], status=2), "not_found", key["id"])
    assert_one_line_error(auie("keys", "create", "-s", "src_nope", status=2), "not_found")


def test_clients_create_list_and_revoke(auie: Run, runtime: Runtime) -> None:
    ws = out_json(auie("workspaces", "create", "acme", "--json"))
    created = out_json(
        auie(
            "clients",
            "create",
            "--workspace",
            "acme",
            "--name",
            "ops",
            "--scopes",
            "ingest admin",
            "--json",
        )
    )
    assert set(created) == {
        "id",
        "workspaceId",
        "name",
        "scopes",
        "createdAt",
        "revokedAt",
        "secret",
    }
    assert created["workspaceId"] == ws["id"]
    assert created["name"] == "ops"
    assert sorted(created["scopes"]) == ["admin", "ingest"]
    assert_camel(created)
    client = runtime.clients.authenticate(created["id"], created["secret"])
    assert client.scopes == {"ingest", "admin"}

    comma = out_json(auie("clients", "create", "-w", "acme", "--scopes", "decide,ingest", "--json"))
    assert sorted(comma["scopes"]) == ["decide", "ingest"]
    assert comma["name"] == "client"

    listed = out_json(auie("clients", "list", "-w", "acme", "--json"))
    assert [c["id"] for c in listed] == [created["id"], comma["id"]]
    assert all("secret" not in c and "secretHash" not in c for c in listed)
    assert created["secret"] not in json.dumps(listed)
    assert_camel(listed)

    changed = out_json(
        auie(
            "clients",
            "scopes",
            comma["id"],
            "--add",
            "profiles:read,pii:read",
            "--remove",
            "ingest",
            "--json",
        )
    )
    assert sorted(changed["scopes"]) == ["decide", "pii:read", "profiles:read"]
    assert runtime.clients.authenticate(comma["id"], comma["secret"]).scopes == {
        "decide",
        "pii:read",
        "profiles:read",
    }
    result = auie("clients", "scopes", comma["id"], "--add", "root", status=2)
    assert_one_line_error(result, "invalid_scope", "root")
    result = auie(
        "clients", "scopes", comma["id"], "--remove", "decide pii:read profiles:read", status=2
    )
    assert_one_line_error(result, "invalid_scope")
    # An unknown scope to remove is an error too; no option or no change records nothing.
    result = auie("clients", "scopes", comma["id"], "--remove", "bogus", status=2)
    assert_one_line_error(result, "invalid_scope", "bogus")
    recorded = len(runtime.audit.entries(None, action="client.scopes_changed"))
    auie("clients", "scopes", comma["id"], status=2)
    auie("clients", "scopes", comma["id"], "--add", "decide", "--remove", "decide", status=2)
    auie("clients", "scopes", comma["id"], "--add", "decide", "--json")  # holds it already
    assert len(runtime.audit.entries(None, action="client.scopes_changed")) == recorded

    assert auie("clients", "revoke", created["id"]).stdout.strip() == f"revoked {created['id']}"
    with pytest.raises(AuthenticationFailed):
        runtime.clients.authenticate(created["id"], created["secret"])
    assert runtime.clients.authenticate(comma["id"], comma["secret"])
    assert_one_line_error(auie("clients", "revoke", created["id"], status=2), "not_found")
    result = auie("clients", "scopes", created["id"], "--add", "decide", status=2)
    assert_one_line_error(result, "not_found")
    # A scope it held before: no change to make, but a revoked client all the same.
    result = auie("clients", "scopes", created["id"], "--add", "admin", status=2)
    assert_one_line_error(result, "not_found")

    result = auie("clients", "create", "-w", "acme", "--scopes", "ingest root", status=2)
    assert_one_line_error(result, "invalid_scope", "root")


def table_cells(output: str) -> dict[str, str]:
    """The one row of a Rich table, by column, with folded cells joined again."""
    lines = output.splitlines()
    head = [line for line in lines if line.startswith("┃")]
    body = [line for line in lines if line.startswith("│")]

    def columns(rows: list[str], bar: str) -> list[str]:
        parts = [row.strip(bar).split(bar) for row in rows]
        return ["".join(part[i].strip() for part in parts) for i in range(len(parts[0]))]

    return dict(zip(columns(head, "┃"), columns(body, "│"), strict=True))


def test_secrets_printed_as_a_table_are_printed_whole(auie: Run, runtime: Runtime) -> None:
    """Without --json, the key or secret shown once must not be cut to fit the terminal."""
    auie("workspaces", "create", "acme")
    created = table_cells(auie("clients", "create", "-w", "acme", "--scopes", "admin").stdout)
    assert runtime.clients.authenticate(created["id"], created["secret"])
    source = out_json(auie("sources", "create", "site", "-w", "acme", "--json"))
    key = table_cells(auie("keys", "create", "--source", source["id"]).stdout)
    identity = runtime.tenancy.resolve_write_key(key["key"])
    assert identity is not None
    assert identity.key_id == key["id"]


def test_user_text_is_printed_as_is_never_as_markup(auie: Run, runtime: Runtime) -> None:
    auie("workspaces", "create", "acme")
    for name in ("[/x]", "[bold]loud"):
        created = table_cells(
            auie("clients", "create", "-w", "acme", "--name", name, "--scopes", "ingest").stdout
        )
        assert created["name"] == name
        assert runtime.clients.authenticate(created["id"], created["secret"])
        result = auie("sources", "list", "--workspace", name, status=2)
        assert_one_line_error(result, "not_found", f"workspace {name!r} does not exist")
    listed = table_cells(auie("workspaces", "list").stdout)
    assert listed["name"] == "acme"


# -- signing keys -----------------------------------------------------------------------


def signing_key_list(auie: Run) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = out_json(auie("signing-keys", "list", "--json"))
    assert_camel(keys)
    return keys


def test_signing_keys_list_rotate_and_prune(auie: Run, runtime: Runtime) -> None:
    runtime.signing_keys.ensure("ES256")  # what the first start of a server does
    [key] = runtime.signing_keys.load()
    first_kid = key.kid
    [first] = signing_key_list(auie)
    assert set(first) == {"kid", "algorithm", "createdAt", "retiredAt"}
    assert (first["kid"], first["algorithm"], first["retiredAt"]) == (first_kid, "ES256", None)

    rotated = auie("signing-keys", "rotate").stdout
    match = re.match(r"now signing with (\S+); running servers pick it up within 30s", rotated)
    assert match, rotated
    second_kid = match.group(1)
    old, new = signing_key_list(auie)
    assert old["kid"] == first_kid
    assert old["retiredAt"] is not None
    assert (new["kid"], new["retiredAt"]) == (second_kid, None)

    # Just retired: its tokens may still be alive, so prune keeps it.
    assert auie("signing-keys", "prune").stdout.strip() == "removed 0 key(s): -"
    assert len(signing_key_list(auie)) == 2

    # Once it has been retired for longer than a token lives, prune removes it.
    with runtime.engine.begin() as conn:
        conn.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == first_kid)
            .values(retired_at=utcnow() - timedelta(hours=1))
        )
    assert auie("signing-keys", "prune").stdout.strip() == f"removed 1 key(s): {first_kid}"
    assert [k["kid"] for k in signing_key_list(auie)] == [second_kid]


def test_admin_commands_are_audited_like_the_api(auie: Run, runtime: Runtime) -> None:
    """Each change made with the CLI is in the audit log under the HTTP API's action name,
    as actor ``cli`` with the operating-system user, never with a secret."""
    ws = out_json(auie("workspaces", "create", "acme", "--json"))["id"]
    source = out_json(auie("sources", "create", "ios", "-w", "acme", "--json"))["id"]
    key = out_json(auie("keys", "create", "--source", source, "--json"))
    auie("keys", "revoke", key["id"])
    client = out_json(auie("clients", "create", "-w", "acme", "--scopes", "decide", "--json"))
    auie("clients", "scopes", client["id"], "--add", "pii:read", "--remove", "decide")
    auie("clients", "revoke", client["id"])
    runtime.signing_keys.ensure("ES256")
    kid = re.findall(r"now signing with (\S+);", auie("signing-keys", "rotate").stdout)[0]
    auie("signing-keys", "prune")

    entries = runtime.audit.entries(None)
    assert [(e.action, e.workspace_id, e.target) for e in entries] == [
        ("workspace.created", ws, ws),
        ("source.created", ws, source),
        ("write_key.created", ws, key["id"]),
        ("write_key.revoked", ws, key["id"]),
        ("client.created", ws, client["id"]),
        ("client.scopes_changed", ws, client["id"]),
        ("client.revoked", ws, client["id"]),
        ("signing_key.rotated", None, kid),
        ("signing_key.pruned", None, "signing_keys"),
    ]
    assert {e.actor for e in entries} == {"cli"}
    assert {e.details["osUser"] for e in entries} == {getpass.getuser()}
    assert entries[4].details["scopes"] == ["decide"]
    assert entries[5].details["scopes"] == ["pii:read"]
    assert key["key"] not in str(entries)
    assert client["secret"] not in str(entries)
    assert runtime.audit.verify() is None
    assert out_json(auie("audit", "verify", "--json")) == {"intact": True, "alteredAt": None}


def test_set_overrides_reach_the_command(auie: Run) -> None:
    auie("signing-keys", "rotate")
    result = auie(
        "signing-keys",
        "rotate",
        "--set",
        "auth.signing_algorithm=EdDSA",
        "--set",
        "auth.key_refresh_seconds=2.5",
    )
    assert result.stdout.strip().endswith("pick it up within 2.5s")
    assert [k["algorithm"] for k in signing_key_list(auie)] == ["ES256", "EdDSA"]


def test_set_overrides_win_over_env_and_config_file(
    auie: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "auie.toml"
    config.write_text("[auth]\nkey_refresh_seconds = 7\n")
    from_file = auie("signing-keys", "rotate", "--config", str(config)).stdout
    assert from_file.strip().endswith("within 7s")
    monkeypatch.setenv("AUIE_AUTH__KEY_REFRESH_SECONDS", "8")
    from_env = auie("signing-keys", "rotate", "--config", str(config)).stdout
    assert from_env.strip().endswith("within 8s")
    from_set = auie(
        "signing-keys", "rotate", "--config", str(config), "--set", "auth.key_refresh_seconds=9"
    ).stdout
    assert from_set.strip().endswith("within 9s")


# -- the event log ------------------------------------------------------------------------


def send(app: App, path: str, body: dict[str, Any]) -> None:
    reply = app.client.post(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **basic(app.boot.write_key)},
    )
    assert reply.status_code == 200, reply.text


@pytest.fixture
def app_with_events(make_app: Callable[..., App], tmp_path: Path) -> App:
    """An app on ``tmp_path/data`` (the CLI's data directory) that received 5 events of
    2 people and 1 dead letter."""
    app = make_app("data")
    assert app.runtime.settings.data_dir == tmp_path / "data"
    for number in range(3):
        send(
            app,
            "/v1/track",
            {"userId": "ada", "event": f"Step {number}", "messageId": f"a{number}"},
        )
    send(
        app,
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "bob", "traits": {"planName": "pro"}},
                {"type": "page", "anonymousId": "anon-1", "name": "Home"},
                {"type": "track", "userId": "bob"},  # no event name: dead letter
            ]
        },
    )
    return app


@pytest.mark.parametrize("workers", ["1", "2"])
def test_process_once_reports_what_it_processed(
    auie: Run, app_with_events: App, workers: str
) -> None:
    def counts(output: str) -> tuple[str, str]:
        """The final status: events processed and dead letters."""
        last = output.rsplit("processed", 1)[1]
        processed = re.match(r"\s+([\d,]+)", last)
        dead = re.search(r"dead letters\s+([\d,]+)", last)
        assert processed is not None, output
        assert dead is not None, output
        return processed[1], dead[1]

    # One processor in this process, or a group of child processes.
    # 5 events, and the track without an event name as a dead letter.
    assert counts(auie("process", "--once", "--workers", workers).output) == ("5", "1")
    store = app_with_events.runtime.profile_store
    assert store.count_nodes(app_with_events.boot.workspace) == 3  # ada, bob, anon-1
    # Nothing is left: a second run processes nothing.
    assert counts(auie("process", "--once", "--workers", workers).output) == ("0", "0")


def test_process_refuses_at_once_while_another_processor_runs(
    auie: Run, app_with_events: App
) -> None:
    """With ``auie serve`` running on the data directory, ``auie process`` used to wait two
    minutes for its locks, deaf to Ctrl+C, and end in a traceback."""
    from auie.process.lock import ProcessorLock

    data_dir = app_with_events.runtime.settings.data_dir
    started = time.monotonic()
    with ProcessorLock(data_dir):  # as a running server's processor holds it
        for workers in ("1", "2"):
            result = auie("process", "--once", "--workers", workers, status=2)
            assert "processor_running" in result.output
            assert "stop it first" in result.output
    assert time.monotonic() - started < 30
    assert "processed" in auie("process", "--once", "--workers", "1").output  # once it is gone


def test_log_tail_json(auie: Run, app_with_events: App) -> None:
    lines = auie("log", "tail", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 5
    ada = [e for e in events if e.get("userId") == "ada"]
    assert [e["event"] for e in ada] == ["Step 0", "Step 1", "Step 2"], "oldest first"
    assert {e["type"] for e in events} == {"track", "identify", "page"}
    for event in events:
        assert_camel({k: v for k, v in event.items() if k not in {"traits", "properties"}})
        assert event["receivedAt"]
        assert event["messageId"]

    limited = auie("log", "tail", "--json", "-n", "1").stdout.splitlines()
    assert 1 <= len(limited) <= 4, "at most the last record of each of the 4 partitions"
    assert {json.loads(line)["messageId"] for line in limited} <= {e["messageId"] for e in events}

    [dead] = [
        json.loads(line)
        for line in auie("log", "tail", "--topic", "deadletters", "--json").stdout.splitlines()
    ]
    assert dead["code"] == "missing_field"
    assert dead["payload"] == {"type": "track", "userId": "bob"}
    assert_camel({k: v for k, v in dead.items() if k != "payload"})

    workspace = app_with_events.boot.workspace
    mine = auie("log", "tail", "--json", "--workspace", workspace).stdout.splitlines()
    assert len(mine) == 5
    by_name = app_with_events.runtime.tenancy.workspace(workspace).name
    assert len(auie("log", "tail", "--json", "-w", by_name).stdout.splitlines()) == 5
    result = auie("log", "tail", "--json", "--workspace", "ws_other", status=2)
    assert json.loads(result.stdout)["code"] == "not_found"
    assert "'-n' / '--limit'" in auie("log", "tail", "-n", "-1", status=2).stderr

    with_meta = [json.loads(x) for x in auie("log", "tail", "--json", "--meta").stdout.splitlines()]
    for record in with_meta:
        assert {"partition", "offset", "workspaceId", "sourceId"} <= set(record["_log"])
        assert record["_log"]["workspaceId"] == workspace

    text = auie("log", "tail").stdout
    assert "Step 2" in text
    assert "anon:anon-1" in text


def test_log_tail_reads_what_the_event_log_holds(auie: Run, runtime: Runtime) -> None:
    """Records appended straight to the log (as an importer would) show up too."""
    from auie.eventlog import EVENTS_TOPIC, LogRecord

    event = {"type": "track", "userId": "u", "event": "Imported", "messageId": "imp-1"}
    runtime.eventlog.append(
        [LogRecord(EVENTS_TOPIC, b"u", json.dumps(event).encode(), 1_700_000_000_000)]
    )
    [line] = auie("log", "tail", "--json").stdout.splitlines()
    assert json.loads(line) == event


def test_log_stats_json(auie: Run, app_with_events: App) -> None:
    stats = out_json(auie("log", "stats", "--json"))
    assert_camel([{k: v for k, v in topic.items() if k != "lag"} for topic in stats])
    by_topic = {topic["topic"]: topic for topic in stats}
    assert set(by_topic) == {"events", "deadletters"}
    events, dead = by_topic["events"], by_topic["deadletters"]
    assert events["records"] == 5
    assert dead["records"] == 1
    assert len(events["partitions"]) == 4
    assert len(dead["partitions"]) == 1
    for partition in events["partitions"]:
        assert set(partition) == {"partition", "beginOffset", "endOffset", "records", "bytes"}
        assert partition["endOffset"] - partition["beginOffset"] == partition["records"]
        assert (partition["bytes"] > 0) == (partition["records"] > 0)
    assert sum(p["records"] for p in events["partitions"]) == 5
    assert events["lag"] == {}

    table = auie("log", "stats").stdout
    assert "topic events: 5 records" in table
    assert "topic deadletters: 1 records" in table


# -- settings and errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["workspaces", "list", "--set", "server.prot=1"],
        ["signing-keys", "rotate", "--set", "server.prot=1"],
        ["log", "stats", "--set", "server.prot=1"],
    ],
)
def test_bad_config_key_is_one_line_and_status_2(auie: Run, args: list[str]) -> None:
    result = auie(*args, status=2)
    assert_one_line_error(result, "config_error", "unknown key 'server.prot'")


def test_bad_config_from_env_file_and_value(auie: Run, tmp_path: Path) -> None:
    result = auie("workspaces", "list", env={"AUIE_SERVER__PROT": "1"}, status=2)
    assert_one_line_error(result, "config_error", "unknown key 'server.prot'")
    result = auie("workspaces", "list", "--set", "server.port=eighty", status=2)
    assert_one_line_error(result, "config_error", "server.port")
    missing = tmp_path / "missing.toml"
    result = auie("workspaces", "list", "--config", str(missing), status=2)
    assert_one_line_error(result, "config_error", "does not exist")
    result = auie("workspaces", "list", env={"AUIE_CONFIG": str(missing)}, status=2)
    assert_one_line_error(result, "config_error", str(missing))
    bad = tmp_path / "bad.toml"
    bad.write_text("[collect]\nmax_batch = 1\n")
    result = auie("workspaces", "list", "--config", str(bad), status=2)
    assert_one_line_error(result, "config_error", "unknown key 'collect.max_batch'")
    bad.write_bytes(b"\xff\xfe[server]\n")
    result = auie("workspaces", "list", "--config", str(bad), status=2)
    assert_one_line_error(result, "config_error", "cannot read config file", "decode byte 0xff")
    # A database URL AUIE cannot use fails when the settings load, not at a connection.
    for setting in ("database.url", "profiles.url", "lake.catalog_url"):
        result = auie("workspaces", "list", "--set", f"{setting}=garbage://x", status=2)
        assert_one_line_error(result, "config_error", setting, "sqlite:// or postgresql://")
    for url in ("garbage://x", "sqlite:///x.db"):  # the transform's target is PostgreSQL
        result = auie("workspaces", "list", "--set", f"analytics.postgres_url={url}", status=2)
        assert_one_line_error(result, "config_error", "analytics.postgres_url", "postgresql://")
    auie("workspaces", "list", "--set", "analytics.postgres_url=postgres://u@h/db")


def test_a_data_directory_that_cannot_be_used_is_an_error_and_a_new_one_is_noted(
    tmp_path: Path,
) -> None:
    """A mistyped ``--data-dir`` used to show an empty installation without a word (or a
    traceback, where it cannot be created)."""

    def run(data_dir: Path) -> Result:
        return CliRunner().invoke(
            cli, ["workspaces", "list", "--json", "--data-dir", str(data_dir)]
        )

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused = run(blocker / "data")
    assert refused.exit_code == 2, refused.output
    assert json.loads(refused.stdout)["code"] == "invalid_request"
    assert "cannot use the data directory" in json.loads(refused.stdout)["message"]
    created = run(tmp_path / "typo")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == []
    assert f"created the data directory {tmp_path / 'typo'}" in created.stderr
    assert "created" not in run(tmp_path / "typo").stderr  # only the first time


def test_malformed_set_is_a_usage_error(auie: Run) -> None:
    result = auie("workspaces", "list", "--set", "no-equals-sign", status=2)
    assert "KEY=VALUE" in result.stderr
    assert "Traceback" not in result.output


def env_without_auie(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
    return {**env, **extra}


def test_installed_script_help() -> None:
    result = subprocess.run(
        [AUIE, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_auie(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: auie ")
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s", result.stdout, re.MULTILINE), command
    assert result.stderr == ""


def test_the_command_list_matches_the_commands() -> None:
    """``auie --help`` lists the summaries of COMMANDS without loading the commands: each
    must be its command's own."""
    group = click.Context(cli)
    for name, (_, _, summary) in COMMANDS.items():
        command = cli.get_command(group, name)
        assert command is not None, name
        assert name in (command.name, "evaluate"), name  # evaluate = decisions evaluate
        assert command.get_short_help_str(1000) == summary, name


def test_help_and_light_commands_do_not_load_the_lake_or_the_web_app() -> None:
    probe = (
        "import sys\n"
        "from auie.cli.main import main\n"
        "sys.argv = ['auie', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "heavy = {'pyiceberg', 'pyarrow', 'duckdb', 'fastapi', 'torch'} & set(sys.modules)\n"
        "print('loaded:', sorted(heavy))\n"
    )
    python = str(Path(AUIE).with_name("python"))
    for args in (["--help"], ["workspaces", "--help"]):
        result = subprocess.run(
            [python, "-c", probe, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env_without_auie(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "loaded: []", args


def test_installed_script_error_is_red(data_dir: Path) -> None:
    result = subprocess.run(
        [AUIE, "workspaces", "list", "--data-dir", str(data_dir), "--set", "server.prot=1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_auie(FORCE_COLOR="1"),
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("\x1b[31merror\x1b[0m")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
    assert plain == "error (config_error): invalid configuration: unknown key 'server.prot'"
    assert "Traceback" not in result.stderr


def process_events(runtime: Runtime, workspace: str, events: list[dict[str, Any]]) -> None:
    """Append ``events`` to the log (as received at one moment) and process them."""
    from pipeline import drain, log_record

    now = "2026-11-25T12:00:00.000Z"
    runtime.eventlog.append(
        [
            log_record(
                {**e, "messageId": f"m-{i}", "timestamp": now, "receivedAt": now, "context": {}},
                workspace,
            )
            for i, e in enumerate(events)
        ]
    )
    drain(runtime.processor())


def test_profiles_show_prints_tables_and_json(auie: Run, runtime: Runtime) -> None:
    workspace = runtime.bootstrap()
    assert workspace is not None
    events = [
        {"type": "identify", "userId": "u-cli", "traits": {"plan": "pro", "seats": 3}},
        *({"type": "track", "userId": "u-cli", "event": "Opened"} for _ in range(3)),
        {"type": "track", "userId": "u-cli", "event": "Bought"},
    ]
    process_events(runtime, workspace.workspace, events)
    shown = auie("profiles", "show", "user_id", "u-cli", env={"COLUMNS": "120"}).output
    for title in ("Identities", "Traits", "Computed traits", "Event counts"):
        assert title in shown
    assert re.search(r"│ plan +│ pro +│", shown), shown
    assert re.search(r"│ seats +│ 3 +│", shown), shown
    assert shown.index("Opened") < shown.index("Bought") < shown.index("identify")  # by count
    assert "{'" not in shown  # no Python repr
    data = json.loads(auie("profiles", "show", "user_id", "u-cli", "--json").output)
    assert data["traits"] == {"plan": "pro", "seats": 3}
    assert data["computedTraits"]["eventCounts"] == {"Opened": 3, "Bought": 1, "identify": 1}


def test_terminal_control_sequences_in_event_data_are_printed_escaped(
    auie: Run, runtime: Runtime
) -> None:
    """Anyone with a write key (a public one, in a browser) chooses the ids and traits the
    CLI prints: an ESC sequence in them used to reach the operator's terminal, retitling
    the window and recolouring what followed. They are printed as visible escapes."""
    workspace = runtime.bootstrap()
    assert workspace is not None
    evil = "evil\x1b]0;pwned\x07\x1b[31m\u202e\x9b"
    events = [
        {"type": "identify", "userId": evil, "traits": {"plan": "\x1b[2Jgone", "x\x1b": 1}},
        {"type": "track", "userId": evil, "event": "Opened"},
    ]
    process_events(runtime, workspace.workspace, events)
    outputs = {
        "log tail": auie("log", "tail").output,
        "profiles show": auie("profiles", "show", "user_id", evil, env={"COLUMNS": "200"}).output,
    }
    for command, output in outputs.items():
        for unsafe in ("\x1b", "\x07", "\u202e", "\x9b"):
            assert unsafe not in output, (command, output)
    assert "evil\\x1b]0;pwned\\x07\\x1b[31m\\u202e\\x9b" in outputs["log tail"]
    assert "\\x1b[2Jgone" in outputs["profiles show"]
    # The JSON output keeps the values exact (JSON escapes control characters itself).
    data = json.loads(auie("profiles", "show", "user_id", evil, "--json").output)
    assert data["traits"]["plan"] == "\x1b[2Jgone"
    lines = auie("log", "tail", "--json").stdout.splitlines()
    assert {json.loads(line)["userId"] for line in lines} == {evil}  # valid JSON, exact


def test_with_json_an_error_is_json_too(auie: Run, runtime: Runtime) -> None:
    """A script reading a command's --json output gets the API's error shape, exit 2."""
    assert runtime.bootstrap() is not None
    failed = auie("analytics", "sql", "--json", "copy (select 1) to 'x.csv'", status=2)
    error = json.loads(failed.stdout)
    assert set(error) == {"code", "message"}
    assert error["code"] == "read_only"
    plain = auie("analytics", "sql", "copy (select 1) to 'x.csv'", status=2)
    assert plain.stdout == ""
    assert plain.stderr.startswith("error (read_only): ")


def test_a_command_that_needs_one_workspace_names_them_in_its_error(auie: Run) -> None:
    """With --json, the error is JSON too (it was click's plain usage text)."""
    result = auie("profiles", "show", "user_id", "u-1", "--json", status=2)
    assert json.loads(result.stdout)["code"] == "not_found"
    auie("workspaces", "create", "shop")
    auie("workspaces", "create", "blog")
    result = auie("profiles", "show", "user_id", "u-1", "--json", status=2)
    error = json.loads(result.stdout)
    assert error["code"] == "workspace_required"
    assert "2 workspaces exist (" in error["message"]
    assert "shop" in error["message"]
    assert "--workspace" in error["message"]
    result = auie("profiles", "show", "user_id", "u-1", status=2)
    assert_one_line_error(result, "workspace_required", "blog")


def test_serve_binds_every_address_of_its_host_on_one_port() -> None:
    """``auie serve`` binds before anything else (a taken port ends it at once): every
    address the host resolves to, on the one port the system chose for ``--port 0``."""
    import socket

    from auie.cli.serve import _listen

    for host in ("127.0.0.1", "localhost", ""):
        sockets = _listen(host, 0)
        try:
            assert sockets
            assert len({s.getsockname()[1] for s in sockets}) == 1
            expected = {
                a[4][0] for a in socket.getaddrinfo(host or None, 0, flags=socket.AI_PASSIVE)
            }
            assert {s.getsockname()[0] for s in sockets} == expected
            taken = sockets[0].getsockname()[1]
            sockets[0].listen()
            with pytest.raises(click.UsageError, match="Address already in use"):
                _listen(host or "0.0.0.0", taken)
        finally:
            for s in sockets:
                s.close()
