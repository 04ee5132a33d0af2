"""Workspaces, sources and write keys in the metadata database.

Every stored record in AUIE belongs to a workspace. A workspace has sources (web, ios,
backend...); a source has write keys, which only allow ingesting. Keys are shown once at
creation and stored as SHA-256 hashes; revoking one is immediate in the database and
reaches running collectors within ``collect.write_key_cache_seconds``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from auie.errors import Conflict, InvalidRequest, NotFound
from auie.ids import new_id, new_secret, secret_hash, utcnow
from auie.tenancy.tables import sources, workspaces, write_keys

SOURCE_KINDS = frozenset(
    {"web", "ios", "android", "mobile", "server", "backend", "import", "cloud", "other"}
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    workspace_id: str
    name: str
    kind: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WriteKeyInfo:
    id: str
    source_id: str
    workspace_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewWriteKey:
    """A freshly created key: ``key`` is the only time the secret is visible."""

    info: WriteKeyInfo
    key: str


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a valid write key belongs to."""

    workspace_id: str
    source_id: str
    key_id: str


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):  # match's $ would let a final newline through
        raise InvalidRequest(
            f"{what} name must be 1-100 letters, digits, spaces, '.', '_' or '-'",
            code="invalid_name",
        )


class TenancyStore:
    """Create, list and resolve workspaces, sources and write keys."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- workspaces ------------------------------------------------------------

    def create_workspace(self, name: str) -> Workspace:
        _check_name(name, "workspace")
        workspace = Workspace(new_id("ws"), name, utcnow())
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(workspaces).values(
                        id=workspace.id, name=name, created_at=workspace.created_at
                    )
                )
        except IntegrityError:
            raise Conflict(f"workspace {name!r} already exists") from None
        return workspace

    def list_workspaces(self) -> list[Workspace]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(workspaces).order_by(workspaces.c.created_at)).all()
        return [Workspace(**row._mapping) for row in rows]

    def workspace(self, id_or_name: str) -> Workspace:
        """A workspace by id or by name."""
        query = select(workspaces).where(
            (workspaces.c.id == id_or_name) | (workspaces.c.name == id_or_name)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"workspace {id_or_name!r} does not exist")
        return Workspace(**row._mapping)

    # -- sources ----------------------------------------------------------------

    def create_source(self, workspace_id: str, name: str, kind: str = "web") -> Source:
        _check_name(name, "source")
        if kind not in SOURCE_KINDS:
            raise InvalidRequest(
                f"source kind must be one of {', '.join(sorted(SOURCE_KINDS))}",
                code="invalid_kind",
            )
        self.workspace(workspace_id)
        row: dict[str, Any] = {
            "id": new_id("src"),
            "workspace_id": workspace_id,
            "name": name,
            "kind": kind,
            "created_at": utcnow(),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(sources).values(row))
        return Source(**row)

    def list_sources(self, workspace_id: str) -> list[Source]:
        query = (
            select(sources)
            .where(sources.c.workspace_id == workspace_id)
            .order_by(sources.c.created_at)
        )
        with self.engine.connect() as conn:
            return [Source(**row._mapping) for row in conn.execute(query)]

    def source(self, source_id: str, workspace_id: str | None = None) -> Source:
        """A source by id; with ``workspace_id``, one of that workspace only."""
        query = select(sources).where(sources.c.id == source_id)
        if workspace_id is not None:
            query = query.where(sources.c.workspace_id == workspace_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"source {source_id!r} does not exist")
        return Source(**row._mapping)

    # -- write keys -------------------------------------------------------------

    def create_write_key(self, source_id: str, workspace_id: str | None = None) -> NewWriteKey:
        source = self.source(source_id, workspace_id)
        key = new_secret()
        row: dict[str, Any] = {
            "id": new_id("wk"),
            "source_id": source.id,
            "workspace_id": source.workspace_id,
            "key_hash": secret_hash(key),
            "prefix": key[:6],
            "created_at": utcnow(),
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(write_keys).values(row))
        del row["key_hash"]
        return NewWriteKey(WriteKeyInfo(**row), key)

    def list_write_keys(
        self, workspace_id: str, source_id: str | None = None
    ) -> list[WriteKeyInfo]:
        query = select(
            write_keys.c.id,
            write_keys.c.source_id,
            write_keys.c.workspace_id,
            write_keys.c.prefix,
            write_keys.c.created_at,
            write_keys.c.revoked_at,
        ).where(write_keys.c.workspace_id == workspace_id)
        if source_id is not None:
            query = query.where(write_keys.c.source_id == source_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(write_keys.c.created_at)).all()
        return [WriteKeyInfo(**row._mapping) for row in rows]

    def revoke_write_key(self, key_id: str, workspace_id: str | None = None) -> str:
        """Revoke an active key; returns its workspace's id."""
        query = (
            update(write_keys)
            .where(write_keys.c.id == key_id, write_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(write_keys.c.workspace_id)
        )
        if workspace_id is not None:
            query = query.where(write_keys.c.workspace_id == workspace_id)
        with self.engine.begin() as conn:
            owner = conn.execute(query).scalar()
        if owner is None:
            raise NotFound(f"active write key {key_id!r} does not exist")
        return str(owner)

    def resolve_write_key(self, key: str) -> KeyIdentity | None:
        """The owner of an active key, or None for an unknown or revoked one."""
        query = select(write_keys.c.workspace_id, write_keys.c.source_id, write_keys.c.id).where(
            write_keys.c.key_hash == secret_hash(key), write_keys.c.revoked_at.is_(None)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else KeyIdentity(row[0], row[1], row[2])
