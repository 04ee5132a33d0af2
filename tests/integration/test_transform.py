"""The transformation layer on real engines: events through the collector and the processor
into the lake, ``auie transform`` (dbt on DuckDB, and on PostgreSQL), every mart checked
against a plain-Python computation over the same lake rows.

One module-scoped data directory: phase 1 events → a DuckDB build (CLI); phase 2 events
(new people, new sessions, late events, an anonymous visitor who logs in as an existing
user) → an incremental build (runner API) → a full refresh, which must agree.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from auie.api.app import create_app
from auie.cli.main import cli
from auie.runtime import Runtime
from auie.transform.runner import MARTS, TransformResult, TransformRunner, duckdb_path, marts_dir
from helpers import basic, make_settings

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
GAP = timedelta(minutes=30)
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
PRODUCTS = ["/products/lamp", "/products/chair", "/products/desk", "/products/rug"]
SOURCES = ["newsletter", "google", "twitter", None]


# -- the event stream -----------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Stream:
    """A realistic, seeded stream: people browse anonymously, some sign up and log in,
    sessions of pages and tracks separated by hours or days."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.events: list[dict[str, Any]] = []
        self.count = 0

    def _message(self, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
        self.count += 1
        message = {"type": kind, "messageId": f"m-{self.count:05d}", "timestamp": _iso(at)}
        message.update({k: v for k, v in fields.items() if v is not None})
        self.events.append(message)
        return message

    def page(
        self, at: datetime, path: str, anon: str, user: str | None, utm: str | None = None
    ) -> None:
        url = f"https://shop.example{path}" + (f"?utm_source={utm}&utm_medium=email" if utm else "")
        self._message(
            "page",
            at,
            anonymousId=anon,
            userId=user,
            name=path.strip("/") or "home",
            properties={"path": path, "url": url},
            context={"page": {"url": url, "path": path}, "userAgent": "Mozilla/5.0 (X11)"},
        )

    def track(self, at: datetime, event: str, anon: str | None, user: str | None) -> None:
        props: dict[str, Any] = {"sku": self.random.choice(PRODUCTS)}
        if event == "Order Completed":
            props["revenue"] = self.random.choice([19.5, 42, 99.99])
        self._message("track", at, event=event, anonymousId=anon, userId=user, properties=props)

    def identify(self, at: datetime, anon: str | None, user: str) -> None:
        self._message(
            "identify", at, anonymousId=anon, userId=user, traits={"email": f"{user}@example.com"}
        )

    def session(self, start: datetime, anon: str, user: str | None, *, length: int = 0) -> datetime:
        """One visit: pages and tracks a few seconds to 25 minutes apart; returns its end."""
        at = start
        length = length or self.random.randint(1, 7)
        utm = self.random.choice(SOURCES)
        for i in range(length):
            if i:
                at += timedelta(seconds=self.random.choice([5, 40, 300, 1500]))
            if i == 0 or self.random.random() < 0.6:
                self.page(
                    at, self.random.choice(["/", *PRODUCTS]), anon, user, utm if i == 0 else None
                )
            else:
                self.track(
                    at,
                    self.random.choice(["Product Viewed", "Added to Cart", "Order Completed"]),
                    anon,
                    user,
                )
        return at

    def person(self, number: int, first: datetime, visits: int, *, signs_up: bool) -> None:
        anon, user = f"anon-{number}", f"user-{number}"
        at = first
        known = False
        for visit in range(visits):
            end = self.session(at, anon, user if known else None)
            if signs_up and visit == visits // 2 and not known:
                end += timedelta(seconds=30)
                self.identify(end, anon, user)
                self.track(end + timedelta(seconds=1), "Signed Up", anon, user)
                known = True
            at = end + timedelta(hours=self.random.choice([1, 5, 20, 49, 170]))


def phase_one() -> list[dict[str, Any]]:
    stream = Stream(7)
    base = AS_OF - timedelta(days=55)
    for number in range(24):
        first = base + timedelta(days=number * 2, hours=number % 7, minutes=number * 13)
        stream.person(number, first, visits=2 + number % 5, signs_up=number % 3 != 0)
    # Session boundaries: exactly the gap continues a session, a second more starts one.
    edge = AS_OF - timedelta(days=3)
    stream.page(edge, "/", "anon-edge", None)
    stream.page(edge + GAP, "/products/lamp", "anon-edge", None)
    stream.page(edge + 2 * GAP + timedelta(seconds=1), "/products/desk", "anon-edge", None)
    # A second device of user-1, logged in: the same person.
    stream.session(AS_OF - timedelta(days=2, hours=3), "anon-1-phone", "user-1", length=3)
    # Events of one second: ties broken by log position.
    tie = AS_OF - timedelta(days=1, hours=2)
    stream.page(tie, "/tie-a", "anon-tie", None)
    stream.page(tie, "/tie-b", "anon-tie", None)
    return stream.events


def phase_two() -> list[dict[str, Any]]:
    stream = Stream(11)
    stream.count = 50_000
    # Existing people come back, new people arrive.
    for number in (1, 2, 4, 30, 31):
        stream.person(number, AS_OF - timedelta(days=1, hours=number), 2, signs_up=number == 30)
    # A late event on an old day of user-2.
    stream.track(AS_OF - timedelta(days=40), "Product Viewed", "anon-2", "user-2")
    # anon-0 never signed up in phase one; now logs in as user-4 on that browser: merge.
    stream.identify(AS_OF - timedelta(hours=5), "anon-0", "user-4")
    stream.page(AS_OF - timedelta(hours=5) + timedelta(seconds=2), "/", "anon-0", "user-4")
    # anon-edge's next visit 10 minutes after its last page.
    stream.page(AS_OF - timedelta(days=3) + 2 * GAP + timedelta(minutes=11), "/", "anon-edge", None)
    return stream.events


def bad_events() -> list[dict[str, Any]]:
    """Dead letters: junk identifiers (stage identity)."""
    at = _iso(AS_OF - timedelta(days=4))
    return [
        {
            "type": "track",
            "event": "Ghost",
            "userId": "null",
            "messageId": "junk-1",
            "timestamp": at,
        },
        {"type": "page", "anonymousId": "undefined", "messageId": "junk-2", "timestamp": at},
    ]


# -- the data directory ---------------------------------------------------------------------


@dataclass
class World:
    runtime: Runtime
    client: TestClient
    write_key: str
    workspace: str
    data_dir: Path

    def send(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 200):
            reply = self.client.post(
                "/v1/batch",
                json={"batch": events[start : start + 200]},
                headers=basic(self.write_key),
            )
            assert reply.status_code == 200, reply.text
        processor = self.runtime.processor()
        for _ in range(10_000):
            report = processor.step()
            if report.events == 0 and report.dead_letters == 0:
                break
        processor.flush()

    def runner(self) -> TransformRunner:
        return TransformRunner(self.runtime.settings, self.runtime.lake)

    def build(self, **options: Any) -> TransformResult:
        result = self.runner().run(self.workspace, variables={"as_of": _iso(AS_OF)}, **options)
        assert result.success, result.error
        return result


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("transform") / "data"
    runtime = Runtime(make_settings(data_dir, **{"analytics.transform_interval_minutes": 0}))
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(runtime)) as client:
        yield World(runtime, client, boot.write_key, boot.workspace, data_dir)
    runtime.close()


# -- the plain-Python reference ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    key: tuple[int, int]
    anonymous_id: str | None
    type: str
    name: str
    person: str
    at: datetime
    page_path: str | None
    utm_source: str | None


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def reference_events(runtime: Runtime, workspace: str) -> list[Event]:
    lake = runtime.lake
    identities = lake.refresh(workspace, "identities").scan().to_arrow().to_pylist()
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in identities:
        key = (row["id_type"], row["id_value"])
        if key not in latest or (row["changed_at"], row["profile_id"]) > (
            latest[key]["changed_at"],
            latest[key]["profile_id"],
        ):
            latest[key] = row
    profile = {key: row["profile_id"] for key, row in latest.items()}
    events = []
    for row in lake.refresh(workspace, "events").scan().to_arrow().to_pylist():
        person = (
            profile.get(("user_id", row["user_id"]))
            or profile.get(("anonymous_id", row["anonymous_id"]))
            or (f"anon:{row['anonymous_id']}" if row["anonymous_id"] else f"user:{row['user_id']}")
        )
        props = json.loads(row["properties"]) if row["properties"] else {}
        events.append(
            Event(
                (row["log_partition"], row["log_offset"]),
                row["anonymous_id"],
                row["type"],
                (row["event"] or "track") if row["type"] == "track" else row["type"],
                person,
                naive(row["timestamp"]),
                row["page_path"] or row["context_page_path"] or props.get("path"),
                row["utm_source"],
            )
        )
    return events


def reference_sessions(events: list[Event]) -> set[tuple[Any, ...]]:
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_person[event.person].append(event)
    sessions = set()
    for person, mine in by_person.items():
        mine.sort(key=lambda e: (e.at, e.key))
        runs: list[list[Event]] = []
        for event in mine:
            if runs and event.at - runs[-1][-1].at <= GAP:
                runs[-1].append(event)
            else:
                runs.append([event])
        for number, run in enumerate(runs, start=1):
            pages = [e for e in run if e.type == "page"]
            sessions.add(
                (
                    person,
                    number,
                    run[0].at,
                    run[-1].at,
                    len(run),
                    len(pages),
                    pages[0].page_path if pages else None,
                    pages[-1].page_path if pages else None,
                    run[0].utm_source,
                )
            )
    return sessions


def reference_active(events: list[Event], period: str) -> set[tuple[Any, ...]]:
    def start(day: date) -> date:
        if period == "week":
            return day - timedelta(days=day.weekday())
        if period == "month":
            return day.replace(day=1)
        return day

    people: dict[date, set[str]] = defaultdict(set)
    counts: Counter[date] = Counter()
    for event in events:
        key = start(event.at.date())
        people[key].add(event.person)
        counts[key] += 1
    return {(key, len(people[key]), counts[key]) for key in people}


def reference_event_counts(events: list[Event]) -> set[tuple[Any, ...]]:
    people: dict[tuple[date, str], set[str]] = defaultdict(set)
    counts: Counter[tuple[date, str]] = Counter()
    for event in events:
        key = (event.at.date(), event.name)
        people[key].add(event.person)
        counts[key] += 1
    return {(day, name, counts[(day, name)], len(people[(day, name)])) for day, name in people}


def reference_features(events: list[Event], as_of: datetime) -> dict[str, dict[str, Any]]:
    sessions = reference_sessions(events)
    window_start = naive(as_of).date() - timedelta(days=30)
    features = {}
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_person[event.person].append(event)
    for person, mine in by_person.items():
        recent = [e for e in mine if e.at.date() > window_start]
        names = Counter(e.name for e in mine)
        top = min(names, key=lambda n: (-names[n], n.encode()))
        last_seen = max(e.at for e in mine)
        recency = max(0, (naive(as_of).date() - last_seen.date()).days)
        frequency = len(recent)
        days = len({e.at.date() for e in recent})
        recent_sessions = sum(1 for s in sessions if s[0] == person and s[3].date() > window_start)
        raw = (
            35.0 * min(frequency, 100) / 100
            + 25.0 * min(recent_sessions, 20) / 20
            + 25.0 * min(days, 30) / 30
            + 15.0 * max(0, 30 - recency) / 30
        )
        score = float(Decimal(f"{raw:.6f}").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        features[person] = {
            "first_seen": min(e.at for e in mine),
            "last_seen": last_seen,
            "recency_days": recency,
            "frequency": frequency,
            "sessions_30d": recent_sessions,
            "active_days_30d": days,
            "engagement_score": score,
            "events_total": len(mine),
            "top_event": top,
        }
    return features


# -- reading the marts ----------------------------------------------------------------------


def mart_rows(path: Path, mart: str, columns: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(
            f"SELECT {columns} FROM read_parquet('{path}/{mart}.parquet')"
        ).fetchall()


SESSION_COLUMNS = (
    "person_id, session_number, started_at, ended_at, events, pages, first_page_path,"
    " last_page_path, utm_source"
)


def check_marts(world: World) -> None:
    """Every exported mart equals the plain-Python computation over the lake."""
    events = reference_events(world.runtime, world.workspace)
    directory = marts_dir(world.runtime.settings, world.workspace)
    assert set(mart_rows(directory, "sessions", SESSION_COLUMNS)) == reference_sessions(events)
    assert len(mart_rows(directory, "sessions", SESSION_COLUMNS)) == len(reference_sessions(events))
    for mart, column, period in (
        ("daily_active_users", "day", "day"),
        ("weekly_active_users", "week_start", "week"),
        ("monthly_active_users", "month_start", "month"),
    ):
        rows = mart_rows(directory, mart, f"{column}, active_users, events")
        assert set(rows) == reference_active(events, period), mart
        assert len(rows) == len(set(rows))
    counts = mart_rows(directory, "event_counts_daily", "day, event_name, events, people")
    assert set(counts) == reference_event_counts(events)
    assert len(counts) == len(set(counts))
    expected = reference_features(events, AS_OF)
    columns = list(next(iter(expected.values())))
    rows = mart_rows(directory, "user_features", "person_id, " + ", ".join(columns))
    got = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}
    assert len(rows) == len(got) == len(expected)
    for person, features in expected.items():
        score = got[person].pop("engagement_score")
        assert score == pytest.approx(features.pop("engagement_score"), abs=0.011), person
        got_features = got[person]
        assert got_features == features, person


def assert_tests_passed(result: TransformResult) -> None:
    assert result.count("test") >= 40
    assert result.count("model") >= 9
    assert not result.failures, result.failures
    assert result.count("test", "pass") == result.count("test")
    assert result.count("model", "success") == result.count("model")


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_build(world: World) -> dict[str, Any]:
    world.send(phase_one() + bad_events())
    reply = CliRunner().invoke(
        cli,
        [
            "transform",
            "--data-dir",
            str(world.data_dir),
            "--workspace",
            world.workspace,
            "--vars",
            json.dumps({"as_of": _iso(AS_OF)}),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert reply.exit_code == 0, reply.output
    runs: list[dict[str, Any]] = json.loads(reply.output.strip().splitlines()[-1])
    return runs[0]


def test_cli_builds_every_mart_and_its_tests_pass(
    world: World, first_build: dict[str, Any]
) -> None:
    assert first_build["success"], first_build["error"]
    assert first_build["workspace"] == world.workspace
    assert sorted(first_build["exported"]) == sorted(MARTS)
    tests = [n for n in first_build["nodes"] if n["resourceType"] == "test"]
    assert len(tests) >= 40
    assert {n["status"] for n in tests} == {"pass"}
    singular = {n["name"] for n in tests if n["name"].startswith("assert_")}
    assert len(singular) >= 7
    models = {n["name"] for n in first_build["nodes"] if n["resourceType"] == "model"}
    assert models >= {*MARTS, "stg_events", "int_identity_map"}
    # After the run the dbt DuckDB file is free: another process opens it read-only.
    path = duckdb_path(world.runtime.settings, world.workspace)
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True);"
        " print(c.execute('SELECT count(*) FROM marts.sessions').fetchone()[0])"
    )
    reader = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    sessions = mart_rows(marts_dir(world.runtime.settings, world.workspace), "sessions", "1")
    assert int(reader.stdout) == len(sessions) > 0


def test_a_selection_that_matches_nothing_is_an_error(
    world: World, first_build: dict[str, Any]
) -> None:
    """A misspelt ``--select`` used to report "ok ... 0 models" and exit 0."""
    reply = CliRunner().invoke(
        cli,
        [
            *("transform", "--data-dir", str(world.data_dir), "--workspace", world.workspace),
            *("-s", "sesions", "--json"),
        ],
    )
    assert reply.exit_code == 2, reply.output
    error = json.loads(reply.stdout)
    assert error["code"] == "nothing_selected"
    assert "--select sesions" in error["message"]


def test_marts_match_a_plain_python_computation(world: World, first_build: dict[str, Any]) -> None:
    check_marts(world)
    directory = marts_dir(world.runtime.settings, world.workspace)
    # The boundary visitor: a gap of exactly 30 minutes continues a session, a second more
    # starts one; and two events of the same second are ordered by log position.
    events = reference_events(world.runtime, world.workspace)
    edge = next(e.person for e in events if e.anonymous_id == "anon-edge")
    tie = next(e.person for e in events if e.anonymous_id == "anon-tie")
    rows = mart_rows(directory, "sessions", "person_id, events, first_page_path, last_page_path")
    assert sorted(r[1] for r in rows if r[0] == edge) == [1, 2]
    assert [r[2:] for r in rows if r[0] == tie] == [("/tie-a", "/tie-b")]
    letters = mart_rows(directory, "dead_letters_daily", "stage, code, letters")
    assert ("identity", "no_identity", 2) in letters


def test_marts_are_views_of_the_query_engine(world: World, first_build: dict[str, Any]) -> None:
    engine = world.runtime.analytics
    result = engine.query(world.workspace, "SELECT count(*), sum(events) FROM sessions")
    events = reference_events(world.runtime, world.workspace)
    assert result.rows == [(len(reference_sessions(events)), len(events))]
    untrusted = engine.query(
        world.workspace,
        "SELECT person_id, engagement_score FROM user_features ORDER BY engagement_score DESC",
        untrusted=True,
        limit=5,
    )
    assert len(untrusted.rows) == 5
    assert set(MARTS) <= set(engine.tables(world.workspace))


@pytest.fixture(scope="module")
def incremental(world: World, first_build: dict[str, Any]) -> TransformResult:
    world.send(phase_two())
    return world.build()


def snapshot(world: World) -> dict[str, set[tuple[Any, ...]]]:
    """Every mart's rows without the run stamp."""
    directory = marts_dir(world.runtime.settings, world.workspace)
    found = {}
    with duckdb.connect() as conn:
        for mart in MARTS:
            found[mart] = set(
                conn.execute(
                    f"SELECT * EXCLUDE (updated_at) FROM read_parquet('{directory}/{mart}.parquet')"
                    if mart not in {"user_features", "dead_letters_daily", "decision_training"}
                    else f"SELECT * FROM read_parquet('{directory}/{mart}.parquet')"
                ).fetchall()
            )
    return found


def test_incremental_run_after_more_events(world: World, incremental: TransformResult) -> None:
    assert_tests_passed(incremental)
    check_marts(world)
    # The merged visitor: anon-0's old person has no sessions left.
    events = reference_events(world.runtime, world.workspace)
    people = {e.person for e in events}
    directory = marts_dir(world.runtime.settings, world.workspace)
    assert {row[0] for row in mart_rows(directory, "sessions", "person_id")} == people


def test_full_refresh_gives_the_incremental_result(
    world: World, incremental: TransformResult
) -> None:
    before = snapshot(world)
    # this world logs no decisions (decision_training: tests/integration/test_decisions_lake.py)
    assert all(rows for mart, rows in before.items() if mart != "decision_training")
    stamps = mart_rows(marts_dir(world.runtime.settings, world.workspace), "sessions", "updated_at")
    assert len({row[0] for row in stamps}) == 2  # the second run rebuilt only some people
    refreshed = world.build(full_refresh=True)
    assert_tests_passed(refreshed)
    assert snapshot(world) == before
    again = world.build()  # nothing new: nothing changes
    assert_tests_passed(again)
    assert snapshot(world) == before


def test_transform_runs_are_serialized_per_workspace(
    world: World, first_build: dict[str, Any]
) -> None:
    from auie.errors import Conflict
    from auie.transform.runner import workspace_lock

    settings = world.runtime.settings
    with workspace_lock(settings, world.workspace), pytest.raises(Conflict):
        world.runner().run(world.workspace, wait=False)


# -- PostgreSQL -----------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(drop_role: str | None = None) -> Iterator[str]:
    """A new database ``auie_test_<random>``, dropped afterwards (and ``drop_role``)."""
    import psycopg

    name = f"auie_test_{secrets.token_hex(6)}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if drop_role:
                admin.execute(f"DROP ROLE IF EXISTS {drop_role}")


@pytest.mark.postgres
def test_postgres_target_builds_the_same_marts(world: World, incremental: TransformResult) -> None:
    import psycopg

    expected = snapshot(world)
    bi_role = f"auie_bi_{secrets.token_hex(4)}"
    with postgres_database(drop_role=bi_role) as url:
        settings = make_settings(
            world.data_dir,
            **{"analytics.postgres_url": url, "analytics.transform_interval_minutes": 0},
        )
        runner = TransformRunner(settings, world.runtime.lake)
        result = runner.run(world.workspace, target="postgres", variables={"as_of": _iso(AS_OF)})
        assert result.success, result.error
        assert_tests_passed(result)
        assert result.sources["events"]["rows"] > 0
        schema = f"{world.workspace}_marts"
        # A read-only role for BI tools, as docs/bi-tools.md sets it up: its grants must
        # survive the next run (tables are rebuilt, incremental ones kept).
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in (
                f"CREATE ROLE {bi_role} LOGIN",
                f'GRANT USAGE ON SCHEMA "{schema}" TO {bi_role}',
                f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {bi_role}',
                f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES'
                f" TO {bi_role}",
            ):
                conn.execute(statement)
        # Nothing new in the lake: the second load copies nothing and keeps the marts.
        again = runner.run(world.workspace, target="postgres", variables={"as_of": _iso(AS_OF)})
        assert again.success, again.error
        assert all(s["files"] == 0 for s in again.sources.values())
        # A plain PostgreSQL client (what Superset or Metabase use) reads the marts.
        bi_url = url.replace("postgres@", f"{bi_role}@", 1)
        with psycopg.connect(bi_url) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'SELECT count(*) FROM "{world.workspace}_lake".events')
            conn.rollback()
            conn.execute("SET TimeZone = 'UTC'")
            for mart in MARTS:
                columns = [
                    row[0]
                    for row in conn.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                        (schema, mart),
                    )
                ]
                keep = [c for c in columns if c != "updated_at"]
                rows = conn.execute(f'SELECT {", ".join(keep)} FROM "{schema}"."{mart}"').fetchall()
                assert len(rows) == len(expected[mart]), mart
                assert {_plain(row) for row in rows} == {_plain(row) for row in expected[mart]}, (
                    mart
                )


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Engine-neutral values: numbers as rounded floats, JSON and text as text."""
    values = []
    for value in row:
        if isinstance(value, float | Decimal) and not isinstance(value, bool):
            values.append(round(float(value), 6))
        elif isinstance(value, datetime):
            values.append(naive(value) if value.tzinfo else value)
        else:
            values.append(value)
    return tuple(values)


# -- the schedule of auie serve (last: its run uses the real clock for as_of) ----------------


def test_serve_schedule_rebuilds_the_marts_in_a_child_process(
    world: World, incremental: TransformResult
) -> None:
    from auie.transform.schedule import TransformScheduler

    settings = make_settings(world.data_dir, **{"analytics.transform_interval_minutes": 0.005})
    sessions = marts_dir(settings, world.workspace) / "sessions.parquet"
    before = sessions.stat().st_mtime_ns
    expected = snapshot(world)["sessions"]
    scheduler = TransformScheduler(settings)
    scheduler.start()
    try:
        deadline = time.monotonic() + 120
        while scheduler.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        scheduler.stop()
    assert scheduler.runs >= 1
    assert scheduler.failures == 0
    assert sessions.stat().st_mtime_ns > before
    assert snapshot(world)["sessions"] == expected
    off = make_settings(world.data_dir, **{"analytics.transform_interval_minutes": 0})
    assert not TransformScheduler(off).enabled
