"""OAuth2 clients: an id, a secret shown once (stored hashed), the scopes they may ask for."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from auie.auth.scopes import format_scopes, parse_scopes
from auie.auth.tables import clients
from auie.errors import AuthenticationFailed, InvalidRequest, NotFound
from auie.ids import new_id, new_secret, secret_hash, utcnow


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    workspace_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewClient:
    """A freshly created client: ``secret`` is the only time it is visible."""

    client: Client
    secret: str


def _scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Known scopes, at least one (:class:`InvalidRequest` otherwise)."""
    allowed = parse_scopes(scopes)
    if not allowed:
        raise InvalidRequest("a client needs at least one scope", code="invalid_scope")
    return allowed


#: A client's name: what people read in lists and the audit log.
MAX_NAME = 200


def _check_name(name: str) -> None:
    """1-200 printable characters, not only spaces (a tab, a newline or NUL would garble
    listings, and the column holds 200)."""
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidRequest(
            f"client name must be 1-{MAX_NAME} printable characters, not only spaces",
            code="invalid_name",
        )


def _client(row: Any) -> Client:
    data = dict(row._mapping)
    data.pop("secret_hash", None)
    data["scopes"] = parse_scopes(data["scopes"])
    return Client(**data)


class ClientStore:
    """Create, authenticate, list and revoke OAuth2 clients."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, workspace_id: str, name: str, scopes: Iterable[str]) -> NewClient:
        _check_name(name)
        allowed = _scopes(scopes)
        secret = new_secret()
        row: dict[str, Any] = {
            "id": new_id("cl"),
            "workspace_id": workspace_id,
            "name": name,
            "secret_hash": secret_hash(secret),
            "scopes": format_scopes(allowed),
            "created_at": utcnow(),
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(clients).values(row))
        del row["secret_hash"]
        row["scopes"] = allowed
        return NewClient(Client(**row), secret)

    def authenticate(self, client_id: str, secret: str) -> Client:
        """The client if id and secret match an active client; otherwise one vague error."""
        with self.engine.connect() as conn:
            row = conn.execute(select(clients).where(clients.c.id == client_id)).first()
        expected = row.secret_hash if row is not None else secret_hash("")
        matches = hmac.compare_digest(expected, secret_hash(secret))
        if row is None or not matches or row.revoked_at is not None:
            raise AuthenticationFailed("invalid client credentials", code="invalid_client")
        return _client(row)

    def list(self, workspace_id: str) -> list[Client]:
        query = (
            select(clients)
            .where(clients.c.workspace_id == workspace_id)
            .order_by(clients.c.created_at)
        )
        with self.engine.connect() as conn:
            return [_client(row) for row in conn.execute(query)]

    def get(self, client_id: str) -> Client:
        """A client, active or revoked; :class:`NotFound` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(clients).where(clients.c.id == client_id)).first()
        if row is None:
            raise NotFound(f"client {client_id!r} does not exist")
        return _client(row)

    def set_scopes(
        self, client_id: str, scopes: Iterable[str], workspace_id: str | None = None
    ) -> Client:
        """Replace an active client's scopes (tokens it already holds keep theirs until they
        expire); returns the client as it is now."""
        allowed = format_scopes(_scopes(scopes))
        with self.engine.begin() as conn:
            self._update_active(conn, client_id, workspace_id, scopes=allowed)
            row = conn.execute(select(clients).where(clients.c.id == client_id)).one()
        return _client(row)

    def revoke(self, client_id: str, workspace_id: str | None = None) -> None:
        with self.engine.begin() as conn:
            self._update_active(conn, client_id, workspace_id, revoked_at=utcnow())

    @staticmethod
    def _update_active(
        conn: Connection, client_id: str, workspace_id: str | None, **values: Any
    ) -> None:
        """Update an active client (of ``workspace_id``, if given); :class:`NotFound` if
        there is none."""
        query = (
            update(clients)
            .where(clients.c.id == client_id, clients.c.revoked_at.is_(None))
            .values(**values)
        )
        if workspace_id is not None:
            query = query.where(clients.c.workspace_id == workspace_id)
        if conn.execute(query).rowcount == 0:
            raise NotFound(f"active client {client_id!r} does not exist")
