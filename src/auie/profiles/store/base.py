"""The ProfileStore interface: the identity graph, node states, merges and the processor's
own bookkeeping (applied log offsets, dead letters, tracking-plan violations).

Everything one processed batch changes is written by :meth:`ProfileStore.write` in one
transaction together with the log offsets it covers, which makes replaying a batch after a
crash a no-op.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from auie.profiles.identity import Edge, Merge
from auie.profiles.state import Consent, NodeState


class StoredNode(msgspec.Struct, frozen=True, gc=False):
    node: str
    profile_id: str
    evidenced: bool
    state: NodeState | None


@dataclass(frozen=True, slots=True)
class NodeMarks:
    """See :meth:`ProfileStore.node_marks`."""

    #: The change sequence's last value (the last write that wrote nodes).
    sequence: int
    #: Transactions that deleted nodes (privacy erasure) so far.
    deletions: int


class NodeChange(msgspec.Struct, frozen=True, gc=False):
    """A node as a change export sees it (see :meth:`ProfileStore.moved_nodes`)."""

    workspace_id: str
    node: str
    profile_id: str
    #: Change sequence value of the write that last moved (or created) the node.
    moved_seq: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ClosedProfile:
    """A profile merged into another (see :meth:`ProfileStore.closed_profiles`)."""

    workspace_id: str
    profile_id: str
    into_profile: str
    #: Change sequence value of the write that closed it.
    closed_seq: int


class NodeRow(msgspec.Struct, frozen=True, gc=False):
    """A node to insert or replace (or, ``kept``, whose state to update)."""

    workspace_id: str
    node: str
    profile_id: str
    evidenced: bool
    state: NodeState | None
    #: ``state.encode()``, when the writer has it (the store encodes the state otherwise).
    encoded: bytes | None = None
    #: The writer read the node from the store with this same profile id, in the section
    #: its write is part of: the store may update the node's state and evidence alone.
    #: (A node deleted meanwhile, by an erasure, then stays deleted.)
    kept: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    workspace_id: str
    stage: str
    code: str
    message: str
    payload: str
    source_id: str | None
    log_partition: int | None
    log_offset: int | None
    created_at: datetime
    replayed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Violation:
    """A tracking-plan violation to count."""

    workspace_id: str
    event_key: str
    plan_version: int
    blocked: bool
    message: str


@dataclass(frozen=True, slots=True)
class ViolationCount:
    event_key: str
    plan_version: int
    violations: int
    blocked: int
    last_message: str
    last_seen_at: datetime


@dataclass(slots=True)
class ProfileWrite:
    """All changes of one processed batch; written atomically."""

    edges: list[tuple[str, Edge]] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    #: Nodes whose profile changed but whose state did not: (workspace, node, profile id).
    reassign: list[tuple[str, str, str]] = field(default_factory=list)
    #: Profiles whose merge history is replaced: (workspace, profile id) → merges.
    merges: dict[tuple[str, str], Sequence[Merge]] = field(default_factory=dict)
    #: Profiles left without identifiers by a merge: (workspace, profile id, into profile).
    closed: list[tuple[str, str, str]] = field(default_factory=list)
    #: (consumer, topic) → {partition: next offset}.
    offsets: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


class ProfileStore(ABC):
    """Persistence of profiles; one behaviour suite runs on every backend."""

    @abstractmethod
    def offsets(self, consumer: str, topic: str) -> dict[int, int]:
        """Next log offset per partition already applied by ``consumer``."""

    @abstractmethod
    def nodes(self, workspace: str, keys: Iterable[str]) -> dict[str, StoredNode]:
        """The stored nodes among ``keys``; their states are new objects at every call
        (the caller may change them)."""

    @abstractmethod
    def edges(
        self, workspace: str, pairs: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Edge]:
        """Stored edges for (a, b, kind) pairs."""

    @abstractmethod
    def neighbours(self, workspace: str, keys: Iterable[str]) -> list[Edge]:
        """Every stored edge touching one of ``keys``."""

    @abstractmethod
    def profile_nodes(self, workspace: str, profile_id: str) -> list[StoredNode]:
        """Every node of a profile."""

    @abstractmethod
    def merges(self, workspace: str, profile_id: str) -> list[Merge]:
        """A profile's merge history, oldest first."""

    @abstractmethod
    def write(self, change: ProfileWrite) -> int | None:
        """Apply every change atomically; the change sequence value the write took (None
        when it wrote no node, reassigned none and closed no profile)."""

    @abstractmethod
    def change_sequence(self) -> int:
        """The change sequence's last value: every :meth:`write` that writes nodes takes
        the next one, and a reader seeing value n sees every such write numbered <= n."""

    @abstractmethod
    def node_marks(self) -> NodeMarks:
        """The change sequence's value and the count of node deletions (erasures), read
        together: what a cache of nodes compares with what it last saw."""

    @abstractmethod
    def changed_nodes(self, after: int) -> list[tuple[str, str]]:
        """(workspace, node) of every node written (or moved) by a write numbered > ``after``."""

    @abstractmethod
    def moved_nodes(self, after: int, upto: int) -> list[NodeChange]:
        """Nodes of every workspace whose last move (a new profile, or creation) was by a
        write numbered in ``(after, upto]``, in that order."""

    @abstractmethod
    def changed_profiles(self, after: int, upto: int) -> dict[tuple[str, str], int]:
        """(workspace, profile id) of the nodes last written by a write numbered in
        ``(after, upto]``, each with the highest such number."""

    @abstractmethod
    def closed_profiles(self, after: int, upto: int) -> list[ClosedProfile]:
        """Profiles of every workspace closed (merged into another) by a write numbered in
        ``(after, upto]``, in that order. A profile closed again after it came back is
        listed once, with its latest closing."""

    @abstractmethod
    def workspaces(self) -> list[str]:
        """Workspaces that have identity nodes."""

    @abstractmethod
    def profiles_nodes(
        self, workspace: str, profile_ids: Iterable[str]
    ) -> dict[str, list[StoredNode]]:
        """Every node of each of the profiles (profiles without nodes are absent)."""

    @abstractmethod
    def consents(self, workspace: str, keys: Iterable[str]) -> dict[str, list[Consent]]:
        """For each of these nodes, the consent of every node of the profile it belongs to
        now that holds a statement (nodes whose profile holds none, and unknown nodes, are
        absent); read in one snapshot, without the nodes' states."""

    @abstractmethod
    def profile_ids(self, workspace: str) -> list[str]:
        """Every profile id of a workspace."""

    @abstractmethod
    def dead_letters(
        self,
        workspace: str | None,
        *,
        pending: bool = True,
        stage: str | None = None,
        code: str | None = None,
        limit: int = 1000,
        after: tuple[datetime, str] | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first; ``pending`` ones have not been replayed. ``stage`` and
        ``code`` filter before ``limit`` counts; ``after`` (``created_at``, ``id``) of the last
        letter of a page gives the next page."""

    @abstractmethod
    def count_dead_letters(self) -> int:
        """Dead letters of every workspace, replayed or not."""

    @abstractmethod
    def mark_replayed(self, ids: Sequence[str], at: datetime) -> None:
        """Record that dead letters were sent back through the processor."""

    @abstractmethod
    def violations(self, workspace: str) -> list[ViolationCount]:
        """Tracking-plan violation counts by event and plan version."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`~auie.errors.StorageUnavailable` if the store cannot be used."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def state_json(state: NodeState | None) -> Mapping[str, Any] | None:
    return None if state is None else state.to_json()
