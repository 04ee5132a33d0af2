"""Profile store backends for the tests: a SQLite file, or a fresh PostgreSQL database.

``tests/conftest.py`` turns :data:`BACKENDS` into the parametrised ``store_url`` and
``profile_store`` fixtures, so one suite runs on every backend.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

#: The PostgreSQL server of the test environment (trust auth, user postgres).
POSTGRES = "postgresql://postgres@127.0.0.1:5432"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database ``auie_test_<random>``; dropped afterwards."""
    name = f"auie_test_{secrets.token_hex(6)}"
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    """A profile store URL of ``backend`` that nothing else uses."""
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{(directory / f'profiles-{secrets.token_hex(4)}.db').resolve()}"
    elif backend == "postgres":
        with postgres_database() as url:
            yield url
    else:  # pragma: no cover
        raise ValueError(backend)
