"""The processor's node cache (:mod:`auie.profiles.nodecache`) on every profile store
backend: it serves what it read or wrote, and forgets what another writer changed, what
erasure deleted and what a failed write left unknown."""

from __future__ import annotations

import pytest

from auie.errors import StorageUnavailable
from auie.profiles.nodecache import NodeCache
from auie.profiles.state import NodeState
from auie.profiles.store.base import NodeRow, ProfileStore, ProfileWrite
from auie.profiles.store.sql import SqlProfileStore

WS = "ws_one"


def state(count: int) -> NodeState:
    return NodeState(first_seen=1_000, last_seen=2_000, counts={"track": count})


def nodes_write(*rows: tuple[str, str, int]) -> ProfileWrite:
    return ProfileWrite(nodes=[NodeRow(WS, key, pid, True, state(n)) for key, pid, n in rows])


class CountingStore:
    """The real store, counting the node reads that reach it."""

    def __init__(self, store: ProfileStore) -> None:
        self.store, self.reads = store, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def nodes(self, workspace: str, keys: object) -> object:
        wanted = list(keys)  # type: ignore[call-overload]
        self.reads += len(wanted)
        return self.store.nodes(workspace, wanted)


def processor_write(cache: NodeCache, store: ProfileStore, change: ProfileWrite) -> None:
    """What the processor does for a batch: check, (resolve,) write, tell the cache."""
    cache.check()
    assert cache.store is store
    cache.write(change)


def test_writes_return_the_sequence_value_they_took(profile_store: ProfileStore) -> None:
    before = profile_store.node_marks()
    assert profile_store.write(ProfileWrite(offsets={("profiles", "events"): {0: 1}})) is None
    taken = profile_store.write(nodes_write(("user_id:a", "p_a", 1)))
    assert taken == before.sequence + 1
    assert profile_store.node_marks().sequence == taken == profile_store.change_sequence()
    assert profile_store.changed_nodes(before.sequence) == [(WS, "user_id:a")]
    assert profile_store.changed_nodes(taken) == []


def test_nodes_are_read_once_then_served_as_written(profile_store: ProfileStore) -> None:
    profile_store.write(nodes_write(("user_id:a", "p_a", 1)))
    counting = CountingStore(profile_store)
    cache = NodeCache(counting, 100)  # type: ignore[arg-type]
    cache.check()
    first = cache.nodes(WS, ["user_id:a", "user_id:new"])
    assert set(first) == {"user_id:a"}
    assert first["user_id:a"].state == state(1)
    assert counting.reads == 2
    cache.check()
    cache.write(nodes_write(("user_id:a", "p_a", 2)))
    again = cache.nodes(WS, ["user_id:a", "user_id:new"])  # absence is remembered too
    assert counting.reads == 2
    assert again["user_id:a"].state == state(2)
    assert again == profile_store.nodes(WS, ["user_id:a", "user_id:new"])


def test_what_another_writer_changed_is_read_again(profile_store: ProfileStore) -> None:
    cache = NodeCache(profile_store, 100)
    processor_write(
        cache, profile_store, nodes_write(("user_id:a", "p_a", 1), ("user_id:b", "p_b", 1))
    )
    assert cache.nodes(WS, ["user_id:a", "user_id:b", "user_id:c"])["user_id:b"].state == state(1)
    # another member of the group: moves b, creates c
    profile_store.write(
        ProfileWrite(
            nodes=[NodeRow(WS, "user_id:c", "p_a", True, state(7))],
            reassign=[(WS, "user_id:b", "p_a")],
        )
    )
    cache.check()
    seen = cache.nodes(WS, ["user_id:a", "user_id:b", "user_id:c"])
    assert seen == profile_store.nodes(WS, ["user_id:a", "user_id:b", "user_id:c"])
    assert seen["user_id:b"].profile_id == "p_a"
    assert seen["user_id:c"].state == state(7)


def test_a_write_by_someone_else_in_between_empties_the_cache(
    profile_store: ProfileStore,
) -> None:
    cache = NodeCache(profile_store, 100)
    processor_write(cache, profile_store, nodes_write(("user_id:a", "p_a", 1)))
    cache.nodes(WS, ["user_id:a"])
    cache.check()
    profile_store.write(nodes_write(("user_id:a", "p_x", 5)))  # not seen by check()
    mine = nodes_write(("user_id:b", "p_b", 1))
    cache.written(mine, profile_store.write(mine))
    assert len(cache) == 0
    cache.check()
    assert cache.nodes(WS, ["user_id:a"])["user_id:a"].profile_id == "p_x"


def test_deletions_and_failed_writes_empty_the_cache(profile_store: ProfileStore) -> None:
    assert isinstance(profile_store, SqlProfileStore)
    cache = NodeCache(profile_store, 100)
    processor_write(cache, profile_store, nodes_write(("user_id:a", "p_a", 1)))
    cache.nodes(WS, ["user_id:a"])
    with profile_store.engine.begin() as conn:  # what erasure does with its deletes
        profile_store.count_deletion(conn)
    cache.check()
    assert len(cache) == 0
    cache.nodes(WS, ["user_id:a"])
    bad = nodes_write(("user_id:a", "p_a", 2))
    bad.nodes.append(NodeRow(WS, "user_id:b", None, True, None))  # type: ignore[arg-type]
    cache.check()
    with pytest.raises(StorageUnavailable):
        processor_write(cache, profile_store, bad)
    assert len(cache) == 0
    assert cache.nodes(WS, ["user_id:a"])["user_id:a"].state == state(1)


def test_the_cache_keeps_at_most_its_capacity(profile_store: ProfileStore) -> None:
    cache = NodeCache(profile_store, 10)
    processor_write(
        cache, profile_store, nodes_write(*((f"user_id:{i}", f"p_{i}", 1) for i in range(25)))
    )
    assert len(cache) <= 10
    cache.nodes(WS, [f"user_id:{i}" for i in range(25)])
    assert len(cache) <= 10
    with pytest.raises(ValueError, match="capacity"):
        NodeCache(profile_store, 0)


def test_moves_of_nodes_it_holds_or_not_are_taken_in(profile_store: ProfileStore) -> None:
    cache = NodeCache(profile_store, 100)
    processor_write(
        cache, profile_store, nodes_write(("user_id:a", "p_a", 1), ("user_id:b", "p_b", 1))
    )
    profile_store.write(nodes_write(("user_id:c", "p_c", 1)))  # another member's node
    cache.check()
    # one write: a's state changes and a moves; b and c (c never read here) move too
    change = nodes_write(("user_id:a", "p_a", 2))
    change.reassign += [
        (WS, "user_id:a", "p_z"),
        (WS, "user_id:b", "p_z"),
        (WS, "user_id:c", "p_z"),
    ]
    processor_write(cache, profile_store, change)
    keys = ["user_id:a", "user_id:b", "user_id:c"]
    seen = cache.nodes(WS, keys)
    assert seen == profile_store.nodes(WS, keys)
    assert {node.profile_id for node in seen.values()} == {"p_z"}
    assert seen["user_id:a"].state == state(2)
