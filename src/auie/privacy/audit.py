"""The append-only audit log: privacy requests, admin actions, token issuance, key changes
and failed authentication — who, what, when, outcome; never personal data.

Entries are chained: each stores SHA-256 of the previous entry's chain value and its own
content, so a changed or removed entry is detectable with :meth:`AuditLog.verify`. The
database refuses updates (a trigger). Appends are serialised across processes (the server
and a CLI command may write at once): on SQLite each append is a ``BEGIN IMMEDIATE``
transaction, on PostgreSQL it holds a transaction-level advisory lock, so no two entries
follow the same predecessor. Retention deletes the oldest entries with
:meth:`AuditLog.prune`, which appends an ``audit.pruned`` entry naming the first entry
kept and the chain value it follows, so the shortened log still verifies.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from auie.ids import utc_text, utcnow
from auie.privacy.tables import audit_log

_GENESIS = "0" * 64
PRUNED = "audit.pruned"
MIGRATIONS = Path(__file__).parent / "migrations"
#: The PostgreSQL advisory lock key that serialises appends to the chain.
_CHAIN_LOCK_KEY = zlib.crc32(b"auie.audit_log.chain") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    workspace_id: str | None
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    chain: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "workspaceId": self.workspace_id,
            "at": utc_text(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
        }


def _digest(previous: str, row: Mapping[str, Any]) -> str:
    content = json.dumps(
        [
            previous,
            row["workspace_id"],
            row["at"].isoformat(),
            row["actor"],
            row["action"],
            row["target"],
            row["outcome"],
            row["details"],
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(content.encode()).hexdigest()


def _lock_chain(conn: Connection) -> None:
    """Take the database's lock on the chain for the rest of ``conn``'s transaction: the
    thread lock alone would let another process read the same chain head and fork it."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # The sqlite3 module begins a deferred transaction only at the first write, after
        # the chain head was read; an immediate one takes the write lock first (other
        # writers wait, up to the connection's busy timeout).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
    else:  # pragma: no cover - the metadata database is SQLite or PostgreSQL
        raise NotImplementedError(f"the audit log does not support {dialect}")


class AuditLog:
    """Append and query audit entries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        *,
        actor: str,
        workspace: str | None = None,
        target: str = "",
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry (details must not contain personal data)."""
        row: dict[str, Any] = {
            "workspace_id": workspace,
            "at": utcnow(),
            "actor": actor[:120],
            "action": action[:80],
            "target": target[:300],
            "outcome": outcome[:20],
            "details": json.dumps(dict(details or {}), sort_keys=True, default=str)[:4000],
        }
        with self._lock, self.engine.begin() as conn:
            _lock_chain(conn)
            last = conn.execute(
                select(audit_log.c.chain).order_by(audit_log.c.seq.desc()).limit(1)
            ).scalar()
            row["chain"] = _digest(last or _GENESIS, row)
            conn.execute(insert(audit_log).values(row))

    def entries(
        self,
        workspace: str | None,
        *,
        action: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        after_seq: int = 0,
    ) -> list[AuditEntry]:
        c = audit_log.c
        query = select(audit_log).where(c.seq > after_seq).order_by(c.seq).limit(limit)
        if workspace is not None:
            query = query.where(c.workspace_id == workspace)
        if action is not None:
            query = query.where(c.action == action)
        if since is not None:
            query = query.where(c.at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                r.seq,
                r.workspace_id,
                r.at,
                r.actor,
                r.action,
                r.target,
                r.outcome,
                json.loads(r.details),
                r.chain,
            )
            for r in rows
        ]

    def prune(self, before: datetime, *, actor: str = "system") -> int:
        """Delete entries older than ``before`` (retention); returns how many. The
        ``audit.pruned`` entry it appends names the first entry kept and its predecessor's
        chain value, from which :meth:`verify` starts."""
        c = audit_log.c
        with self._lock, self.engine.begin() as conn:
            _lock_chain(conn)
            last = conn.execute(
                select(c.seq, c.chain).where(c.at < before).order_by(c.seq.desc()).limit(1)
            ).first()
            if last is None:
                return 0
            kept = conn.execute(select(func.min(c.seq)).where(c.seq > last.seq)).scalar()
            deleted = conn.execute(delete(audit_log).where(c.seq <= last.seq)).rowcount
        self.record(
            PRUNED,
            actor=actor,
            target="audit_log",
            details={"deleted": deleted, "keptFromSeq": kept, "anchor": last.chain},
        )
        return int(deleted)

    def verify(self) -> int | None:
        """The seq of the first entry whose chain does not match (None: intact)."""
        c = audit_log.c
        previous = _GENESIS
        with self.engine.connect() as conn:
            first = conn.execute(select(func.min(c.seq))).scalar()
            for (raw,) in conn.execute(
                select(c.details).where(c.action == PRUNED).order_by(c.seq.desc())
            ):
                details = json.loads(str(raw))
                if first is not None and details.get("keptFromSeq") == first:
                    previous = str(details.get("anchor") or _GENESIS)
                    break
            for row in conn.execute(select(audit_log).order_by(c.seq)):
                data = dict(row._mapping)
                if _digest(previous, data) != data["chain"]:
                    return int(data["seq"])
                previous = data["chain"]
        return None
