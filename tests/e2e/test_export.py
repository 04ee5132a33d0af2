"""The access export (DSAR) is complete and contains nobody else.

Three people go through the real collector, processor and decision service (in process):
the subject merges two devices, identifies with an e-mail, is aliased from an old user
id, gets decisions and rewards, and has two dead letters (one from the collector, one
from the tracking plan). The export is requested through the API; then every store is
read *directly* (SQLite files, the Iceberg tables through pyiceberg, the event log file)
with an independent notion of "about the person" — any string value in the row equal to
one of their identifiers, profile ids or decision ids — and each expected row must be in
the archive, and every row of the archive must be about the subject and name nobody
else. The CLI's ``auie privacy export`` writes the same archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auie.api.app import create_app
from auie.cli.main import cli
from auie.lake.catalog import Lake, open_catalog
from auie.runtime import Runtime
from helpers import basic, bearer, get_token, make_settings
from pipeline import drain

BASE = datetime(2024, 6, 1, 8, tzinfo=UTC)
SUBJECT = {
    "user": "exp-user-Alpha7",
    "old": "exp-old-user-Alpha7",
    "laptop": "exp-anon-laptop-A1",
    "phone": "exp-anon-phone-A2",
    "email": "Alpha.Subject@Example.com",
    "name": "Åsa Subjectsdóttir",
}
OTHERS = [
    {
        "user": f"exp-user-Other{n}",
        "old": None,
        "laptop": f"exp-anon-laptop-O{n}",
        "phone": f"exp-anon-phone-O{n}",
        "email": f"other{n}@example.net",
        "name": f"Other Person {n}",
    }
    for n in (1, 2)
]
PLAN = {
    "events": {
        "Order Completed": {
            "mode": "block",
            "schema": {"type": "object", "required": ["revenue"]},
        }
    }
}


def _at(day: int, minute: int = 0) -> str:
    return (BASE + timedelta(days=day, minutes=minute)).isoformat()


def events_of(person: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for day in range(6):
        out.append(
            {
                "type": "page",
                "name": "Home",
                "anonymousId": person["laptop"],
                "messageId": f"{tag}-p-{day}",
                "timestamp": _at(day, 1),
            }
        )
        out.append(
            {
                "type": "track",
                "event": "Viewed",
                "anonymousId": person["phone"],
                "messageId": f"{tag}-v-{day}",
                "timestamp": _at(day, 2),
            }
        )
    out.append(
        {
            "type": "identify",
            "userId": person["user"],
            "anonymousId": person["laptop"],
            "traits": {"email": person["email"], "name": person["name"]},
            "messageId": f"{tag}-i",
            "timestamp": _at(1, 5),
        }
    )
    out.append(
        {
            "type": "track",
            "event": "Signed In",
            "userId": person["user"],
            "anonymousId": person["phone"],
            "messageId": f"{tag}-s",
            "timestamp": _at(2, 5),
        }
    )
    out.append(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": person["user"],
            "properties": {"coupon": "none"},
            "messageId": f"{tag}-blocked",
            "timestamp": _at(3, 5),
        }
    )
    if person["old"]:
        out.append(
            {
                "type": "alias",
                "userId": person["user"],
                "previousId": person["old"],
                "messageId": f"{tag}-a",
                "timestamp": _at(4, 5),
            }
        )
    return out


@dataclass
class Setup:
    data_dir: Path
    runtime: Runtime
    workspace: str
    token: str
    archive: dict[str, Any]
    manifest: dict[str, Any]
    request_id: str
    decision_ids: dict[str, list[str]]


def _wait(client: Any, token: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        state: dict[str, Any] = client.get(
            f"/v1/privacy/requests/{request_id}", headers=bearer(token)
        ).json()
        if state["status"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def read_archive(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    files: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        raw = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(raw.pop("manifest.json"))
    for entry in manifest["files"]:
        body = raw[entry["name"]]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["name"]
        assert len(body) == entry["bytes"]
        files[entry["name"]] = json.loads(body)
        assert len(files[entry["name"]]) == entry["rows"], entry["name"]
    assert set(raw) == set(files), "every file is in the manifest"
    return files, manifest


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from fastapi.testclient import TestClient

    data_dir = tmp_path_factory.mktemp("export") / "data"
    runtime = Runtime(
        make_settings(data_dir, **{"lake.flush_max_records": 7, "lake.maintenance_minutes": 0})
    )
    boot = runtime.bootstrap()
    assert boot is not None
    decision_ids: dict[str, list[str]] = {}
    with TestClient(create_app(runtime)) as client:
        token = get_token(client, boot.client_id, boot.client_secret)
        assert client.put("/v1/tracking-plan", json=PLAN, headers=bearer(token)).status_code == 200
        people = [(SUBJECT, "subj")] + [(p, f"oth{n}") for n, p in enumerate(OTHERS, 1)]
        for person, tag in people:
            reply = client.post(
                "/v1/batch",
                json={
                    "batch": [
                        *events_of(person, tag),
                        {
                            "type": "track",
                            "userId": person["user"],  # no event name
                            "messageId": f"{tag}-bad",
                            "timestamp": _at(5, 9),
                        },
                    ]
                },
                headers=basic(boot.write_key),
            )
            assert reply.status_code == 200, reply.text
            assert len(reply.json()["rejected"]) == 1
        time.sleep(0.3)  # the group commit writer appends asynchronously
        drain(runtime.processor())
        for person, _tag in people:
            ids = decision_ids.setdefault(person["user"], [])
            for n in range(2):
                reply = client.post(
                    "/v1/decide",
                    json={
                        "decisionPoint": "banner",
                        "userId": person["user"],
                        "context": {"n": n},
                        "actions": [{"id": "a"}, {"id": "b"}],
                    },
                    headers=bearer(token),
                )
                assert reply.status_code == 200, reply.text
                ids.append(reply.json()["eventId"])
                client.post(
                    f"/v1/decisions/{ids[-1]}/reward", json={"value": 1}, headers=bearer(token)
                )
        time.sleep(0.3)
        reply = client.post(
            "/v1/privacy/export", json={"userId": SUBJECT["user"]}, headers=bearer(token)
        )
        assert reply.status_code == 202, reply.text
        request_id = reply.json()["requestId"]
        state = _wait(client, token, request_id)
        assert state["status"] == "done", state
        archive = client.get(f"/v1/privacy/requests/{request_id}/archive", headers=bearer(token))
        assert archive.status_code == 200
        assert archive.headers["content-type"] == "application/zip"
        files, manifest = read_archive(archive.content)
        yield Setup(
            data_dir, runtime, boot.workspace, token, files, manifest, request_id, decision_ids
        )
    runtime.close()


# -- the independent reading of every store ------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        if value[:1] in "{[":
            with contextlib.suppress(ValueError):
                yield from _strings(json.loads(value))
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _strings(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _strings(inner)


def names(row: Any, markers: set[str]) -> bool:
    """Whether a row has a string equal to one of the markers (case-insensitively), or a
    node key ``type:value`` of one."""
    lowered = {m.lower() for m in markers}
    for text in _strings(row):
        low = text.lower()
        if low in lowered or low.partition(":")[2] in lowered:
            return True
    return False


def subject_markers(setup: Setup) -> set[str]:
    """The subject's identifiers, profile ids (current and merged away) and decision ids,
    read from the profile store file."""
    conn = sqlite3.connect(setup.data_dir / "profiles.db")
    try:
        [(profile,)] = conn.execute(
            "select profile_id from identity_nodes where node = ?", (f"user_id:{SUBJECT['user']}",)
        ).fetchall()
        marks = {profile, SUBJECT["email"].lower()}
        marks |= {
            v
            for (v,) in conn.execute(
                "select id_value from identity_nodes where profile_id = ?", (profile,)
            )
        }
        marks |= {
            p
            for (p,) in conn.execute(
                "select from_profile from profile_merges where profile_id = ?", (profile,)
            )
        }
    finally:
        conn.close()
    return marks | set(setup.decision_ids[SUBJECT["user"]])


def other_markers() -> set[str]:
    return {p[k] for p in OTHERS for k in ("user", "laptop", "phone", "email")}


def expected_rows(setup: Setup) -> dict[str, list[Any]]:
    """Every row of every store about the subject, read straight from the files."""
    marks = subject_markers(setup)
    found: dict[str, list[Any]] = {}
    conn = sqlite3.connect(setup.data_dir / "profiles.db")
    conn.row_factory = sqlite3.Row
    try:
        for table in ("identity_nodes", "identity_edges", "profile_merges", "dead_letters"):
            rows = [dict(r) for r in conn.execute(f"select * from {table}")]
            found[table] = [r for r in rows if names(r, marks)]
    finally:
        conn.close()
    log = sqlite3.connect(setup.data_dir / "log" / "eventlog.db")
    try:
        for topic, partitions in log.execute("select name, partitions from topics"):
            rows = []
            for part in range(partitions):
                for (value,) in log.execute(f"select value from p_{topic}_{part}"):
                    decoded = json.loads(value)
                    if names(decoded, marks):
                        rows.append(decoded)
            found[f"log:{topic}"] = rows
    finally:
        log.close()
    lake = Lake(open_catalog(setup.runtime.settings))
    for table in lake.tables(setup.workspace):
        rows = lake.table(setup.workspace, table, create=False).scan().to_arrow().to_pylist()
        found[f"lake:{table}"] = [r for r in rows if names(r, marks)]
    return found


# -- the checks ----------------------------------------------------------------------------


def test_every_row_about_the_person_is_in_the_archive(setup: Setup) -> None:
    expected = expected_rows(setup)
    files = setup.archive
    assert {(r["type"], r["value"]) for r in files["identities.json"]} == {
        tuple(r["node"].split(":", 1)) for r in expected["identity_nodes"]
    }
    assert len(expected["identity_nodes"]) == 6  # user, old user (x2: alias), devices, email
    assert {(e["a"], e["b"], e["kind"]) for e in files["identity_links.json"]} == {
        (r["a"], r["b"], r["kind"]) for r in expected["identity_edges"]
    }
    assert {(m["profileId"], m["seq"]) for m in files["merges.json"]} == {
        (r["profile_id"], r["seq"]) for r in expected["profile_merges"]
    }
    assert expected["profile_merges"], "the two devices merged"
    letters = {d["id"] for d in files["dead_letters.json"] if d["source"] == "profile_store"}
    assert letters == {r["id"] for r in expected["dead_letters"]}
    assert len(letters) == 2  # the collector's reject and the tracking plan's block
    lake_letters = {d["id"] for d in files["dead_letters.json"] if d["source"] == "lake"}
    assert lake_letters == {r["id"] for r in expected["lake:dead_letters"]}
    assert {e["message_id"] for e in files["events.json"]} == {
        r["message_id"] for r in expected["lake:events"]
    }
    assert len(files["events.json"]) == 15  # 12 device events, identify, sign-in, alias
    assert {
        (r["id_type"], r["id_value"], r["profile_id"]) for r in files["identity_history.json"]
    } == {(r["id_type"], r["id_value"], r["profile_id"]) for r in expected["lake:identities"]}
    logged = {(r["topic"], json.dumps(r["value"], sort_keys=True)) for r in files["event_log.json"]}
    for topic in ("events", "deadletters"):
        for value in expected[f"log:{topic}"]:
            assert (topic, json.dumps(value, sort_keys=True)) in logged
    assert len(files["event_log.json"]) == len(expected["log:events"]) + len(
        expected["log:deadletters"]
    )
    decisions = {d["value"]["eventId"] for d in files["decisions.json"]}
    assert decisions == {v["eventId"] for v in expected["log:decisions"]}
    assert decisions == set(setup.decision_ids[SUBJECT["user"]])
    rewards = {r["value"]["eventId"] for r in files["rewards.json"]}
    assert rewards == {v["eventId"] for v in expected["log:rewards"]} == decisions


def test_profile_and_traits_are_decrypted_and_complete(setup: Setup) -> None:
    [profile] = setup.archive["profile.json"]
    assert profile["traits"]["email"] == SUBJECT["email"]
    assert profile["traits"]["name"] == SUBJECT["name"]
    traits = {(t["trait"], t["value"]) for t in setup.archive["traits.json"]}
    assert ("email", SUBJECT["email"]) in traits
    assert ("name", SUBJECT["name"]) in traits


def test_nothing_about_anyone_else_is_in_the_archive(setup: Setup) -> None:
    marks = subject_markers(setup) | {setup.request_id}
    others = other_markers()
    for name, rows in setup.archive.items():
        for row in rows:
            assert names(row, marks), (name, row)
            assert not names(row, others), (name, row)


def test_the_audit_entries_of_the_request_are_in_the_archive(setup: Setup) -> None:
    entries = setup.archive["audit.json"]
    assert [e["action"] for e in entries] == ["privacy.export.requested"]
    assert all(e["target"] == setup.request_id for e in entries)
    assert setup.manifest["requestId"] == setup.request_id
    assert setup.manifest["generatedAt"]


def test_the_archive_is_kept_private_in_the_data_directory(setup: Setup) -> None:
    path = setup.data_dir / "privacy" / "exports" / f"{setup.request_id}.zip"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_the_cli_exports_the_same_rows(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "subject.zip"
    result = CliRunner().invoke(
        cli,
        [
            "privacy",
            "export",
            "--email",
            SUBJECT["email"].upper(),
            "--out",
            str(out),
            "--json",
            "--data-dir",
            str(setup.data_dir),
        ],
        env={"COLUMNS": "100"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["status"] == "done"
    assert out.stat().st_mode & 0o777 == 0o600
    files, _manifest = read_archive(out.read_bytes())
    for name in ("events.json", "identities.json", "decisions.json", "dead_letters.json"):
        assert len(files[name]) == len(setup.archive[name]), name


def test_the_cli_checks_where_it_writes_before_it_exports(setup: Setup, tmp_path: Path) -> None:
    """A folder that does not exist, or a file already there, is refused before the request
    runs (it used to fail with a traceback after the export was recorded as done, or to
    replace the file unasked)."""

    def export(out: Path, *flags: str) -> Any:
        return CliRunner().invoke(
            cli,
            [
                "privacy",
                "export",
                "--email",
                SUBJECT["email"],
                "--out",
                str(out),
                *flags,
                "--data-dir",
                str(setup.data_dir),
            ],
            env={"COLUMNS": "200"},
        )

    def requests() -> int:
        listed = CliRunner().invoke(
            cli, ["privacy", "requests", "--json", "--data-dir", str(setup.data_dir)]
        )
        assert listed.exit_code == 0, listed.output
        return len(json.loads(listed.output))

    before = requests()
    missing = export(tmp_path / "no-such-folder" / "subject.zip")
    assert missing.exit_code == 2, missing.output
    assert "no-such-folder" in missing.output
    assert "does not exist" in missing.output
    assert "Traceback" not in missing.output
    kept = tmp_path / "kept.zip"
    kept.write_bytes(b"an earlier archive")
    kept.chmod(0o644)
    refused = export(kept)
    assert refused.exit_code == 2, refused.output
    assert "exists; pass --force" in refused.output
    assert kept.read_bytes() == b"an earlier archive"
    assert requests() == before  # nothing ran
    replaced = export(kept, "--force")
    assert replaced.exit_code == 0, replaced.output
    assert kept.read_bytes().startswith(b"PK")  # a zip archive now
    assert kept.stat().st_mode & 0o777 == 0o600  # a new file, private from its first byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.zip"]  # no partial file
    assert requests() == before + 1
