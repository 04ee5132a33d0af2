"""The metadata database (SQLAlchemy 2 + Alembic): SQLite by default, PostgreSQL by URL.

Each domain declares its tables on :data:`metadata`; Alembic migrations under
``migrations/versions`` create them, and :func:`open_database` brings any database to the
latest revision before use, so upgrading AUIE is restarting it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Dialect, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from auie.errors import StorageUnavailable
from auie.filelock import exclusive

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC ``datetime`` in Python.

    SQLite has no time zones: ``DateTime(timezone=True)`` reads values back naive there.
    This type stores UTC and attaches UTC on the way out, so every database answers alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _utc(value)


_MIGRATIONS = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()


def _not_alembic_chatter(record: logging.LogRecord) -> bool:
    """Alembic says which DDL implementation it uses each time it checks a database: two
    INFO lines per store and process at every start. Upgrades it runs are still logged."""
    return not str(record.msg).startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_not_alembic_chatter)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    # Pages kept in memory per connection (64 MiB at most; SQLite's default is 2 MiB): the
    # processor rewrites thousands of scattered profile-store rows per batch.
    cursor.execute("PRAGMA cache_size = -65536")
    # Checkpoint the WAL into the database at 10,000 pages (40 MiB; SQLite's default is
    # 1,000): a batch's write is often more than 1,000 pages, so the default checkpointed
    # (copied back and synced) at every commit.
    cursor.execute("PRAGMA wal_autocheckpoint = 10000")
    # Deleted rows are overwritten with zeros rather than left in free pages.
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine with AUIE's connection settings (SQLite pragmas, pool pre-ping)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


@contextlib.contextmanager
def _across_processes(engine: Engine) -> Iterator[None]:
    """Serializes migrations of one SQLite file across processes (the processors of a group
    open a fresh data directory at the same moment); PostgreSQL locks in the transaction."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with exclusive(Path(database + ".migrate.lock")):
        yield


def migrate(engine: Engine, revision: str = "head", migrations: Path = _MIGRATIONS) -> None:
    """Upgrade the database schema to ``revision`` (idempotent) with the Alembic scripts in
    ``migrations`` (each store has its own history and version table), one process at a
    time."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    with _migrate_lock, _across_processes(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            key = zlib.crc32(str(migrations).encode()) & 0x7FFFFFFF
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_database(url: str, migrations: Path = _MIGRATIONS) -> Engine:
    """Create the engine and migrate; raise :class:`StorageUnavailable` if unreachable."""
    engine = create_db_engine(url)
    try:
        migrate(engine, migrations=migrations)
    except SQLAlchemyError as exc:
        raise StorageUnavailable(f"metadata database is unavailable: {exc}") from exc
    return engine


def ping(engine: Engine) -> None:
    """Raise :class:`StorageUnavailable` if the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StorageUnavailable(f"metadata database is unavailable: {exc}") from exc
