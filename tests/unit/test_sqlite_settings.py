"""Every SQLite connection AUIE opens (profile store, metadata, catalog) runs with the
durability, privacy and cache settings the docs promise."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from auie.db import create_db_engine


def test_connections_get_the_documented_pragmas(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "secure_delete",
                    "foreign_keys",
                    "cache_size",
                    "wal_autocheckpoint",
                )
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL: every commit is synced
        "secure_delete": 1,  # erased rows are overwritten
        "foreign_keys": 1,
        "cache_size": -65536,  # 64 MiB of pages per connection
        "wal_autocheckpoint": 10000,
    }
