"""Profiles and the lake do not depend on the order events arrive in.

A realistic stream of 100,000 normalised events (a few thousand people with several
devices each, logins, shared devices, aliases, identifies with changing traits, pages,
tracks, junk ids, event times over ten days) is written into the event log of one data
directory in order and, shuffled, into another's; a processor runs each to completion (the
shuffled one in many small polls and micro-batches). Both must end with identical profiles
and identical lake contents.

A third data directory gets the stream in order and is processed by a group of three
processor processes at once (``process.workers``), each consuming its own partitions while
identity links cross them: it, too, must end with the same profiles and lake.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from auie.events import Normalizer
from auie.lake.tables import DEAD_LETTERS, EVENTS, IDENTITIES
from auie.process import GROUP
from auie.process.supervisor import ProcessorSupervisor
from auie.profiles.store.sql import SqlProfileStore
from auie.profiles.store.tables import identity_nodes
from auie.runtime import Runtime
from helpers import make_settings
from pipeline import drain, lake_table, log_record

pytestmark = pytest.mark.slow

WS = "ws_order"
SOURCE = "src_order"
EVENTS_WANTED = 100_000
PEOPLE = 3_000
START = datetime(2025, 1, 6, tzinfo=UTC)
DAYS = 10
COMPUTED = [
    {"name": "orders", "kind": "count", "event": "Order Completed"},
    {"name": "revenue", "kind": "sum", "event": "Order Completed", "property": "total"},
    {"name": "biggest", "kind": "max", "event": "Order Completed", "property": "total"},
    {"name": "first_plan", "kind": "first", "event": "Order Completed", "property": "plan"},
    {"name": "last_sku", "kind": "last", "event": "Product Viewed", "property": "sku"},
]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
PATHS = ["/", "/pricing", "/docs", "/blog/launch", "/signup", "/cart", "/checkout"]
JUNK = ["null", "undefined", "0", "anonymous", "unknown"]


@dataclass
class Person:
    number: int
    devices: list[str]
    user: str | None
    email: str | None
    #: The user id after an alias renamed it, and from when.
    renamed: tuple[str, datetime] | None
    #: Links the first device to the user with an alias instead of a login.
    alias_login: bool


def people(rnd: random.Random) -> list[Person]:
    result = []
    for n in range(PEOPLE):
        devices = [f"anon-{n}-{d}-{rnd.getrandbits(32):08x}" for d in range(rnd.randint(1, 4))]
        user = f"user-{n}" if rnd.random() < 0.75 else None
        email = f"person{n}@example.com" if user and rnd.random() < 0.6 else None
        renamed = None
        if user and rnd.random() < 0.04:
            renamed = (f"user-{n}-v2", START + timedelta(days=rnd.uniform(2, DAYS - 1)))
        result.append(Person(n, devices, user, email, renamed, bool(user) and rnd.random() < 0.05))
    return result


def activity(
    rnd: random.Random, roll: float, ids: dict[str, Any], context: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """One page, track or screen of a visit (``roll`` in [0.2, 1) picks which)."""
    if roll < 0.6:
        path = rnd.choice(PATHS)
        utm = "?utm_source=news&utm_medium=email&utm_campaign=spring" if rnd.random() < 0.1 else ""
        page = {
            "url": f"https://shop.example.com{path}{utm}",
            "path": path,
            "title": path.strip("/") or "home",
            "referrer": "https://search.example/",
        }
        fields = {"name": page["title"], "properties": {"url": page["url"]}}
        return "page", {**fields, "context": {**context, "page": page}, **ids}
    if roll < 0.75:
        properties = {
            "total": rnd.choice(["19.99", "5.10", "0.30", 42, 7.25, "100"]),
            "plan": rnd.choice(["free", "pro"]),
            "items": rnd.randint(1, 5),
        }
        return "track", {"event": "Order Completed", "properties": properties, **ids}
    if roll < 0.95:
        properties = {"sku": f"sku-{rnd.randint(1, 500)}", "price": rnd.randint(1, 300)}
        return "track", {"event": "Product Viewed", "properties": properties, **ids}
    if roll < 0.97:  # junk ids only: dead-lettered by the identity stage
        return "track", {
            "event": "Junk",
            "userId": rnd.choice(JUNK),
            "anonymousId": rnd.choice(JUNK),
        }
    return "screen", {"name": "Settings", **ids}


def messages(rnd: random.Random) -> Iterator[tuple[dict[str, Any], datetime]]:
    """Raw Segment messages with their receive time, visit by visit, without end."""
    crowd = people(rnd)
    kiosks = [f"kiosk-{k}" for k in range(40)]
    users = [p.user for p in crowd if p.user]
    number = 0

    def message(kind: str, when: datetime, **fields: Any) -> tuple[dict[str, Any], datetime]:
        nonlocal number
        number += 1
        body = {"type": kind, "messageId": f"msg-{number:07d}-{rnd.getrandbits(24):06x}"}
        body.update(fields)
        body["timestamp"] = when.isoformat().replace("+00:00", "Z")
        if rnd.random() < 0.2:  # some SDKs send sentAt: clock-skew correction applies
            body["originalTimestamp"] = body.pop("timestamp")
            body["sentAt"] = (when + timedelta(seconds=rnd.randint(0, 5))).isoformat()
        return body, when + timedelta(seconds=rnd.randint(0, 30))

    while True:
        person = rnd.choice(crowd)
        shared = person.user is not None and rnd.random() < 0.03
        device = rnd.choice(kiosks) if shared else rnd.choice(person.devices)
        when = START + timedelta(seconds=rnd.randint(0, DAYS * 86_400))
        user = person.user
        if person.renamed and when >= person.renamed[1]:
            user = person.renamed[0]
        logged_in = False
        context = {
            "userAgent": AGENTS[person.number % len(AGENTS)],
            "ip": f"198.51.{person.number % 250}.{rnd.randint(1, 254)}",
        }
        for _ in range(rnd.randint(2, 12)):
            when += timedelta(seconds=rnd.choice([0, 1, 5, 30, 90, 600, 1_900]))
            ids: dict[str, Any] = {"anonymousId": device, "userId": user if logged_in else None}
            roll = rnd.random()
            if user and not logged_in and roll < 0.15:
                logged_in = True
                if person.alias_login and device == person.devices[0]:
                    yield message("alias", when, userId=user, previousId=device, context=context)
                    continue
                traits: dict[str, Any] = {
                    "plan": rnd.choice(["free", "pro", "team"]),
                    "age": rnd.randint(18, 80),
                    "name": f"Person {person.number}",
                }
                if person.email:
                    traits["email"] = rnd.choice([person.email, person.email.upper()])
                fields = {"userId": user, "anonymousId": device, "traits": traits}
                yield message("identify", when, context=context, **fields)
            elif logged_in and roll < 0.2:
                traits = {"plan": rnd.choice(["free", "pro", "team"]), "seen": rnd.randint(0, 9)}
                yield message("identify", when, userId=user, traits=traits, context=context)
            elif 0.975 <= roll < 0.985:
                # Another user on this person's device (a shared computer at home).
                fields = {"userId": rnd.choice(users), "anonymousId": device}
                yield message(
                    "identify", when, traits={"plan": "family"}, context=context, **fields
                )
            else:
                kind, fields = activity(rnd, max(roll, 0.2), ids, context)
                yield message(kind, when, **{"context": context, **fields})
        if person.renamed and rnd.random() < 0.3:
            old, (new, since) = person.user, person.renamed
            yield message("alias", since, userId=new, previousId=old, context=context)


def stream(seed: int = 20250106) -> list[dict[str, Any]]:
    """EVENTS_WANTED normalised events, in event-time order, unique messageIds."""
    rnd = random.Random(seed)
    events = []
    for raw, received in messages(rnd):
        normalizer = Normalizer(received_at=received, peer_ip="203.0.113.7")
        events.append(normalizer.normalize(raw))
        if len(events) == EVENTS_WANTED:
            break
    events.sort(key=lambda e: (e["timestamp"], e["messageId"]))
    assert len({e["messageId"] for e in events}) == EVENTS_WANTED
    return events


#: Both runs share the master key, so keyed hashes of ids (user_hash, ...) are equal; PII
#: fields stay plain here because their ciphertext is random (tests/integration/
#: test_privacy_processing.py covers encryption).
PRIVACY = {"privacy.master_key": base64.b64encode(b"k" * 32).decode(), "privacy.encrypt_pii": False}


def run(data_dir: Path, events: list[dict[str, Any]], members: int = 1, **settings: Any) -> Runtime:
    """Process ``events`` in a fresh data directory: in this process, or by a group of
    ``members`` processor processes."""
    config = make_settings(data_dir, **{"profiles.computed": COMPUTED, **PRIVACY, **settings})
    runtime = Runtime(config)
    log = runtime.eventlog
    for start in range(0, len(events), 5_000):
        chunk = events[start : start + 5_000]
        received = [int(datetime.fromisoformat(e["receivedAt"]).timestamp() * 1000) for e in chunk]
        log.append([log_record(e, WS, SOURCE, ms) for e, ms in zip(chunk, received, strict=True)])
    if members == 1:
        processed = drain(runtime.processor())
        assert processed == len(events)
        return runtime
    group = ProcessorSupervisor(config, members, once=True, serving=False)
    group.start()
    assert group.join(600) == [0] * members
    ends, done = log.end_offsets("events"), log.committed(GROUP, "events")
    assert done == ends
    runtime.close()
    return Runtime(config)


def profiles(runtime: Runtime) -> dict[str, dict[str, Any]]:
    service = runtime.profiles
    return {
        pid: service.profile_by_id(WS, pid).to_dict()
        for pid in runtime.profile_store.profile_ids(WS)
    }


def events_table(runtime: Runtime) -> pa.Table:
    table = lake_table(runtime.lake, WS, EVENTS).drop_columns(["log_partition", "log_offset"])
    return table.sort_by("message_id")


def latest_identities(runtime: Runtime) -> dict[str, str]:
    table = lake_table(runtime.lake, WS, IDENTITIES)
    latest: dict[str, tuple[datetime, str]] = {}
    for row in table.sort_by("changed_at").to_pylist():
        key = f"{row['id_type']}:{row['id_value']}"
        previous = latest.get(key)
        assert (
            previous is None or previous[0] != row["changed_at"] or previous[1] == row["profile_id"]
        )
        latest[key] = (row["changed_at"], row["profile_id"])
    return {key: pid for key, (_, pid) in latest.items()}


def dead_letters(runtime: Runtime) -> list[tuple[Any, ...]]:
    table = lake_table(runtime.lake, WS, DEAD_LETTERS)
    columns = ["stage", "code", "message", "payload", "source_id"]
    return sorted(tuple(row[c] for c in columns) for row in table.to_pylist())


def store_mapping(runtime: Runtime) -> dict[str, str]:
    store = runtime.profile_store
    assert isinstance(store, SqlProfileStore)
    c = identity_nodes.c
    with store.engine.connect() as conn:
        found = conn.execute(select(c.node, c.profile_id).where(c.workspace_id == WS))
        return {row.node: row.profile_id for row in found}


def test_shuffled_stream_gives_identical_profiles_and_lake(tmp_path: Path) -> None:
    started = time.monotonic()
    events = stream()
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    generated = time.monotonic()

    # The reference run: big polls, one lake commit per 50,000 rows.
    ordered = run(tmp_path / "ordered", events, **{"lake.flush_max_seconds": 3_600})
    first = time.monotonic()
    mixed = run(
        tmp_path / "shuffled",
        shuffled,
        **{
            "process.poll_max_records": 1_500,
            "lake.flush_max_records": 5_000,
            "eventlog.partitions": 3,
        },
    )
    second = time.monotonic()
    grouped = run(
        tmp_path / "group",
        events,
        members=3,
        **{"process.poll_max_records": 2_000, "lake.flush_max_records": 10_000},
    )
    third = time.monotonic()
    try:
        # Profiles: the same ids, each with the same identities, traits, computed traits
        # and merges.
        expected = profiles(ordered)
        assert len(expected) > PEOPLE
        got = profiles(mixed)
        assert got.keys() == expected.keys()
        for pid, profile in expected.items():
            assert got[pid] == profile, pid
        # Shared devices and renames happened: some profiles merged several people's ids.
        assert any(len(p["merges"]) > 3 for p in expected.values())

        # The lake: every event once, with identical columns; the identity mapping; dead
        # letters (junk ids) with identical contents.
        lake_events = events_table(ordered)
        assert lake_events.num_rows == len(events) - len(dead_letters(ordered))
        assert pc.count_distinct(lake_events["message_id"]).as_py() == lake_events.num_rows
        assert events_table(mixed).equals(lake_events)

        mapping = latest_identities(ordered)
        assert mapping == store_mapping(ordered)
        assert latest_identities(mixed) == mapping
        assert store_mapping(mixed) == mapping

        letters = dead_letters(ordered)
        assert letters
        assert {(stage, code) for stage, code, *_ in letters} == {("identity", "no_identity")}
        assert dead_letters(mixed) == letters

        # A group of three processors, each on its own partitions, at the same time.
        got = profiles(grouped)
        assert got.keys() == expected.keys()
        for pid, profile in expected.items():
            assert got[pid] == profile, pid
        assert events_table(grouped).equals(lake_events)
        assert store_mapping(grouped) == mapping
        assert latest_identities(grouped) == mapping
        assert dead_letters(grouped) == letters
    finally:
        ordered.close()
        mixed.close()
        grouped.close()
    print(  # timings for the test log (pytest -s)
        f"generate {generated - started:.1f}s, in order {first - generated:.1f}s, "
        f"shuffled {second - first:.1f}s, group of 3 {third - second:.1f}s, "
        f"compare {time.monotonic() - third:.1f}s"
    )
