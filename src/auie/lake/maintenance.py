"""Lake maintenance: compaction, snapshot expiry, orphan-file removal, inspection.

Every micro-batch is one Iceberg commit, so a busy lake collects many small data files,
one snapshot per flush and the files only old snapshots still point at. Maintenance keeps
that in check:

* :func:`compact_table` rewrites a partition's small data files as few large ones, in one
  commit (an ``overwrite`` snapshot that deletes exactly the files it read and adds their
  rows back). The rows do not change. The snapshot carries the ``auie.log-offsets``
  property of its parent, so the exactly-once writer still finds its offsets in the newest
  snapshot even after the older ones are expired.
* :func:`expire_table` removes snapshots older than the retention (never the current one,
  nor the snapshots between it and the newest one holding offsets), then deletes orphan
  files: files under the table's ``data/`` and ``metadata/`` that neither a remaining
  snapshot, its manifest list and manifests, nor the current or a previous
  ``metadata.json`` refers to, and that are older than a safety age (the files of a commit
  in flight are young). The directory is listed before the references are read, so a
  commit landing meanwhile keeps its files.
* :func:`inspect_table` describes snapshots, data files and partitions.
* :class:`LakeMaintenance` runs compaction and expiry on every table every
  ``lake.maintenance_minutes``; the processor calls it between flushes, so it never races
  the writer of the same process.

Compaction relies on pyiceberg internals (the overwrite snapshot producer and the Arrow
file writer) so it can replace *exactly* the files it read in a single snapshot; they are
pinned in ``constraints.txt`` and covered by ``tests/integration/test_lake_maintenance.py``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from pyarrow import fs as pafs
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT

from auie.lake.catalog import OFFSETS_PROPERTY, Lake, committed_offsets

logger = logging.getLogger(__name__)

#: Data files smaller than this are compacted; rewritten files aim at this size.
DEFAULT_TARGET_FILE_BYTES = 64 * 1024 * 1024
#: Unreferenced files younger than this are kept: they may belong to a commit in flight.
DEFAULT_ORPHAN_MIN_AGE = timedelta(hours=1)
#: The least ``auie lake expire`` accepts while a processor runs: a flush writes its files
#: a moment before it commits them, and a younger bound would delete them mid-commit.
LIVE_ORPHAN_MIN_AGE = timedelta(minutes=5)
#: Snapshot summary property marking AUIE's compaction snapshots.
MAINTENANCE_PROPERTY = "auie.maintenance"

Progress = Callable[[str], None]


# -- compaction ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompactReport:
    workspace: str
    table: str
    #: Partitions whose files were rewritten.
    partitions: int
    files_before: int
    files_after: int
    #: Small files replaced, and the files that replaced them.
    files_rewritten: int
    files_written: int
    records: int
    bytes_rewritten: int
    bytes_written: int
    snapshot_id: int | None
    seconds: float


def _newest_offsets(metadata: TableMetadata, snapshot_id: int | None) -> str | None:
    """The raw ``auie.log-offsets`` of a snapshot or its nearest ancestor that has them."""
    seen: set[int] = set()
    while snapshot_id is not None and snapshot_id not in seen:
        seen.add(snapshot_id)
        snapshot = metadata.snapshot_by_id(snapshot_id)
        if snapshot is None:
            return None
        summary = snapshot.summary
        raw = summary.get(OFFSETS_PROPERTY) if summary is not None else None
        if raw:
            return str(raw)
        snapshot_id = snapshot.parent_snapshot_id
    return None


class _RewriteFiles(_OverwriteFiles):
    """An overwrite snapshot that replaces given files with files holding the same rows.

    Two differences from a plain overwrite, both evaluated again when pyiceberg retries the
    commit on top of a concurrent one:

    * the snapshot's ``auie.log-offsets`` are its *parent's*, whatever was read when the
      rewrite started, so a writer commit that landed meanwhile keeps its offsets current;
    * files appended concurrently are no conflict (the rewrite adds no rows). The one real
      conflict, a replaced file removed meanwhile, fails in ``_deleted_entries``.
    """

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        properties = dict(snapshot_properties)
        offsets = _newest_offsets(self._transaction.table_metadata, self._parent_snapshot_id)
        if offsets is not None:
            properties[OFFSETS_PROPERTY] = offsets
        return super()._summary(properties)

    def _validate_concurrency(self) -> None:
        return


def _partition_key(task: FileScanTask) -> tuple[int, Any]:
    return (task.file.spec_id, task.file.partition)


def _bins(tasks: list[FileScanTask], target: int) -> list[list[FileScanTask]]:
    """Small files of one partition packed into groups of at most ``target`` bytes; groups of
    one file are dropped (rewriting a file alone gains nothing)."""
    groups: list[list[FileScanTask]] = []
    current: list[FileScanTask] = []
    size = 0
    for task in sorted(tasks, key=lambda t: (t.file.file_size_in_bytes, t.file.file_path)):
        if current and size + task.file.file_size_in_bytes > target:
            groups.append(current)
            current, size = [], 0
        current.append(task)
        size += task.file.file_size_in_bytes
    if current:
        groups.append(current)
    return [g for g in groups if len(g) > 1]


def compact_table(
    table: Table,
    *,
    workspace: str = "",
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
    progress: Progress | None = None,
) -> CompactReport:
    """Rewrite each partition's small files as few large ones, in one commit (see module)."""
    started = time.perf_counter()
    name = table.name()[-1]
    tasks = list(table.scan().plan_files()) if table.current_snapshot() is not None else []
    by_partition: dict[tuple[int, Any], list[FileScanTask]] = {}
    for task in tasks:
        if task.file.file_size_in_bytes < target_file_bytes and not task.delete_files:
            by_partition.setdefault(_partition_key(task), []).append(task)
    plan = [
        (key, bins)
        for key, small in by_partition.items()
        if (bins := _bins(small, target_file_bytes))
    ]
    if not plan:
        current = table.current_snapshot()
        return CompactReport(
            workspace=workspace,
            table=name,
            partitions=0,
            files_before=len(tasks),
            files_after=len(tasks),
            files_rewritten=0,
            files_written=0,
            records=0,
            bytes_rewritten=0,
            bytes_written=0,
            snapshot_id=current.snapshot_id if current is not None else None,
            seconds=time.perf_counter() - started,
        )

    transaction = table.transaction()
    rewrite = _RewriteFiles(
        operation=Operation.OVERWRITE,
        transaction=transaction,
        io=table.io,
        snapshot_properties={MAINTENANCE_PROPERTY: "compaction"},
    )
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    counter = itertools.count(0)
    written: list[DataFile] = []
    rewritten = records = bytes_rewritten = 0
    try:
        for _key, bins in plan:
            for group in bins:
                if progress is not None:
                    progress(f"{name}: rewriting {len(group)} files")
                data = scan.to_table(group)
                files = list(
                    _dataframe_to_data_files(
                        table_metadata=table.metadata,
                        df=data,
                        io=table.io,
                        write_uuid=rewrite.commit_uuid,
                        counter=counter,
                    )
                )
                written.extend(files)
                if sum(f.record_count for f in files) != data.num_rows:
                    raise RuntimeError(f"compaction of {name} lost rows while writing")
                for task in group:
                    rewrite.delete_data_file(task.file)
                    bytes_rewritten += task.file.file_size_in_bytes
                for new_file in files:
                    rewrite.append_data_file(new_file)
                rewritten += len(group)
                records += data.num_rows
    except BaseException:
        _delete_quietly(table, [f.file_path for f in written])
        raise
    try:
        rewrite.commit()
        transaction.commit_transaction()
    except (CommitFailedException, ValidationException):
        # The commit did not land: the files written for it are referenced by nothing.
        _delete_quietly(table, [f.file_path for f in written])
        raise
    snapshot = table.current_snapshot()
    return CompactReport(
        workspace=workspace,
        table=name,
        partitions=len(plan),
        files_before=len(tasks),
        files_after=len(tasks) - rewritten + len(written),
        files_rewritten=rewritten,
        files_written=len(written),
        records=records,
        bytes_rewritten=bytes_rewritten,
        bytes_written=sum(f.file_size_in_bytes for f in written),
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        seconds=time.perf_counter() - started,
    )


def _delete_quietly(table: Table, paths: Iterable[str]) -> None:
    for path in paths:
        try:
            table.io.delete(path)
        except OSError:
            logger.warning("could not delete %s (orphan removal will)", path, exc_info=True)


# -- expiry and orphan files --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpireReport:
    workspace: str
    table: str
    snapshots_expired: int
    snapshots_kept: int
    orphan_files: int
    orphan_bytes: int
    #: Unreferenced files kept because they are younger than the safety age.
    young_orphans_kept: int
    seconds: float


def _protected_snapshots(table: Table) -> set[int]:
    """The current snapshot, branch and tag heads, and every snapshot from the current one
    back to the newest one holding log offsets (so the writer can still find them)."""
    metadata = table.metadata
    protected = {ref.snapshot_id for ref in metadata.refs.values()}
    snapshot = table.current_snapshot()
    seen: set[int] = set()
    while snapshot is not None and snapshot.snapshot_id not in seen:
        seen.add(snapshot.snapshot_id)
        summary = snapshot.summary
        if summary is not None and summary.get(OFFSETS_PROPERTY):
            break
        parent = snapshot.parent_snapshot_id
        snapshot = metadata.snapshot_by_id(parent) if parent is not None else None
    return protected | seen


def expire_snapshots(table: Table, older_than: datetime, *, attempts: int = 3) -> int:
    """Expire snapshots committed before ``older_than`` (see :func:`_protected_snapshots`).
    Returns how many were expired."""
    cutoff_ms = int(older_than.timestamp() * 1000)
    for attempt in range(attempts):
        protected = _protected_snapshots(table)
        doomed = [
            s.snapshot_id
            for s in table.metadata.snapshots
            if s.timestamp_ms < cutoff_ms and s.snapshot_id not in protected
        ]
        if not doomed:
            return 0
        try:
            table.maintenance.expire_snapshots().by_ids(doomed).commit()
        except CommitFailedException:
            if attempt == attempts - 1:
                raise
            table.refresh()
            continue
        return len(doomed)
    return 0  # pragma: no cover - the loop returns or raises


def _normal(uri: str) -> str:
    """A location without its scheme, as pyarrow's file systems list it."""
    parsed = urlparse(uri)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a bare path (or a Windows drive)
        return uri
    return f"{parsed.netloc}{parsed.path}"


def referenced_files(table: Table) -> set[str]:
    """Every file the table's current metadata refers to, as :func:`_normal` paths."""
    metadata = table.metadata
    found = {table.metadata_location}
    found.update(entry.metadata_file for entry in metadata.metadata_log)
    found.update(s.statistics_path for s in metadata.statistics)
    found.update(s.statistics_path for s in metadata.partition_statistics)
    manifests: set[str] = set()
    for snapshot in metadata.snapshots:
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in manifests:
                continue
            manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                found.add(entry.data_file.file_path)
    found |= manifests
    return {_normal(path) for path in found}


@dataclass(frozen=True, slots=True)
class _Listed:
    path: str
    size: int
    mtime: datetime


def _list_files(table: Table) -> Iterator[_Listed]:
    filesystem, root = pafs.FileSystem.from_uri(table.location())
    for sub in ("data", "metadata"):
        selector = pafs.FileSelector(
            f"{root.rstrip('/')}/{sub}", recursive=True, allow_not_found=True
        )
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            mtime = info.mtime or datetime.fromtimestamp(0, UTC)
            if mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=UTC)
            yield _Listed(info.path, info.size or 0, mtime)


@dataclass(frozen=True, slots=True)
class OrphanReport:
    files: int
    bytes: int
    young_kept: int


def _check_listed(table: Table, snapshot: Snapshot | None, names: set[str]) -> None:
    """Refuse on a path mismatch: every live data file of ``snapshot`` must be listed."""
    if snapshot is None:
        return
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if _normal(entry.data_file.file_path) not in names:
                raise RuntimeError(
                    f"{entry.data_file.file_path} is live but not listed under "
                    f"{table.location()}; orphan removal refused"
                )


def remove_orphan_files(
    table: Table, *, min_age: timedelta = DEFAULT_ORPHAN_MIN_AGE, now: datetime | None = None
) -> OrphanReport:
    """Delete files under the table's ``data/`` and ``metadata/`` that its metadata does not
    refer to and that were last modified more than ``min_age`` ago.

    The directory is listed *before* the references are read: a commit that lands between
    the two is then referenced (its files are kept), whereas the other order would list its
    files as unreferenced and delete a committed snapshot's files. The listing check uses
    the snapshot current before the listing, whose files all existed when it was made."""
    table.refresh()
    listed_snapshot = table.current_snapshot()
    listed = list(_list_files(table))
    _check_listed(table, listed_snapshot, {f.path for f in listed})
    table.refresh()
    referenced = referenced_files(table)
    cutoff = (now or datetime.now(UTC)) - min_age
    files = size = young = 0
    filesystem, _root = pafs.FileSystem.from_uri(table.location())
    for item in listed:
        if item.path in referenced:
            continue
        if item.mtime > cutoff:
            young += 1
            continue
        try:
            filesystem.delete_file(item.path)
        except FileNotFoundError:
            continue
        files += 1
        size += item.size
    return OrphanReport(files, size, young)


def expire_table(
    table: Table,
    *,
    workspace: str = "",
    older_than: datetime,
    orphan_min_age: timedelta = DEFAULT_ORPHAN_MIN_AGE,
    now: datetime | None = None,
) -> ExpireReport:
    """Expire old snapshots, then remove orphan files (see the module docstring)."""
    started = time.perf_counter()
    expired = expire_snapshots(table, older_than)
    orphans = remove_orphan_files(table, min_age=orphan_min_age, now=now)
    return ExpireReport(
        workspace=workspace,
        table=table.name()[-1],
        snapshots_expired=expired,
        snapshots_kept=len(table.metadata.snapshots),
        orphan_files=orphans.files,
        orphan_bytes=orphans.bytes,
        young_orphans_kept=orphans.young_kept,
        seconds=time.perf_counter() - started,
    )


# -- inspection ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _int(summary: Mapping[str, str], key: str) -> int:
    try:
        return int(summary.get(key, 0))
    except ValueError:
        return 0


def inspect_table(table: Table, *, workspace: str = "") -> dict[str, Any]:
    """Snapshots, data files and partitions of a table, JSON-ready."""
    snapshots: list[dict[str, Any]] = []
    files: dict[str, int] = {"count": 0, "bytes": 0, "records": 0}
    partitions: list[dict[str, Any]] = []
    if table.current_snapshot() is not None:
        for row in table.inspect.snapshots().to_pylist():
            summary = dict(row["summary"] or [])
            snapshots.append(
                {
                    "snapshotId": row["snapshot_id"],
                    "parentId": row["parent_id"],
                    "committedAt": _plain(row["committed_at"]),
                    "operation": row["operation"],
                    "maintenance": summary.get(MAINTENANCE_PROPERTY),
                    "addedRecords": _int(summary, "added-records"),
                    "addedFiles": _int(summary, "added-data-files"),
                    "deletedFiles": _int(summary, "deleted-data-files"),
                    "totalRecords": _int(summary, "total-records"),
                    "totalFiles": _int(summary, "total-data-files"),
                }
            )
        data = table.inspect.data_files().select(["record_count", "file_size_in_bytes"])
        files = {
            "count": data.num_rows,
            "bytes": int(pa.compute.sum(data["file_size_in_bytes"]).as_py() or 0),
            "records": int(pa.compute.sum(data["record_count"]).as_py() or 0),
        }
        for row in table.inspect.partitions().to_pylist():
            partitions.append(
                {
                    "partition": _plain(row["partition"]),
                    "records": row["record_count"],
                    "files": row["file_count"],
                    "bytes": row["total_data_file_size_in_bytes"],
                }
            )
        partitions.sort(key=lambda p: sorted(p["partition"].items()))
    current = table.current_snapshot()
    return {
        "workspace": workspace,
        "table": table.name()[-1],
        "location": table.location(),
        "currentSnapshotId": current.snapshot_id if current is not None else None,
        "offsets": {
            topic: {str(p): o for p, o in parts.items()}
            for topic, parts in committed_offsets(table).items()
        },
        "snapshots": snapshots,
        "dataFiles": files,
        "partitions": partitions,
    }


# -- in the processor ---------------------------------------------------------------------


@dataclass(slots=True)
class MaintenanceRun:
    compactions: list[CompactReport] = field(default_factory=list)
    expiries: list[ExpireReport] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)


class LakeMaintenance:
    """Compacts and expires every table of the lake every ``every_minutes``.

    Call it as often as you like (the processor calls it from every step); it does work
    only when due, the first time one interval after it was created. Failures are logged,
    never raised: maintenance must not stop the pipeline.
    """

    def __init__(
        self,
        lake: Lake,
        *,
        every_minutes: float,
        retention_hours: float,
        target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
        orphan_min_age: timedelta = DEFAULT_ORPHAN_MIN_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake = lake
        self.interval = every_minutes * 60
        self.retention = timedelta(hours=retention_hours)
        self.target_file_bytes = target_file_bytes
        self.orphan_min_age = orphan_min_age
        self.clock = clock
        self.next_run = clock() + self.interval

    def due(self) -> bool:
        """Whether a call now would do work (cheap: callers ask before taking a lock)."""
        return self.interval > 0 and self.clock() >= self.next_run

    def __call__(self) -> MaintenanceRun | None:
        if not self.due():
            return None
        try:
            return self.run()
        finally:
            self.next_run = self.clock() + self.interval

    def run(self) -> MaintenanceRun:
        result = MaintenanceRun()
        started = time.perf_counter()
        for workspace in self.lake.workspaces():
            for name in self.lake.tables(workspace):
                self._table(workspace, name, result)
        logger.info(
            "lake maintenance: %d file(s) compacted into %d, %d snapshot(s) expired, "
            "%d orphan file(s) removed in %.1fs",
            sum(c.files_rewritten for c in result.compactions),
            sum(c.files_written for c in result.compactions),
            sum(e.snapshots_expired for e in result.expiries),
            sum(e.orphan_files for e in result.expiries),
            time.perf_counter() - started,
        )
        return result

    def _table(self, workspace: str, name: str, result: MaintenanceRun) -> None:
        try:
            table = self.lake.refresh(workspace, name)
            result.compactions.append(
                compact_table(table, workspace=workspace, target_file_bytes=self.target_file_bytes)
            )
            result.expiries.append(
                expire_table(
                    table,
                    workspace=workspace,
                    older_than=datetime.now(UTC) - self.retention,
                    orphan_min_age=self.orphan_min_age,
                )
            )
        except Exception as exc:
            logger.exception("lake maintenance of %s.%s failed", workspace, name)
            result.failures.append((workspace, name, repr(exc)))
            self.lake.forget(workspace, name)
