"""The processor's cache of identity nodes: profile id, evidence and state per identifier.

Identity resolution reads the stored node of every identifier a batch mentions, and folds
each event into its identifier's state; a person comes back every few minutes, so without a
cache the same nodes are read from the store batch after batch (a round trip each batch on
PostgreSQL). With it, a node is read from the profile store once, then kept as this
processor last wrote it.

The cache stays true to the store by the store's change sequence
(:meth:`~auie.profiles.store.base.ProfileStore.node_marks`), checked before each batch is
resolved, inside the identity section of a processor group:

* every write of nodes takes the next value of the sequence and stamps the nodes it writes
  or moves with it; a value this processor did not take means another member wrote, and the
  nodes stamped after the last value it saw are dropped
  (:meth:`~auie.profiles.store.base.ProfileStore.changed_nodes`);
* a transaction that deletes nodes (privacy erasure) counts itself; when the count moves,
  everything is dropped;
* a write that fails drops everything (what it would have written is unknown to the store).

Absent nodes are remembered too (a node another member creates later is stamped, so it
is dropped then). At most ``capacity`` nodes are kept; the ones least recently written or
read from the store go first.
"""

from __future__ import annotations

from collections.abc import Iterable

from auie.profiles.state import NodeState
from auie.profiles.store.base import ProfileStore, ProfileWrite, StoredNode

_Key = tuple[str, str]
#: A cached node: profile id, evidenced, state as JSON (None: no state), or None where the
#: store holds no node. Strings, bytes and booleans rather than ``NodeState`` objects: a
#: batch's worth of states (a dozen containers each) would survive into the cyclic garbage
#: collector's young generation and make each batch's first collection walk them, which
#: cost more CPU than the reads saved; the JSON is what the write encoded anyway.
_Entry = tuple[str, bool, bytes | None] | None
#: What a lookup of a key the cache does not hold returns.
_UNKNOWN: _Entry = ("", False, None)


class NodeCache:
    """See the module docstring. One per processor; not thread-safe."""

    def __init__(self, store: ProfileStore, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a node cache needs a capacity of at least one node")
        self.store = store
        self.capacity = capacity
        #: (workspace, node) → its entry (see ``_Entry``). Least recently written first.
        self._nodes: dict[_Key, _Entry] = {}
        #: The change sequence value and deletion count the cache is true to (None: unknown).
        self._sequence: int | None = None
        self._deletions = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        self._nodes.clear()
        self._sequence = None

    def check(self) -> None:
        """Drop what other writers changed since the last check or write (call it where no
        other member can write: inside the group's identity section)."""
        marks = self.store.node_marks()
        if self._sequence is None or marks.deletions != self._deletions:
            self._nodes.clear()
        elif marks.sequence != self._sequence:
            if marks.sequence < self._sequence:  # a different store behind the same URL
                self._nodes.clear()
            else:
                for key in self.store.changed_nodes(self._sequence):
                    self._nodes.pop(key, None)
        self._sequence, self._deletions = marks.sequence, marks.deletions

    def nodes(self, workspace: str, keys: Iterable[str]) -> dict[str, StoredNode]:
        """The stored nodes among ``keys``, as :meth:`ProfileStore.nodes` returns them."""
        found: dict[str, StoredNode] = {}
        missing: list[str] = []
        cached = self._nodes
        asked = 0
        for key in keys:
            asked += 1
            hit = cached.get((workspace, key), _UNKNOWN)
            if hit is _UNKNOWN:
                missing.append(key)
            elif hit is not None:
                profile, evidenced, state = hit
                found[key] = StoredNode(
                    key, profile, evidenced, None if state is None else NodeState.decode(state)
                )
        self.hits += asked - len(missing)
        if missing:
            self.misses += len(missing)
            loaded = self.store.nodes(workspace, missing)
            for key in missing:
                known = loaded.get(key)
                cached[(workspace, key)] = (
                    None
                    if known is None
                    else (
                        known.profile_id,
                        known.evidenced,
                        None if known.state is None else known.state.encode(),
                    )
                )
            found.update(loaded)
            self._trim()
        return found

    def write(self, change: ProfileWrite) -> int | None:
        """:meth:`ProfileStore.write` ``change`` and take in what it stored; if the write
        fails, forget everything."""
        try:
            sequence = self.store.write(change)
        except BaseException:
            self.clear()
            raise
        self.written(change, sequence)
        return sequence

    def written(self, change: ProfileWrite, sequence: int | None) -> None:
        """Take in what a successful :meth:`ProfileStore.write` of ``change`` stored; it took
        the value ``sequence`` of the change sequence."""
        if sequence is None:
            return
        if self._sequence is None or sequence != self._sequence + 1:
            # Another writer took a value since the last check: what it wrote is unknown.
            self._nodes.clear()
            self._sequence = None
            return
        self._sequence = sequence
        cached = self._nodes
        for row in change.nodes:
            key = (row.workspace_id, row.node)
            cached.pop(key, None)  # to the end: most recently written
            state = row.encoded
            if state is None and row.state is not None:
                state = row.state.encode()
            cached[key] = (row.profile_id, row.evidenced, state)
        for workspace, node, profile in change.reassign:
            known = cached.pop((workspace, node), None)
            if known is not None:
                cached[(workspace, node)] = (profile, known[1], known[2])
        self._trim()

    def _trim(self) -> None:
        excess = len(self._nodes) - self.capacity
        if excess > 0:
            # Drop a tenth more than needed, so trimming runs once per many batches.
            excess += self.capacity // 10
            for key in list(self._nodes)[:excess]:
                del self._nodes[key]
