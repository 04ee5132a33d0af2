"""The lake's tables as dbt sources, for each target.

- DuckDB: views in the schema ``lake`` of the workspace's dbt DuckDB file over the
  Parquet files of each table's current Iceberg snapshot (pyiceberg plans the files,
  ``read_parquet(..., union_by_name = true)`` reads them, as in the query engine), united
  by name with an empty table of the Iceberg schema so every column exists even before
  any file holds it. Recreated before every run: a view is one snapshot's file list.
- PostgreSQL: tables in the schema ``<workspace>_lake`` loaded with ``COPY`` from the
  Parquet files. Iceberg data files never change, so the load is incremental by file: a
  table's loaded files are recorded in ``_auie_loaded_files``; when the current snapshot
  still holds all of them only the new files are copied, otherwise (after compaction or
  expiry rewrote files) the table is truncated and reloaded. One transaction per table.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from auie.lake.catalog import Lake, local_path, quote_identifier
from auie.lake.tables import TABLES

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

#: Schema of the lake views in the DuckDB file.
DUCKDB_LAKE_SCHEMA = "lake"
_STATE_TABLE = "_auie_loaded_files"
_COPY_BATCH_ROWS = 50_000


def snapshot_files(lake: Lake, workspace: str, name: str) -> list[str]:
    """Local paths of the data files of the table's current snapshot (none if no table)."""
    try:
        if not lake.exists(workspace, name):
            return []
        table = lake.refresh(workspace, name)
    except NoSuchTableError:
        return []
    if table.current_snapshot() is None:
        return []
    return sorted(local_path(task.file.file_path) for task in table.scan().plan_files())


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- DuckDB --------------------------------------------------------------------------------


def create_duckdb_views(
    connection: duckdb.DuckDBPyConnection, lake: Lake, workspace: str
) -> dict[str, int]:
    """(Re)create ``lake.<table>`` views over the current snapshots; files per table."""
    schema = DUCKDB_LAKE_SCHEMA
    connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    counts = {}
    for name, definition in TABLES.items():
        files = snapshot_files(lake, workspace, name)
        columns = f'"{schema}"."_{name}_columns"'
        connection.register("_auie_empty", definition.arrow.empty_table())
        try:
            connection.execute(f"CREATE OR REPLACE TABLE {columns} AS SELECT * FROM _auie_empty")
        finally:
            connection.unregister("_auie_empty")
        body = f"SELECT * FROM {columns}"
        if files:
            listing = ", ".join(_sql_text(f) for f in files)
            body += (
                f" UNION ALL BY NAME SELECT * FROM read_parquet([{listing}], union_by_name = true)"
            )
        connection.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS {body}')
        counts[name] = len(files)
    return counts


# -- PostgreSQL ----------------------------------------------------------------------------

_PG_TYPES = {
    pa.string(): "text",
    pa.large_string(): "text",
    pa.int32(): "integer",
    pa.int64(): "bigint",
    pa.float64(): "double precision",
    pa.bool_(): "boolean",
}


def _pg_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    try:
        return _PG_TYPES[kind]
    except KeyError:
        raise TypeError(f"no PostgreSQL type for {kind}") from None


@dataclass(frozen=True, slots=True)
class LoadReport:
    table: str
    files: int
    rows: int
    reloaded: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "files": self.files,
            "rows": self.rows,
            "reloaded": self.reloaded,
        }


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The file's rows in the Iceberg schema: columns in order, missing ones null."""
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata())


def load_postgres(url: str, schema: str, lake: Lake, workspace: str) -> list[LoadReport]:
    """Bring ``schema`` in line with the lake's current snapshots (see the module doc)."""
    import psycopg

    reports = []
    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {quote_identifier(schema)}.{_STATE_TABLE} ("
                " table_name text NOT NULL, file_path text NOT NULL,"
                " loaded_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (table_name, file_path))"
            )
        for name, definition in TABLES.items():
            with conn.transaction():
                reports.append(
                    _load_table(
                        conn,
                        schema,
                        name=name,
                        arrow=definition.arrow,
                        lake=lake,
                        workspace=workspace,
                    )
                )
    return reports


def _load_table(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    name: str,
    arrow: pa.Schema,
    lake: Lake,
    workspace: str,
) -> LoadReport:
    target = f"{quote_identifier(schema)}.{quote_identifier(name)}"
    columns = ", ".join(f"{quote_identifier(f.name)} {_pg_type(f.type)}" for f in arrow)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {target} ({columns})")
    present = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (schema, name),
        )
    }
    for field in arrow:
        if field.name not in present:
            column = quote_identifier(field.name)
            conn.execute(f"ALTER TABLE {target} ADD COLUMN {column} {_pg_type(field.type)}")
    state = f"{quote_identifier(schema)}.{_STATE_TABLE}"
    loaded = {
        row[0]
        for row in conn.execute(f"SELECT file_path FROM {state} WHERE table_name = %s", (name,))
    }
    current = snapshot_files(lake, workspace, name)
    reloaded = not loaded <= set(current)
    if reloaded:
        conn.execute(f"TRUNCATE {target}")
        conn.execute(f"DELETE FROM {state} WHERE table_name = %s", (name,))
        loaded = set()
    rows = 0
    column_list = ", ".join(quote_identifier(f.name) for f in arrow)
    new = [path for path in current if path not in loaded]
    options = pa_csv.WriteOptions(include_header=False)
    with conn.cursor() as cursor:
        for path in new:
            data = _conform(pq.read_table(Path(path)), arrow)
            with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
                for batch in data.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                    buffer = io.BytesIO()
                    pa_csv.write_csv(batch, buffer, options)
                    copy.write(buffer.getvalue())
            rows += data.num_rows
        if new:
            cursor.executemany(
                f"INSERT INTO {state} (table_name, file_path) VALUES (%s, %s)",
                [(name, path) for path in new],
            )
    if new:
        logger.info("loaded %d rows of %s.%s from %d file(s)", rows, schema, name, len(new))
    return LoadReport(name, len(new), rows, reloaded)
