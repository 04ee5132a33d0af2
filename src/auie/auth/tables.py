"""Tables of OAuth2 clients and JWT signing keys."""

from sqlalchemy import Column, ForeignKey, String, Table, Text

from auie.db import UtcDateTime, metadata

clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    #: SHA-256 of the secret; the secret is shown once and never stored.
    Column("secret_hash", String(64), nullable=False),
    #: Space-separated scopes the client may ask for.
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    #: A retired key no longer signs; it still verifies until removed.
    Column("retired_at", UtcDateTime, nullable=True),
)
