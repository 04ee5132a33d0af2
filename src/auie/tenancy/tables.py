"""Tables of workspaces, sources and write keys."""

from sqlalchemy import Column, ForeignKey, String, Table

from auie.db import UtcDateTime, metadata

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

write_keys = Table(
    "write_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("source_id", String(64), ForeignKey("sources.id"), nullable=False, index=True),
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), nullable=False),
    #: SHA-256 of the key; the key itself is shown once and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)
