"""The embedded query engine: DuckDB reading the lake's Parquet files directly.

pyiceberg plans the data files of each table's current snapshot; DuckDB reads them with
``read_parquet`` (see ADR 7). Each workspace gets its own in-memory DuckDB database whose
file access is limited to that workspace's lake directory and marts, configuration locked,
so one workspace's SQL can never read another's files. Views are refreshed when a table's
snapshot changes; queries run on cursors of that database.

With the ``identities`` view the engine also rebuilds :data:`CURRENT_IDS`, a table of an
attached in-memory database of its own (so ``SHOW TABLES`` lists only the workspace's)
holding the current profile of every user and anonymous id (the latest ``identities`` row of
each): every analysis resolves the people of its events through it, so that mapping is
computed once per change of the table instead of once per query.

Callers without the ``pii:read`` scope get a second database of the workspace whose views
show keyed hashes instead of identifiers (:mod:`auie.analytics.pseudonymous`); untrusted
SQL is one SELECT that calls no file-reading table function (:func:`check_untrusted`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError

from auie.analytics import pseudonymous as pseudo
from auie.analytics.engine import QueryEngine, QueryResult, json_bytes
from auie.errors import InvalidRequest, NotFound, StorageUnavailable
from auie.lake.catalog import Lake, local_path, quote_identifier
from auie.lake.tables import IDENTITIES, TABLES
from auie.privacy.fields import PiiRules

logger = logging.getLogger(__name__)
_MARTS_SUFFIX = ".parquet"
#: Most rows fetched at once under a byte limit.
_FETCH_BATCH = 1024

#: The engine's own tables live in this attached in-memory database: untrusted SQL may not
#: name it (only the workspace's ``memory`` catalog), and ``SHOW TABLES`` does not list it.
INTERNAL_CATALOG = "auie_internal"
#: The current profile of each user and anonymous id, i.e. its latest ``identities`` row
#: (by ``changed_at``, then ``profile_id``); rebuilt with the view.
CURRENT_IDS = f"{INTERNAL_CATALOG}.current_ids"
_CURRENT_IDS_SQL = """SELECT id_type, id_value, profile_id FROM identities
    WHERE id_type IN ('user_id', 'anonymous_id')
    QUALIFY row_number() OVER (
        PARTITION BY id_type, id_value ORDER BY changed_at DESC, profile_id DESC) = 1"""


@dataclass(slots=True)
class _Workspace:
    connection: duckdb.DuckDBPyConnection
    #: Views show keyed hashes instead of identifiers (callers without ``pii:read``).
    pseudonymous: bool = False
    #: table name → metadata location the view was built from.
    views: dict[str, str] = field(default_factory=dict)
    marts: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Cursors running a query now (interrupted when the engine closes).
    running: set[duckdb.DuckDBPyConnection] = field(default_factory=set)


def _typed_empty(conn: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """A SELECT of no rows whose columns are ``schema``'s, with DuckDB's types for them."""
    relation = conn.from_arrow(schema.empty_table())  # a relation: nothing is created
    columns = ", ".join(
        f"CAST(NULL AS {kind}) AS {quote_identifier(column)}"
        for column, kind in zip(relation.columns, relation.types, strict=True)
    )
    return f"SELECT {columns} WHERE false"


def _drop(conn: duckdb.DuckDBPyConnection, name: str, kinds: tuple[str, ...]) -> None:
    """Drop the table or view called ``name`` if it is one of ``kinds`` (``TABLE``,
    ``VIEW``). ``DROP TABLE IF EXISTS`` on a view is an error in DuckDB, not a no-op."""
    found = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_catalog ="
        " current_database() AND table_schema = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    kind = None if found is None else "VIEW" if found[0] == "VIEW" else "TABLE"
    if kind in kinds:
        conn.execute(f'DROP {kind} "{name}"')


class DuckDBEngine(QueryEngine):
    """See the module docstring."""

    def __init__(
        self,
        lake: Lake,
        warehouse: str,
        marts_root: Path,
        *,
        memory_limit: str = "2GB",
        threads: int = 2,
        default_timeout: float = 30.0,
        default_limit: int = 10_000,
        pseudonyms: pseudo.Hasher | None = None,
        pii_rules: PiiRules | None = None,
    ) -> None:
        self.lake = lake
        self.warehouse = local_path(warehouse).rstrip("/")
        self.marts_root = marts_root
        self.memory_limit = memory_limit
        self.threads = threads
        self.default_timeout = default_timeout
        self.default_limit = default_limit
        self.pseudonyms = pseudonyms
        self.pii_rules = pii_rules
        self._workspaces: dict[tuple[str, bool], _Workspace] = {}
        self._lock = threading.Lock()
        #: Set by :meth:`close`: no connection is opened after it.
        self._closed = False

    # -- connections ---------------------------------------------------------------------

    def marts_dir(self, workspace: str) -> Path:
        return self.marts_root / workspace / "marts"

    def _workspace(self, workspace: str, pseudonymous: bool) -> _Workspace:
        with self._lock:
            if self._closed:
                raise _shut()
            found = self._workspaces.get((workspace, pseudonymous))
            if found is None:
                connection = self._open(workspace, pseudonymous)
                found = _Workspace(connection, pseudonymous)
                self._workspaces[workspace, pseudonymous] = found
        return found

    def _open(self, workspace: str, pseudonymous: bool) -> duckdb.DuckDBPyConnection:
        marts = self.marts_dir(workspace)
        marts.mkdir(parents=True, exist_ok=True)
        lake_dir = f"{self.warehouse}/{workspace}/"
        connection = duckdb.connect(
            ":memory:", config={"threads": self.threads, "memory_limit": self.memory_limit}
        )
        connection.execute("SET TimeZone = 'UTC'")
        if pseudonymous:
            if self.pseudonyms is None:
                raise InvalidRequest(
                    "pseudonymised SQL is not available: no pseudonymisation key",
                    code="pii_read_required",
                )
            pseudo.register(connection, workspace, self.pseudonyms, self.pii_rules)
        else:
            connection.execute(f"ATTACH ':memory:' AS {INTERNAL_CATALOG}")
        # Spill files go to the workspace's own directory: DuckDB allows its temp directory
        # implicitly, and a shared one would let one workspace glob another's spills.
        spill = (self.marts_root / workspace / "tmp").resolve()
        spill.mkdir(parents=True, exist_ok=True)
        connection.execute(f"SET temp_directory = '{spill}'")
        connection.execute(f"SET allowed_directories = ['{lake_dir}', '{marts.resolve()}/']")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
        return connection

    # -- views ------------------------------------------------------------------------------

    def _refresh(self, workspace: str, pseudonymous: bool = False) -> _Workspace:
        state = self._workspace(workspace, pseudonymous)
        with state.lock, self._unless_closed():
            for name, definition in TABLES.items():
                self._refresh_table(workspace, state, name, definition.arrow)
            self._refresh_marts(workspace, state)
        return state

    @contextlib.contextmanager
    def _unless_closed(self) -> Iterator[None]:
        """Turn a DuckDB error raised because :meth:`close` ran meanwhile (the connection
        closed, the query interrupted) into 503 ``shutting_down``."""
        try:
            yield
        except duckdb.Error:
            if self._closed:
                raise _shut() from None
            raise

    def _refresh_table(
        self, workspace: str, state: _Workspace, name: str, schema: pa.Schema
    ) -> None:
        try:
            table = (
                self.lake.refresh(workspace, name) if self.lake.exists(workspace, name) else None
            )
        except NoSuchTableError:
            table = None
        location = table.metadata_location if table is not None else ""
        if state.views.get(name) == location and name in state.views:
            return
        files = []
        if table is not None and table.current_snapshot() is not None:
            files = [local_path(task.file.file_path) for task in table.scan().plan_files()]
        conn = state.connection
        # A row-less SELECT of typed NULLs gives every column its type, also columns added
        # after older files were written (UNION ALL BY NAME fills them with NULL); it is
        # part of the view, so no helper table shows in SHOW TABLES or DESCRIBE.
        body = _typed_empty(conn, schema)
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            body += (
                " UNION ALL BY NAME SELECT * FROM "
                f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"
            )
        if state.pseudonymous:
            body = pseudo.view_sql(f"({body})", schema.names, self.pii_rules)
        _drop(conn, name, ("TABLE",))
        conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {body}')
        if name == IDENTITIES and not state.pseudonymous:
            conn.execute(f"CREATE OR REPLACE TABLE {CURRENT_IDS} AS {_CURRENT_IDS_SQL}")
        state.views[name] = location

    def _refresh_marts(self, workspace: str, state: _Workspace) -> None:
        directory = self.marts_dir(workspace)
        present = {}
        for path in directory.glob(f"*{_MARTS_SUFFIX}"):
            present[path.name.removesuffix(_MARTS_SUFFIX)] = path.stat().st_mtime
        conn = state.connection
        for name, mtime in present.items():
            if name in TABLES or state.marts.get(name) == mtime:
                continue
            quoted = str((directory / f"{name}{_MARTS_SUFFIX}").resolve()).replace("'", "''")
            body = f"SELECT * FROM read_parquet('{quoted}')"
            if state.pseudonymous:
                columns = [row[0] for row in conn.execute(f"DESCRIBE {body}").fetchall()]
                body = pseudo.view_sql(f"read_parquet('{quoted}')", columns, self.pii_rules)
            conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {body}')
            state.marts[name] = mtime
        for name in set(state.marts) - present.keys():
            conn.execute(f'DROP VIEW IF EXISTS "{name}"')
            del state.marts[name]

    # -- queries ----------------------------------------------------------------------------

    def query(
        self,
        workspace: str,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        timeout: float | None = None,
        untrusted: bool = False,
        pseudonymous: bool = False,
        max_bytes: int | None = None,
    ) -> QueryResult:
        if untrusted:
            check_untrusted(sql)
        state = self._refresh(workspace, pseudonymous)
        with self._unless_closed():
            cursor = state.connection.cursor()
        state.running.add(cursor)
        limit = self.default_limit if limit is None else limit
        timer = threading.Timer(timeout or self.default_timeout, cursor.interrupt)
        started = time.perf_counter()
        timer.start()
        try:
            with self._unless_closed():  # shutting down: 503, not a query error
                cursor.execute(sql, params)
                columns = [d[0] for d in cursor.description or []]
                if max_bytes is None:
                    rows = cursor.fetchmany(limit + 1)
                    truncated = len(rows) > limit
                else:
                    rows, truncated = _fetch_within(cursor, limit, max_bytes)
        except duckdb.InterruptException:
            raise InvalidRequest(
                f"query exceeded its {timeout or self.default_timeout:g}s timeout",
                code="query_timeout",
            ) from None
        except duckdb.OutOfMemoryException as exc:
            raise InvalidRequest(
                f"query exceeded the memory limit: {_first_line(exc)}", code="query_too_large"
            ) from None
        except duckdb.CatalogException as exc:
            message = _first_line(exc)
            if "Table with name" in message or "View with name" in message:
                raise NotFound(message, code="unknown_table") from None
            raise InvalidRequest(message, code="invalid_query") from None
        except duckdb.Error as exc:
            raise InvalidRequest(_first_line(exc), code="invalid_query") from None
        except (OverflowError, ValueError) as exc:  # a value Python cannot hold
            raise InvalidRequest(
                f"a value of the result has no Python form (cast it to text): {_first_line(exc)}",
                code="unrepresentable_value",
            ) from None
        finally:
            timer.cancel()
            state.running.discard(cursor)
            cursor.close()
        return QueryResult(columns, rows[:limit], truncated, time.perf_counter() - started)

    def tables(
        self, workspace: str, *, pseudonymous: bool = False
    ) -> dict[str, list[tuple[str, str]]]:
        state = self._refresh(workspace, pseudonymous)
        with self._unless_closed():
            cursor = state.connection.cursor()
            try:
                rows = cursor.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_catalog = current_database() AND table_schema = 'main'"
                    " AND NOT starts_with(table_name, '__')"
                    " ORDER BY table_name, ordinal_position"
                ).fetchall()
            finally:
                cursor.close()
        found: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            found.setdefault(table, []).append((column, kind))
        return found

    def close(self) -> None:
        """Close every connection. A background reader (the decision service's segment and
        feature loader) may be running a query or refreshing views: its queries are
        interrupted, and each connection is closed once it is no longer busy (DuckDB refuses
        to close one busy with a call), waiting 5 s at most. A query interrupted so, or asked
        for later, gets 503 ``shutting_down``; no connection is opened after this."""
        with self._lock:
            self._closed = True
            for key, state in self._workspaces.items():
                locked = state.lock.acquire(timeout=5.0)  # a view refresh in progress
                try:
                    _close(state)
                except duckdb.Error:  # still busy: the others are closed all the same
                    logger.warning("analytics connection of %s not closed", key, exc_info=True)
                finally:
                    if locked:
                        state.lock.release()
            self._workspaces.clear()


def _shut() -> StorageUnavailable:
    return StorageUnavailable(
        "the analytics engine is closed: the server is shutting down", code="shutting_down"
    )


def _close(state: _Workspace, wait: float = 5.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        for cursor in list(state.running):
            with contextlib.suppress(duckdb.Error):  # it may have finished meanwhile
                cursor.interrupt()
        try:
            state.connection.close()
            return
        except duckdb.ResourceInUseException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _fetch_within(
    cursor: duckdb.DuckDBPyConnection, limit: int, max_bytes: int
) -> tuple[list[tuple[Any, ...]], bool]:
    """The first rows (at most ``limit``) whose :func:`json_bytes` fit in ``max_bytes``,
    and whether any were left out. Fetches one row first, then batches sized by the room
    left and the rows' mean size, so a result of huge values is never fetched whole."""
    rows: list[tuple[Any, ...]] = []
    used = 0
    batch = 1
    while True:
        chunk = cursor.fetchmany(min(batch, limit + 1 - len(rows)))
        if not chunk:
            return rows, False
        for row in chunk:
            if len(rows) == limit:
                return rows, True
            size = json_bytes(row)
            if used + size > max_bytes:
                return rows, True
            used += size
            rows.append(row)
        batch = int(min(_FETCH_BATCH, max(1, (max_bytes - used) * len(rows) / max(used, 1))))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:500]


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    """A database with nothing in it, only for serialising untrusted SQL to its syntax tree
    (opening a fresh one per query costs about 20 ms; a cursor of this one under 1 ms)."""
    return duckdb.connect(":memory:", config={"threads": 1})


#: Table functions untrusted SQL may call: generators, nothing that reads files or runs SQL.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
_SAFE_SCHEMAS = frozenset({"", "main", "information_schema"})
_FILE_LIKE = re.compile(r"[./\\:*?]")
#: The catalog views untrusted SQL may read: table and column listings (BI tools read
#: them). The others show views' definitions (which name the lake's files on the server),
#: the engine's settings (paths among them) or its internals: ``information_schema.views``,
#: ``pg_catalog.*``, and DuckDB's ``duckdb_*``, ``pragma_*``, ``sqlite_*`` and ``pg_*`` views.
_CATALOG_VIEWS = frozenset({"tables", "columns", "schemata"})
_ENGINE_VIEW_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_")
#: Scalar functions that read the engine's settings: ``temp_directory`` and
#: ``allowed_directories`` are paths on the server.
_SETTING_FUNCTIONS = frozenset({"current_setting", "getvariable"})


def check_untrusted(sql: str) -> None:
    """One SELECT statement (no COPY, ATTACH, CREATE, SET, PRAGMA...) that reads only the
    workspace's views: no table functions but generators (``read_parquet``, ``query``,
    ``glob``... would reach files or raw data behind the views), no call of the views' hash
    functions (:data:`~auie.analytics.pseudonymous.INTERNAL_FUNCTIONS`: they would hash
    guessed identifiers) or of the settings' (:data:`_SETTING_FUNCTIONS`), no file paths as
    tables (DuckDB's replacement scans), no hidden ``__`` tables or other catalogs, no
    catalog view but the table and column listings (:data:`_CATALOG_VIEWS`)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidRequest(_first_line(exc), code="invalid_query") from None
    if len(statements) != 1:
        raise InvalidRequest("send exactly one SQL statement", code="invalid_query")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise InvalidRequest("only read-only SELECT queries are allowed", code="read_only")
    cursor = _parser().cursor()  # one per call: cursors of a connection may run concurrently
    try:
        found = cursor.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    finally:
        cursor.close()
    tree = json.loads(found[0]) if found else {"error": True}
    if tree.get("error"):
        message = str(tree.get("error_message") or "the query could not be parsed")
        raise InvalidRequest(message[:500], code="invalid_query")
    for node in _nodes(tree):
        _check_node(node)


def _check_node(node: dict[str, Any]) -> None:
    """Refuse one node of an untrusted statement's syntax tree (see :func:`check_untrusted`)."""
    kind = node.get("type")
    called = str(node.get("function_name", "")).lower()
    if called in pseudo.INTERNAL_FUNCTIONS:
        raise InvalidRequest(
            f"function {called}() is internal to the pseudonymised views and may not be"
            " called; the views already show its result",
            code="forbidden_function",
        )
    if called in _SETTING_FUNCTIONS:
        raise InvalidRequest(
            f"function {called}() reads the engine's settings, which are internal (they name"
            " paths on the server), and may not be called",
            code="forbidden_function",
        )
    if kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        if name not in SAFE_TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
            raise InvalidRequest(
                f"table function {name}() is not allowed here; query the workspace's"
                " tables and marts by name (GET /v1/sql/tables)",
                code="forbidden_function",
            )
    elif kind == "BASE_TABLE":
        table = str(node.get("table_name", ""))
        schema = str(node.get("schema_name", "")).lower()
        catalog = str(node.get("catalog_name", "")).lower()
        if (
            _FILE_LIKE.search(table)
            or table.startswith("__")
            or schema not in _SAFE_SCHEMAS
            or catalog not in {"", "memory"}
        ):
            raise InvalidRequest(
                f"{table!r} is not a table of this workspace (GET /v1/sql/tables)",
                code="unknown_table",
            )
        lowered = table.lower()
        if (
            lowered not in _CATALOG_VIEWS
            if schema == "information_schema"
            else lowered.startswith(_ENGINE_VIEW_PREFIXES)
        ):
            raise InvalidRequest(
                f"{table!r} shows the engine's internals (view definitions, settings, paths"
                " on the server); the workspace's tables and their columns are in GET"
                " /v1/sql/tables and information_schema.tables and .columns",
                code="unknown_table",
            )


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object of a serialized statement, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
