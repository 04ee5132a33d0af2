"""The identity graph: which identifiers belong to one person.

Nodes are typed identifiers (``user_id:u1``, ``anonymous_id:a-7``, ``email:x@y.z``,
configured external ids). Events add *edges*:

* ``link``: ``userId`` with ``anonymousId`` on any event; an identify's ``email`` trait (and
  configured id traits, and ``context.externalIds``) with the event's primary identifier;
* ``alias``: an alias call's ``userId`` with its ``previousId`` — as an anonymous id and, in
  case it was a user id being renamed, as a user id too.

Profiles are the clusters of :func:`cluster`, a pure function of the edge set, so they
do not depend on arrival order. It visits edges by event time (then ``messageId``) and
joins the two clusters an edge touches unless that is a ``link`` that would put more than
``max_user_ids`` distinct users in one profile (the shared-device case: two people who
logged in on one browser stay two profiles). User ids joined by ``alias`` count as one
user; an alias always joins (it is an explicit statement). Junk values (``null``,
``undefined``, ``0``, ...) never become identifiers.

Each join of two clusters that both hold a user or anonymous id is a *merge*, recorded with
the profiles joined, the event and its time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
_RANK = {USER_ID: 0, EMAIL: 1, ANONYMOUS_ID: 3}
_PERSON_TYPES = frozenset({USER_ID, ANONYMOUS_ID})
_ID_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_ID_LENGTH = 512

DEFAULT_JUNK = (
    "",
    "null",
    "undefined",
    "none",
    "nil",
    "nan",
    "0",
    "-1",
    "anonymous",
    "anon",
    "unknown",
    "n/a",
    "na",
    "guest",
    "test",
    "false",
    "true",
    "[object object]",
    "not set",
    "(not set)",
    "00000000-0000-0000-0000-000000000000",
)

EdgeKind = Literal["link", "alias"]


def node(id_type: str, value: str) -> str:
    return f"{id_type}:{value}"


def split(node_key: str) -> tuple[str, str]:
    id_type, _, value = node_key.partition(":")
    return id_type, value


def profile_id(workspace: str, anchor: str) -> str:
    """A profile's id: derived from its anchor node, so the same cluster gets the same id."""
    digest = hashlib.blake2b(f"{workspace}\x00{anchor}".encode(), digest_size=10).hexdigest()
    return f"p_{digest}"


def _anchor_key(node_key: str, seen: set[str]) -> tuple[int, int, str]:
    """Anchors prefer identifiers seen in use, then user ids, emails, others, anonymous ids."""
    return (0 if node_key in seen else 1), _RANK.get(split(node_key)[0], 2), node_key


class Edge(msgspec.Struct, frozen=True, order=True, gc=False):
    """A link between two identifiers, from the earliest event that stated it."""

    ts: int
    message_id: str
    kind: EdgeKind
    a: str
    b: str

    @staticmethod
    def make(x: str, y: str, kind: EdgeKind, ts: int, message_id: str) -> Edge:
        a, b = (x, y) if x <= y else (y, x)
        return Edge(ts, message_id, kind, a, b)

    @property
    def pair(self) -> tuple[str, str, str]:
        return self.a, self.b, self.kind


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Merge rules (``[profiles]`` settings)."""

    max_user_ids: int = 1
    junk_values: frozenset[str] = frozenset(DEFAULT_JUNK)
    #: Identify traits whose values are identifiers, e.g. ``("phone",)``.
    id_traits: tuple[str, ...] = ()

    def clean(self, value: Any) -> str | None:
        """The identifier, or None for a missing or junk value."""
        if value is None or isinstance(value, bool):
            return None
        text = str(value).strip() if isinstance(value, str | int | float) else None
        if not text or len(text) > MAX_ID_LENGTH or text.lower() in self.junk_values:
            return None
        return text

    def is_id_type(self, id_type: str) -> bool:
        """Whether identifiers of this type can exist: ``user_id``, ``anonymous_id``,
        ``email``, the ``id_traits`` and external id types (``context.externalIds``: lower
        case letters, digits and ``_``, up to 40 characters)."""
        return bool(_ID_TYPE.match(id_type)) or id_type in (t.lower() for t in self.id_traits)

    def owner(self, user_id: Any, anonymous_id: Any) -> str | None:
        """The identifier an event with these ids belongs to: its user id, else its
        anonymous id (as :func:`event_identity`'s ``primary``)."""
        user = self.clean(user_id)
        if user:
            return node(USER_ID, user)
        anonymous = self.clean(anonymous_id)
        return node(ANONYMOUS_ID, anonymous) if anonymous else None


class EventIdentity(msgspec.Struct, gc=False):
    """What one event says about identity (a Struct: built per event, in no cycle)."""

    primary: str | None
    #: Identifiers the event shows in use (userId, anonymousId, traits): "evidence".
    seen: list[str] = []
    #: Identifiers only named by an alias's previousId.
    named: list[str] = []
    edges: list[Edge] = []


def event_identity(event: Mapping[str, Any], ts: int, rules: IdentityRules) -> EventIdentity:
    """The identifiers and edges of one normalised event."""
    message_id = str(event.get("messageId", ""))
    user = rules.clean(event.get("userId"))
    anon = rules.clean(event.get("anonymousId"))
    user_node = node(USER_ID, user) if user else None
    anon_node = node(ANONYMOUS_ID, anon) if anon else None
    result = EventIdentity(primary=user_node or anon_node)
    result.seen = [n for n in (user_node, anon_node) if n]
    if user_node and anon_node:
        result.edges.append(Edge.make(user_node, anon_node, "link", ts, message_id))
    if result.primary is None:
        return result
    if event.get("type") == "alias" and user_node:
        previous = rules.clean(event.get("previousId"))
        if previous and previous != user:
            for id_type in (ANONYMOUS_ID, USER_ID):
                other = node(id_type, previous)
                result.named.append(other)
                result.edges.append(Edge.make(user_node, other, "alias", ts, message_id))
    if event.get("type") == "identify":
        for other in _trait_ids(event.get("traits") or {}, rules):
            result.seen.append(other)
            result.edges.append(Edge.make(result.primary, other, "link", ts, message_id))
    for other in _external_ids(event.get("context") or {}, rules):
        result.seen.append(other)
        result.edges.append(Edge.make(result.primary, other, "link", ts, message_id))
    return result


def _trait_ids(traits: Mapping[str, Any], rules: IdentityRules) -> Iterable[str]:
    email = traits.get("email")
    if isinstance(email, str):
        cleaned = rules.clean(email.strip().lower())
        if cleaned and _EMAIL.match(cleaned):
            yield node(EMAIL, cleaned)
    for trait in rules.id_traits:
        value = rules.clean(traits.get(trait))
        if value:
            yield node(trait.lower(), value)


def _external_ids(context: Mapping[str, Any], rules: IdentityRules) -> Iterable[str]:
    external = context.get("externalIds")
    if not isinstance(external, list):
        return
    for item in external[:20]:
        if not isinstance(item, dict):
            continue
        id_type = str(item.get("type", "")).strip().lower().replace("-", "_")
        value = rules.clean(item.get("id"))
        if value and _ID_TYPE.match(id_type) and id_type not in _RANK:
            yield node(id_type, value)


@dataclass(frozen=True, slots=True)
class Merge:
    """Two profiles that became one."""

    from_profile: str
    into_profile: str
    message_id: str
    ts: int
    kind: EdgeKind


@dataclass(slots=True)
class Clustering:
    """Node → anchor node, and each final cluster's merges (keyed by anchor)."""

    anchors: dict[str, str]
    merges: dict[str, list[Merge]]


class DisjointSets:
    """Disjoint sets of identifiers (the smallest identifier is each set's root), with sizes."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.sizes: dict[str, int] = {}

    def find(self, item: str) -> str:
        parent = self.parent
        root = parent.setdefault(item, item)
        if root == item:
            return item
        while (up := parent[root]) != root:
            root = up
        while item != root:  # path compression, without recursion (chains can be long)
            up = parent[item]
            parent[item] = root
            item = up
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            root, child = min(ra, rb), max(ra, rb)
            self.parent[child] = root
            self.sizes[root] = self.sizes.get(root, 1) + self.sizes.pop(child, 1)

    def size(self, item: str) -> int:
        """How many identifiers share ``item``'s set."""
        return self.sizes.get(self.find(item), 1)


@dataclass(slots=True)
class _Cluster:
    anchor: str
    users: set[str]
    person: bool
    merges: list[Merge]


def cluster(
    workspace: str, seen: Iterable[str], edges: Sequence[Edge], max_user_ids: int
) -> Clustering:
    """Cluster identifiers into profiles: a pure function of the identifiers seen in use and
    the edges (see the module docstring). Identifiers only named by an alias may be in
    clusters but are never preferred as anchors."""
    seen = set(seen)
    aliases = DisjointSets()
    for edge in edges:
        if edge.kind == "alias" and split(edge.a)[0] == USER_ID == split(edge.b)[0]:
            aliases.union(edge.a, edge.b)
    everything = seen | {n for e in edges for n in (e.a, e.b)}
    clusters: dict[str, _Cluster] = {
        n: _Cluster(
            anchor=n,
            users={aliases.find(n)} if split(n)[0] == USER_ID else set(),
            person=n in seen and split(n)[0] in _PERSON_TYPES,
            merges=[],
        )
        for n in everything
    }
    groups = DisjointSets()
    for edge in sorted(edges):
        ra, rb = groups.find(edge.a), groups.find(edge.b)
        if ra == rb:
            continue
        first, second = clusters[ra], clusters[rb]
        users = first.users | second.users
        if edge.kind == "link" and len(users) > max_user_ids:
            continue
        winner, loser = sorted((first, second), key=lambda c: _anchor_key(c.anchor, seen))
        joined = winner.merges + loser.merges
        if winner.person and loser.person:
            joined.append(
                Merge(
                    profile_id(workspace, loser.anchor),
                    profile_id(workspace, winner.anchor),
                    edge.message_id,
                    edge.ts,
                    edge.kind,
                )
            )
        groups.union(ra, rb)
        clusters[groups.find(ra)] = _Cluster(
            winner.anchor, users, winner.person or loser.person, joined
        )
    anchors = {n: clusters[groups.find(n)].anchor for n in everything}
    merges = {
        clusters[root].anchor: sorted(clusters[root].merges, key=lambda m: (m.ts, m.message_id))
        for root in {groups.find(n) for n in everything}
    }
    return Clustering(anchors, merges)
