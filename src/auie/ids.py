"""Identifiers and secrets: random, prefixed by kind, never derived from data."""

import hashlib
import secrets
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """A new identifier such as ``ws_3f9a1c2b7e4d``."""
    return f"{prefix}_{secrets.token_hex(6)}"


def new_secret() -> str:
    """A new high-entropy secret (write key or client secret): 192 random bits."""
    return secrets.token_urlsafe(24)


def secret_hash(secret: str) -> str:
    """SHA-256 of a secret. The secrets are random, so a plain hash is not guessable."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_text(value: datetime) -> str:
    """A time as the API writes it: ISO-8601 in UTC with a ``Z`` (as its models serialise
    times); a naive time is taken as UTC, which is how the stores keep them."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")
