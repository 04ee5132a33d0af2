"""One behaviour suite for the ProfileStore interface, run against every backend (SQLite,
PostgreSQL): offsets, nodes, edges, neighbours, merges, dead letters, violations, and the
atomicity of :meth:`ProfileStore.write`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table

from auie import db
from auie.errors import StorageUnavailable
from auie.ids import utcnow
from auie.profiles.identity import Edge, Merge
from auie.profiles.state import NodeState
from auie.profiles.store.base import (
    ClosedProfile,
    DeadLetter,
    NodeRow,
    ProfileStore,
    ProfileWrite,
    StoredNode,
    Violation,
)
from auie.profiles.store.sql import MIGRATIONS, SqlProfileStore
from auie.profiles.store.tables import metadata

WS = "ws_one"
OTHER = "ws_two"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def state(**traits: object) -> NodeState:
    result = NodeState(first_seen=1_000, last_seen=2_000, counts={"identify": 1})
    result.traits = {k: (v, (1_500, "m-1")) for k, v in traits.items()}
    result.sessions = [[1_000, 2_000]]
    result.last_page = ({"url": "https://example.com/"}, (1_800, "m-2"))
    result.computed = {"revenue": "12.50", "orders": 3}
    return result


def row(key: str, pid: str, *, evidenced: bool = True, ws: str = WS, **traits: object) -> NodeRow:
    return NodeRow(ws, key, pid, evidenced, state(**traits) if traits else None)


def letter(
    letter_id: str,
    *,
    ws: str = WS,
    minutes: int = 0,
    stage: str = "plan",
    code: str = "plan_violation",
    payload: str = "{}",
) -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        workspace_id=ws,
        stage=stage,
        code=code,
        message=f"problem of {letter_id}",
        payload=payload,
        source_id="src_1",
        log_partition=1,
        log_offset=42,
        created_at=T0 + timedelta(minutes=minutes),
    )


def write(store: ProfileStore, **parts: object) -> None:
    store.write(ProfileWrite(**parts))  # type: ignore[arg-type]


# -- offsets ------------------------------------------------------------------------------


def test_offsets_round_trip_per_consumer_and_topic(profile_store: ProfileStore) -> None:
    assert profile_store.offsets("profiles", "events") == {}
    write(
        profile_store,
        offsets={
            ("profiles", "events"): {0: 10, 1: 7},
            ("profiles", "deadletters"): {0: 3},
            ("other", "events"): {0: 99},
        },
    )
    assert profile_store.offsets("profiles", "events") == {0: 10, 1: 7}
    assert profile_store.offsets("profiles", "deadletters") == {0: 3}
    assert profile_store.offsets("other", "events") == {0: 99}
    assert profile_store.offsets("other", "deadletters") == {}
    # Later writes move the partitions they name and leave the others alone.
    write(profile_store, offsets={("profiles", "events"): {1: 12, 2: 5}})
    assert profile_store.offsets("profiles", "events") == {0: 10, 1: 12, 2: 5}
    assert profile_store.offsets("other", "events") == {0: 99}
    big = 2**40
    write(profile_store, offsets={("profiles", "events"): {0: big}})
    assert profile_store.offsets("profiles", "events")[0] == big


# -- nodes --------------------------------------------------------------------------------


def test_nodes_upsert_and_read(profile_store: ProfileStore) -> None:
    assert profile_store.nodes(WS, ["user_id:u1"]) == {}
    write(
        profile_store,
        nodes=[
            row("user_id:u1", "p_1", plan="pro", email="a@example.com"),
            row("anonymous_id:a1", "p_1"),
            row("anonymous_id:named", "p_1", evidenced=False),
            row("user_id:u1", "p_other", ws=OTHER, plan="free"),
        ],
    )
    found = profile_store.nodes(WS, ["user_id:u1", "anonymous_id:a1", "anonymous_id:named", "x"])
    assert set(found) == {"user_id:u1", "anonymous_id:a1", "anonymous_id:named"}
    assert found["user_id:u1"] == StoredNode(
        "user_id:u1", "p_1", True, state(plan="pro", email="a@example.com")
    )
    assert found["anonymous_id:a1"] == StoredNode("anonymous_id:a1", "p_1", True, None)
    assert found["anonymous_id:named"].evidenced is False
    # Workspaces never see each other's nodes.
    assert profile_store.nodes(OTHER, ["user_id:u1"])["user_id:u1"].profile_id == "p_other"
    assert profile_store.nodes("ws_none", ["user_id:u1"]) == {}

    # An upsert replaces profile, evidence and state.
    write(profile_store, nodes=[row("anonymous_id:named", "p_2", plan="team")])
    again = profile_store.nodes(WS, ["anonymous_id:named"])["anonymous_id:named"]
    assert again == StoredNode("anonymous_id:named", "p_2", True, state(plan="team"))
    assert [n.node for n in profile_store.profile_nodes(WS, "p_1")] == [
        "anonymous_id:a1",
        "user_id:u1",
    ]
    assert profile_store.profile_nodes(WS, "p_missing") == []


def test_kept_nodes_update_their_state_and_nothing_else(profile_store: ProfileStore) -> None:
    """A row the writer read with the same profile (``kept``) updates state and evidence;
    the node's move mark stays, its change mark moves, and a kept row for a node that is not
    stored (deleted meanwhile) creates nothing."""
    write(profile_store, nodes=[row("user_id:u1", "p_1", plan="pro")])
    created = profile_store.change_sequence()
    kept = NodeRow(WS, "user_id:u1", "p_1", False, state(plan="team"), kept=True)
    gone = NodeRow(WS, "user_id:gone", "p_1", True, state(plan="x"), kept=True)
    write(profile_store, nodes=[kept, gone])
    found = profile_store.nodes(WS, ["user_id:u1", "user_id:gone"])
    assert found == {"user_id:u1": StoredNode("user_id:u1", "p_1", False, state(plan="team"))}
    latest = profile_store.change_sequence()
    assert [c.node for c in profile_store.moved_nodes(0, latest)] == ["user_id:u1"]
    assert profile_store.moved_nodes(created, latest) == []
    assert profile_store.changed_profiles(created, latest) == {(WS, "p_1"): latest}


def test_node_values_survive_exactly(profile_store: ProfileStore) -> None:
    """Unicode, colons and long values in identifiers; every state part round-trips."""
    key = "email:zoë:+tag@exämple.com"
    value = NodeState(
        traits={"name": ("Zoë ✓", (5, "m")), "nested": ({"a": [1, 2.5, None, True]}, (6, "n"))},
        first_seen=-5,
        last_seen=2**45,
        counts={"Order Completed": 3, "page": 1},
        sessions=[[1, 2], [3_000_000, 3_000_001]],
        last_page=None,
        computed={"total": "0.30000000000000000001", "first_plan": ["pro", [1, "m"]]},
    )
    long_key = "user_id:" + "x" * 512
    write(profile_store, nodes=[NodeRow(WS, key, "p_z", True, value), row(long_key, "p_z")])
    found = profile_store.nodes(WS, [key, long_key])
    assert found[key].state == value
    assert found[long_key].profile_id == "p_z"


def test_many_nodes_and_edges_are_read_in_chunks(profile_store: ProfileStore) -> None:
    nodes = [row(f"anonymous_id:a{i}", f"p_{i % 7}") for i in range(1_000)]
    edges = [
        (WS, Edge.make(f"anonymous_id:a{i}", f"user_id:u{i % 50}", "link", i, f"m{i}"))
        for i in range(600)
    ]
    write(profile_store, nodes=nodes, edges=edges)
    found = profile_store.nodes(WS, [n.node for n in nodes] + ["anonymous_id:none"])
    assert len(found) == 1_000
    assert all(found[n.node].profile_id == n.profile_id for n in nodes)
    pairs = [e.pair for _, e in edges] + [("x", "y", "link")]
    stored = profile_store.edges(WS, pairs)
    assert stored == {e.pair: e for _, e in edges}
    touching = profile_store.neighbours(WS, [f"user_id:u{i}" for i in range(50)])
    assert sorted(touching) == sorted(e for _, e in edges)


def test_reassign_moves_nodes_and_keeps_their_state(profile_store: ProfileStore) -> None:
    write(
        profile_store,
        nodes=[row("user_id:u1", "p_1", plan="pro"), row("anonymous_id:a1", "p_1")],
    )
    write(profile_store, reassign=[(WS, "user_id:u1", "p_2"), (OTHER, "anonymous_id:a1", "p_9")])
    found = profile_store.nodes(WS, ["user_id:u1", "anonymous_id:a1"])
    assert found["user_id:u1"] == StoredNode("user_id:u1", "p_2", True, state(plan="pro"))
    # A reassignment in another workspace touches nothing here (and creates nothing there).
    assert found["anonymous_id:a1"].profile_id == "p_1"
    assert profile_store.nodes(OTHER, ["anonymous_id:a1"]) == {}


# -- edges --------------------------------------------------------------------------------


def test_edges_keep_the_earliest_statement(profile_store: ProfileStore) -> None:
    a, b = "anonymous_id:a1", "user_id:u1"
    first = Edge.make(a, b, "link", 1_000, "m-5")
    write(profile_store, edges=[(WS, first)])
    assert profile_store.edges(WS, [first.pair]) == {first.pair: first}

    # Later events that state the same edge change nothing ...
    for later in (Edge.make(b, a, "link", 2_000, "m-0"), Edge.make(a, b, "link", 1_000, "m-6")):
        write(profile_store, edges=[(WS, later)])
        assert profile_store.edges(WS, [first.pair])[first.pair] == first
    # ... an earlier one (by time, then messageId) replaces it.
    tie = Edge.make(a, b, "link", 1_000, "m-4")
    write(profile_store, edges=[(WS, tie)])
    assert profile_store.edges(WS, [first.pair])[first.pair] == tie
    earlier = Edge.make(a, b, "link", 999, "m-9")
    write(profile_store, edges=[(WS, earlier)])
    assert profile_store.edges(WS, [first.pair])[first.pair] == earlier

    # The kind is part of the key; workspaces are separate.
    alias = Edge.make(a, b, "alias", 5_000, "m-a")
    write(profile_store, edges=[(WS, alias), (OTHER, Edge.make(a, b, "link", 7, "m-o"))])
    stored = profile_store.edges(WS, [first.pair, alias.pair])
    assert stored == {first.pair: earlier, alias.pair: alias}
    assert profile_store.edges(OTHER, [first.pair])[first.pair].ts == 7
    assert profile_store.edges(WS, [("x", "y", "link")]) == {}


def test_neighbours_are_every_edge_touching_the_keys(profile_store: ProfileStore) -> None:
    e1 = Edge.make("anonymous_id:a1", "user_id:u1", "link", 1, "m1")
    e2 = Edge.make("user_id:u1", "email:u1@example.com", "link", 2, "m2")
    e3 = Edge.make("user_id:u0", "user_id:u1", "alias", 3, "m3")
    e4 = Edge.make("anonymous_id:a2", "user_id:u2", "link", 4, "m4")
    write(profile_store, edges=[(WS, e) for e in (e1, e2, e3, e4)])
    write(
        profile_store, edges=[(OTHER, Edge.make("user_id:u1", "anonymous_id:zz", "link", 1, "o"))]
    )
    # The key is on either side of the stored pair (a < b).
    assert profile_store.neighbours(WS, ["user_id:u1"]) == sorted([e1, e2, e3])
    assert profile_store.neighbours(WS, ["anonymous_id:a1", "user_id:u2"]) == sorted([e1, e4])
    assert profile_store.neighbours(WS, ["anonymous_id:nobody"]) == []
    assert profile_store.neighbours(WS, []) == []


# -- merges -------------------------------------------------------------------------------


def test_merges_are_replaced_per_profile(profile_store: ProfileStore) -> None:
    m1 = Merge("p_a", "p_1", "m-1", 1_000, "link")
    m2 = Merge("p_b", "p_1", "m-2", 2_000, "alias")
    m3 = Merge("p_c", "p_2", "m-3", 500, "link")
    write(profile_store, merges={(WS, "p_1"): [m2, m1], (WS, "p_2"): [m3], (OTHER, "p_1"): [m3]})
    # Stored in the order given.
    assert profile_store.merges(WS, "p_1") == [m2, m1]
    assert profile_store.merges(WS, "p_2") == [m3]
    assert profile_store.merges(OTHER, "p_1") == [m3]

    write(profile_store, merges={(WS, "p_1"): [m1]})
    assert profile_store.merges(WS, "p_1") == [m1]
    write(profile_store, merges={(WS, "p_2"): []})
    assert profile_store.merges(WS, "p_2") == []
    assert profile_store.merges(OTHER, "p_1") == [m3]
    assert profile_store.merges(WS, "p_none") == []


def test_closed_profiles_are_numbered_by_the_change_sequence(profile_store: ProfileStore) -> None:
    before = profile_store.change_sequence()
    write(profile_store, closed=[(WS, "p_a", "p_1"), (OTHER, "p_a", "p_2")])
    first = profile_store.change_sequence()
    assert first == before + 1
    write(profile_store, closed=[(WS, "p_b", "p_1")])
    assert profile_store.closed_profiles(before, first) == [
        ClosedProfile(WS, "p_a", "p_1", first),
        ClosedProfile(OTHER, "p_a", "p_2", first),
    ]
    assert [c.profile_id for c in profile_store.closed_profiles(first, first + 1)] == ["p_b"]
    # Closed again (after it came back): listed once, with the latest closing.
    write(profile_store, closed=[(WS, "p_a", "p_3")])
    assert profile_store.closed_profiles(first + 1, first + 2) == [
        ClosedProfile(WS, "p_a", "p_3", first + 2)
    ]
    assert [c.profile_id for c in profile_store.closed_profiles(before, first)] == ["p_a"]


# -- profile ids --------------------------------------------------------------------------


def test_profile_ids_lists_profiles_with_evidenced_nodes(profile_store: ProfileStore) -> None:
    assert profile_store.profile_ids(WS) == []
    write(
        profile_store,
        nodes=[
            row("user_id:u1", "p_b"),
            row("anonymous_id:a1", "p_b"),
            row("user_id:u2", "p_a"),
            row("anonymous_id:named", "p_c", evidenced=False),
            row("user_id:u9", "p_z", ws=OTHER),
        ],
    )
    assert profile_store.profile_ids(WS) == ["p_a", "p_b"]
    assert profile_store.profile_ids(OTHER) == ["p_z"]
    write(profile_store, nodes=[row("anonymous_id:named", "p_c")])
    assert profile_store.profile_ids(WS) == ["p_a", "p_b", "p_c"]


# -- dead letters -------------------------------------------------------------------------


def test_dead_letters_are_stored_once_per_id(profile_store: ProfileStore) -> None:
    first = letter("dl-1", payload='{"userId":"u1"}')
    write(profile_store, dead_letters=[first, letter("dl-2", minutes=1), first])
    # Writing the same id again (a batch read twice after a crash) keeps the first one.
    write(profile_store, dead_letters=[letter("dl-1", minutes=5, stage="decode")])
    stored = profile_store.dead_letters(WS)
    assert [d.id for d in stored] == ["dl-1", "dl-2"]
    assert stored[0] == first
    assert profile_store.count_dead_letters() == 2
    assert stored[0].created_at.tzinfo is not None


def test_dead_letters_pending_replayed_and_filters(profile_store: ProfileStore) -> None:
    write(
        profile_store,
        dead_letters=[
            letter("dl-c", minutes=3),
            letter("dl-a", minutes=1),
            letter("dl-b", minutes=2),
            letter("dl-x", minutes=0, ws=OTHER),
        ],
    )
    # Oldest first, per workspace, or all with workspace None.
    assert [d.id for d in profile_store.dead_letters(WS)] == ["dl-a", "dl-b", "dl-c"]
    assert [d.id for d in profile_store.dead_letters(None)] == ["dl-x", "dl-a", "dl-b", "dl-c"]
    assert [d.id for d in profile_store.dead_letters(WS, limit=2)] == ["dl-a", "dl-b"]

    at = T0 + timedelta(hours=1)
    profile_store.mark_replayed(["dl-a", "dl-c", "dl-unknown"], at)
    assert [d.id for d in profile_store.dead_letters(WS)] == ["dl-b"]
    everything = profile_store.dead_letters(WS, pending=False)
    assert [(d.id, d.replayed_at) for d in everything] == [
        ("dl-a", at),
        ("dl-b", None),
        ("dl-c", at),
    ]
    assert [d.id for d in profile_store.dead_letters(OTHER)] == ["dl-x"]
    profile_store.mark_replayed([], at)
    assert [d.id for d in profile_store.dead_letters(WS)] == ["dl-b"]


def test_dead_letters_filter_by_stage_and_code_before_the_limit(
    profile_store: ProfileStore,
) -> None:
    older = [
        letter(f"dl-{i:02d}", minutes=i, stage="collect", code="missing_field") for i in range(20)
    ]
    write(
        profile_store,
        dead_letters=[
            *older,
            letter("dl-plan", minutes=30),
            letter("dl-plan-x", minutes=31, code="other"),
            letter("dl-too-big", minutes=32, stage="collect", code="event_too_large"),
        ],
    )
    assert [d.id for d in profile_store.dead_letters(WS, stage="plan", limit=5)] == [
        "dl-plan",
        "dl-plan-x",
    ]
    plan = profile_store.dead_letters(WS, stage="plan", code="plan_violation", limit=5)
    assert [d.id for d in plan] == ["dl-plan"]
    assert [d.id for d in profile_store.dead_letters(WS, code="event_too_large", limit=1)] == [
        "dl-too-big"
    ]
    assert [d.id for d in profile_store.dead_letters(WS, stage="collect", limit=2)] == [
        "dl-00",
        "dl-01",
    ]
    profile_store.mark_replayed(["dl-plan"], T0 + timedelta(hours=1))
    assert profile_store.dead_letters(WS, stage="plan", code="plan_violation") == []
    assert len(profile_store.dead_letters(WS, pending=False, stage="plan")) == 2


def test_dead_letters_page_after_a_letter(profile_store: ProfileStore) -> None:
    """Pages by (created_at, id): letters of the same instant are neither skipped nor
    repeated (replay pages past letters that still fail)."""
    same = [letter(f"dl-s{i}", minutes=5) for i in range(3)]
    write(
        profile_store,
        dead_letters=[letter("dl-first", minutes=1), *same, letter("dl-z", minutes=9)],
    )
    seen: list[str] = []
    after = None
    while page := profile_store.dead_letters(WS, limit=2, after=after):
        seen += [d.id for d in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == ["dl-first", "dl-s0", "dl-s1", "dl-s2", "dl-z"]


# -- violations ---------------------------------------------------------------------------


def test_violations_are_counted_per_event_and_version(profile_store: ProfileStore) -> None:
    assert profile_store.violations(WS) == []
    before = utcnow()
    write(
        profile_store,
        violations=[
            Violation(WS, "Order Completed", 1, False, "total: not a number"),
            Violation(WS, "Order Completed", 1, True, "total: missing"),
            Violation(WS, "Order Completed", 2, True, "v2 problem"),
            Violation(WS, "identify", 1, False, "email: bad"),
            Violation(OTHER, "Order Completed", 1, True, "elsewhere"),
        ],
    )
    write(profile_store, violations=[Violation(WS, "Order Completed", 1, True, "latest")])
    counts = profile_store.violations(WS)
    assert [(c.event_key, c.plan_version, c.violations, c.blocked) for c in counts] == [
        ("Order Completed", 1, 3, 2),
        ("Order Completed", 2, 1, 1),
        ("identify", 1, 1, 0),
    ]
    assert counts[0].last_message == "latest"
    assert counts[1].last_message == "v2 problem"
    for count in counts:
        assert count.last_seen_at.tzinfo is not None
        assert before - timedelta(seconds=5) <= count.last_seen_at <= utcnow()
    assert [(c.violations, c.blocked) for c in profile_store.violations(OTHER)] == [(1, 1)]


# -- atomicity ----------------------------------------------------------------------------


def _everything() -> ProfileWrite:
    return ProfileWrite(
        edges=[(WS, Edge.make("anonymous_id:a1", "user_id:u1", "link", 1, "m1"))],
        nodes=[row("user_id:u1", "p_1", plan="pro"), row("anonymous_id:a1", "p_1")],
        merges={(WS, "p_1"): [Merge("p_2", "p_1", "m1", 1, "link")]},
        offsets={("profiles", "events"): {0: 100}},
        dead_letters=[letter("dl-ok")],
        violations=[Violation(WS, "Signed Up", 1, False, "x")],
    )


def _assert_empty(store: ProfileStore) -> None:
    assert store.offsets("profiles", "events") == {}
    assert store.nodes(WS, ["user_id:u1", "anonymous_id:a1"]) == {}
    assert store.edges(WS, [("anonymous_id:a1", "user_id:u1", "link")]) == {}
    assert store.merges(WS, "p_1") == []
    assert store.profile_ids(WS) == []
    assert store.dead_letters(WS, pending=False) == []
    assert store.violations(WS) == []


@pytest.mark.parametrize("broken", ["dead_letter", "node", "merge"])
def test_a_failing_write_leaves_nothing_behind(profile_store: ProfileStore, broken: str) -> None:
    change = _everything()
    if broken == "dead_letter":  # the last-but-one part fails: a NOT NULL column is NULL
        change.dead_letters.append(letter("dl-bad", payload=None))  # type: ignore[arg-type]
    elif broken == "node":
        change.nodes.append(NodeRow(WS, "user_id:u2", None, True, None))  # type: ignore[arg-type]
    else:
        change.merges[(WS, "p_3")] = [Merge("p_4", None, "m", 1, "link")]  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        profile_store.write(change)
    _assert_empty(profile_store)

    # The store is still usable, and the same change without the bad row goes through.
    profile_store.write(_everything())
    assert profile_store.offsets("profiles", "events") == {0: 100}
    assert set(profile_store.nodes(WS, ["user_id:u1", "anonymous_id:a1"])) == {
        "user_id:u1",
        "anonymous_id:a1",
    }
    assert len(profile_store.dead_letters(WS)) == 1
    assert profile_store.violations(WS)[0].violations == 1


def test_a_failing_write_keeps_earlier_data(profile_store: ProfileStore) -> None:
    profile_store.write(_everything())
    bad = ProfileWrite(
        nodes=[row("user_id:u1", "p_moved", plan="changed")],
        reassign=[(WS, "anonymous_id:a1", "p_moved")],
        offsets={("profiles", "events"): {0: 200}},
        violations=[Violation(WS, "Signed Up", 1, True, "x")],
        dead_letters=[letter("dl-bad", payload=None)],  # type: ignore[arg-type]
    )
    with pytest.raises(StorageUnavailable):
        profile_store.write(bad)
    assert profile_store.offsets("profiles", "events") == {0: 100}
    found = profile_store.nodes(WS, ["user_id:u1", "anonymous_id:a1"])
    assert {k: n.profile_id for k, n in found.items()} == {
        "user_id:u1": "p_1",
        "anonymous_id:a1": "p_1",
    }
    assert found["user_id:u1"].state == state(plan="pro")
    assert [(c.violations, c.blocked) for c in profile_store.violations(WS)] == [(1, 0)]


def test_an_empty_write_and_ping(profile_store: ProfileStore) -> None:
    profile_store.write(ProfileWrite())
    profile_store.ping()
    _assert_empty(profile_store)


def test_the_migrations_build_the_schema_the_code_declares(profile_store: ProfileStore) -> None:
    """A store migrated from nothing has every table, column and index the code declares
    (an index added to the tables but not to a migration would be missing on every store
    already deployed)."""
    assert isinstance(profile_store, SqlProfileStore)
    with profile_store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [
        d for d in differences if not (d[0] == "remove_table" and d[1].name.startswith("alembic"))
    ] == []


# -- consent ------------------------------------------------------------------------------


def consenting(key: str, pid: str, **granted: tuple[bool, int]) -> NodeRow:
    """A node of ``pid`` whose state holds statements: purpose=(granted, event time ms)."""
    node_state = state(plan="pro")
    node_state.consent = {p: (g, (ts, f"m-{key}-{p}")) for p, (g, ts) in granted.items()}
    node_state.consent_history = [
        [ts, f"m-{key}-{p}", p, g, "api"] for p, (g, ts) in granted.items()
    ]
    return NodeRow(WS, key, pid, True, node_state)


A1_REFUSES = {"analytics": (False, (1_000, "m-anonymous_id:a1-analytics"))}
U1_STATES = {
    "analytics": (True, (500, "m-user_id:u1-analytics")),
    "marketing": (False, (700, "m-user_id:u1-marketing")),
}


def test_consents_are_read_for_a_node_from_every_node_of_its_profile_that_holds_one(
    profile_store: ProfileStore,
) -> None:
    write(
        profile_store,
        nodes=[
            consenting("anonymous_id:a1", "p_1", analytics=(False, 1_000)),
            consenting("user_id:u1", "p_1", analytics=(True, 500), marketing=(False, 700)),
            row("anonymous_id:a2", "p_1", plan="free"),  # holds no statement
            row("user_id:u2", "p_2", plan="free"),
            consenting("user_id:u3", "p_3", personalization=(True, 900)),
        ],
    )
    found = profile_store.consents(WS, ["anonymous_id:a2", "user_id:u2", "user_id:u3", "x:y"])
    # u2's profile states nothing; x:y is unknown
    assert sorted(found) == ["anonymous_id:a2", "user_id:u3"]
    assert sorted(found["anonymous_id:a2"], key=str) == sorted([A1_REFUSES, U1_STATES], key=str)
    assert found["user_id:u3"] == [
        {"personalization": (True, (900, "m-user_id:u3-personalization"))}
    ]
    assert profile_store.consents(OTHER, ["anonymous_id:a2"]) == {}


def test_consents_are_read_for_more_nodes_than_one_statement_takes(
    profile_store: ProfileStore,
) -> None:
    keys = [f"anonymous_id:a{i:04d}" for i in range(1_000)]  # chunks of 400
    write(
        profile_store,
        nodes=[row(key, f"p_{i % 3}", plan="free") for i, key in enumerate(keys)]
        + [consenting("user_id:u1", "p_1", analytics=(True, 500), marketing=(False, 700))],
    )
    found = profile_store.consents(WS, keys)
    assert sorted(found) == [key for i, key in enumerate(keys) if i % 3 == 1]
    assert all(statements == [U1_STATES] for statements in found.values())


def test_a_nodes_consent_follows_it_to_another_profile_and_goes_with_its_statements(
    profile_store: ProfileStore,
) -> None:
    write(
        profile_store,
        nodes=[
            consenting("anonymous_id:a1", "p_1", analytics=(False, 1_000)),
            row("user_id:u1", "p_2", plan="pro"),
        ],
    )
    assert profile_store.consents(WS, ["user_id:u1"]) == {}
    write(profile_store, reassign=[(WS, "anonymous_id:a1", "p_2")])  # merged into p_2
    assert profile_store.consents(WS, ["user_id:u1", "anonymous_id:a1"]) == {
        "user_id:u1": [A1_REFUSES],
        "anonymous_id:a1": [A1_REFUSES],
    }
    # Rewritten in place (the writer read it with this profile): the new statement is read.
    newer = consenting("anonymous_id:a1", "p_2", analytics=(True, 2_000))
    write(profile_store, nodes=[NodeRow(WS, newer.node, "p_2", True, newer.state, kept=True)])
    assert profile_store.consents(WS, ["user_id:u1"]) == {
        "user_id:u1": [{"analytics": (True, (2_000, "m-anonymous_id:a1-analytics"))}]
    }
    # Moved and rewritten by one upsert: its statements go along.
    moved = consenting("anonymous_id:a1", "p_3", analytics=(False, 3_000))
    write(profile_store, nodes=[moved])
    assert profile_store.consents(WS, ["user_id:u1"]) == {}
    assert profile_store.consents(WS, ["anonymous_id:a1"]) == {
        "anonymous_id:a1": [{"analytics": (False, (3_000, "m-anonymous_id:a1-analytics"))}]
    }
    # A state without statements (or no state) leaves nothing to read.
    write(profile_store, nodes=[NodeRow(WS, "anonymous_id:a1", "p_3", True, state(), kept=True)])
    assert profile_store.consents(WS, ["anonymous_id:a1"]) == {}


def test_the_upgrade_fills_the_consent_of_nodes_stored_before_it(store_url: str) -> None:
    """Stores written before ``identity_nodes.consent`` existed (migration p0004): the
    upgrade reads each stored state's statements into it."""
    engine = db.create_db_engine(store_url)
    try:
        db.migrate(engine, revision="p0004", migrations=MIGRATIONS)
        stated = state()
        stated.consent = {"analytics": (False, (1_000, "m-1"))}
        stated.consent_history = [[1_000, "m-1", "analytics", False, "event"]]
        trait_k = state(k="a trait named k")  # '"k":' in its text, no statement
        rows = [
            ("ws", f"anonymous_id:a{i}", "p_1", stated.encode().decode()) for i in range(1_205)
        ]  # more than one page of the backfill
        rows += [("ws", "user_id:u1", "p_1", trait_k.encode().decode())]
        rows += [("ws", "user_id:u2", "p_2", None), ("ws", "user_id:u3", "p_3", '{"t":{}}')]
        # read as NodeState.from_json reads it: a statement it cannot read is left out
        malformed = '{"t":{},"k":{"analytics":"no","marketing":[0,[5,"m-5","x"]]},"h":[]}'
        rows += [("ws", "user_id:u4", "p_4", malformed)]
        nodes = sql_table("identity_nodes", *(sql_column(n) for n in _OLD_NODE_COLUMNS))
        with engine.begin() as conn:
            conn.execute(
                nodes.insert(),
                [
                    dict(
                        zip(
                            _OLD_NODE_COLUMNS,
                            (ws, key, *key.split(":", 1), pid, True, s, T0),
                            strict=True,
                        )
                    )
                    for ws, key, pid, s in rows
                ],
            )
    finally:
        engine.dispose()
    store = SqlProfileStore.open(store_url)  # migrates to the head
    try:
        found = store.consents("ws", ["user_id:u1", "user_id:u2", "user_id:u3", "user_id:u4"])
        assert sorted(found) == ["user_id:u1", "user_id:u4"]
        assert found["user_id:u4"] == [{"marketing": (False, (5, "m-5"))}]
        # of p_1: its 1,205 anonymous ids' statements
        assert found["user_id:u1"] == [{"analytics": (False, (1_000, "m-1"))}] * 1_205
        # The upgraded nodes read as before, statements included.
        node = store.nodes("ws", ["anonymous_id:a7"])["anonymous_id:a7"]
        assert node.state == stated
    finally:
        store.close()


_OLD_NODE_COLUMNS = (
    "workspace_id",
    "node",
    "id_type",
    "id_value",
    "profile_id",
    "evidenced",
    "state",
    "updated_at",
)
