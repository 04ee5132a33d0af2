"""Trends, funnels, retention and segments on a generated data set, straight from the lake,
each checked against the same rules written again in plain Python (tests/analytics_data.py)
over the generated events and who generated them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import analytics_data as ad
from auie.analytics.funnels import funnels
from auie.analytics.models import FunnelsIn, RetentionIn, SegmentIn, TrendsIn
from auie.analytics.persons import Scope, Sql, events_cte
from auie.analytics.retention import retention
from auie.analytics.segments import SegmentStore, members, segments_of
from auie.analytics.trends import trends
from auie.lake.tables import PROFILES, TABLES
from auie.runtime import Runtime
from helpers import make_settings

pytestmark = pytest.mark.slow
COMPUTED = [{"name": "revenue", "kind": "sum", "event": "Order Completed", "property": "revenue"}]


@dataclass
class World:
    runtime: Runtime
    workspace: str
    data: ad.Dataset
    rows: list[ad.Row]
    #: person key → traits / computed traits / profile id, from the generated events.
    traits: dict[str, dict[str, Any]]
    computed: dict[str, dict[str, Any]]
    profile_of: dict[str, str]

    @property
    def scope(self) -> Scope:
        return Scope.of(self.runtime, self.workspace)


def computed_traits(rows: list[ad.Row]) -> dict[str, Any]:
    revenue = [
        r.properties["revenue"]
        for r in rows
        if r.name == "Order Completed" and "revenue" in r.properties
    ]
    return {
        "firstSeen": ad.iso(min(r.ts for r in rows)),
        "lastSeen": ad.iso(max(r.ts for r in rows)),
        "eventCounts": dict(Counter(r.name for r in rows)),
        "revenue": sum(revenue) if revenue else None,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data, _raw = ad.generate()
    settings = make_settings(
        tmp_path_factory.mktemp("analytics") / "data", **{"profiles.computed": COMPUTED}
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    ad.load(runtime, boot.workspace, data.events)
    rows = ad.rows(data)
    by_person: dict[str, list[ad.Row]] = {}
    for row in rows:
        by_person.setdefault(row.person, []).append(row)
    profile_of = {
        key: runtime.profiles.profile(boot.workspace, *data.lookup(key)).profile_id
        for key in data.people
    }
    yield World(
        runtime,
        boot.workspace,
        data,
        rows,
        {key: data.traits(key) for key in data.people},
        {key: computed_traits(group) for key, group in by_person.items()},
        profile_of,
    )
    runtime.close()


# -- the data set and person resolution -----------------------------------------------------------


def test_the_data_set_is_realistic(world: World) -> None:
    data = world.data
    names = Counter(row.name for row in world.rows)
    assert len(data.people) >= 300
    assert len([n for n in names if n not in {"page", "identify"}]) >= 10
    devices = Counter(len(p.devices) for p in data.people.values() if p.user_id)
    assert devices[2]
    assert devices[3]
    anonymous_then_known = {
        row.person
        for row in world.rows
        if row.fields["user_id"] is None and row.person.startswith("user-")
    }
    assert len(anonymous_then_known) > 200
    assert len([p for p in data.people if p.startswith("device-")]) > 20
    assert (max(r.ts for r in world.rows) - min(r.ts for r in world.rows)).days >= 41


def test_each_person_is_one_profile(world: World) -> None:
    """The generator's people are exactly the profiles (no merge too many or too few)."""
    assert len(set(world.profile_of.values())) == len(world.profile_of)


def test_every_event_is_attributed_to_its_person(world: World) -> None:
    q = Sql()
    cte = events_cte(q, start=ad.START - timedelta(days=1), end=None, names=None)
    result = world.scope.query(f"WITH {cte} SELECT message_id, person_id FROM ev", q.params)
    found = dict(result.rows)
    assert len(found) == len(world.rows)
    expected = {row.message_id: world.profile_of[row.person] for row in world.rows}
    assert found == expected


# -- trends ---------------------------------------------------------------------------------------


def prop(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"property": name, "op": op, "value": value}


MIDWAY = ad.START + timedelta(days=10, hours=5, minutes=30)
TREND_CASES: list[dict[str, Any]] = [
    {"events": ["page", "identify", "Signed Up", "Order Completed"], "interval": "day"},
    {
        "events": ["Product Viewed", "Order Completed", "Logged In"],
        "measure": "people",
        "interval": "week",
        "filters": [{"property": "price", "op": "gte", "value": 19}],
        "breakdown": {"trait": "plan"},
        "breakdownLimit": 2,
    },
    {
        "events": ["page"],
        "interval": "hour",
        "from": MIDWAY,
        "to": MIDWAY + timedelta(days=2, hours=3),
        "breakdown": {"field": "utm_source"},
    },
    {
        "events": ["page", "Product Viewed"],
        "measure": "people",
        "interval": "day",
        "breakdown": {"field": "browser_name"},
        "breakdownLimit": 3,
    },
    {
        "events": ["Product Viewed", "Product Added"],
        "breakdown": {"property": "price"},
        "filters": [{"property": "category", "op": "in", "value": ["shoes", "bags", "nope"]}],
    },
    {"events": ["Products Searched"], "filters": [prop("query", "contains", "BAG")]},
    {"events": ["Product Viewed"], "filters": [prop("category", "neq", "hats")]},
    {"events": ["Video Played"], "breakdown": {"property": "autoplay"}},
    {"events": ["Video Played"], "filters": [{"property": "autoplay", "op": "eq", "value": True}]},
    {"events": ["Video Played"], "filters": [{"property": "length", "op": "lt", "value": 100}]},
    {"events": ["Product Viewed"], "filters": [prop("price", "is_set", False)]},
    {"events": ["page"], "filters": [{"field": "browser_name", "op": "eq", "value": "Firefox"}]},
    {
        "events": ["Order Completed", "Checkout Started"],
        "measure": "people",
        "filters": [
            {"trait": "country", "op": "in", "value": ["DE", "FR"]},
            {"trait": "age", "op": "gte", "value": 40},
        ],
        "breakdown": {"trait": "country"},
    },
    # (email is encrypted at rest, like every privacy.pii_fields trait: no filters on it)
    {"events": ["page"], "filters": [{"trait": "plan", "op": "lt", "value": "pro"}]},
    {"events": ["page"], "filters": [{"trait": "beta", "op": "eq", "value": True}]},
    {"events": ["Signed Up"], "filters": [{"trait": "plan", "op": "is_set"}], "interval": "week"},
    {"events": ["Nothing Happened", "Signed Up"], "interval": "week"},
]  # fmt: skip


def trend_request(case: dict[str, Any]) -> dict[str, Any]:
    body = {"from": ad.START, "to": ad.END, **case}
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in body.items()}


@pytest.mark.parametrize("case", TREND_CASES, ids=lambda c: "-".join(c["events"])[:40])
def test_trends_match_the_plain_rules(world: World, case: dict[str, Any]) -> None:
    body = trend_request(case)
    request = TrendsIn.model_validate(body)
    out = trends(world.scope, request)
    expected = ad.expected_trends(
        world.rows,
        world.traits,
        events=request.events,
        measure=request.measure,
        interval=request.interval,
        start=request.from_,
        end=request.to,
        filters=case.get("filters", []),
        breakdown=case.get("breakdown"),
        limit=request.breakdown_limit,
    )
    assert out.buckets == list(ad_buckets(request.from_, request.to, request.interval))
    found = {
        (s.event, s.breakdown, s.other): (
            {b: v for b, v in zip(out.buckets, s.values, strict=True) if v},
            s.total,
        )
        for s in out.series
    }
    assert found == expected
    assert len(found) == len(out.series)
    # Series: by requested event, then by total (ties: value), "other" last.
    order = [
        (s.event, s.other, -s.total, s.breakdown is None, s.breakdown or "") for s in out.series
    ]
    assert order == sorted(order, key=lambda o: (request.events.index(o[0]), *o[1:]))
    assert sum(found[k][1] for k in found) or case["events"][0] == "Nothing Happened"


def ad_buckets(start: datetime, end: datetime, interval: str) -> Iterator[datetime]:
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
    moment = ad.truncate(start, interval)
    while moment < end:
        yield moment
        moment += step[interval]


def test_trend_range_is_start_inclusive_end_exclusive(world: World) -> None:
    body = trend_request({"events": ["Product Viewed"], "filters": [
        {"field": "user_id", "op": "eq", "value": "boundary-user"}]})  # fmt: skip
    out = trends(world.scope, TrendsIn.model_validate(body))
    (series,) = out.series
    assert series.total == 2  # START and END - 1 ms, not END
    assert series.values[0] == 1
    assert series.values[-1] == 1


# -- funnels --------------------------------------------------------------------------------------

STEPS = [{"event": name} for name in ad.FUNNEL]
FUNNEL_CASES: list[dict[str, Any]] = [
    {"steps": STEPS},
    {"steps": STEPS, "conversionWindow": 7 * 86400},
    {"steps": STEPS, "conversionWindow": 60},
    {"steps": STEPS, "breakdown": {"property": "category"}, "breakdownLimit": 2},
    {"steps": STEPS, "breakdown": {"trait": "plan"}},
    {"steps": STEPS, "breakdown": {"field": "browser_name"}, "from": MIDWAY},
    {
        "steps": [
            {"event": "Product Viewed", "filters": [
                {"property": "category", "op": "in", "value": ["shoes", "bags"]}]},
            {"event": "Product Added", "filters": [prop("quantity", "gte", 2)]},
            {"event": "Order Completed", "filters": [prop("revenue", "gt", 40)]},
        ],
        "breakdown": {"property": "category"},
    },
    {"steps": [{"event": "page"}, {"event": "page"}, {"event": "Product Added"}]},
    {"steps": [{"event": "Signed Up"}, {"event": "Logged In"}, {"event": "Order Completed"}],
     "conversionWindow": 14 * 86400},
    {"steps": [{"event": "Product Viewed", "filters": [
        {"trait": "country", "op": "eq", "value": "DE"}]}, {"event": "Product Added"}]},
]  # fmt: skip


@pytest.mark.parametrize("case", FUNNEL_CASES, ids=lambda c: str(len(c["steps"])) + str(sorted(c)))
def test_funnels_match_the_plain_rules(world: World, case: dict[str, Any]) -> None:
    body = {"conversionWindow": ad.WINDOW, **trend_request(case)}
    request = FunnelsIn.model_validate(body)
    out = funnels(world.scope, request)
    people = ad.expected_funnel(
        world.rows,
        world.traits,
        steps=case["steps"],
        window=request.conversion_window,
        start=request.from_,
        end=request.to,
        breakdown=case.get("breakdown"),
    )
    check_steps(out.steps, ad.funnel_counts(people.values(), len(case["steps"])))
    assert out.steps[0].count > 0
    if "breakdown" not in case:
        assert out.breakdowns == []
        return
    by_value: dict[Any, list[tuple[Any, list[float]]]] = {}
    for value, times in people.values():
        by_value.setdefault(value, []).append((value, times))
    top = ad.top_values({v: len(g) for v, g in by_value.items()}, request.breakdown_limit)
    expected = [(v, False, by_value[v]) for v in top]
    rest = [p for v, g in by_value.items() if v not in top for p in g]
    if rest:
        expected.append((None, True, rest))
    assert [(b.breakdown, b.other) for b in out.breakdowns] == [(v, o) for v, o, _ in expected]
    for found, (_value, _other, group) in zip(out.breakdowns, expected, strict=True):
        check_steps(found.steps, ad.funnel_counts(group, len(case["steps"])))


def check_steps(found: list[Any], expected: list[tuple[int, float | None]]) -> None:
    first = expected[0][0]
    for index, (step, (count, median)) in enumerate(zip(found, expected, strict=True)):
        previous = expected[index - 1][0] if index else first
        assert step.step == index + 1
        assert step.count == count
        assert step.conversion_rate == pytest.approx(count / first if first else None)
        assert step.conversion_from_previous == pytest.approx(
            count / previous if previous else None
        )
        if median is None:
            assert step.median_seconds_to_convert is None
        else:
            assert step.median_seconds_to_convert == pytest.approx(median, abs=1e-3)


@pytest.mark.parametrize(
    ("script", "reached", "medians"),
    [
        ("edge-window", 3, [ad.WINDOW / 2, ad.WINDOW / 2]),  # the window is inclusive
        ("out-of-order", 2, [0.002]),  # entry at the first view; checkouts before the add
        ("tie-before", 1, []),  # same time, but the add's message id sorts first
        ("tie-after", 4, [0.0, 0.0, 0.0]),
        ("repeat-entry", 1, []),  # the window runs from the first view
        ("repeats", 4, [0.001, 0.004, 0.002]),
    ],
)
def test_funnel_rules_on_scripted_people(
    world: World, script: str, reached: int, medians: list[float]
) -> None:
    user = world.data.people[f"script-{script}"].user_id
    only = [{"field": "user_id", "op": "eq", "value": user}]
    body = trend_request({"steps": [{"event": e, "filters": only} for e in ad.FUNNEL]})
    out = funnels(world.scope, FunnelsIn.model_validate({**body, "conversionWindow": ad.WINDOW}))
    assert [s.count for s in out.steps] == [1] * reached + [0] * (4 - reached)
    found = [s.median_seconds_to_convert for s in out.steps[1:reached]]
    assert found == pytest.approx(medians, abs=1e-6)


def test_a_step_repeated_in_the_funnel_needs_a_later_event(world: World) -> None:
    user = world.data.people["script-same-step-twice"].user_id
    only = [{"field": "user_id", "op": "eq", "value": user}]
    step = {"event": "Product Viewed", "filters": only}
    body = trend_request({"steps": [step, step, step]})
    out = funnels(world.scope, FunnelsIn.model_validate(body))
    assert [s.count for s in out.steps] == [1, 1, 0]
    assert out.steps[1].median_seconds_to_convert == pytest.approx(1.0)


# -- retention ------------------------------------------------------------------------------------

RETENTION_CASES: list[dict[str, Any]] = [
    {"startEvent": "Signed Up", "returnEvent": "Order Completed", "period": "week", "periods": 6,
     "from": ad.START + timedelta(days=3, hours=5)},
    {"startEvent": "page", "returnEvent": "page", "period": "day", "periods": 10,
     "from": ad.END - timedelta(days=12)},
    {"startEvent": "Product Viewed", "returnEvent": "Product Added", "period": "day",
     "periods": 4, "from": MIDWAY, "to": MIDWAY + timedelta(days=9)},
    {"startEvent": "Logged In", "returnEvent": "Subscription Upgraded", "period": "week",
     "periods": 8},
]  # fmt: skip


@pytest.mark.parametrize("case", RETENTION_CASES, ids=lambda c: f"{c['startEvent']}-{c['period']}")
def test_retention_matches_the_plain_rules(world: World, case: dict[str, Any]) -> None:
    request = RetentionIn.model_validate(trend_request(case))
    out = retention(world.scope, request)
    expected = ad.expected_retention(
        world.rows,
        start_event=request.start_event,
        return_event=request.return_event,
        period=request.period,
        periods=request.periods,
        start=request.from_,
        end=request.to,
    )
    assert [c.cohort for c in out.cohorts] == list(expected)
    for cohort in out.cohorts:
        counts = expected[cohort.cohort]
        assert cohort.counts == counts
        assert cohort.size == counts[0]
        assert cohort.rates == [
            None if c is None or not counts[0] else pytest.approx(c / counts[0]) for c in counts
        ]
    assert sum(c.size for c in out.cohorts) > 0


# -- segments -------------------------------------------------------------------------------------

NOW = ad.END - timedelta(days=2, hours=3)
SEGMENTS: dict[str, dict[str, Any]] = {
    "pro recent buyers": {"and": [
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"event": "Order Completed", "atLeast": 1, "inLastDays": 14,
         "filters": [{"property": "revenue", "op": "gt", "value": 50}]},
    ]},
    "loyal or far away": {"or": [
        {"computedTrait": "eventCounts.Order Completed", "op": "gte", "value": 3},
        {"trait": "country", "op": "in", "value": ["JP", "BR"]},
        {"computedTrait": "firstSeen", "op": "lt", "value": "2026-09-09"},
    ]},
    "big spenders": {"computedTrait": "revenue", "op": "gt", "value": 200},
    "busy, not in beta": {"and": [
        {"trait": "beta", "op": "is_set", "value": False},
        {"event": "page", "atLeast": 5, "inLastDays": 7},
    ]},
    "nested": {"or": [
        {"and": [{"trait": "country", "op": "contains", "value": "d"},
                 {"trait": "age", "op": "lt", "value": 30}]},
        {"and": [{"event": "Products Searched", "inLastDays": 30},
                 {"event": "Video Played", "atLeast": 2, "inLastDays": 30,
                  "filters": [{"property": "autoplay", "op": "eq", "value": False}]}]},
    ]},
    "anyone who viewed": {"event": "Product Viewed", "inLastDays": 3650},
}  # fmt: skip


def holds(world: World, node: dict[str, Any], person: str, now: datetime) -> bool:
    if "and" in node:
        return all(holds(world, n, person, now) for n in node["and"])
    if "or" in node:
        return any(holds(world, n, person, now) for n in node["or"])
    if "event" in node:
        since = now - timedelta(days=node["inLastDays"])
        done = [
            r
            for r in world.rows
            if r.person == person
            and r.name == node["event"]
            and since <= r.ts <= now
            and all(ad.event_filter(r, {}, f) for f in node.get("filters", []))
        ]
        return len(done) >= node.get("atLeast", 1)
    if "trait" in node:
        return ad.matches(world.traits.get(person, {}), {**node, "key": node["trait"]})
    *path, key = node["computedTrait"].split(".")
    document = world.computed.get(person, {})
    for part in path:
        document = document.get(part) or {}
    return ad.matches(document, {**node, "key": key})


def expected_members(world: World, definition: dict[str, Any], now: datetime) -> set[str]:
    return {
        world.profile_of[person]
        for person in world.data.people
        if holds(world, definition, person, now)
    }


@pytest.fixture(scope="module")
def saved(world: World) -> dict[str, Any]:
    store = SegmentStore(world.runtime.engine)
    return {
        name: store.create(
            world.workspace, SegmentIn.model_validate({"name": name, "definition": definition})
        )
        for name, definition in SEGMENTS.items()
    }


@pytest.mark.parametrize("name", list(SEGMENTS))
def test_segment_members_match_the_plain_rules(
    world: World, saved: dict[str, Any], name: str
) -> None:
    segment = saved[name]
    expected = expected_members(world, SEGMENTS[name], NOW)
    assert 0 < len(expected) < len(world.profile_of)
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = members(world.scope, segment, limit=37, cursor=cursor, now=NOW)
        assert page.count == len(expected)
        found += [m.profile_id for m in page.members]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert found == sorted(expected)
    assert pages == max(1, -(-len(expected) // 37))


def test_segments_of_one_profile(world: World, saved: dict[str, Any]) -> None:
    rng = random.Random(3)
    people = rng.sample(sorted(world.profile_of), 40) + [
        p for p in world.profile_of if p.startswith("script-")
    ]
    names_by_id = {segment.id: name for name, segment in saved.items()}
    for person in people:
        found = segments_of(world.runtime, world.workspace, world.profile_of[person], now=NOW)
        expected = sorted(
            (
                name
                for name, definition in SEGMENTS.items()
                if holds(world, definition, person, NOW)
            ),
        )
        assert [names_by_id[s] for s in found] == expected, person
    assert segments_of(world.runtime, world.workspace, "p_nobody", now=NOW) == []


def test_behaviour_counts_end_now(world: World, saved: dict[str, Any]) -> None:
    """Events after ``now`` do not count: the boundary person's views are at the range's
    edges, and the last ones are after NOW."""
    segment = saved["anyone who viewed"]
    boundary = world.profile_of["boundary"]
    early = members(world.scope, segment, limit=10_000, now=ad.START - timedelta(seconds=1))
    assert early.count == 0
    at_start = members(world.scope, segment, limit=10_000, now=ad.START)
    assert [m.profile_id for m in at_start.members] == [boundary]


# -- traits from the lake's profiles snapshot -----------------------------------------------------


def test_traits_come_from_the_latest_snapshot_row_else_the_store(tmp_path: Path) -> None:
    data, _raw = ad.generate(seed=11, users=6, visitors=2)
    runtime = Runtime(make_settings(tmp_path / "data"))
    try:
        boot = runtime.bootstrap()
        assert boot is not None
        ws = boot.workspace
        ad.load(runtime, ws, data.events)
        users = sorted(k for k, p in data.people.items() if p.user_id and k.startswith("user-"))
        ids = {k: runtime.profiles.profile(ws, *data.lookup(k)).profile_id for k in users}
        a, b = users[0], users[1]
        # Newer than the snapshot the processor took when it stopped.
        t = datetime.now(UTC) + timedelta(days=1)
        snapshot = [
            (ids[a], {"plan": "enterprise"}, t),
            (ids[a], {"plan": "free"}, t - timedelta(hours=1)),
            (ids[b], {"plan": "enterprise"}, t - timedelta(hours=2)),
            (ids[b], {"plan": "old"}, t - timedelta(hours=3)),
        ]
        rows = [
            {
                "profile_id": pid,
                "identities": "[]",
                "traits": ad.text_form(traits),
                "computed_traits": "{}",
                "first_seen": None,
                "last_seen": None,
                "snapshot_at": at,
            }
            for pid, traits, at in snapshot
        ]
        runtime.lake.table(ws, PROFILES).append(
            pa.Table.from_pylist(rows, schema=TABLES[PROFILES].arrow)
        )
        scope = Scope.of(runtime, ws)
        segment = SegmentStore(runtime.engine).create(
            ws,
            SegmentIn.model_validate(
                {
                    "name": "enterprise",
                    "definition": {"trait": "plan", "op": "eq", "value": "enterprise"},
                }
            ),
        )
        found = members(scope, segment, limit=100)
        assert sorted(m.profile_id for m in found.members) == sorted([ids[a], ids[b]])
        # The others' traits come from the profile store.
        plans = {data.traits(k)["plan"] for k in users[2:]}
        other = SegmentStore(runtime.engine).create(
            ws,
            SegmentIn.model_validate(
                {
                    "name": "stored",
                    "definition": {"trait": "plan", "op": "in", "value": sorted(plans)},
                }
            ),
        )
        found = members(scope, other, limit=100)
        stored = [k for k in data.people if k not in (a, b) and data.traits(k).get("plan") in plans]
        assert len(stored) > len(users[2:])  # the scripted people are "pro" too
        assert sorted(m.profile_id for m in found.members) == sorted(
            runtime.profiles.profile(ws, *data.lookup(k)).profile_id for k in stored
        )
        body = trend_request({"events": ["identify"], "breakdown": {"trait": "plan"}})
        out = trends(scope, TrendsIn.model_validate(body))
        labels = {s.breakdown for s in out.series}
        assert "enterprise" in labels
        assert "old" not in labels
    finally:
        runtime.close()


def test_analyses_of_an_empty_workspace(runtime: Runtime) -> None:
    ws = runtime.tenancy.create_workspace("empty").id
    scope = Scope.of(runtime, ws)
    body = trend_request({"events": ["page"], "measure": "people", "breakdown": {"trait": "x"}})
    out = trends(scope, TrendsIn.model_validate(body))
    assert out.series == []
    out2 = trends(scope, TrendsIn.model_validate(trend_request({"events": ["page"]})))
    assert [s.total for s in out2.series] == [0]
    assert len(out2.series[0].values) == ad.DAYS
    steps = funnels(scope, FunnelsIn.model_validate(trend_request({"steps": STEPS})))
    assert [s.count for s in steps.steps] == [0, 0, 0, 0]
    assert steps.steps[0].conversion_rate is None
    cohorts = retention(
        scope,
        RetentionIn.model_validate(
            trend_request({"startEvent": "a", "returnEvent": "b", "period": "week"})
        ),
    )
    assert [c.size for c in cohorts.cohorts] == [0] * 6
