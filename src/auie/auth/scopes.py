"""The scopes an access token can carry. They are independent: ``admin`` does not imply
``profiles:read``; a client is given every scope it needs."""

from __future__ import annotations

from collections.abc import Iterable

from auie.errors import InvalidRequest

INGEST = "ingest"
PROFILES_READ = "profiles:read"
DECIDE = "decide"
ANALYTICS_READ = "analytics:read"
PRIVACY_ADMIN = "privacy:admin"
ADMIN = "admin"
#: Raw identifiers in SQL results (``POST /v1/sql``); without it SQL sees keyed hashes.
PII_READ = "pii:read"

ALL_SCOPES: tuple[str, ...] = (
    INGEST,
    PROFILES_READ,
    DECIDE,
    ANALYTICS_READ,
    PRIVACY_ADMIN,
    ADMIN,
    PII_READ,
)


def parse_scopes(value: str | Iterable[str]) -> frozenset[str]:
    """Scopes from a space-separated string or an iterable; unknown scopes are an error."""
    items = value.split() if isinstance(value, str) else [s for v in value for s in v.split()]
    unknown = sorted(set(items) - set(ALL_SCOPES))
    if unknown:
        shown = [s if len(s) <= 40 else s[:37] + "..." for s in unknown[:5]]
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidRequest(
            f"unknown scope(s) {', '.join(shown)}{more}; known: {', '.join(ALL_SCOPES)}",
            code="invalid_scope",
        )
    return frozenset(items)


def format_scopes(scopes: Iterable[str]) -> str:
    """Space-separated, in the canonical order."""
    wanted = set(scopes)
    return " ".join(s for s in ALL_SCOPES if s in wanted)
