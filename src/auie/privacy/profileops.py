"""Finding and deleting a person's rows in the profile store (SQLite or PostgreSQL).

* ``identity_nodes``: the person's identifiers (and anything now in their profiles);
* ``identity_edges``: every edge touching one of them;
* ``profile_merges``: merge histories of, from or into any of the person's profile ids;
* ``closed_profiles``: the person's profile ids closed by a merge, or merged into;
* ``dead_letters``: letters whose payload names the person (pre-filtered with ``LIKE`` on
  the quoted identifiers, then checked field by field);
* ``plan_violations``: counters whose last message quotes an identifier or a PII value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, func, or_, select

from auie.privacy.person import Person
from auie.profiles.store.sql import SqlProfileStore
from auie.profiles.store.tables import (
    closed_profiles,
    dead_letters,
    identity_edges,
    identity_nodes,
    plan_violations,
    profile_merges,
)

_CHUNK = 400
T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


@dataclass(slots=True)
class StoreRows:
    """The person's rows, as plain dicts (for export) with their keys (for deletion)."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    merges: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "identityNodes": len(self.nodes),
            "identityEdges": len(self.edges),
            "profileMerges": len(self.merges),
            "closedProfiles": len(self.closed),
            "deadLetters": len(self.dead_letters),
            "planViolations": len(self.violations),
        }


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


def find(store: SqlProfileStore, person: Person) -> StoreRows:
    ws = person.workspace
    found = StoreRows()
    nodes = sorted(person.nodes)
    profiles = sorted(person.profiles | person.profile_ids)
    n, e, m = identity_nodes.c, identity_edges.c, profile_merges.c
    with store.engine.connect() as conn:
        seen_nodes: set[str] = set()
        for chunk in _chunks(nodes):
            for row in _rows(
                conn, select(identity_nodes).where(n.workspace_id == ws, n.node.in_(chunk))
            ):
                seen_nodes.add(row["node"])
                found.nodes.append(row)
        for chunk in _chunks(profiles):
            query = select(identity_nodes).where(n.workspace_id == ws, n.profile_id.in_(chunk))
            for row in _rows(conn, query):
                if row["node"] not in seen_nodes:
                    seen_nodes.add(row["node"])
                    found.nodes.append(row)
        every_node = sorted(seen_nodes | set(nodes))
        edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        for column in (e.a, e.b):
            for chunk in _chunks(every_node):
                for row in _rows(
                    conn, select(identity_edges).where(e.workspace_id == ws, column.in_(chunk))
                ):
                    edges[(row["a"], row["b"], row["kind"])] = row
        found.edges = sorted(edges.values(), key=lambda r: (r["a"], r["b"], r["kind"]))
        merges: dict[tuple[str, int], dict[str, Any]] = {}
        for chunk in _chunks(profiles):
            query = select(profile_merges).where(
                m.workspace_id == ws,
                or_(m.profile_id.in_(chunk), m.from_profile.in_(chunk), m.into_profile.in_(chunk)),
            )
            for row in _rows(conn, query):
                merges[(row["profile_id"], row["seq"])] = row
        found.merges = [merges[k] for k in sorted(merges)]
        c = closed_profiles.c
        closed: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(profiles):
            query = select(closed_profiles).where(
                c.workspace_id == ws, or_(c.profile_id.in_(chunk), c.into_profile.in_(chunk))
            )
            for row in _rows(conn, query):
                closed[row["profile_id"]] = row
        found.closed = [closed[k] for k in sorted(closed)]
        found.dead_letters = _dead_letters(conn, person)
        found.violations = [
            row
            for row in _rows(
                conn, select(plan_violations).where(plan_violations.c.workspace_id == ws)
            )
            if person.mentions_free_text(row["last_message"])
        ]
    return found


def _dead_letters(conn: Connection, person: Person) -> list[dict[str, Any]]:
    d = dead_letters.c
    clauses = []
    for needle, insensitive in person.needles():
        text = needle.decode("utf-8", "surrogatepass")
        if insensitive:
            clauses.append(func.lower(d.payload).contains(text, autoescape=True))
        else:
            clauses.append(d.payload.contains(text, autoescape=True))
    if not clauses:
        return []
    query = (
        select(dead_letters)
        .where(d.workspace_id == person.workspace, or_(*clauses))
        .order_by(d.created_at, d.id)
    )
    return [row for row in _rows(conn, query) if person.mentions_text(row["payload"])]


def delete_rows(store: SqlProfileStore, person: Person, rows: StoreRows) -> dict[str, int]:
    """Delete the rows :func:`find` returned, in one transaction; returns counts."""
    ws = person.workspace
    n, e, m = identity_nodes.c, identity_edges.c, profile_merges.c
    d, v = dead_letters.c, plan_violations.c
    counts = dict.fromkeys(rows.counts(), 0)
    with store.engine.begin() as conn:
        if rows.nodes:
            store.count_deletion(conn)
        for chunk in _chunks(sorted({r["node"] for r in rows.nodes})):
            counts["identityNodes"] += conn.execute(
                delete(identity_nodes).where(n.workspace_id == ws, n.node.in_(chunk))
            ).rowcount
        for edge in rows.edges:
            counts["identityEdges"] += conn.execute(
                delete(identity_edges).where(
                    e.workspace_id == ws, e.a == edge["a"], e.b == edge["b"], e.kind == edge["kind"]
                )
            ).rowcount
        for merge in rows.merges:
            counts["profileMerges"] += conn.execute(
                delete(profile_merges).where(
                    m.workspace_id == ws,
                    m.profile_id == merge["profile_id"],
                    m.seq == merge["seq"],
                )
            ).rowcount
        for chunk in _chunks(sorted({r["profile_id"] for r in rows.closed})):
            counts["closedProfiles"] += conn.execute(
                delete(closed_profiles).where(
                    closed_profiles.c.workspace_id == ws, closed_profiles.c.profile_id.in_(chunk)
                )
            ).rowcount
        for chunk in _chunks(sorted({r["id"] for r in rows.dead_letters})):
            counts["deadLetters"] += conn.execute(
                delete(dead_letters).where(d.id.in_(chunk))
            ).rowcount
        for row in rows.violations:
            counts["planViolations"] += conn.execute(
                delete(plan_violations).where(
                    and_(
                        v.workspace_id == ws,
                        v.event_key == row["event_key"],
                        v.plan_version == row["plan_version"],
                    )
                )
            ).rowcount
    return counts
