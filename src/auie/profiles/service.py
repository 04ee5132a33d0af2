"""Identity resolution and profile updates for batches of events, and profile reads.

For one batch (per workspace) :meth:`ProfileService.resolve`:

1. derives each event's identifiers and edges (:func:`~auie.profiles.identity.event_identity`);
2. finds the edges that are new, or stated earlier than stored, and identifiers seen for the
   first time after being only named by an alias: these may change clusters;
3. re-clusters the affected connected components of the identity graph from scratch
   (:func:`~auie.profiles.identity.cluster`), so the result is the same whatever the order
   the events arrived in;
4. folds every event into the state of its primary identifier;
5. returns each event's profile id and one :class:`ProfileWrite` with every change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from auie.errors import InvalidRequest, NotFound
from auie.events import format_time
from auie.profiles.identity import (
    ANONYMOUS_ID,
    DisjointSets,
    Edge,
    EventIdentity,
    IdentityRules,
    Merge,
    cluster,
    event_identity,
    node,
    profile_id,
    split,
)
from auie.profiles.nodecache import NodeCache
from auie.profiles.state import Consent, NodeState, StateFolder, merge_consent
from auie.profiles.store.base import NodeRow, ProfileStore, ProfileWrite, StoredNode

logger = logging.getLogger(__name__)


class Resolvable(Protocol):
    """What :meth:`ProfileService.resolve` reads of an event: an :class:`Item`, or the
    processor's own record of an event, which has the same attributes."""

    @property
    def workspace(self) -> str: ...

    @property
    def event(self) -> Mapping[str, Any]: ...

    @property
    def ts(self) -> int: ...

    @property
    def identity(self) -> EventIdentity | None: ...


@dataclass(frozen=True, slots=True)
class Item:
    """One event to resolve: where it came from and its event time in ms."""

    workspace: str
    event: Mapping[str, Any]
    ts: int
    #: The identity of the event as sent, when ``event`` holds encrypted traits (the
    #: processor derives it before encrypting: an encrypted e-mail could not link anything).
    identity: EventIdentity | None = None


@dataclass(slots=True)
class Resolution:
    """Profile id of each item (None when it has no usable identifier) and the changes."""

    profile_ids: list[str | None]
    write: ProfileWrite
    #: Profiles whose traits, identities or merges changed: (workspace, profile id).
    changed: set[tuple[str, str]] = field(default_factory=set)
    #: Identifiers that are new or moved to another profile: (workspace, node, profile id).
    moved: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Profile:
    """A profile as the API shows it."""

    profile_id: str
    identities: list[dict[str, str]]
    traits: dict[str, Any]
    computed_traits: dict[str, Any]
    merges: list[Merge]
    consent: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profileId": self.profile_id,
            "identities": self.identities,
            "traits": self.traits,
            "computedTraits": self.computed_traits,
            "consent": self.consent,
            "merges": [
                {
                    "fromProfileId": m.from_profile,
                    "intoProfileId": m.into_profile,
                    "messageId": m.message_id,
                    "timestamp": _iso(m.ts),
                    "kind": m.kind,
                }
                for m in self.merges
            ],
        }


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile as the profile store holds it: encrypted trait values stay encrypted."""

    profile_id: str
    identities: list[dict[str, str]]
    traits: dict[str, Any]
    computed_traits: dict[str, Any]
    first_seen: int | None
    last_seen: int | None
    #: Current consent per purpose, over all its identifiers ({purpose: granted}).
    consent: dict[str, bool] = field(default_factory=dict)


def _iso(ms: int) -> str:
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


class ProfileService:
    """See the module docstring."""

    def __init__(
        self,
        store: ProfileStore,
        rules: IdentityRules,
        folder: StateFolder,
        max_component_nodes: int = 10_000,
    ) -> None:
        self.store = store
        self.rules = rules
        self.folder = folder
        self.max_component_nodes = max_component_nodes
        #: Decrypts stored field values for reads (set by the runtime: field encryption).
        self.decrypt: Callable[[str, Any], Any] | None = None

    # -- writing ---------------------------------------------------------------------------

    def resolve(self, items: Sequence[Resolvable], cache: NodeCache | None = None) -> Resolution:
        """Resolve a batch; stored nodes are read through ``cache`` if there is one (the
        caller checks it, writes the result and tells it what was written)."""
        result = Resolution([None] * len(items), ProfileWrite())
        read = cache.nodes if cache is not None else self.store.nodes
        by_workspace: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_workspace.setdefault(item.workspace, []).append(index)
        for workspace, indexes in by_workspace.items():
            self._resolve_workspace(workspace, [items[i] for i in indexes], indexes, result, read)
        return result

    def _resolve_workspace(
        self,
        ws: str,
        items: Sequence[Resolvable],
        indexes: Sequence[int],
        result: Resolution,
        read: Callable[[str, Iterable[str]], dict[str, StoredNode]],
    ) -> None:
        idents = [
            item.identity or event_identity(item.event, item.ts, self.rules) for item in items
        ]
        keys = {k for i in idents for k in (*i.seen, *i.named)}
        stored = read(ws, keys)
        seen_now = {k for i in idents for k in i.seen}
        changed_edges = self._changed_edges(ws, idents)
        triggers = {n for e in changed_edges for n in (e.a, e.b)}
        triggers |= {k for k in seen_now if k in stored and not stored[k].evidenced}
        profiles = {k: s.profile_id for k, s in stored.items()}
        evidenced = {k for k, s in stored.items() if s.evidenced} | seen_now
        if triggers:
            self._recluster(
                ws,
                triggers,
                changed_edges,
                stored=stored,
                evidenced=evidenced,
                profiles=profiles,
                result=result,
                read=read,
            )
        for key in keys - profiles.keys():
            profiles[key] = profile_id(ws, key)
        states = self._fold(items, idents, stored)
        self._node_rows(
            ws,
            keys,
            stored=stored,
            states=states,
            evidenced=evidenced,
            profiles=profiles,
            result=result,
        )
        for index, ident in zip(indexes, idents, strict=True):
            if ident.primary is not None:
                result.profile_ids[index] = profiles[ident.primary]
        result.changed |= {(ws, profiles[k]) for k in states}
        result.write.edges.extend((ws, e) for e in changed_edges)

    def _changed_edges(self, ws: str, idents: Sequence[EventIdentity]) -> list[Edge]:
        earliest: dict[tuple[str, str, str], Edge] = {}
        for ident in idents:
            for edge in ident.edges:
                current = earliest.get(edge.pair)
                if current is None or edge < current:
                    earliest[edge.pair] = edge
        if not earliest:
            return []
        stored = self.store.edges(ws, earliest)
        return [
            edge for pair, edge in earliest.items() if pair not in stored or edge < stored[pair]
        ]

    def _recluster(
        self,
        ws: str,
        triggers: set[str],
        new_edges: Sequence[Edge],
        *,
        stored: dict[str, StoredNode],
        evidenced: set[str],
        profiles: dict[str, str],
        result: Resolution,
        read: Callable[[str, Iterable[str]], dict[str, StoredNode]],
    ) -> None:
        nodes, edges = self._component(ws, triggers, new_edges)
        mentioned = set(profiles) | set(stored)
        missing = nodes - stored.keys()
        if missing:
            extra = read(ws, missing)
            stored.update(extra)
            evidenced |= {k for k, s in extra.items() if s.evidenced}
            profiles.update({k: s.profile_id for k, s in extra.items()})
        before = {n: profiles[n] for n in sorted(nodes) if n in profiles}
        old_profiles = set(before.values())
        clustering = cluster(ws, evidenced & nodes, edges, self.rules.max_user_ids)
        for key, anchor in clustering.anchors.items():
            profiles[key] = profile_id(ws, anchor)
        # Stored profiles none of whose identifiers keeps them: merged into another.
        after = {profiles[n] for n in nodes if n in profiles}
        for pid in sorted(old_profiles - after):
            into = next(profiles[n] for n, was in before.items() if was == pid)
            result.write.closed.append((ws, pid, into))
        new_profiles = {profile_id(ws, anchor): m for anchor, m in clustering.merges.items()}
        for pid in old_profiles - new_profiles.keys():
            result.write.merges[(ws, pid)] = []
        for pid, merges in new_profiles.items():
            result.write.merges[(ws, pid)] = merges
        result.changed |= {(ws, pid) for pid in new_profiles}
        # Nodes of the component the batch did not mention still need their new profile.
        for key in nodes:
            known = stored.get(key)
            if known is not None and known.profile_id != profiles[key]:
                result.write.reassign.append((ws, key, profiles[key]))
                if key not in mentioned:
                    result.moved.append((ws, key, profiles[key]))

    def _component(
        self, ws: str, start: set[str], new_edges: Sequence[Edge]
    ) -> tuple[set[str], list[Edge]]:
        """The connected components (over every edge, kept or not) around ``start``, read
        level by level for all of them at once. A component that grows beyond
        ``max_component_nodes`` identifiers (a junk value shared by everyone that no rule
        caught) stops growing there; the others, however many the batch touches, are read
        whole."""
        adjacency: dict[str, list[Edge]] = {}
        for edge in new_edges:
            adjacency.setdefault(edge.a, []).append(edge)
            adjacency.setdefault(edge.b, []).append(edge)
        edges: dict[tuple[str, str, str], Edge] = {}
        sets = DisjointSets()
        visited: set[str] = set()
        capped: set[str] = set()  # roots of the components cut short (for the warning)
        frontier = set(start)
        while frontier:
            visited |= frontier
            found = self.store.neighbours(ws, frontier)
            found += [e for n in frontier for e in adjacency.get(n, ())]
            following: set[str] = set()
            for edge in found:
                current = edges.get(edge.pair)
                if current is None or edge < current:
                    edges[edge.pair] = edge
                sets.union(edge.a, edge.b)
                following.update(n for n in (edge.a, edge.b) if n not in visited)
            frontier = set()
            for key in following:
                root = sets.find(key)
                if sets.size(root) > self.max_component_nodes:  # sizes only grow
                    capped.add(root)
                else:
                    frontier.add(key)
        # One line per component cut short (one that grew into a cut one is the same).
        for root in {sets.find(root) for root in capped}:
            logger.warning(
                "identity component around %s exceeds %d identifiers (%d read); clustering"
                " what was read (raise profiles.max_component_nodes, or add the shared value"
                " to profiles.junk_values)",
                sorted(n for n in start if sets.find(n) == root)[:3],
                self.max_component_nodes,
                sets.size(root),
            )
        nodes = visited | {n for e in edges.values() for n in (e.a, e.b)}
        return nodes, list(edges.values())

    def _fold(
        self,
        items: Sequence[Resolvable],
        idents: Sequence[EventIdentity],
        stored: Mapping[str, StoredNode],
    ) -> dict[str, NodeState]:
        states: dict[str, NodeState] = {}
        for item, ident in zip(items, idents, strict=True):
            key = ident.primary
            if key is None:
                continue
            state = states.get(key)
            if state is None:
                known = stored.get(key)
                # The store's (and the node cache's) states are new objects at each read:
                # folded in place.
                state = states[key] = (
                    known.state if known is not None and known.state is not None else NodeState()
                )
            self.folder.apply(state, item.event, item.ts)
        return states

    @staticmethod
    def _node_rows(
        ws: str,
        keys: Iterable[str],
        *,
        stored: Mapping[str, StoredNode],
        states: Mapping[str, NodeState],
        evidenced: set[str],
        profiles: Mapping[str, str],
        result: Resolution,
    ) -> None:
        """Rows for the identifiers the batch mentions that are new or changed (identifiers
        that only moved to another profile are in ``write.reassign``)."""
        for key in sorted(set(keys) | states.keys()):
            known = stored.get(key)
            is_evidenced = key in evidenced
            kept = known is not None and known.profile_id == profiles[key]
            if not kept:
                result.moved.append((ws, key, profiles[key]))
            if key in states or known is None or known.evidenced != is_evidenced:
                state = states.get(key) or (known.state if known else None)
                encoded = state.encode() if state is not None else None
                result.write.nodes.append(
                    NodeRow(ws, key, profiles[key], is_evidenced, state, encoded, kept)
                )

    # -- reading ---------------------------------------------------------------------------

    def consents(self, workspace: str, keys: Iterable[str]) -> dict[str, dict[str, bool]]:
        """The current consent ({purpose: granted}) of the profile each of these identifiers
        belongs to, where any of its identifiers holds a statement: per purpose, the latest
        statement of any of them (as :meth:`profile` shows it)."""
        found: dict[str, dict[str, bool]] = {}
        for key, statements in self.store.consents(workspace, keys).items():
            merged: Consent = {}
            for consent in statements:
                merge_consent(merged, consent)
            found[key] = {purpose: granted for purpose, (granted, _stamp) in merged.items()}
        return found

    def lookup(self, workspace: str, keys: Iterable[str]) -> dict[str, str]:
        """Current profile id of each known identifier."""
        return {k: s.profile_id for k, s in self.store.nodes(workspace, keys).items()}

    def profile(self, workspace: str, id_type: str, id_value: str) -> Profile:
        """The profile an identifier belongs to; :class:`NotFound` if it is unknown,
        :class:`InvalidRequest` if no identifier can be of that type."""
        if not self.rules.is_id_type(id_type):
            raise InvalidRequest(
                f"{id_type[:100]!r} is not an identifier type: user_id, anonymous_id, email,"
                " an id trait (profiles.id_traits) or an external id type (lower-case"
                " letters, digits and _)",
                code="invalid_id_type",
            )
        key = node(id_type, id_value.strip().lower() if id_type == "email" else id_value)
        found = self.store.nodes(workspace, [key]).get(key)
        if found is None:
            raise NotFound(f"no profile has {id_type} {id_value!r}")
        return self.profile_by_id(workspace, found.profile_id)

    def _merged(self, members: Sequence[StoredNode]) -> tuple[NodeState, list[dict[str, str]]]:
        """The merged state of a profile's nodes (to read, not to change), and its
        identities as the API shows them."""
        states = [m.state for m in members if m.state is not None]
        if len(states) == 1 and self.folder.is_merged(states[0]):
            merged = states[0]  # most profiles: one node holds every fact
        else:
            merged = NodeState()
            for state in states:
                self.folder.merge(merged, state)
        identities = []
        for member in members:
            id_type, value = split(member.node)
            if member.evidenced or id_type == ANONYMOUS_ID:
                identities.append({"type": id_type, "value": value})
        return merged, identities

    def stored_profiles(self, workspace: str, profile_ids: Iterable[str]) -> list[StoredProfile]:
        """The profiles that still exist among ``profile_ids``, traits as stored."""
        found = []
        for pid, members in sorted(self.store.profiles_nodes(workspace, profile_ids).items()):
            merged, identities = self._merged(members)
            found.append(
                StoredProfile(
                    pid,
                    identities,
                    self.folder.traits(merged),
                    self.folder.computed_traits(merged),
                    merged.first_seen,
                    merged.last_seen,
                    merged.current_consent(),
                )
            )
        return found

    def profile_by_id(self, workspace: str, pid: str) -> Profile:
        members = self.store.profile_nodes(workspace, pid)
        if not members:
            raise NotFound(f"profile {pid!r} does not exist")
        merged, identities = self._merged(members)
        traits = self.folder.traits(merged)
        if self.decrypt is not None:
            traits = {name: self.decrypt(workspace, value) for name, value in traits.items()}
        return Profile(
            profile_id=pid,
            identities=identities,
            traits=traits,
            computed_traits=self.folder.computed_traits(merged),
            merges=self.store.merges(workspace, pid),
            consent=self.folder.consent(merged),
        )
