"""Runs the dbt project (``dbt_project/`` beside this module) for one workspace.

One run, serialized per workspace by a file lock (``<data_dir>/analytics/<ws>/transform.lock``):

1. sources: DuckDB target: (re)create the ``lake`` views in the workspace's dbt DuckDB
   file ``<data_dir>/analytics/<ws>/dbt.duckdb`` over the lake's current snapshot;
   PostgreSQL target: load the lake into the schema ``<ws>_lake`` (see
   :mod:`auie.transform.lake_sources`);
2. ``dbt build`` (models and their tests) through dbt's Python API, with a profiles.yml
   written to a temporary directory (the package is never written to; dbt's ``target/``
   and ``logs/`` go to ``<data_dir>/analytics/<ws>/dbt/<target>/``); dbt's events feed a
   :class:`Progress`;
3. DuckDB target, after a successful build: every mart is exported to
   ``<data_dir>/analytics/<ws>/marts/<model>.parquet`` (written to a temporary name in
   the same directory, then renamed over the old file), where the query engine reads it.

dbt runs in this process and dbt is not thread-safe: one run at a time per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlparse

import duckdb

from auie.config import Settings
from auie.errors import Conflict, InvalidRequest
from auie.lake.catalog import Lake
from auie.transform.lake_sources import create_duckdb_views, load_postgres

logger = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent / "dbt_project"
#: The models exported to Parquet and exposed by the query engine.
MARTS = (
    "sessions",
    "daily_active_users",
    "weekly_active_users",
    "monthly_active_users",
    "event_counts_daily",
    "user_features",
    "dead_letters_daily",
    "decision_training",
)
Target = Literal["duckdb", "postgres"]
TARGETS: tuple[Target, ...] = ("duckdb", "postgres")
#: Schema of the models in the DuckDB file.
DUCKDB_SCHEMA = "marts"
_WORKSPACE = re.compile(r"^[A-Za-z0-9_]{1,48}$")
_DBT_LOCK = threading.Lock()


def workspace_dir(settings: Settings, workspace: str) -> Path:
    return settings.data_dir / "analytics" / workspace


def duckdb_path(settings: Settings, workspace: str) -> Path:
    """The workspace's dbt DuckDB file."""
    return workspace_dir(settings, workspace) / "dbt.duckdb"


def marts_dir(settings: Settings, workspace: str) -> Path:
    """Where the marts' Parquet files go (the query engine's marts directory)."""
    return workspace_dir(settings, workspace) / "marts"


def postgres_schemas(workspace: str) -> tuple[str, str]:
    """(lake schema, marts schema) of a workspace in PostgreSQL."""
    return f"{workspace.lower()}_lake", f"{workspace.lower()}_marts"


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One dbt node (model or test) of a run."""

    name: str
    resource_type: str
    status: str
    seconds: float
    message: str | None = None
    failures: int | None = None

    @property
    def failed(self) -> bool:
        return self.status in {"error", "fail", "runtime error"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resourceType": self.resource_type,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "failures": self.failures,
        }


@dataclass(slots=True)
class TransformResult:
    workspace: str
    target: str
    success: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    nodes: list[NodeResult] = field(default_factory=list)
    #: Marts exported to Parquet (DuckDB target).
    exported: list[str] = field(default_factory=list)
    #: Files per lake table the DuckDB views read / what the PostgreSQL load copied.
    sources: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def failures(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.failed]

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(
            1
            for n in self.nodes
            if n.resource_type == resource_type and (not statuses or n.status in statuses)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "target": self.target,
            "success": self.success,
            "startedAt": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "models": self.count("model"),
            "tests": self.count("test"),
            "failures": len(self.failures),
            "nodes": [n.to_dict() for n in self.nodes],
            "exported": self.exported,
            "sources": self.sources,
            "error": self.error,
        }


class Progress(Protocol):
    """What a run reports while dbt works (the CLI draws a Rich progress bar)."""

    def start(self, workspace: str, target: str) -> None: ...

    def total(self, nodes: int) -> None: ...

    def node(self, result: NodeResult) -> None: ...


@contextlib.contextmanager
def workspace_lock(settings: Settings, workspace: str, *, wait: bool = True) -> Iterator[None]:
    """Serializes transform runs of one workspace, across processes."""
    directory = workspace_dir(settings, workspace)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "transform.lock").open("a+") as handle:
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            raise Conflict(
                f"a transform of workspace {workspace} is already running", code="transform_busy"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class TransformRunner:
    """See the module docstring."""

    def __init__(self, settings: Settings, lake: Lake) -> None:
        self.settings = settings
        self.lake = lake

    def workspaces(self) -> list[str]:
        """Workspaces that have a lake (a namespace in the catalog)."""
        return self.lake.workspaces()

    def run(
        self,
        workspace: str,
        *,
        target: Target = "duckdb",
        select: Sequence[str] = (),
        full_refresh: bool = False,
        variables: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        wait: bool = True,
    ) -> TransformResult:
        """One ``dbt build`` of the workspace; never raises for a failed build."""
        if not _WORKSPACE.match(workspace):
            raise InvalidRequest(f"workspace id {workspace!r} cannot name a schema")
        if target not in TARGETS:
            raise InvalidRequest(f"unknown transform target {target!r}")
        postgres_url = self._postgres_url() if target == "postgres" else None
        result = TransformResult(workspace, target)
        started = time.perf_counter()
        if progress is not None:
            progress.start(workspace, target)
        with workspace_lock(self.settings, workspace, wait=wait):
            try:
                self._run_locked(
                    result,
                    postgres_url=postgres_url,
                    select=select,
                    full_refresh=full_refresh,
                    variables=variables or {},
                    progress=progress,
                )
            except Exception as exc:
                logger.exception("transform of %s (%s) failed", workspace, target)
                result.success = False
                result.error = result.error or f"{type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - started
        return result

    def _postgres_url(self) -> str:
        url = self.settings.analytics.postgres_url
        if url is None:
            raise InvalidRequest(
                "the postgres target needs analytics.postgres_url"
                " (e.g. postgresql://user@127.0.0.1:5432/auie_marts)",
                code="not_configured",
            )
        return url.get_secret_value()

    def _run_locked(
        self,
        result: TransformResult,
        *,
        postgres_url: str | None,
        select: Sequence[str],
        full_refresh: bool,
        variables: Mapping[str, Any],
        progress: Progress | None,
    ) -> None:
        workspace = result.workspace
        dbt_vars: dict[str, Any] = {
            "session_gap_minutes": self.settings.profiles.session_gap_minutes,
            **variables,
        }
        if postgres_url is None:
            path = duckdb_path(self.settings, workspace)
            connection = duckdb.connect(str(path))
            try:
                result.sources = create_duckdb_views(connection, self.lake, workspace)
            finally:
                connection.close()
            profile = _duckdb_profile(path, self.settings.analytics.threads)
        else:
            lake_schema, marts_schema = postgres_schemas(workspace)
            reports = load_postgres(postgres_url, lake_schema, self.lake, workspace)
            result.sources = {r.table: r.to_dict() for r in reports}
            dbt_vars["lake_schema"] = lake_schema
            profile = _postgres_profile(postgres_url, marts_schema)
        state = workspace_dir(self.settings, workspace) / "dbt" / result.target
        success = _dbt_build(
            result,
            profile,
            state=state,
            select=select,
            full_refresh=full_refresh,
            dbt_vars=dbt_vars,
            progress=progress,
        )
        result.success = success
        if success and postgres_url is None:
            result.exported = export_marts(
                duckdb_path(self.settings, workspace), marts_dir(self.settings, workspace)
            )


# -- profiles -------------------------------------------------------------------------------


def _duckdb_profile(path: Path, threads: int) -> dict[str, Any]:
    return {
        "type": "duckdb",
        "path": str(path.resolve()),
        "schema": DUCKDB_SCHEMA,
        "threads": max(1, threads),
        "settings": {"TimeZone": "UTC"},
    }


def _postgres_profile(url: str, schema: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
        raise InvalidRequest(f"analytics.postgres_url must be postgresql://, not {parsed.scheme}")
    database = parsed.path.lstrip("/")
    if not database:
        raise InvalidRequest("analytics.postgres_url must name a database")
    return {
        "type": "postgres",
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password or ""),
        "dbname": unquote(database),
        "schema": schema,
        "threads": 4,
        "connect_timeout": 10,
    }


# -- dbt ----------------------------------------------------------------------------------


class _Events:
    """dbt event callback: forwards finished nodes and the node count to a Progress."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.total_sent = False

    def __call__(self, event: Any) -> None:
        if self.progress is None:
            return
        try:
            name = event.info.name
            if name == "LogStartLine" and not self.total_sent:
                self.total_sent = True
                self.progress.total(int(event.data.total))
            elif name == "NodeFinished":
                info, run = event.data.node_info, event.data.run_result
                self.progress.node(
                    NodeResult(
                        info.node_name,
                        info.resource_type,
                        str(run.status),
                        float(run.execution_time or 0.0),
                        run.message or None,
                        int(run.num_failures) if run.num_failures else None,
                    )
                )
        except Exception:  # a display problem must never break the run
            logger.debug("progress callback failed", exc_info=True)


def _dbt_build(
    result: TransformResult,
    profile: dict[str, Any],
    *,
    state: Path,
    select: Sequence[str],
    full_refresh: bool,
    dbt_vars: Mapping[str, Any],
    progress: Progress | None,
) -> bool:
    from dbt.cli.main import dbtRunner

    state.mkdir(parents=True, exist_ok=True)
    target = result.target
    with tempfile.TemporaryDirectory(prefix="auie-dbt-") as profiles_dir:
        profiles = Path(profiles_dir) / "profiles.yml"
        fd = os.open(profiles, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # JSON is YAML.
            json.dump({"auie": {"target": target, "outputs": {target: profile}}}, handle)
        args = [
            "build",
            "--project-dir",
            str(PROJECT_DIR),
            "--profiles-dir",
            profiles_dir,
            "--target",
            target,
            "--target-path",
            str(state / "target"),
            "--log-path",
            str(state / "logs"),
            "--vars",
            json.dumps(dict(dbt_vars)),
            "--log-level",
            "none",
            "--log-level-file",
            "info",
            "--no-use-colors",
            "--no-send-anonymous-usage-stats",
            "--no-version-check",
        ]
        if full_refresh:
            args.append("--full-refresh")
        if select:
            args.extend(["--select", *select])
        with _DBT_LOCK:
            try:
                outcome = dbtRunner(callbacks=[_Events(progress)]).invoke(args)
            finally:
                _release_duckdb()
                _close_dbt_log()
    if outcome.exception is not None:
        result.error = f"{type(outcome.exception).__name__}: {outcome.exception}"
    run = outcome.result
    for item in getattr(run, "results", None) or []:
        node = item.node
        result.nodes.append(
            NodeResult(
                node.name,
                str(node.resource_type),
                str(item.status),
                float(item.execution_time or 0.0),
                item.message or None,
                int(item.failures) if item.failures else None,
            )
        )
    if not outcome.success and result.error is None:
        failed = [f"{n.name}: {n.message or n.status}" for n in result.failures]
        result.error = "dbt build failed: " + ("; ".join(failed[:5]) or "see the dbt log")
    return bool(outcome.success)


def _release_duckdb() -> None:
    """dbt-duckdb keeps the database open in the process after a run; close it so the file
    is free for other processes (a BI tool reading it, the next scheduled run)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover
        return
    env = getattr(DuckDBConnectionManager, "_ENV", None)
    if env is not None:
        with contextlib.suppress(Exception):
            env.close()
    DuckDBConnectionManager.close_all_connections()


def _close_dbt_log() -> None:
    """dbt replaces its log file handler at the next run without closing it: close it now."""
    log = logging.getLogger("file_log")
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    with contextlib.suppress(ImportError):
        from dbt_common.events.functions import cleanup_event_logger

        cleanup_event_logger()


# -- export ---------------------------------------------------------------------------------


def export_marts(database: Path, directory: Path) -> list[str]:
    """Write each mart to ``<directory>/<mart>.parquet`` atomically; returns those written."""
    directory.mkdir(parents=True, exist_ok=True)
    exported = []
    connection = duckdb.connect(str(database))
    try:
        present = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                [DUCKDB_SCHEMA],
            ).fetchall()
        }
        for mart in MARTS:
            if mart not in present:
                continue
            final = directory / f"{mart}.parquet"
            partial = directory / f".{mart}.parquet.{os.getpid()}.tmp"
            quoted = str(partial).replace("'", "''")
            connection.execute(
                f'COPY (SELECT * FROM "{DUCKDB_SCHEMA}"."{mart}") TO \'{quoted}\''
                " (FORMAT parquet, COMPRESSION zstd)"
            )
            os.replace(partial, final)
            exported.append(mart)
    finally:
        connection.close()
    return exported
