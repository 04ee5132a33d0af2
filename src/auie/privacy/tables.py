"""Tables of the privacy domain, in the metadata database (own Alembic history)."""

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from auie.db import UtcDateTime

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("workspace_id", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    #: Who: a client id, "cli", "system", or "anonymous" (failed authentication).
    Column("actor", String(120), nullable=False),
    Column("action", String(80), nullable=False),
    #: What it was about, never personal data (ids of AUIE objects, request ids, counts).
    Column("target", String(300), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("details", Text, nullable=False),
    #: SHA-256 over the previous entry's hash and this entry: edits break the chain.
    Column("chain", String(64), nullable=False),
    Index("ix_audit_log_workspace_at", "workspace_id", "at"),
)

person_keys = Table(
    "person_keys",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    #: Keyed hash of the person's anchor identifier (never the identifier itself).
    Column("person", String(64), primary_key=True),
    Column("key_id", String(40), nullable=False, unique=True),
    #: The person's data key, wrapped (encrypted) by the master key.
    Column("wrapped", LargeBinary, nullable=False),
    Column("master_key_id", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    #: Keyed hash of an erased identifier (type and value).
    Column("identifier_hash", String(64), primary_key=True),
    Column("request_id", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dropped", BigInteger, nullable=False, default=0),
)

privacy_requests = Table(
    "privacy_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(64), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    #: Keyed hashes of the identifiers the request named (not the identifiers).
    Column("subject", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("result", Text, nullable=False),
    Column("error", Text, nullable=True),
)
