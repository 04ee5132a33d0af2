"""Lake maintenance on real Iceberg tables (SQL catalog on SQLite, warehouse in tmp):
compaction, snapshot expiry, orphan-file removal, inspection, the CLI, and the processor's
periodic run."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pyarrow as pa
import pytest
from click.testing import CliRunner
from pyiceberg.table import Table

from auie.cli.main import cli
from auie.config import Settings
from auie.eventlog import EVENTS_TOPIC, LogRecord
from auie.lake.catalog import OFFSETS_PROPERTY, Lake, committed_offsets, offsets_property
from auie.lake.maintenance import (
    MAINTENANCE_PROPERTY,
    LakeMaintenance,
    compact_table,
    expire_table,
    inspect_table,
    referenced_files,
)
from auie.lake.tables import EVENTS, TABLES
from auie.process.lock import ProcessorLock, SectionLock
from auie.runtime import Runtime
from helpers import make_settings

#: No AUIE_* variable of the caller and no ./auie.toml reach the commands.
pytestmark = pytest.mark.usefixtures("clean_environment")

WS = "ws-test"
DAYS = (datetime(2024, 3, 1, 12, tzinfo=UTC), datetime(2024, 3, 2, 12, tzinfo=UTC))


@pytest.fixture
def lake_runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(tmp_path / "data"))
    yield runtime
    runtime.close()


@pytest.fixture
def lake(lake_runtime: Runtime) -> Lake:
    return lake_runtime.lake


def event_rows(start: int, count: int) -> list[dict[str, Any]]:
    """``count`` events alternating between two days, offsets ``start``...; unique ids."""
    rows = []
    for i in range(start, start + count):
        ts = DAYS[i % 2] + timedelta(seconds=i)
        rows.append(
            {
                "message_id": f"m-{i:06d}",
                "type": "track",
                "event": "Clicked",
                "user_id": f"u-{i % 7}",
                "timestamp": ts,
                "received_at": ts,
                "properties": json.dumps({"i": i}),
                "log_partition": 0,
                "log_offset": i,
            }
        )
    return rows


def append(table: Table, start: int, count: int, *, offsets: bool = True) -> None:
    data = pa.Table.from_pylist(event_rows(start, count), schema=TABLES[EVENTS].arrow)
    props = offsets_property({EVENTS_TOPIC: {0: start + count}}) if offsets else {}
    table.append(data, snapshot_properties=props)


def small_writes(table: Table, batches: int = 15, size: int = 40) -> int:
    for b in range(batches):
        append(table, b * size, size)
    return batches * size


def rows_of(table: Table) -> list[dict[str, Any]]:
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["message_id"])


def live_files(table: Table) -> list[str]:
    return [task.file.file_path for task in table.scan().plan_files()]


def files_on_disk(table: Table, sub: str) -> set[Path]:
    root = Path(table.location().removeprefix("file://")) / sub
    return {p for p in root.rglob("*") if p.is_file()}


def age(path: Path, hours: float) -> None:
    past = time.time() - hours * 3600
    os.utime(path, (past, past))


# -- compaction -----------------------------------------------------------------------------


def test_compaction_merges_small_files_keeps_rows_and_offsets(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    total = small_writes(table)
    before = rows_of(table)
    snapshots_before = len(table.snapshots())
    assert len(live_files(table)) == 30  # 15 commits x 2 day partitions

    report = compact_table(table, workspace=WS)

    assert (report.files_before, report.files_after) == (30, 2)
    assert (report.partitions, report.files_rewritten, report.files_written) == (2, 30, 2)
    assert report.records == total
    reloaded = lake.refresh(WS, EVENTS)
    assert len(live_files(reloaded)) == 2
    assert rows_of(reloaded) == before
    assert len(reloaded.snapshots()) == snapshots_before + 1  # one commit
    summary = reloaded.current_snapshot().summary  # type: ignore[union-attr]
    assert summary.get(MAINTENANCE_PROPERTY) == "compaction"
    assert summary.get(OFFSETS_PROPERTY)
    assert committed_offsets(reloaded) == {EVENTS_TOPIC: {0: total}}

    again = compact_table(reloaded, workspace=WS)
    assert again.partitions == 0
    assert len(reloaded.snapshots()) == snapshots_before + 1


def test_compaction_leaves_large_files_and_lone_small_files(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    small_writes(table, batches=3)
    sizes = [f.file_size_in_bytes for f in (t.file for t in table.scan().plan_files())]
    # Target below every file: nothing is small.
    assert compact_table(table, target_file_bytes=min(sizes)).partitions == 0
    # Target admits two files per group: files are paired, a lone file stays.
    report = compact_table(table, target_file_bytes=2 * max(sizes) + 1)
    assert report.files_rewritten == 4
    assert report.files_after == 4


def test_compaction_racing_a_writer_keeps_its_rows_and_its_offsets(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """The compactor reads a table, a writer commits, the compactor commits: pyiceberg retries
    on the new head, and the rewrite snapshot carries the writer's newer offsets."""
    stale = lake.table(WS, EVENTS)
    small_writes(stale, batches=6)
    stale = lake.refresh(WS, EVENTS)
    writer = lake.catalog.load_table((WS, EVENTS))
    append(writer, 10_000, 25)  # lands after the compactor loaded its metadata

    report = compact_table(stale, workspace=WS)

    table = lake.refresh(WS, EVENTS)
    assert report.files_rewritten == 12
    assert len(rows_of(table)) == 6 * 40 + 25
    assert committed_offsets(table) == {EVENTS_TOPIC: {0: 10_025}}
    summary = table.current_snapshot().summary  # type: ignore[union-attr]
    assert summary.get(MAINTENANCE_PROPERTY) == "compaction"
    assert (
        summary.get(OFFSETS_PROPERTY)
        == offsets_property({EVENTS_TOPIC: {0: 10_025}})[OFFSETS_PROPERTY]
    )
    assert "retrying" in caplog.text  # the first attempt met the writer's commit


def test_compaction_of_an_empty_table_is_a_no_op(lake: Lake) -> None:
    report = compact_table(lake.table(WS, EVENTS), workspace=WS)
    assert (report.files_before, report.partitions, report.snapshot_id) == (0, 0, None)


# -- expiry and orphans ---------------------------------------------------------------------


def test_expire_removes_old_snapshots_and_unreferenced_files(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    total = small_writes(table)
    compact_table(table)
    before = rows_of(table)
    parquet_before = {p for p in files_on_disk(table, "data") if p.suffix == ".parquet"}
    assert len(parquet_before) == 32

    report = expire_table(
        table,
        older_than=datetime.now(UTC) + timedelta(seconds=1),
        orphan_min_age=timedelta(0),
    )

    assert report.snapshots_expired == 15
    assert report.snapshots_kept == 1
    table = lake.refresh(WS, EVENTS)
    assert len(table.snapshots()) == 1
    assert rows_of(table) == before
    assert committed_offsets(table) == {EVENTS_TOPIC: {0: total}}
    data_files = {p for p in files_on_disk(table, "data") if p.suffix == ".parquet"}
    assert {f"file://{p}" for p in data_files} == set(live_files(table))
    # 30 small data files, 15 manifest lists and the manifests only they used are gone.
    assert report.orphan_files >= 30 + 15
    assert report.orphan_bytes > 0
    # What is left on disk is exactly what the metadata refers to.
    on_disk = {str(p) for p in files_on_disk(table, "data") | files_on_disk(table, "metadata")}
    assert on_disk == referenced_files(table)


def test_expire_keeps_young_snapshots(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    small_writes(table, batches=4)
    report = expire_table(table, older_than=datetime.now(UTC) - timedelta(hours=1))
    assert (report.snapshots_expired, report.snapshots_kept) == (0, 4)


def test_expire_keeps_the_chain_back_to_the_newest_offsets(lake: Lake) -> None:
    """Snapshots without offsets (a foreign writer, an erasure) on top: the snapshot holding
    the offsets and every one after it stay, so the writer still finds them."""
    table = lake.table(WS, EVENTS)
    small_writes(table, batches=3)
    append(table, 5_000, 10, offsets=False)
    append(table, 6_000, 10, offsets=False)

    report = expire_table(
        table, older_than=datetime.now(UTC) + timedelta(seconds=1), orphan_min_age=timedelta(0)
    )

    assert (report.snapshots_expired, report.snapshots_kept) == (2, 3)
    table = lake.refresh(WS, EVENTS)
    assert committed_offsets(table) == {EVENTS_TOPIC: {0: 120}}
    assert len(rows_of(table)) == 140


def test_orphan_file_is_removed_only_when_old_enough(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    small_writes(table, batches=2)
    rows = rows_of(table)
    data_orphan = Path(table.location().removeprefix("file://")) / "data" / "stray.parquet"
    data_orphan.write_bytes(b"x" * 1000)
    meta_orphan = Path(table.location().removeprefix("file://")) / "metadata" / "stray.avro"
    meta_orphan.write_bytes(b"y" * 10)
    live = files_on_disk(table, "data") - {data_orphan}
    for path in live:
        age(path, 48)  # old live files must survive too

    young = expire_table(table, older_than=datetime.now(UTC) - timedelta(days=1))
    assert young.orphan_files == 0
    assert young.young_orphans_kept == 2
    assert data_orphan.exists()
    assert meta_orphan.exists()

    age(data_orphan, 2)
    old = expire_table(table, older_than=datetime.now(UTC) - timedelta(days=1))
    assert (old.orphan_files, old.orphan_bytes) == (1, 1000)
    assert not data_orphan.exists()
    assert meta_orphan.exists()
    assert live <= files_on_disk(table, "data")
    assert rows_of(lake.refresh(WS, EVENTS)) == rows


def test_orphan_removal_refuses_when_live_files_are_not_listed(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auie.lake import maintenance

    table = lake.table(WS, EVENTS)
    small_writes(table, batches=2)
    monkeypatch.setattr(maintenance, "_list_files", lambda _table: iter(()))
    with pytest.raises(RuntimeError, match="orphan removal refused"):
        maintenance.remove_orphan_files(table, min_age=timedelta(0))


def _commit_around_listing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, *, before: bool
) -> list[str]:
    """Make orphan removal's directory listing commit a batch (as another process would)
    just before or just after it lists; returns the paths that batch's snapshot added."""
    from auie.lake import maintenance

    listing = maintenance._list_files
    added: list[str] = []

    def commit() -> None:
        writer = lake.catalog.load_table((WS, EVENTS))
        append(writer, 9_000, 10)
        snapshot = writer.current_snapshot()
        assert snapshot is not None
        added.append(snapshot.manifest_list)
        added.extend(
            task.file.file_path
            for task in writer.scan(row_filter="log_offset >= 9000").plan_files()
        )

    def racing(table: Table) -> Iterator[Any]:
        if before:
            commit()
        listed = list(listing(table))
        if not before:
            commit()
        return iter(listed)

    monkeypatch.setattr(maintenance, "_list_files", racing)
    return added


@pytest.mark.parametrize("before", [True, False], ids=["before-listing", "after-listing"])
def test_orphan_removal_keeps_a_commit_that_lands_while_it_runs(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, before: bool
) -> None:
    """Another process commits while orphan removal (min age 0) runs: its snapshot's
    manifest list and data files survive, and the listing check does not refuse."""
    from auie.lake import maintenance

    table = lake.table(WS, EVENTS)
    small_writes(table, batches=2)
    added = _commit_around_listing(lake, monkeypatch, before=before)

    maintenance.remove_orphan_files(table, min_age=timedelta(0))

    assert len(added) == 3  # the manifest list and one data file per day
    for path in added:
        assert Path(path.removeprefix("file://")).exists(), path
    table = lake.refresh(WS, EVENTS)
    assert len(rows_of(table)) == 90
    assert committed_offsets(table) == {EVENTS_TOPIC: {0: 9_010}}


# -- inspection -----------------------------------------------------------------------------


def test_inspect_counts_snapshots_files_and_partitions(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    total = small_writes(table, batches=5)
    info = inspect_table(table, workspace=WS)
    assert info["table"] == EVENTS
    assert len(info["snapshots"]) == 5
    assert [s["addedRecords"] for s in info["snapshots"]] == [40] * 5
    assert info["snapshots"][-1]["totalRecords"] == total
    assert info["dataFiles"]["count"] == 10
    assert info["dataFiles"]["records"] == total
    assert info["dataFiles"]["bytes"] > 0
    assert info["partitions"] == [
        {"partition": {"timestamp_day": "2024-03-01"}, "records": 100, "files": 5, "bytes": ANY},
        {"partition": {"timestamp_day": "2024-03-02"}, "records": 100, "files": 5, "bytes": ANY},
    ]
    assert info["offsets"] == {EVENTS_TOPIC: {"0": total}}
    json.dumps(info)  # JSON-ready

    compact_table(table)
    info = inspect_table(table)
    assert info["snapshots"][-1]["maintenance"] == "compaction"
    assert [p["files"] for p in info["partitions"]] == [1, 1]


def test_inspect_an_empty_table(lake: Lake) -> None:
    info = inspect_table(lake.table(WS, EVENTS))
    assert info["snapshots"] == []
    assert info["partitions"] == []
    assert info["dataFiles"] == {"count": 0, "bytes": 0, "records": 0}


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_lake(tmp_path: Path) -> Iterator[tuple[Path, str, Lake]]:
    """A bootstrapped data directory whose workspace has small-file events."""
    data_dir = tmp_path / "data"
    runtime = Runtime(make_settings(data_dir))
    boot = runtime.bootstrap()
    assert boot is not None
    small_writes(runtime.lake.table(boot.workspace, EVENTS))
    yield data_dir, boot.workspace, runtime.lake
    runtime.close()


def run(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["lake", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_cli_inspect_compact_expire(cli_lake: tuple[Path, str, Lake]) -> None:
    data_dir, workspace, lake_ = cli_lake

    info = json.loads(run(data_dir, "inspect", "--json"))
    assert [(t["workspace"], t["table"]) for t in info] == [(workspace, EVENTS)]
    assert info[0]["dataFiles"] == {"count": 30, "bytes": ANY, "records": 600}
    assert len(info[0]["snapshots"]) == 15

    compacted = json.loads(run(data_dir, "compact", "--json"))
    assert compacted == [
        {
            "workspace": workspace,
            "table": EVENTS,
            "partitions": 2,
            "filesBefore": 30,
            "filesAfter": 2,
            "filesRewritten": 30,
            "filesWritten": 2,
            "records": 600,
            "bytesRewritten": ANY,
            "bytesWritten": ANY,
            "snapshotId": ANY,
            "seconds": ANY,
        }
    ]
    expired = json.loads(
        run(
            data_dir,
            "expire",
            "--older-than-hours",
            "0",
            "--orphan-min-age-minutes",
            "0",
            "--json",
        )
    )
    assert expired[0]["snapshotsExpired"] == 15
    assert expired[0]["snapshotsKept"] == 1
    assert expired[0]["orphanFiles"] >= 45

    info = json.loads(
        run(data_dir, "inspect", "--workspace", workspace, "--table", EVENTS, "--json")
    )
    assert info[0]["dataFiles"] == {"count": 2, "bytes": ANY, "records": 600}
    assert len(info[0]["snapshots"]) == 1
    assert committed_offsets(lake_.refresh(workspace, EVENTS)) == {EVENTS_TOPIC: {0: 600}}


def test_cli_expire_refuses_a_small_orphan_age_while_a_processor_runs(
    cli_lake: tuple[Path, str, Lake],
) -> None:
    data_dir, _workspace, _lake = cli_lake
    expire = ["lake", "expire", "--older-than-hours", "0", "--json", "--data-dir", str(data_dir)]
    with ProcessorLock(data_dir):
        refused = CliRunner().invoke(cli, [*expire, "--orphan-min-age-minutes", "0"])
        assert refused.exit_code == 2
        assert "a processor is running" in refused.output
        assert "--orphan-min-age-minutes must be at least 5" in refused.output
        assert len(json.loads(run(data_dir, "inspect", "--json"))[0]["snapshots"]) == 15
        assert json.loads(run(data_dir, *expire[1:-2], "--orphan-min-age-minutes", "5"))
    expired = json.loads(run(data_dir, *expire[1:-2], "--orphan-min-age-minutes", "0"))
    assert expired[0]["orphanFiles"] > 0


def test_cli_human_output(cli_lake: tuple[Path, str, Lake]) -> None:
    data_dir, _workspace, _lake = cli_lake
    assert "timestamp_day=2024-03-01" in run(data_dir, "inspect")
    assert "compaction" in run(data_dir, "compact")
    assert "expiry" in run(data_dir, "expire")


def test_cli_other_table_and_default_retention(cli_lake: tuple[Path, str, Lake]) -> None:
    data_dir, _workspace, _lake = cli_lake
    assert json.loads(run(data_dir, "compact", "--table", "identities", "--json")) == []
    # Default retention (24 h): the snapshots are minutes old and all stay.
    expired = json.loads(run(data_dir, "expire", "--json"))
    assert expired[0]["snapshotsExpired"] == 0


# -- in the processor -----------------------------------------------------------------------


def test_maintenance_runs_when_due_only(lake: Lake) -> None:
    table = lake.table(WS, EVENTS)
    small_writes(table, batches=3)
    now = [1000.0]
    maintenance = LakeMaintenance(
        lake, every_minutes=10, retention_hours=0, orphan_min_age=timedelta(0), clock=lambda: now[0]
    )
    assert maintenance() is None
    now[0] += 599
    assert maintenance() is None
    now[0] += 2
    result = maintenance()
    assert result is not None
    assert not result.failures
    assert [(c.table, c.files_rewritten) for c in result.compactions] == [(EVENTS, 6)]
    assert result.expiries[0].snapshots_kept == 1
    table = lake.refresh(WS, EVENTS)
    assert len(live_files(table)) == 2
    assert committed_offsets(table) == {EVENTS_TOPIC: {0: 120}}
    assert maintenance() is None  # next run one interval later


def test_maintenance_failure_is_logged_not_raised(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from auie.lake import maintenance as module

    small_writes(lake.table(WS, EVENTS), batches=2)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(module, "compact_table", broken)
    result = LakeMaintenance(lake, every_minutes=1, retention_hours=1).run()
    assert result.failures == [(WS, EVENTS, "OSError('disk on fire')")]
    assert "lake maintenance of" in caplog.text


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return make_settings(data_dir, **overrides)


def test_processor_compacts_between_flushes(tmp_path: Path) -> None:
    """A processor with maintenance due compacts the lake it writes, and its offsets hold."""
    settings = _settings(
        tmp_path / "data",
        **{
            "lake.flush_max_records": 50,
            "lake.maintenance_minutes": 1,
            "process.poll_max_records": 50,
        },
    )
    runtime = Runtime(settings)
    try:
        boot = runtime.bootstrap()
        assert boot is not None
        headers = {"workspaceId": boot.workspace, "sourceId": boot.source}
        log = runtime.eventlog
        records = []
        for i in range(400):
            event = {
                "type": "track",
                "event": "Clicked",
                "userId": f"u-{i % 9}",
                "messageId": f"p-{i}",
                "timestamp": "2024-03-01T12:00:00.000Z",
                "receivedAt": "2024-03-01T12:00:00.000Z",
                "properties": {},
                "context": {},
            }
            records.append(
                LogRecord(
                    EVENTS_TOPIC, event["userId"].encode(), json.dumps(event).encode(), 0, headers
                )
            )
        log.append(records)
        processor = runtime.processor()
        maintenance = processor.maintenance
        assert isinstance(maintenance, LakeMaintenance)
        while processor.step().events:
            pass
        processor.flush()
        table = runtime.lake.refresh(boot.workspace, EVENTS)
        assert len(live_files(table)) > 1
        offsets = committed_offsets(table)

        maintenance.next_run = 0  # due now
        processor.step()

        table = runtime.lake.refresh(boot.workspace, EVENTS)
        assert len(live_files(table)) == 1
        assert committed_offsets(table) == offsets
        ids = [
            r["message_id"]
            for r in table.scan(selected_fields=("message_id",)).to_arrow().to_pylist()
        ]
        assert sorted(ids) == sorted(f"p-{i}" for i in range(400))
    finally:
        runtime.close()


def test_a_group_member_takes_the_commit_lock_for_maintenance_only_when_it_is_due(
    tmp_path: Path,
) -> None:
    """Member 0 of a group runs maintenance under the group's lake commit lock, which the
    other members hold through each of their commits; between maintenance runs its steps
    must not wait for them."""
    # No flush falls due during the test: a lake commit in flight defers maintenance.
    settings = _settings(
        tmp_path / "data", **{"lake.maintenance_minutes": 1, "lake.flush_max_seconds": 3600}
    )
    runtime = Runtime(settings)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        processor = runtime.processor(member=0, members=2)
        maintenance = processor.maintenance
        assert isinstance(maintenance, LakeMaintenance)
        other_member = SectionLock(settings.data_dir / "processor.d" / "lake-commit.lock")
        with other_member.held():  # another member's lake commit, in progress
            assert pool.submit(processor.step).result(timeout=10) is not None
            maintenance.next_run = 0  # due now: it waits for the lock
            waiting = pool.submit(processor.step)
            with pytest.raises(concurrent.futures.TimeoutError):
                waiting.result(timeout=1)
        assert waiting.result(timeout=30) is not None  # and runs once the lock is free
        assert maintenance.next_run > 0
    finally:
        pool.shutdown(wait=True)
        runtime.close()


def test_maintenance_disabled_with_zero_minutes(tmp_path: Path) -> None:
    runtime = Runtime(_settings(tmp_path / "data", **{"lake.maintenance_minutes": 0}))
    try:
        assert runtime.processor().maintenance is None
    finally:
        runtime.close()
