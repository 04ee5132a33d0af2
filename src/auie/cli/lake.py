"""``auie lake compact|expire|inspect``: maintenance and inspection of the Iceberg lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from pyiceberg.table import Table
from rich.table import Table as RichTable

from auie.cli.common import (
    console,
    emit,
    json_option,
    open_runtime,
    progress_bar,
    settings_options,
    workspace_id,
    workspace_option,
)
from auie.config import Settings
from auie.errors import Conflict
from auie.lake.catalog import Lake
from auie.lake.maintenance import (
    DEFAULT_ORPHAN_MIN_AGE,
    DEFAULT_TARGET_FILE_BYTES,
    LIVE_ORPHAN_MIN_AGE,
    compact_table,
    expire_table,
    inspect_table,
)
from auie.lake.tables import TABLES
from auie.process.lock import processor_running
from auie.runtime import Runtime

_table_option = click.option(
    "--table",
    "-t",
    "table_name",
    type=click.Choice(sorted(TABLES)),
    default=None,
    help="Only this table [default: every table].",
)


@click.group()
def lake() -> None:
    """The Iceberg lake: compact small files, expire snapshots, inspect tables."""


def _targets(
    runtime: Runtime, workspace: str | None, table_name: str | None, *, every_workspace: bool
) -> list[tuple[str, str]]:
    """(workspace, table) pairs that exist in the lake.

    Without ``--workspace``: every workspace of the lake for maintenance commands, the only
    workspace otherwise."""
    lake_ = runtime.lake
    if workspace is None and every_workspace:
        spaces = lake_.workspaces()
    else:
        spaces = [workspace_id(runtime, workspace)]
    known = set(lake_.workspaces())
    pairs = []
    for space in spaces:
        if space not in known:
            continue
        for name in lake_.tables(space):
            if table_name is None or name == table_name:
                pairs.append((space, name))
    return pairs


def _load(lake_: Lake, workspace: str, name: str) -> Table:
    return lake_.refresh(workspace, name)


@lake.command("compact")
@workspace_option
@_table_option
@click.option(
    "--target-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TARGET_FILE_BYTES / 2**20,
    show_default=True,
    help="Files below this size are rewritten into files of about this size.",
)
@json_option
@settings_options()
def compact(
    workspace: str | None,
    table_name: str | None,
    target_mb: float,
    as_json: bool,
    settings: Settings,
) -> None:
    """Rewrite small data files as few large ones (rows unchanged, one commit per table).

    Without --workspace, every workspace of the lake."""
    runtime = open_runtime(settings)
    try:
        targets = _targets(runtime, workspace, table_name, every_workspace=True)
        reports = []
        with progress_bar(as_json) as progress:
            task = progress.add_task("compacting", total=len(targets))
            for space, name in targets:
                progress.update(task, description=f"compacting {space}.{name}")
                table = _load(runtime.lake, space, name)
                reports.append(
                    compact_table(
                        table,
                        workspace=space,
                        target_file_bytes=int(target_mb * 2**20),
                        progress=lambda text: progress.update(task, description=text),
                    )
                )
                progress.advance(task)
        emit(
            reports,
            as_json,
            (
                "workspace",
                "table",
                "partitions",
                "filesBefore",
                "filesAfter",
                "records",
                "bytesRewritten",
                "bytesWritten",
            ),
            title="compaction",
        )
    finally:
        runtime.close()


@lake.command("expire")
@workspace_option
@_table_option
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0),
    default=None,
    help="Expire snapshots older than this [default: lake.snapshot_retention_hours].",
)
@click.option(
    "--orphan-min-age-minutes",
    type=click.FloatRange(min=0),
    default=DEFAULT_ORPHAN_MIN_AGE.total_seconds() / 60,
    show_default=True,
    help="Unreferenced files younger than this are kept (a commit may be in flight).",
)
@json_option
@settings_options()
def expire(
    workspace: str | None,
    table_name: str | None,
    older_than_hours: float | None,
    orphan_min_age_minutes: float,
    as_json: bool,
    settings: Settings,
) -> None:
    """Expire old snapshots (never the current one), then delete orphan files.

    Without --workspace, every workspace of the lake."""
    hours = settings.lake.snapshot_retention_hours if older_than_hours is None else older_than_hours
    min_age = timedelta(minutes=orphan_min_age_minutes)
    if min_age < LIVE_ORPHAN_MIN_AGE and processor_running(settings.data_dir):
        raise Conflict(
            f"a processor is running on {settings.data_dir}: --orphan-min-age-minutes must "
            f"be at least {LIVE_ORPHAN_MIN_AGE.total_seconds() / 60:g} while it may commit"
        )
    runtime = open_runtime(settings)
    try:
        targets = _targets(runtime, workspace, table_name, every_workspace=True)
        reports = []
        with progress_bar(as_json) as progress:
            task = progress.add_task("expiring", total=len(targets))
            for space, name in targets:
                progress.update(task, description=f"expiring {space}.{name}")
                reports.append(
                    expire_table(
                        _load(runtime.lake, space, name),
                        workspace=space,
                        older_than=datetime.now(UTC) - timedelta(hours=hours),
                        orphan_min_age=min_age,
                    )
                )
                progress.advance(task)
        emit(
            reports,
            as_json,
            (
                "workspace",
                "table",
                "snapshotsExpired",
                "snapshotsKept",
                "orphanFiles",
                "orphanBytes",
                "youngOrphansKept",
            ),
            title="expiry",
        )
    finally:
        runtime.close()


@lake.command("inspect")
@workspace_option
@_table_option
@json_option
@settings_options()
def inspect(
    workspace: str | None, table_name: str | None, as_json: bool, settings: Settings
) -> None:
    """Snapshots, data files and partitions of the workspace's tables."""
    runtime = open_runtime(settings)
    try:
        targets = _targets(runtime, workspace, table_name, every_workspace=False)
        results = [
            inspect_table(_load(runtime.lake, space, name), workspace=space)
            for space, name in targets
        ]
        if as_json:
            click.echo(json.dumps(results, default=str))
            return
        if not results:
            console.print("the lake has no tables for this workspace yet")
        for result in results:
            _show(result)
    finally:
        runtime.close()


def _show(result: dict[str, Any]) -> None:
    files = result["dataFiles"]
    console.print(
        f"[bold]{result['workspace']}.{result['table']}[/bold]  {files['records']:,} records "
        f"in {files['count']:,} files ({files['bytes']:,} bytes)  {result['location']}"
    )
    snapshots = RichTable(title="snapshots")
    for column in ("snapshot", "committed", "operation", "added records", "files", "records"):
        snapshots.add_column(column)
    for snap in result["snapshots"]:
        operation = snap["operation"] + (f" ({snap['maintenance']})" if snap["maintenance"] else "")
        snapshots.add_row(
            str(snap["snapshotId"]),
            snap["committedAt"],
            operation,
            f"{snap['addedRecords']:,}",
            f"{snap['totalFiles']:,}",
            f"{snap['totalRecords']:,}",
        )
    console.print(snapshots)
    partitions = RichTable(title="partitions")
    for column in ("partition", "records", "files", "bytes"):
        partitions.add_column(column)
    for part in result["partitions"]:
        value = " ".join(f"{k}={v}" for k, v in part["partition"].items())
        partitions.add_row(
            value, f"{part['records']:,}", f"{part['files']:,}", f"{part['bytes']:,}"
        )
    console.print(partitions)
