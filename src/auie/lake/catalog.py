"""The Iceberg catalog: pyiceberg's SQL catalog on SQLite in the data directory by default,
PostgreSQL by ``lake.catalog_url``. One namespace per workspace."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import Table

from auie.config import Settings
from auie.filelock import exclusive
from auie.lake.tables import TABLES

logger = logging.getLogger(__name__)

#: Snapshot summary property holding the log offsets a commit covers.
OFFSETS_PROPERTY = "auie.log-offsets"
#: The profile store's change sequence as a source of the offsets property, a pseudo-topic
#: whose "next offset" is the next change to export (tables ``identities`` and
#: ``profiles``; see :mod:`auie.process.exports`): partition 0 for a lone processor,
#: ``n * 1000 + i`` for member ``i`` of a group of ``n``. Being in the same property, it is
#: carried by compaction and erasure and protected by expiry exactly like log offsets.
PROFILE_CHANGES = "profile-changes"


def local_path(uri: str) -> str:
    """The local file path of a lake file's URI (``file://...``); other URIs as they are."""
    return urlparse(uri).path if uri.startswith("file://") else uri


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (DuckDB, PostgreSQL, SQLite): a table or
    view named after a lake table or a workspace, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def open_catalog(settings: Settings) -> SqlCatalog:
    """pyiceberg's SQL catalog. Opening creates its tables on first use; on a SQLite file
    processes opening it at the same moment (a processor group) take turns."""
    url = settings.lake_catalog_url
    lock: Path | None = None
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_name(path.name + ".open.lock")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    warehouse = settings.lake_warehouse
    if warehouse.startswith("file://"):
        Path(warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    if lock is None:
        return SqlCatalog("auie", uri=url, warehouse=warehouse)
    with exclusive(lock):
        return SqlCatalog("auie", uri=url, warehouse=warehouse)


class Lake:
    """Tables of every workspace, created on first use and cached."""

    def __init__(self, catalog: SqlCatalog) -> None:
        self.catalog = catalog
        self._tables: dict[tuple[str, str], Table] = {}

    def table(self, workspace: str, name: str, *, create: bool = True) -> Table:
        key = (workspace, name)
        table = self._tables.get(key)
        if table is None:
            table = self._load_or_create(workspace, name, create)
            self._tables[key] = table
        return table

    def refresh(self, workspace: str, name: str) -> Table:
        """Reload a table's metadata (another process may have committed)."""
        table = self.catalog.load_table((workspace, name))
        self._tables[(workspace, name)] = table
        return table

    def forget(self, workspace: str, name: str) -> None:
        self._tables.pop((workspace, name), None)

    def _load_or_create(self, workspace: str, name: str, create: bool) -> Table:
        try:
            return self._evolve(self.catalog.load_table((workspace, name)), name)
        except NoSuchTableError:
            if not create:
                raise
        definition = TABLES[name]
        with contextlib.suppress(NamespaceAlreadyExistsError):
            self.catalog.create_namespace(workspace)
        try:
            return self.catalog.create_table(
                (workspace, name),
                schema=definition.schema,
                partition_spec=definition.spec,
                properties={"format-version": "2", "write.parquet.compression-codec": "zstd"},
            )
        except TableAlreadyExistsError:
            return self.catalog.load_table((workspace, name))

    @staticmethod
    def _evolve(table: Table, name: str) -> Table:
        """Add the optional columns a newer AUIE defines (schema evolution is additive)."""
        wanted = TABLES[name].schema
        present = {field.name for field in table.schema().fields}
        if all(field.name in present for field in wanted.fields):
            return table
        logger.info(
            "adding columns to %s: %s",
            table.name(),
            [f.name for f in wanted.fields if f.name not in present],
        )
        with table.update_schema() as update:
            update.union_by_name(wanted)
        return table

    def workspaces(self) -> list[str]:
        return sorted(ns[0] for ns in self.catalog.list_namespaces())

    def tables(self, workspace: str) -> list[str]:
        return sorted(ident[-1] for ident in self.catalog.list_tables(workspace))

    def exists(self, workspace: str, name: str) -> bool:
        return bool(self.catalog.table_exists((workspace, name)))


def snapshot_chain(table: Table) -> Iterator[Any]:
    """The current snapshot and its ancestors, newest first."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None


def committed_offsets(table: Table) -> dict[str, dict[int, int]]:
    """Log offsets (topic → partition → next offset) covered by the table's commits."""
    for snapshot in snapshot_chain(table):
        summary = snapshot.summary
        raw = summary.get(OFFSETS_PROPERTY) if summary is not None else None
        if raw:
            data = json.loads(raw)
            return {
                topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in data.items()
            }
    return {}


def offsets_property(offsets: dict[str, dict[int, int]]) -> dict[str, str]:
    return {
        OFFSETS_PROPERTY: json.dumps(
            {t: {str(p): o for p, o in v.items()} for t, v in offsets.items()}, sort_keys=True
        )
    }
