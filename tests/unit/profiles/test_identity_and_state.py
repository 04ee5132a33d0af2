"""Pure units of identity resolution and profile state: what an event says about identity
(:func:`event_identity`), how identifiers cluster into profiles (:func:`cluster`), and how
node states fold and merge (:class:`StateFolder`), with hypothesis for the order laws."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auie.profiles.identity import (
    DEFAULT_JUNK,
    Edge,
    EdgeKind,
    IdentityRules,
    Merge,
    cluster,
    event_identity,
    profile_id,
)
from auie.profiles.state import (
    DEFAULT_MAX_EVENT_NAMES,
    ComputedTrait,
    NodeState,
    StateFolder,
    merge_consent,
)

RULES = IdentityRules()
WS = "ws_test"
GAP = 30 * 60_000
PROPS = settings(max_examples=200, deadline=None)


def ident(event: dict[str, Any], ts: int = 1_000, rules: IdentityRules = RULES) -> Any:
    return event_identity({"messageId": "m-1", **event}, ts, rules)


# -- event_identity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        None,
        "",
        "   ",
        "null",
        "NULL",
        "undefined",
        "Undefined ",
        "0",
        0,
        -1,
        "anonymous",
        "none",
        "nil",
        "NaN",
        "[object Object]",
        "00000000-0000-0000-0000-000000000000",
        True,
        False,
        {"id": "u1"},
        ["u1"],
        "x" * 513,
    ],
)
def test_junk_values_are_never_identifiers(junk: object) -> None:
    only_junk = ident({"type": "track", "userId": junk, "anonymousId": junk})
    assert only_junk.primary is None
    assert only_junk.seen == only_junk.edges == only_junk.named == []
    with_anonymous = ident({"type": "track", "userId": junk, "anonymousId": "a-1"})
    assert with_anonymous.primary == "anonymous_id:a-1"
    assert with_anonymous.seen == ["anonymous_id:a-1"]
    assert with_anonymous.edges == []


def test_every_default_junk_value_is_refused_in_any_case() -> None:
    for value in DEFAULT_JUNK:
        for variant in (value, value.upper(), f" {value} "):
            assert RULES.clean(variant) is None, variant


def test_user_and_anonymous_id_are_linked() -> None:
    result = ident({"type": "track", "userId": " u-1 ", "anonymousId": 42}, ts=7_000)
    assert result.primary == "user_id:u-1"
    assert result.seen == ["user_id:u-1", "anonymous_id:42"]
    assert result.edges == [Edge(7_000, "m-1", "link", "anonymous_id:42", "user_id:u-1")]
    assert result.named == []


def test_configured_junk_values_replace_the_defaults() -> None:
    rules = IdentityRules(junk_values=frozenset({"guest-user"}))
    assert (
        ident({"type": "track", "userId": "Guest-User", "anonymousId": "a"}, rules=rules).edges
        == []
    )
    assert ident({"type": "track", "userId": "null"}, rules=rules).primary == "user_id:null"


def test_identify_email_is_normalised_and_linked() -> None:
    result = ident(
        {"type": "identify", "anonymousId": "a-1", "traits": {"email": "  Alice@Example.COM "}}
    )
    assert result.primary == "anonymous_id:a-1"
    assert "email:alice@example.com" in result.seen
    assert result.edges == [
        Edge.make("anonymous_id:a-1", "email:alice@example.com", "link", 1_000, "m-1")
    ]


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b", "two words@example.com", "null", "", 42, None, ["a@b.co"]]
)
def test_invalid_or_junk_emails_are_ignored(email: object) -> None:
    result = ident({"type": "identify", "userId": "u-1", "traits": {"email": email}})
    assert result.seen == ["user_id:u-1"]
    assert result.edges == []


def test_email_only_counts_on_identify() -> None:
    for kind in ("track", "page", "group"):
        result = ident({"type": kind, "userId": "u-1", "traits": {"email": "a@example.com"}})
        assert result.edges == [], kind


def test_configured_id_traits_are_identifiers() -> None:
    rules = IdentityRules(id_traits=("phone",))
    result = ident(
        {"type": "identify", "userId": "u-1", "traits": {"phone": "+33 1 23", "fax": "1"}},
        rules=rules,
    )
    assert result.seen == ["user_id:u-1", "phone:+33 1 23"]
    assert [e.pair for e in result.edges] == [("phone:+33 1 23", "user_id:u-1", "link")]


def test_external_ids_are_typed_identifiers() -> None:
    external = [
        {"type": "Shopify-Customer", "id": "123", "collection": "users"},
        {"type": "crm", "id": 9},
        {"type": "user_id", "id": "spoof"},  # AUIE's own types cannot be claimed
        {"type": "email", "id": "x@example.com"},
        {"type": "anonymous_id", "id": "a"},
        {"type": "1bad", "id": "x"},
        {"type": "crm", "id": "null"},
        "not an object",
        {"type": "no_id"},
    ]
    result = ident({"type": "track", "anonymousId": "a-1", "context": {"externalIds": external}})
    assert result.seen == ["anonymous_id:a-1", "shopify_customer:123", "crm:9"]
    assert {e.pair for e in result.edges} == {
        ("anonymous_id:a-1", "shopify_customer:123", "link"),
        ("anonymous_id:a-1", "crm:9", "link"),
    }
    many = [{"type": "crm", "id": f"c{i}"} for i in range(30)]
    capped = ident({"type": "track", "userId": "u", "context": {"externalIds": many}})
    assert len(capped.edges) == 20
    assert ident({"type": "track", "userId": "u", "context": {"externalIds": {}}}).edges == []


def test_alias_names_the_previous_id_in_both_roles() -> None:
    result = ident({"type": "alias", "userId": "u-2", "previousId": "u-1"}, ts=5)
    assert result.primary == "user_id:u-2"
    assert result.seen == ["user_id:u-2"]
    assert result.named == ["anonymous_id:u-1", "user_id:u-1"]
    assert result.edges == [
        Edge.make("user_id:u-2", "anonymous_id:u-1", "alias", 5, "m-1"),
        Edge.make("user_id:u-2", "user_id:u-1", "alias", 5, "m-1"),
    ]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "alias", "userId": "u-1", "previousId": "u-1"},
        {"type": "alias", "userId": "u-1", "previousId": "undefined"},
        {"type": "alias", "userId": "null", "anonymousId": "a-1", "previousId": "u-0"},
        {"type": "track", "userId": "u-1", "previousId": "u-0"},
    ],
)
def test_alias_edges_need_a_user_and_a_different_previous_id(event: dict[str, Any]) -> None:
    assert [e for e in ident(event).edges if e.kind == "alias"] == []
    assert ident(event).named == []


def test_edges_are_stored_with_sorted_ends() -> None:
    one = Edge.make("user_id:b", "anonymous_id:z", "link", 1, "m")
    other = Edge.make("anonymous_id:z", "user_id:b", "link", 1, "m")
    assert one == other
    assert (one.a, one.b) == ("anonymous_id:z", "user_id:b")


# -- cluster ------------------------------------------------------------------------------


def link(a: str, b: str, ts: int, mid: str | None = None) -> Edge:
    return Edge.make(a, b, "link", ts, mid or f"m{ts}")


def alias(a: str, b: str, ts: int, mid: str | None = None) -> Edge:
    return Edge.make(a, b, "alias", ts, mid or f"m{ts}")


def groups(result: Any) -> set[frozenset[str]]:
    by_anchor: dict[str, set[str]] = {}
    for key, anchor in result.anchors.items():
        by_anchor.setdefault(anchor, set()).add(key)
    return {frozenset(v) for v in by_anchor.values()}


def test_login_joins_anonymous_browsing_to_the_user() -> None:
    edges = [link("anonymous_id:a", "user_id:u", 100, "login")]
    result = cluster(WS, ["anonymous_id:a", "user_id:u"], edges, 1)
    assert result.anchors == {"anonymous_id:a": "user_id:u", "user_id:u": "user_id:u"}
    assert result.merges == {
        "user_id:u": [
            Merge(
                profile_id(WS, "anonymous_id:a"), profile_id(WS, "user_id:u"), "login", 100, "link"
            )
        ]
    }


def test_shared_device_never_merges_two_users() -> None:
    seen = ["anonymous_id:shared", "user_id:u1", "user_id:u2"]
    edges = [
        link("anonymous_id:shared", "user_id:u2", 200),
        link("anonymous_id:shared", "user_id:u1", 100),
    ]
    result = cluster(WS, seen, edges, 1)
    assert groups(result) == {
        frozenset({"anonymous_id:shared", "user_id:u1"}),
        frozenset({"user_id:u2"}),
    }
    # The device stays with the user who logged in first (by event time).
    assert result.anchors["anonymous_id:shared"] == "user_id:u1"
    assert result.merges["user_id:u2"] == []


def test_alias_joins_users_even_on_a_shared_device() -> None:
    seen = ["anonymous_id:a1", "anonymous_id:a2", "user_id:old", "user_id:new"]
    edges = [
        link("anonymous_id:a1", "user_id:old", 1),
        link("anonymous_id:a2", "user_id:new", 2),
        alias("user_id:new", "user_id:old", 3),
        alias("user_id:new", "anonymous_id:old", 3),
        link("anonymous_id:a1", "user_id:new", 4),  # same person: alias made them one user
    ]
    result = cluster(WS, seen, edges, 1)
    assert len(set(result.anchors.values())) == 1
    [merges] = result.merges.values()
    assert [m.kind for m in merges] == ["link", "link", "alias"]
    # Only clusters that hold people record merges (anonymous_id:old was only named).
    assert len(merges) == 3


def test_max_user_ids_allows_that_many_users_per_profile() -> None:
    seen = ["anonymous_id:d", "user_id:u1", "user_id:u2", "user_id:u3"]
    edges = [
        link("anonymous_id:d", "user_id:u1", 1),
        link("anonymous_id:d", "user_id:u2", 2),
        link("anonymous_id:d", "user_id:u3", 3),
    ]
    assert len(groups(cluster(WS, seen, edges, 1))) == 3
    two = groups(cluster(WS, seen, edges, 2))
    assert two == {
        frozenset({"anonymous_id:d", "user_id:u1", "user_id:u2"}),
        frozenset({"user_id:u3"}),
    }
    assert len(groups(cluster(WS, seen, edges, 3))) == 1


def test_anchor_prefers_seen_user_ids_then_emails_then_anonymous_ids() -> None:
    edges = [
        link("anonymous_id:a", "email:x@example.com", 1),
        link("email:x@example.com", "user_id:u", 2),
    ]
    everything = ["anonymous_id:a", "email:x@example.com", "user_id:u"]
    assert set(cluster(WS, everything, edges, 1).anchors.values()) == {"user_id:u"}
    no_user = cluster(WS, ["anonymous_id:a", "email:x@example.com"], edges[:1], 1)
    assert set(no_user.anchors.values()) == {"email:x@example.com"}
    # An identifier only named by an alias is not preferred as anchor.
    named = cluster(WS, ["anonymous_id:a"], [alias("anonymous_id:a", "user_id:ghost", 1)], 1)
    assert set(named.anchors.values()) == {"anonymous_id:a"}


NODES = [f"user_id:u{i}" for i in range(4)] + [f"anonymous_id:a{i}" for i in range(5)]
NODES += ["email:e0@x.io", "email:e1@x.io", "crm:c0"]


@st.composite
def edge_sets(draw: st.DrawFn) -> tuple[list[str], list[Edge]]:
    count = draw(st.integers(0, 14))
    edges = []
    for _ in range(count):
        a, b = draw(st.lists(st.sampled_from(NODES), min_size=2, max_size=2, unique=True))
        kind: EdgeKind = draw(st.sampled_from(["link", "link", "alias"]))
        ts = draw(st.integers(0, 5))  # few times: many ties broken by messageId
        mid = draw(st.sampled_from(["m0", "m1", "m2", "m3"]))
        edges.append(Edge.make(a, b, kind, ts, mid))
    seen = draw(st.lists(st.sampled_from(NODES), unique=True))
    return seen, edges


@PROPS
@given(edge_sets(), st.integers(1, 3), st.randoms(use_true_random=False))
def test_cluster_does_not_depend_on_edge_order(
    graph: tuple[list[str], list[Edge]], max_users: int, rnd: random.Random
) -> None:
    seen, edges = graph
    expected = cluster(WS, seen, edges, max_users)
    for _ in range(3):
        shuffled_edges, shuffled_seen = list(edges), list(seen)
        rnd.shuffle(shuffled_edges)
        rnd.shuffle(shuffled_seen)
        again = cluster(WS, shuffled_seen, shuffled_edges, max_users)
        assert again.anchors == expected.anchors
        assert again.merges == expected.merges


@PROPS
@given(edge_sets(), st.integers(1, 3))
def test_links_never_put_more_users_in_a_profile_than_allowed(
    graph: tuple[list[str], list[Edge]], max_users: int
) -> None:
    seen, edges = graph
    links = [e for e in edges if e.kind == "link"]
    result = cluster(WS, seen, links, max_users)
    for members in groups(result):
        assert sum(1 for m in members if m.startswith("user_id:")) <= max_users
    # Every identifier's anchor is in its own cluster and anchors itself.
    for edge in links:
        for end in (edge.a, edge.b):
            assert result.anchors[result.anchors[end]] == result.anchors[end]
    # Merges are between profiles of the cluster's own identifiers, oldest first, and a
    # cluster of n identifiers records at most n - 1 of them.
    for members in groups(result):
        anchor = result.anchors[next(iter(members))]
        merges = result.merges[anchor]
        ids = {profile_id(WS, m) for m in members}
        assert len(merges) <= len(members) - 1
        assert merges == sorted(merges, key=lambda m: (m.ts, m.message_id))
        assert all({m.from_profile, m.into_profile} <= ids for m in merges)


# -- StateFolder --------------------------------------------------------------------------


def identify(ts: int, mid: str, **traits: Any) -> tuple[dict[str, Any], int]:
    return {"type": "identify", "messageId": mid, "userId": "u", "traits": traits}, ts


def track(
    ts: int, mid: str, name: str = "Order Completed", **props: Any
) -> tuple[dict[str, Any], int]:
    return {
        "type": "track",
        "messageId": mid,
        "userId": "u",
        "event": name,
        "properties": props,
    }, ts


def page(ts: int, mid: str, url: str) -> tuple[dict[str, Any], int]:
    return {
        "type": "page",
        "messageId": mid,
        "userId": "u",
        "name": "Home",
        "properties": {"url": url},
    }, ts


def fold(folder: StateFolder, events: Sequence[tuple[dict[str, Any], int]]) -> NodeState:
    state = NodeState()
    for event, ts in events:
        folder.apply(state, event, ts)
    return state


def test_traits_are_last_write_wins_by_event_time() -> None:
    folder = StateFolder(GAP)
    events = [
        identify(3_000, "m-a", plan="team"),
        identify(1_000, "m-z", plan="free", name="Ann"),
        identify(2_000, "m-b", plan="pro", email="a@example.com"),
    ]
    for order in (events, events[::-1], [events[1], events[0], events[2]]):
        state = fold(folder, order)
        assert folder.traits(state) == {"email": "a@example.com", "name": "Ann", "plan": "team"}


def test_equal_event_times_are_broken_by_message_id() -> None:
    folder = StateFolder(GAP)
    events = [identify(1_000, "m-2", plan="two"), identify(1_000, "m-1", plan="one")]
    assert folder.traits(fold(folder, events))["plan"] == "two"
    assert folder.traits(fold(folder, events[::-1]))["plan"] == "two"
    pages = [page(5, "m-1", "https://x/1"), page(5, "m-9", "https://x/9"), page(4, "m-z", "z")]
    for order in (pages, pages[::-1]):
        assert folder.computed_traits(fold(folder, order))["lastPage"] == {
            "name": "Home",
            "url": "https://x/9",
        }


def test_a_trait_set_to_null_is_a_write_too() -> None:
    folder = StateFolder(GAP)
    state = fold(folder, [identify(1, "m1", plan="pro"), identify(2, "m2", plan=None)])
    assert folder.traits(state) == {"plan": None}


def sessions_by_hand(times: Sequence[int], gap: int) -> list[list[int]]:
    """Sessions the plain way (docs/profiles.md): sort the times and start a new session
    whenever more than the gap passed since the previous event."""
    result: list[list[int]] = []
    for ts in sorted(times):
        if result and ts - result[-1][1] <= gap:
            result[-1][1] = ts
        else:
            result.append([ts, ts])
    return result


def test_sessions_split_at_thirty_minutes_of_inactivity() -> None:
    folder = StateFolder(GAP)
    minute = 60_000
    times = [0, 10 * minute, 40 * minute, 70 * minute + 1, 71 * minute, 200 * minute]
    state = fold(folder, [track(t, f"m{t}") for t in times])
    # 10 → 40 is a gap of exactly 30 minutes: same session; 40 → 70:00.001 is more.
    assert state.sessions == [
        [0, 40 * minute],
        [70 * minute + 1, 71 * minute],
        [200 * minute, 200 * minute],
    ]
    assert folder.computed_traits(state)["sessions"] == 3
    assert sessions_by_hand(times, GAP) == state.sessions


# Times around the gap's edges are where sessions go wrong: build them from such steps.
STEPS = st.sampled_from([0, 1, GAP - 1, GAP, GAP + 1, 2 * GAP, 5 * GAP, 7_919, 600_000])


@PROPS
@given(
    st.lists(STEPS, min_size=1, max_size=40),
    st.randoms(use_true_random=False),
    st.integers(0, 40),
)
def test_sessions_match_a_plain_computation_in_any_order(
    steps: list[int], rnd: random.Random, cut: int
) -> None:
    times, now = [], 1_700_000_000_000
    for step in steps:
        now += step
        times.append(now)
    expected = sessions_by_hand(times, GAP)
    folder = StateFolder(GAP)
    events = [track(t, f"m{i}") for i, t in enumerate(times)]
    rnd.shuffle(events)
    assert fold(folder, events).sessions == expected
    # Folded in two parts and merged, either way round.
    left, right = fold(folder, events[:cut]), fold(folder, events[cut:])
    folder.merge(left, right)
    assert left.sessions == expected
    left, right = fold(folder, events[:cut]), fold(folder, events[cut:])
    folder.merge(right, left)
    assert right.sessions == expected


def test_an_identifier_keeps_its_latest_sessions_and_counts_the_older_ones() -> None:
    """A heavy user's state stays bounded: beyond ``max_sessions`` intervals the oldest are
    closed (counted only), and the count is still exact for events in order or late by
    fewer sessions than the bound."""
    folder = StateFolder(GAP, max_sessions=100)
    day = 24 * 3_600_000
    times = [d * day + visit * 60_000 for d in range(300) for visit in (0, 5, 20)]
    by_hand = sessions_by_hand(times, GAP)
    assert len(by_hand) == 300
    in_order = fold(folder, [track(t, f"m{t}") for t in times])
    assert in_order.sessions == by_hand[-100:]
    assert (in_order.closed_sessions, in_order.closed_until) == (200, by_hand[199][1])
    assert folder.computed_traits(in_order)["sessions"] == 300
    # Late by up to ten sessions (events shuffled within blocks of ten days): the same.
    rnd = random.Random(7)
    blocks = [times[i : i + 30] for i in range(0, len(times), 30)]
    for block in blocks:
        rnd.shuffle(block)
    late = fold(folder, [track(t, f"m{t}") for block in blocks for t in block])
    assert late == in_order
    # The stored text no longer grows with the history.
    longer = fold(folder, [track(t, f"m{t}") for t in times + [t + 300 * day for t in times]])
    assert folder.computed_traits(longer)["sessions"] == 600
    assert len(longer.encode()) <= len(in_order.encode()) + 100


def test_an_event_behind_the_kept_sessions_counts_as_one_of_the_closed_ones() -> None:
    folder = StateFolder(GAP, max_sessions=2)
    hour = 3_600_000
    state = fold(folder, [track(t * hour, f"m{t}") for t in (10, 20, 30, 40)])
    assert state.sessions == [[30 * hour, 30 * hour], [40 * hour, 40 * hour]]
    assert (state.closed_sessions, state.closed_until) == (2, 20 * hour)
    folder.apply(state, *track(5 * hour, "late"))  # a session of its own, not counted
    assert state.sessions == [[30 * hour, 30 * hour], [40 * hour, 40 * hour]]
    assert (state.closed_sessions, state.closed_until) == (2, 20 * hour)
    assert folder.computed_traits(state)["sessions"] == 4
    assert state.counts == {"Order Completed": 5}  # the event itself still counts
    # Events that extend the latest closed session, step by step: still one session.
    folder.apply(state, *track(20 * hour + GAP, "ext1"))
    folder.apply(state, *track(20 * hour + 2 * GAP, "ext2"))
    assert state.closed_until == 20 * hour + 2 * GAP
    assert folder.computed_traits(state)["sessions"] == 4
    # Extending it up to a kept session absorbs that session into the closed one: the
    # bridge joins the kept 30h session, the walk from 21h reaches the bridge.
    folder.apply(state, *track(30 * hour - GAP, "bridge"))
    for step in range(1, 18):
        folder.apply(state, *track(20 * hour + 2 * GAP + step * GAP, f"walk{step}"))
    assert state.sessions == [[40 * hour, 40 * hour]]
    assert (state.closed_sessions, state.closed_until) == (2, 30 * hour)
    # 10h, 20h..30h and 40h; the late 5h visit is the one session not counted.
    extended = [20 * hour + step * GAP for step in range(1, 20)]  # ext1, ext2, walk, bridge
    everything = [t * hour for t in (5, 10, 20, 30, 40)] + extended
    assert len(sessions_by_hand(everything, GAP)) == 4
    assert folder.computed_traits(state)["sessions"] == 3
    folder.apply(state, *track(35 * hour, "kept"))  # after the closed range: as before
    assert folder.computed_traits(state)["sessions"] == 4


def test_a_state_of_an_older_writer_is_bounded_at_its_next_write() -> None:
    hour = 3_600_000
    older = NodeState(sessions=[[t * hour, t * hour] for t in range(10)])  # no bound then
    folder = StateFolder(GAP, max_sessions=3)
    assert folder.computed_traits(older)["sessions"] == 10
    folder.apply(older, *track(20 * hour, "next"))
    assert older.sessions == [[8 * hour, 8 * hour], [9 * hour, 9 * hour], [20 * hour] * 2]
    assert (older.closed_sessions, older.closed_until) == (8, 7 * hour)
    assert folder.computed_traits(older)["sessions"] == 11


def test_merged_states_add_their_closed_sessions() -> None:
    """A profile's count is exact for sessions its identifiers do not share, and counts a
    shared visit once per identifier that holds it once one of them closed it."""
    folder = StateFolder(GAP, max_sessions=2)
    hour, day = 3_600_000, 24 * 3_600_000
    user = fold(folder, [track(d * day + 9 * hour, f"u{d}") for d in range(10)])
    evenings = fold(folder, [track(d * day + 20 * hour, f"e{d}") for d in range(3, 6)])
    merged = []
    for order in ((user, evenings), (evenings, user)):
        into = NodeState()
        for part in order:
            folder.merge(into, part)
        merged.append(into)
    assert merged[0] == merged[1]
    assert (merged[0].closed_sessions, merged[0].closed_until) == (9, 7 * day + 9 * hour)
    assert folder.computed_traits(merged[0])["sessions"] == 10 + 3  # exact
    # A device that logged in during one of the user's (closed) morning visits.
    device = fold(folder, [track(2 * day + 9 * hour - 60_000, "d1")])
    folder.merge(merged[0], device)
    assert folder.computed_traits(merged[0])["sessions"] == 14  # that visit twice


# -- event names beyond the bound ---------------------------------------------------------


def test_an_identifier_counts_its_alphabetically_first_event_names_in_any_order() -> None:
    """Dynamic event names (``Viewed <product>``) cannot grow a state without bound: past
    ``max_event_names`` the first names alphabetically keep their counts, the others'
    events are counted together, and the result does not depend on the arrival order.
    Event types and the events of declared computed traits are always counted by name."""
    folder = StateFolder(GAP, [ComputedTrait("viewed_z", "count", "Viewed Z")], max_event_names=2)
    names = ["Viewed C", "Signed Up", "Viewed A", "Viewed C", "Viewed Z", "Viewed B", "Viewed A"]
    stream = [track(i, f"t{i}", name) for i, name in enumerate(names)]
    stream += [page(100 + i, f"p{i}", "https://a/") for i in range(3)]
    views = set()
    for seed in range(30):
        shuffled = random.Random(seed).sample(stream, len(stream))
        traits = folder.computed_traits(fold(folder, shuffled))
        views.add(json.dumps(traits, sort_keys=True))
        assert traits["eventCounts"] == {"Signed Up": 1, "Viewed A": 2, "Viewed Z": 1, "page": 3}
        assert traits["otherEvents"] == 3  # Viewed B once, Viewed C twice
        assert traits["viewed_z"] == 1
    assert len(views) == 1
    under = StateFolder(GAP, max_event_names=10)
    assert "otherEvents" not in under.computed_traits(fold(under, stream))


@PROPS
@given(
    st.lists(st.sampled_from(["A", "B", "C", "D", "E", "page"]), max_size=30),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_bounded_event_counts_match_a_plain_computation(
    names: list[str], bound: int, rnd: random.Random
) -> None:
    folder = StateFolder(GAP, max_event_names=bound)
    stream = [
        page(i, f"m{i}", "https://a/") if name == "page" else track(i, f"m{i}", name)
        for i, name in enumerate(names)
    ]
    state = fold(folder, rnd.sample(stream, len(stream)))
    kept = [*sorted({n for n in names if n != "page"})[:bound], "page"]
    expected = {n: names.count(n) for n in kept if n in names}
    assert state.counts == expected
    assert state.other_events == len(names) - sum(expected.values())
    # Split between two identifiers and merged (a profile), in both orders: the same.
    cut = rnd.randint(0, len(stream))
    for first, second in ((stream[:cut], stream[cut:]), (stream[cut:], stream[:cut])):
        merged = fold(folder, first)
        folder.merge(merged, fold(folder, second))
        assert (merged.counts, merged.other_events) == (expected, state.other_events)


def test_a_state_with_more_names_than_the_bound_is_trimmed_when_read_and_written() -> None:
    """A state written before the bound (or under a larger one) is shown within the
    bound, and stored within it at its next new name."""
    older = NodeState(counts={"D": 4, "A": 1, "C": 3, "B": 2, "page": 5})
    folder = StateFolder(GAP, max_event_names=2)
    assert not folder.is_merged(older)
    shown = NodeState()
    folder.merge(shown, older)
    assert (shown.counts, shown.other_events) == ({"A": 1, "B": 2, "page": 5}, 7)
    folder.apply(older, *track(1, "m1", "E"))
    assert (older.counts, older.other_events) == ({"A": 1, "B": 2, "page": 5}, 8)
    assert folder.is_merged(older)
    assert NodeState.decode(older.encode()) == older


# -- traits beyond the bound ---------------------------------------------------------------


@PROPS
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.sets(st.sampled_from("abcdefgh"), max_size=4)),
        max_size=25,
    ),
    st.integers(1, 5),
    st.randoms(use_true_random=False),
)
def test_bounded_traits_are_the_latest_written_in_any_order_and_grouping(
    writes: list[tuple[int, set[str]]], bound: int, rnd: random.Random
) -> None:
    """A stream of dynamic trait keys cannot grow a state without bound: an identifier keeps
    the ``max_traits`` traits written last (event time, then messageId, then name), whatever
    the arrival order and however the events are split between identifiers of a profile;
    each kept trait holds its latest value. A pinned trait (an identifier trait such as
    ``email``) is always kept and does not use up the bound."""
    folder = StateFolder(GAP, max_traits=bound, pinned_traits=("a",))
    stream = [
        identify(ts, f"m{i:02d}", **{key: f"{key}@{i}" for key in keys})
        for i, (ts, keys) in enumerate(writes)
    ]
    latest: dict[str, tuple[tuple[int, str], str]] = {}
    for event, ts in stream:
        for key, value in event["traits"].items():
            stamp = (ts, event["messageId"])
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, value)
    others = sorted(
        (key for key in latest if key != "a"), key=lambda key: (latest[key][0], key), reverse=True
    )
    expected = {key: latest[key][1] for key in [*others[:bound], "a"] if key in latest}
    shuffled = rnd.sample(stream, len(stream))
    assert folder.traits(fold(folder, shuffled)) == dict(sorted(expected.items()))
    # Stored and read back half way (the drop's heap is not stored: built again).
    half = NodeState.decode(fold(folder, shuffled[: len(shuffled) // 2]).encode())
    for event, ts in shuffled[len(shuffled) // 2 :]:
        folder.apply(half, event, ts)
    assert folder.traits(half) == dict(sorted(expected.items()))
    cut = rnd.randint(0, len(stream))
    for first, second in ((stream[:cut], stream[cut:]), (stream[cut:], stream[:cut])):
        merged = fold(folder, rnd.sample(first, len(first)))
        folder.merge(merged, fold(folder, second))
        assert folder.traits(merged) == dict(sorted(expected.items()))
        assert folder.is_merged(merged)


def test_a_state_with_more_traits_than_the_bound_is_trimmed_when_read_and_written() -> None:
    """A state written under a larger bound is shown within the bound, and stored within it
    at its next identify; a trait written again comes back with its new value."""
    older = NodeState(traits={"plan": ("pro", (5, "m5")), "a": (1, (1, "m1")), "b": (2, (2, "m2"))})
    folder = StateFolder(GAP, max_traits=2)
    assert not folder.is_merged(older)
    shown = NodeState()
    folder.merge(shown, older)
    assert folder.traits(shown) == {"b": 2, "plan": "pro"}
    folder.apply(older, *identify(3, "m3", a=10))
    assert folder.traits(older) == {"a": 10, "plan": "pro"}
    assert NodeState.decode(older.encode()) == older


COMPUTED = [
    ComputedTrait("orders", "count", "Order Completed"),
    ComputedTrait("events", "count"),
    ComputedTrait("pages", "count", "page"),
    ComputedTrait("revenue", "sum", "Order Completed", "total"),
    ComputedTrait("smallest", "min", "Order Completed", "total"),
    ComputedTrait("largest", "max", "Order Completed", "total"),
    ComputedTrait("first_plan", "first", "Order Completed", "plan"),
    ComputedTrait("last_plan", "last", "Order Completed", "plan"),
    ComputedTrait("signup_source", "first", None, "source"),
]


def test_computed_traits() -> None:
    folder = StateFolder(GAP, COMPUTED)
    events = [
        track(5_000, "m5", total="0.1", plan="pro"),
        track(1_000, "m1", total=0.2, plan="free", source="ads"),
        track(3_000, "m3", total=10, plan="team"),
        track(4_000, "m4", total="not a number", plan=None),
        track(4_500, "m4b", total=True),
        track(2_000, "m2", "Signed Up", total=1000, plan="ignored", source="mail"),
        page(6_000, "m6", "https://example.com/"),
    ]
    for order in (events, events[::-1]):
        state = fold(folder, order)
        computed = folder.computed_traits(state)
        assert computed["orders"] == 5
        assert computed["events"] == 7
        assert computed["pages"] == 1
        assert computed["revenue"] == 10.3  # exact: 0.1 + 0.2 + 10, not 10.299999...
        assert state.computed["revenue"] == "10.3"
        assert computed["smallest"] == 0.1
        assert computed["largest"] == 10
        assert isinstance(computed["largest"], int)
        assert computed["first_plan"] == "free"
        assert computed["last_plan"] == "pro"  # a null property is no value
        assert computed["signup_source"] == "ads"
        assert computed["eventCounts"] == {"Order Completed": 5, "Signed Up": 1, "page": 1}
        assert computed["firstSeen"] == "1970-01-01T00:00:01.000Z"
        assert computed["lastSeen"] == "1970-01-01T00:00:06.000Z"


def test_sums_are_exact_decimals() -> None:
    folder = StateFolder(GAP, [ComputedTrait("total", "sum", None, "x")])
    state = fold(folder, [track(i, f"m{i}", x="0.1") for i in range(10)])
    assert Decimal(state.computed["total"]) == Decimal("1")
    assert folder.computed_traits(state)["total"] == 1
    big = fold(folder, [track(1, "a", x=10**20), track(2, "b", x=1), track(3, "c", x="-0.5")])
    assert big.computed["total"] == "100000000000000000000.5"
    assert fold(folder, [track(1, "a", x="1e400"), track(2, "b", x="nan")]).computed == {
        "total": "1E+400"
    }


def test_computed_traits_without_values() -> None:
    folder = StateFolder(GAP, COMPUTED)
    computed = folder.computed_traits(fold(folder, [track(1, "m", "Other")]))
    assert computed["orders"] == 0
    assert computed["revenue"] is None
    assert computed["first_plan"] is None
    assert computed["lastPage"] is None


def test_state_survives_json() -> None:
    folder = StateFolder(GAP, COMPUTED)
    state = fold(
        folder,
        [track(1, "m1", total="2.5", plan="a"), identify(2, "m2", x=1), page(3, "m3", "u")],
    )
    again = NodeState.from_json(state.to_json())
    assert again == state
    assert folder.computed_traits(again) == folder.computed_traits(state)


@settings(PROPS, max_examples=100)
@given(st.data())
def test_state_text_is_to_json_and_reads_back_as_from_json(data: st.DataObject) -> None:
    """The store's fast codec writes exactly ``to_json`` and reads exactly ``from_json``."""
    kept = data.draw(st.sampled_from([1, 2, 100]))  # small bounds close sessions
    names = data.draw(st.sampled_from([1, DEFAULT_MAX_EVENT_NAMES]))  # and count others
    folder = StateFolder(
        GAP, COMPUTED, {"C0002": "analytics"}, max_sessions=kept, max_event_names=names
    )
    folded = [*data.draw(events("a")), *data.draw(events("b"))]
    state = fold(folder, folded)
    if data.draw(st.booleans()):
        consent = {"type": "consent", "messageId": "c1", "consent": {"analytics": True}}
        folder.apply(state, consent, data.draw(st.integers(0, 10 * GAP)))
    text = msgspec.json.encode(state.to_json())
    assert state.encode() == text
    assert NodeState.decode(text) == NodeState.from_json(json.loads(text)) == state
    assert NodeState.decode(text.decode()) == state


def test_state_text_of_another_shape_is_read_as_from_json_reads_it() -> None:
    longer_stamp = '{"t": {"plan": ["pro", [5, "m1", "extra"]]}, "k": {"analytics": [1, [5, "m"]]}}'
    assert NodeState.decode(longer_stamp) == NodeState.from_json(json.loads(longer_stamp))
    assert NodeState.decode(longer_stamp).consent == {"analytics": (True, (5, "m"))}
    not_a_number = '{"t": {"score": [NaN, [5, "m1"]]}, "c": {"page": 1}}'
    assert NodeState.decode(not_a_number).counts == {"page": 1}
    assert NodeState.decode("{}") == NodeState()


# -- merge laws ---------------------------------------------------------------------------

_values = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from(["0.1", "0.2", "1.50", "-3", "abc", "1e3", "2.0"]),
    st.floats(-100, 100, allow_nan=False).map(lambda f: round(f, 2)),
    st.none(),
)


@st.composite
def events(draw: st.DrawFn, part: str) -> list[tuple[dict[str, Any], int]]:
    """Events with unique messageIds (as the collector guarantees per workspace); the
    ids still sort in every order against the other parts' ids."""
    result = []
    for index in range(draw(st.integers(0, 12))):
        ts = draw(st.sampled_from([0, 1, 2, GAP, GAP + 1, 3 * GAP, 10 * GAP]))
        mid = f"m{draw(st.integers(0, 3))}-{part}{index}"
        kind = draw(st.sampled_from(["identify", "track", "track", "page"]))
        if kind == "identify":
            traits = draw(st.dictionaries(st.sampled_from(["plan", "name", "age"]), _values))
            result.append(identify(ts, mid, **traits))
        elif kind == "track":
            name = draw(st.sampled_from(["Order Completed", "Signed Up", "Viewed A", "Viewed B"]))
            props = draw(st.dictionaries(st.sampled_from(["total", "plan", "source"]), _values))
            result.append(track(ts, mid, name, **props))
        else:
            result.append(page(ts, mid, draw(st.sampled_from(["https://a/", "https://b/"]))))
    return result


def view(folder: StateFolder, state: NodeState) -> dict[str, Any]:
    return {
        "traits": folder.traits(state),
        "computed": folder.computed_traits(state),
        "sessions": state.sessions,
    }


@settings(PROPS, max_examples=100)
@given(events("a"), events("b"), events("c"))
def test_merge_is_commutative_and_associative(
    a: list[tuple[dict[str, Any], int]],
    b: list[tuple[dict[str, Any], int]],
    c: list[tuple[dict[str, Any], int]],
) -> None:
    folder = StateFolder(GAP, COMPUTED)

    def merged(*parts: list[tuple[dict[str, Any], int]]) -> NodeState:
        into = fold(folder, parts[0])
        for part in parts[1:]:
            folder.merge(into, fold(folder, part))
        return into

    all_at_once = view(folder, fold(folder, a + b + c))
    assert view(folder, merged(a, b)) == view(folder, merged(b, a))
    assert view(folder, merged(a, b, c)) == all_at_once
    assert view(folder, merged(c, b, a)) == all_at_once
    # (a + b) + c == a + (b + c)
    right = fold(folder, b)
    folder.merge(right, fold(folder, c))
    left = fold(folder, a)
    folder.merge(left, right)
    assert view(folder, left) == all_at_once
    # Merging an empty state changes nothing.
    empty = NodeState()
    folder.merge(empty, merged(a, b, c))
    assert view(folder, empty) == all_at_once


@settings(PROPS, max_examples=100)
@given(
    events("a"),
    events("b"),
    events("c"),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2, DEFAULT_MAX_EVENT_NAMES]),
)
def test_merge_laws_hold_for_bounded_states(
    a: list[tuple[dict[str, Any], int]],
    b: list[tuple[dict[str, Any], int]],
    c: list[tuple[dict[str, Any], int]],
    kept: int,
    names: int,
) -> None:
    """Identifiers with closed sessions and event names beyond the bound merge in any
    order and grouping to one state."""
    folder = StateFolder(GAP, COMPUTED, max_sessions=kept, max_event_names=names)
    parts = [fold(folder, part) for part in (a, b, c)]

    def merged(*states: NodeState) -> NodeState:
        into = NodeState()
        for state in states:
            folder.merge(into, NodeState.decode(state.encode()))  # a fresh copy each time
        return into

    x, y, z = parts
    expected = merged(x, y, z)
    for order in ((z, y, x), (y, x, z), (x, merged(y, z)), (merged(z, x), y)):
        again = merged(*order)
        assert again == expected
        assert folder.computed_traits(again) == folder.computed_traits(expected)


@settings(PROPS, max_examples=100)
@given(
    events("a"),
    st.sampled_from([GAP, GAP // 2, 3 * GAP]),
    st.sampled_from([1, DEFAULT_MAX_EVENT_NAMES]),
)
def test_a_state_is_merged_exactly_when_merging_it_into_nothing_changes_nothing(
    folded: list[tuple[dict[str, Any], int]], gap_now: int, names_now: int
) -> None:
    """Profiles of one node skip the merge (``StateFolder.is_merged``); a state written
    under another session gap or a larger event-name bound, or with its consent history
    out of order, does not."""
    state = fold(StateFolder(GAP, COMPUTED), folded)
    state.consent_history = [
        [5, "m2", "analytics", True, "api"],
        [1, "m1", "analytics", False, "api"],
    ][: len(folded) % 3]
    folder = StateFolder(gap_now, COMPUTED, max_event_names=names_now)
    merged = NodeState()
    folder.merge(merged, state)
    if folder.is_merged(state):
        assert view(folder, state) == view(folder, merged)
        assert folder.consent(state) == folder.consent(merged)
        assert (state.first_seen, state.last_seen) == (merged.first_seen, merged.last_seen)
    else:
        assert (
            state.sessions != merged.sessions
            or state.consent_history != merged.consent_history
            or state.counts != merged.counts
        )


def test_min_and_max_of_equal_numbers_spelled_apart_do_not_depend_on_the_order() -> None:
    """``0`` and ``0.0`` are equal: which one ``min``/``max`` keep used to follow the
    arrival order, so the stored state differed (hypothesis found it). Decimal's total
    order now picks the same one either way, in folding and in merging."""
    traits = [
        ComputedTrait("smallest", "min", "Order Completed", "total"),
        ComputedTrait("largest", "max", "Order Completed", "total"),
    ]
    folder = StateFolder(GAP, traits)
    one, other = track(1, "m1", total=0), track(2, "m2", total="0.0")
    forward, backward = fold(folder, [one, other]), fold(folder, [other, one])
    assert forward.computed == backward.computed
    split = fold(folder, [other])
    folder.merge(split, fold(folder, [one]))
    assert split.computed == forward.computed
    assert folder.computed_traits(forward)["smallest"] == 0


def test_of_two_consent_statements_with_one_stamp_the_refusal_wins_in_any_order() -> None:
    """Folding and merging keep the same statement whichever arrives first (two stamps
    are equal only for one message stating a purpose twice, or a replayed import)."""
    folder = StateFolder(GAP)
    stamp_ms = 5_000

    def stated(granted: bool) -> dict[str, Any]:
        return {"type": "consent", "messageId": "c1", "consent": {"analytics": granted}}

    for first, second in ((True, False), (False, True)):
        folded = NodeState()
        folder.apply(folded, stated(first), stamp_ms)
        folder.apply(folded, stated(second), stamp_ms)
        assert folded.consent == {"analytics": (False, (stamp_ms, "c1"))}
        merged, other = NodeState(), NodeState()
        folder.apply(merged, stated(first), stamp_ms)
        folder.apply(other, stated(second), stamp_ms)
        folder.merge(merged, other)
        assert merged.current_consent() == {"analytics": False}
        assert merge_consent({}, merged.consent) == merged.consent
