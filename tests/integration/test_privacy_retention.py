"""Retention on real stores: old events leave the lake physically (row delete, expiry,
files gone), dead letters, export archives and audit entries past their time go, and the
audit log still verifies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auie.cli.main import cli
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC
from auie.events import Normalizer
from auie.lake.maintenance import MAINTENANCE_PROPERTY
from auie.privacy.person import Subject
from auie.privacy.retention import RetentionScheduler
from auie.runtime import Runtime
from bytescan import scan
from helpers import make_settings
from pipeline import drain, lake_table, log_record

NOW = datetime.now(UTC)


@dataclass
class World:
    runtime: Runtime
    workspace: str
    old: list[str]
    recent: list[str]
    export_id: str


def _events(prefix: str, start: datetime, days: int) -> list[dict[str, Any]]:
    out = []
    for day in range(days):
        for n in range(3):
            out.append(
                {
                    "type": "track",
                    "event": "Tick",
                    "userId": f"ret-user-{n}",
                    "messageId": f"{prefix}-{day:03d}-{n}",
                    "timestamp": (start + timedelta(days=day, hours=n)).isoformat(),
                }
            )
    return out


def build(data_dir: Path, **overrides: Any) -> World:
    runtime = Runtime(
        make_settings(
            data_dir,
            **{"lake.flush_max_records": 10, "lake.maintenance_minutes": 0, **overrides},
        )
    )
    boot = runtime.bootstrap()
    assert boot is not None
    ws = boot.workspace
    log = runtime.eventlog
    log.ensure_topic(EVENTS_TOPIC, 4)
    log.ensure_topic(DEAD_LETTERS_TOPIC, 1)
    old = _events("old", NOW - timedelta(days=500), 5)
    recent = _events("new", NOW - timedelta(days=5), 5)
    junk = {
        "type": "track",
        "event": "Tick",
        "userId": "null",
        "anonymousId": "undefined",
        "messageId": "junk-1",
        "timestamp": NOW.isoformat(),
    }
    normalizer = Normalizer(received_at=NOW, peer_ip="198.51.100.7")
    processor = runtime.processor()
    for chunk in (old[:8], old[8:], recent[:8], recent[8:], [junk]):  # several commits
        log.append([log_record(normalizer.normalize(e), ws) for e in chunk])
        drain(processor)
    requests = runtime.privacy.requests
    export = requests.submit(ws, "export", Subject.of([("user_id", "ret-user-1")]), actor="t")
    assert requests.run(export.id).status == "done"
    return World(
        runtime, ws, [e["messageId"] for e in old], [e["messageId"] for e in recent], export.id
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build(tmp_path / "data")
    yield built
    built.runtime.close()


def _message_ids(world: World) -> set[str]:
    table = lake_table(world.runtime.lake, world.workspace, "events")
    return set(table["message_id"].to_pylist())


def test_old_events_leave_the_lake_physically(world: World) -> None:
    runtime = world.runtime
    assert _message_ids(world) == set(world.old) | set(world.recent)
    result = runtime.privacy.run_retention()
    assert result["lake"][f"{world.workspace}.events"]["rows"] == len(world.old)
    assert _message_ids(world) == set(world.recent)
    history = result["lakeHistory"][f"{world.workspace}.events"]
    assert history["snapshotsExpired"] >= 4
    assert history["filesDeleted"] > 0
    table = runtime.lake.refresh(world.workspace, "events")
    assert len(table.metadata.snapshots) == 1
    assert table.current_snapshot().summary[MAINTENANCE_PROPERTY] == "retention"
    assert table.current_snapshot().summary["auie.log-offsets"]  # exactly once still works
    # the archive of ret-user-1 still holds its old events: exclude it from the scan
    archive = runtime.privacy.context.archive_path(world.export_id)
    archive.unlink()
    hits = scan(runtime.settings.data_dir / "lake", world.old)
    assert not hits, "\n".join(str(h) for h in hits)
    # the recent ones are still there and readable
    assert scan(runtime.settings.data_dir / "lake", world.recent[:1])


def test_a_second_run_finds_nothing_to_do(world: World) -> None:
    world.runtime.privacy.run_retention()
    again = world.runtime.privacy.run_retention()
    assert again["lake"] == {}
    assert again["deadLetters"] == 0


def test_dead_letters_and_archives_go_after_their_time(world: World) -> None:
    runtime = world.runtime
    store = runtime.profile_store
    assert len(store.dead_letters(world.workspace)) == 1
    assert lake_table(runtime.lake, world.workspace, "dead_letters").num_rows == 1
    archive = runtime.privacy.context.archive_path(world.export_id)
    assert archive.exists()
    from auie.privacy.retention import Retention

    result = Retention(runtime.privacy.context).run(now=NOW + timedelta(days=31))
    assert result["deadLetters"] == 1
    assert result["archives"] == 1
    assert store.dead_letters(world.workspace, pending=False) == []
    assert lake_table(runtime.lake, world.workspace, "dead_letters").num_rows == 0
    assert not archive.exists()
    assert _message_ids(world) == set(world.recent)  # 400 days of events are kept


def test_audit_entries_past_their_time_go_and_the_log_still_verifies(tmp_path: Path) -> None:
    world = build(tmp_path / "data", **{"privacy.retention.events_days": 0})
    try:
        audit = world.runtime.audit
        before = audit.entries(None, limit=1000)
        assert before
        from auie.privacy.retention import Retention

        result = Retention(world.runtime.privacy.context).run(now=NOW + timedelta(days=731))
        assert result["audit"] == len(before)
        assert f"{world.workspace}.events" not in result["lake"]  # 0 days: kept forever
        assert audit.verify() is None
        audit.record("later.action", actor="t", target="x")
        assert audit.verify() is None
        [pruned] = [e for e in audit.entries(None, limit=1000) if e.action == "audit.pruned"]
        assert pruned.details["deleted"] == len(before)
        # pruning again keeps the chain verifiable from the new anchor
        assert audit.prune(datetime.now(UTC) + timedelta(seconds=1)) >= 2
        audit.record("even.later", actor="t", target="y")
        assert audit.verify() is None
    finally:
        world.runtime.close()


def test_a_tampered_pruned_log_still_fails_verification(world: World) -> None:
    from sqlalchemy import delete

    from auie.privacy.tables import audit_log

    audit = world.runtime.audit
    for n in range(3):
        audit.record("x", actor="t", target=str(n))
    with world.runtime.engine.begin() as conn:  # remove the first entry without a record
        first = min(e.seq for e in audit.entries(None, limit=1000))
        conn.execute(delete(audit_log).where(audit_log.c.seq == first))
    assert audit.verify() is not None
    # The CLI says so, in words and as JSON, with exit status 1.
    data_dir = str(world.runtime.settings.data_dir)
    for flags, expected in (([], "audit log altered at entry"), (["--json"], '"intact": false')):
        result = CliRunner().invoke(cli, ["audit", "verify", *flags, "--data-dir", data_dir])
        assert result.exit_code == 1, result.output
        assert expected in result.stdout
    report = json.loads(
        CliRunner().invoke(cli, ["audit", "verify", "--json", "--data-dir", data_dir]).stdout
    )
    assert report == {"intact": False, "alteredAt": audit.verify()}


def test_the_cli_applies_retention(world: World) -> None:
    data_dir = world.runtime.settings.data_dir
    result = CliRunner().invoke(
        cli, ["privacy", "retention", "--data-dir", str(data_dir)], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    assert f"deleted {len(world.old)} lake row(s)" in result.output
    entries = world.runtime.audit.entries(None, action="privacy.retention")
    assert entries[-1].details["lakeRows"] == {f"{world.workspace}.events": len(world.old)}


def test_the_serve_scheduler_runs_periodically() -> None:
    runs: list[float] = []
    scheduler = RetentionScheduler(lambda: runs.append(time.monotonic()), 0.002)  # 0.12 s
    started = time.monotonic()
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        scheduler.stop()
    assert len(runs) >= 2
    assert runs[0] - started >= 0.1  # the first run waits one interval
    off = RetentionScheduler(lambda: runs.append(0), 0)
    off.start()
    assert off._thread is None
