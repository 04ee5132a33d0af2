"""The suppression list: keyed hashes of erased identifiers.

Erasure adds every identifier of the person (``Pseudonymizer.digest`` of
``<type>:<value>``, emails lower-cased), so the list never holds the identifiers
themselves. The collector and the processor ask :meth:`SuppressionList.is_suppressed`
before they keep an event, drop it if any of its identifiers is listed, and report it with
:meth:`SuppressionList.count_dropped` (buffered, written every few seconds or on
:meth:`SuppressionList.flush`).

Lookups are answered from memory: each workspace's hashes are loaded once and reloaded
every ``refresh_seconds`` (another process may have erased someone), so a check costs one
keyed hash and a set lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update

from auie.ids import utc_text, utcnow
from auie.privacy.crypto import Pseudonymizer
from auie.privacy.tables import suppressions
from auie.profiles.identity import EMAIL, node


def normalise(identifier_type: str, value: str) -> str:
    """The node an identifier is listed under (``email`` lower-cased, values stripped)."""
    id_type = identifier_type.strip().lower()
    text = str(value).strip()
    return node(id_type, text.lower() if id_type == EMAIL else text)


class SuppressionList:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        pseudonyms: Pseudonymizer,
        *,
        refresh_seconds: float = 2.0,
        flush_seconds: float = 5.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.engine = engine
        self.pseudonyms = pseudonyms
        self.refresh_seconds = refresh_seconds
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._dropped: dict[tuple[str, str], int] = {}
        self._last_flush = clock()
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------

    def add(self, workspace: str, nodes: Iterable[str], request_id: str) -> int:
        """List identifiers (``type:value`` nodes); returns how many were new."""
        hashes = sorted({self.pseudonyms.digest(workspace, n) for n in nodes})
        c = suppressions.c
        with self.engine.begin() as conn:
            known: set[str] = set(
                conn.execute(
                    select(c.identifier_hash).where(
                        c.workspace_id == workspace, c.identifier_hash.in_(hashes)
                    )
                ).scalars()
            )
            fresh = [h for h in hashes if h not in known]
            if fresh:
                now = utcnow()
                conn.execute(
                    insert(suppressions),
                    [
                        {
                            "workspace_id": workspace,
                            "identifier_hash": h,
                            "request_id": request_id,
                            "created_at": now,
                            "dropped": 0,
                        }
                        for h in fresh
                    ],
                )
        with self._lock:
            self._cache.pop(workspace, None)
        return len(fresh)

    # -- checking --------------------------------------------------------------------------

    def _hashes(self, workspace: str) -> frozenset[str]:
        now = self.clock()
        cached = self._cache.get(workspace)
        if cached is not None and now - cached[0] < self.refresh_seconds:
            return cached[1]
        c = suppressions.c
        with self.engine.connect() as conn:
            loaded: frozenset[str] = frozenset(
                conn.execute(select(c.identifier_hash).where(c.workspace_id == workspace)).scalars()
            )
        with self._lock:
            self._cache[workspace] = (now, loaded)
        return loaded

    def is_suppressed(self, workspace: str, identifier_type: str, value: str) -> bool:
        """Whether this identifier was erased (and its events must be dropped)."""
        listed = self._hashes(workspace)
        if not listed:
            return False
        return self.pseudonyms.digest(workspace, normalise(identifier_type, value)) in listed

    def suppressed_identifier(
        self, workspace: str, event: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """The first erased identifier a Segment event carries (``userId``,
        ``anonymousId``, ``previousId``, ``traits.email``), or None."""
        if not self._hashes(workspace):
            return None
        candidates: list[tuple[str, Any]] = [
            ("user_id", event.get("userId")),
            ("anonymous_id", event.get("anonymousId")),
            ("user_id", event.get("previousId")),
            ("anonymous_id", event.get("previousId")),
        ]
        for holder in (event.get("traits"), (event.get("context") or {}).get("traits")):
            if isinstance(holder, Mapping):
                candidates.append((EMAIL, holder.get("email")))
        for id_type, value in candidates:
            if not isinstance(value, str | int) or isinstance(value, bool):
                continue
            if str(value).strip() and self.is_suppressed(workspace, id_type, str(value)):
                return id_type, str(value)
        return None

    # -- counting --------------------------------------------------------------------------

    def count_dropped(
        self, workspace: str, identifier_type: str, value: str, count: int = 1
    ) -> None:
        """Count events dropped because of this identifier (written on :meth:`flush`, at
        the latest ``flush_seconds`` after the first count)."""
        digest = self.pseudonyms.digest(workspace, normalise(identifier_type, value))
        with self._lock:
            key = (workspace, digest)
            self._dropped[key] = self._dropped.get(key, 0) + count
        if self.clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> int:
        """Write the buffered drop counts; returns how many events they counted."""
        with self._lock:
            pending, self._dropped = self._dropped, {}
            self._last_flush = self.clock()
        if not pending:
            return 0
        c = suppressions.c
        with self.engine.begin() as conn:
            conn.execute(
                update(suppressions)
                .where(c.workspace_id == bindparam("ws"), c.identifier_hash == bindparam("h"))
                .values(dropped=c.dropped + bindparam("n")),
                [{"ws": ws, "h": h, "n": n} for (ws, h), n in pending.items()],
            )
        return sum(pending.values())

    def stats(self, workspace: str) -> dict[str, Any]:
        """How many identifiers are listed and how many events were dropped."""
        c = suppressions.c
        query = select(
            func.count(), func.coalesce(func.sum(c.dropped), 0), func.max(c.created_at)
        ).where(c.workspace_id == workspace)
        with self.engine.connect() as conn:
            row = conn.execute(query).one()
        count, dropped, newest = row[0], row[1], row[2]
        return {
            "identifiers": int(count or 0),
            "dropped": int(dropped or 0),
            "lastAddedAt": utc_text(newest) if isinstance(newest, datetime) else newest,
        }

    def forget_cache(self) -> None:
        with self._lock:
            self._cache.clear()
