"""Row-level deletes in the Iceberg lake that leave nothing behind.

:func:`locate` finds the rows to delete file by file, reading only the columns the test
needs (a person's id columns, or a time column). :func:`delete_located` then commits **one**
``overwrite`` snapshot per table that drops the files whose rows all go and replaces each
other file holding such rows by a copy without them — copy-on-write, as pyiceberg's
``table.delete`` does, but reading in full only the files that hold matching rows and
testing JSON fields precisely. The snapshot carries the parent's ``auie.log-offsets``
(:class:`~auie.lake.maintenance._RewriteFiles`, evaluated again if pyiceberg retries the
commit on top of a concurrent append), so the processor's exactly-once bookkeeping is
untouched, and it writes no "deleted" manifest entries (they would keep the removed
files' column bounds — possibly the very ids being erased — in the new snapshot).

:func:`purge_history` makes it physical: every older snapshot is expired; every file only
they referred to (data files, manifests, manifest lists, previous ``metadata.json``) is
deleted; the metadata log is cut to the versions written after the delete; finally orphan
files are removed (with a minimum age of 0 when no processor can be committing).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import fs as pafs
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile, ManifestEntry
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation
from pyiceberg.types import StringType

from auie.lake.maintenance import (
    MAINTENANCE_PROPERTY,
    _RewriteFiles,
    expire_snapshots,
    referenced_files,
    remove_orphan_files,
)
from auie.privacy.person import Person

logger = logging.getLogger(__name__)

PREVIOUS_VERSIONS_MAX = "write.metadata.previous-versions-max"
Mask = Callable[[pa.Table], np.ndarray]


@dataclass(frozen=True, slots=True)
class RowTest:
    """Which rows to find: the columns to read and a vectorised test over them."""

    columns: tuple[str, ...]
    mask: Mask
    #: Pruning by partition and column statistics (retention); AlwaysTrue otherwise.
    row_filter: BooleanExpression = field(default_factory=AlwaysTrue)


@dataclass(slots=True)
class Located:
    """One data file with matching rows, and which of its rows match."""

    task: FileScanTask
    mask: np.ndarray

    @property
    def matched(self) -> int:
        return int(self.mask.sum())

    @property
    def total(self) -> int:
        return len(self.mask)


def _threads() -> int:
    return 4


def _read(table: Table, task: FileScanTask, columns: Sequence[str] | None) -> pa.Table:
    schema = table.schema() if columns is None else table.schema().select(*columns)
    return ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table([task])


def locate(table: Table, test: RowTest) -> list[Located]:
    """Data files of the current snapshot holding rows that pass ``test``."""
    if table.current_snapshot() is None:
        return []
    names = {f.name for f in table.schema().fields}
    columns = tuple(c for c in test.columns if c in names)
    if not columns:
        return []
    tasks = list(table.scan(row_filter=test.row_filter).plan_files())

    def check(task: FileScanTask) -> Located | None:
        data = _read(table, task, columns)
        mask = np.asarray(test.mask(data), dtype=bool)
        return Located(task, mask) if mask.any() else None

    with ThreadPoolExecutor(_threads()) as pool:
        return [found for found in pool.map(check, tasks) if found is not None]


def extract(table: Table, located: Iterable[Located]) -> pa.Table:
    """The matching rows, every column."""
    parts = [_read(table, item.task, None).filter(pa.array(item.mask)) for item in located]
    if not parts:
        return table.schema().as_arrow().empty_table()
    return pa.concat_tables(parts)


class _EraseFiles(_RewriteFiles):
    """:class:`_RewriteFiles` (parent's offsets, appends meanwhile are no conflict) without
    manifest entries for the deleted files: they would keep the deleted files' column
    bounds in the new snapshot. A file removed meanwhile (compaction) still fails."""

    def _deleted_entries(self) -> list[ManifestEntry]:
        super()._deleted_entries()  # validates that every file to delete is still live
        return []


@dataclass(slots=True)
class DeleteReport:
    table: str
    rows: int = 0
    files_dropped: int = 0
    files_rewritten: int = 0
    files_written: int = 0
    snapshot_id: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "filesDropped": self.files_dropped,
            "filesRewritten": self.files_rewritten,
            "filesWritten": self.files_written,
            "seconds": round(self.seconds, 3),
        }


def delete_located(table: Table, located: Sequence[Located], *, marker: str) -> DeleteReport:
    """One overwrite snapshot without the located rows (see the module docstring).
    Raises ValidationException if a located file was removed meanwhile (locate again)."""
    started = time.perf_counter()
    report = DeleteReport(table.name()[-1])
    if not located:
        return report
    transaction = table.transaction()
    rewrite = _EraseFiles(
        operation=Operation.OVERWRITE,
        transaction=transaction,
        io=table.io,
        snapshot_properties={MAINTENANCE_PROPERTY: marker},
    )
    counter = itertools.count(0)

    def copy_without(item: Located) -> list[DataFile]:
        data = _read(table, item.task, None)
        if data.num_rows != item.total:
            raise ValidationException(f"{item.task.file.file_path} changed while being read")
        keep = data.filter(pa.array(~item.mask))
        return list(
            _dataframe_to_data_files(
                table_metadata=table.metadata,
                df=keep,
                io=table.io,
                write_uuid=rewrite.commit_uuid,
                counter=counter,
            )
        )

    partial = [item for item in located if item.matched < item.total]
    written: list[DataFile] = []
    try:
        with ThreadPoolExecutor(_threads()) as pool:
            copies = list(pool.map(copy_without, partial))
        for item, files in zip(partial, copies, strict=True):
            written.extend(files)
            if sum(f.record_count for f in files) != item.total - item.matched:
                raise RuntimeError(f"rewriting {item.task.file.file_path} lost rows")
            for new_file in files:
                rewrite.append_data_file(new_file)
        for item in located:
            rewrite.delete_data_file(item.task.file)
        rewrite.commit()
        transaction.commit_transaction()
    except BaseException:
        _delete_paths(table, [f.file_path for f in written])
        raise
    snapshot = table.current_snapshot()
    report.rows = sum(item.matched for item in located)
    report.files_dropped = len(located) - len(partial)
    report.files_rewritten = len(partial)
    report.files_written = len(written)
    report.snapshot_id = snapshot.snapshot_id if snapshot is not None else None
    report.seconds = time.perf_counter() - started
    return report


def delete_rows(
    refresh: Callable[[], Table], test: RowTest, *, marker: str, attempts: int = 4
) -> tuple[DeleteReport, list[Located]]:
    """Locate and delete, again if a concurrent compaction removed a located file."""
    for attempt in range(attempts):
        table = refresh()
        located = locate(table, test)
        try:
            return delete_located(table, located, marker=marker), located
        except (ValidationException, CommitFailedException):
            if attempt == attempts - 1:
                raise
            logger.info("%s changed during a delete; locating again", table.name()[-1])
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _delete_paths(table: Table, paths: Iterable[str]) -> int:
    deleted = 0
    for path in paths:
        try:
            table.io.delete(path)
            deleted += 1
        except (FileNotFoundError, OSError):
            continue
    return deleted


@dataclass(slots=True)
class PurgeReport:
    table: str
    snapshots_expired: int = 0
    files_deleted: int = 0
    orphan_files: int = 0
    young_orphans_kept: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshotsExpired": self.snapshots_expired,
            "filesDeleted": self.files_deleted,
            "orphanFiles": self.orphan_files,
            "youngOrphansKept": self.young_orphans_kept,
            "seconds": round(self.seconds, 3),
        }


def _trim_metadata_log(table: Table, attempts: int = 5) -> None:
    """Cut the metadata log to the newest version, then restore the table's setting (two
    commits): the ``metadata.json`` files written before are no longer referenced."""
    original = table.metadata.properties.get(PREVIOUS_VERSIONS_MAX)
    for restore in (False, True):
        for attempt in range(attempts):
            try:
                with table.transaction() as transaction:
                    if not restore:
                        transaction.set_properties({PREVIOUS_VERSIONS_MAX: "1"})
                    elif original is None:
                        transaction.remove_properties(PREVIOUS_VERSIONS_MAX)
                    else:
                        transaction.set_properties({PREVIOUS_VERSIONS_MAX: original})
                break
            except CommitFailedException:  # a writer committed meanwhile: on top of it
                if attempt == attempts - 1:
                    raise
                table.refresh()


def purge_history(table: Table, *, orphan_min_age: timedelta) -> PurgeReport:
    """Expire every snapshot but the current one (and those the exactly-once writer still
    needs), delete every file only they referred to, cut the metadata log, remove orphans."""
    started = time.perf_counter()
    report = PurgeReport(table.name()[-1])
    table.refresh()
    before = referenced_files(table)
    report.snapshots_expired = expire_snapshots(table, datetime.now(UTC) + timedelta(seconds=1))
    table.refresh()
    _trim_metadata_log(table)
    table.refresh()
    after = referenced_files(table)
    gone = sorted(before - after)
    filesystem, _root = pafs.FileSystem.from_uri(table.location())
    for path in gone:
        try:
            filesystem.delete_file(path)
            report.files_deleted += 1
        except (FileNotFoundError, OSError):
            continue
    orphans = remove_orphan_files(table, min_age=orphan_min_age)
    report.orphan_files = orphans.files
    report.young_orphans_kept = orphans.young_kept
    report.seconds = time.perf_counter() - started
    return report


def bounds_naming(table: Table, values: set[str]) -> int:
    """Live manifest entries whose string column bounds equal one of ``values`` (after an
    erasure: 0)."""
    snapshot = table.current_snapshot()
    if snapshot is None or not values:
        return 0
    schema = table.schema()
    strings = {f.field_id for f in schema.fields if isinstance(f.field_type, StringType)}
    hits = 0
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            data = entry.data_file
            for bounds in (data.lower_bounds or {}, data.upper_bounds or {}):
                for field_id, raw in bounds.items():
                    if field_id in strings and from_bytes(StringType(), raw) in values:
                        hits += 1
    return hits


# -- row tests ---------------------------------------------------------------------------


def _is_in(data: pa.Table, column: str, values: Iterable[str]) -> np.ndarray:
    wanted = sorted(set(values))
    if column not in data.column_names or not wanted:
        return np.zeros(data.num_rows, dtype=bool)
    result = pc.is_in(data[column], value_set=pa.array(wanted, data[column].type))
    return np.asarray(result.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _json_mentions(data: pa.Table, column: str, person: Person) -> np.ndarray:
    mask = np.zeros(data.num_rows, dtype=bool)
    if column not in data.column_names or data.num_rows == 0:
        return mask
    values = data[column]
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return mask  # e.g. the rewards table's numeric ``value``: no text to mention anyone
    candidates = np.zeros(data.num_rows, dtype=bool)
    for needle, insensitive in person.needles():
        found = pc.match_substring(
            values, needle.decode("utf-8", "surrogatepass"), ignore_case=insensitive
        )
        candidates |= np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    if not candidates.any():
        return mask
    indexes = np.flatnonzero(candidates)
    texts = values.take(pa.array(indexes)).to_pylist()
    for index, text in zip(indexes, texts, strict=True):
        mask[index] = person.mentions_text(text)
    return mask


#: Columns compared exactly, per table kind, and JSON columns checked field by field.
_EVENT_JSON = ("traits",)
#: Pseudonymous id columns: keyed hashes of the ids (compared with the person's hashes).
_HASHES = ("user_hash", "anonymous_hash", "id_hash", "profile_hash")
_OTHER_JSON = ("context", "payload", "properties", "traits", "identities", "value")


def person_test(person: Person, table_name: str) -> RowTest:
    """The rows of one lake table that are about the person."""
    users, anonymous = person.users, person.anonymous
    keys = person.mart_keys
    hashes = person.hashes

    if table_name == "events":
        columns = ("user_id", "anonymous_id", "previous_id", *_HASHES, *_EVENT_JSON)

        def events(data: pa.Table) -> np.ndarray:
            mask: np.ndarray = _is_in(data, "user_id", users)
            mask |= _is_in(data, "anonymous_id", anonymous)
            mask |= _is_in(data, "previous_id", users | anonymous)
            for column in _HASHES:
                mask |= _is_in(data, column, hashes)
            for column in _EVENT_JSON:
                mask |= _json_mentions(data, column, person)
            return mask

        return RowTest(columns, events)

    if table_name == "identities":

        def identities(data: pa.Table) -> np.ndarray:
            mask = _is_in(data, "profile_id", person.profile_ids)
            if data.num_rows and {"id_type", "id_value"} <= set(data.column_names):
                kind = data["id_value"].type
                pairs = pc.binary_join_element_wise(
                    data["id_type"].cast(kind), data["id_value"], pa.scalar(":", kind)
                )
                found = pc.is_in(pairs, value_set=pa.array(sorted(person.nodes), kind))
                mask |= np.asarray(
                    found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool
                )
            return mask

        return RowTest(("id_type", "id_value", "profile_id", "id_hash"), identities)

    if table_name == "dead_letters":

        def letters(data: pa.Table) -> np.ndarray:
            return _json_mentions(data, "payload", person)

        return RowTest(("payload",), letters)

    # profiles, decisions, rewards and any other table: id columns and JSON columns
    id_columns = ("user_id", "anonymous_id", "previous_id", "profile_id", "person_id")
    event_columns = ("event_id",)

    def generic(data: pa.Table) -> np.ndarray:
        mask: np.ndarray = _is_in(data, "user_id", users) | _is_in(data, "anonymous_id", anonymous)
        mask |= _is_in(data, "previous_id", users | anonymous)
        mask |= _is_in(data, "profile_id", keys) | _is_in(data, "person_id", keys)
        mask |= _is_in(data, "event_id", person.decision_ids)
        for column in _HASHES:
            mask |= _is_in(data, column, hashes)
        for column in _OTHER_JSON:
            mask |= _json_mentions(data, column, person)
        return mask

    return RowTest((*id_columns, *event_columns, *_HASHES, *_OTHER_JSON), generic)


def older_than_test(column: str, cutoff: datetime) -> RowTest:
    """Rows whose ``column`` is before ``cutoff`` (retention)."""
    from pyiceberg.expressions import LessThan

    def older(data: pa.Table) -> np.ndarray:
        if column not in data.column_names:
            return np.zeros(data.num_rows, dtype=bool)
        scalar = pa.scalar(cutoff, type=data[column].type)
        result = pc.less(data[column], scalar)
        return np.asarray(result.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    return RowTest((column,), older, LessThan(term=column, value=cutoff.isoformat()))
