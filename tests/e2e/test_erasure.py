"""Erasure, end to end, proven on the bytes.

A real ``auie serve`` (collector, processor child, decision service, privacy worker) is fed
through its HTTP API:

* the person to erase uses two devices (two anonymous ids, merged into one profile when
  they log in on each), an alias from an old user id, an e-mail, a name with non-ASCII
  letters and a phone number; their events span 24 days and many micro-batches (many
  data files and snapshots); they get decisions and rewards; the collector rejects one of
  their events and the tracking plan blocks another (two dead letters); an export
  archive of them is made;
* five other people do the same kinds of things; one of them is exported too;
* the marts are built (``auie transform``).

Then the person is erased through ``POST /v1/privacy/erase`` and, once the request is
``done``, every byte of every file in the data directory is searched for each of their
identifiers, PII values, profile ids and message ids — raw, and decoded where the format
compresses (Parquet, Avro manifests, zip archives, DuckDB), in UTF-8, lower case,
JSON-escaped and UTF-16 (:mod:`bytescan`) — while the other people's data stays
complete and queryable through the API.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bytescan import files_scanned, scan
from helpers import AUIE, Server, basic, bearer, start_server

pytestmark = pytest.mark.slow

BASE = datetime(2024, 3, 1, 9, tzinfo=UTC)
DAYS = 24
SERVE_SETTINGS = (
    "--set",
    "lake.flush_max_seconds=0.2",
    "--set",
    "process.poll_max_records=40",
    "--set",
    "lake.maintenance_minutes=0",
    "--set",
    "analytics.transform_interval_minutes=0",
    "--set",
    "privacy.erasure_wait_seconds=60",
)


@dataclass
class Person:
    user_id: str
    laptop: str
    phone_device: str
    email: str
    name: str
    phone: str
    old_user_id: str | None = None
    message_ids: list[str] = field(default_factory=list)
    decision_ids: list[str] = field(default_factory=list)

    @property
    def identifiers(self) -> list[str]:
        ids = [self.user_id, self.laptop, self.phone_device, self.email, self.email.lower()]
        return ids + ([self.old_user_id] if self.old_user_id else [])

    @property
    def pii(self) -> list[str]:
        return [self.name, self.phone]


TARGET = Person(
    user_id="usr-erase-7Hq2xZ",
    laptop="anon-erase-laptop-9Wd4",
    phone_device="anon-erase-phone-3Ty8",
    email="Erase.Me+Target@Example.org",
    name="Zoë Érasé-Targetmann",
    phone="+49 30 5550199",
    old_user_id="usr-old-erase-4Kp1",
)
OTHERS = [
    Person(
        user_id=f"keep-user-{n}",
        laptop=f"keep-laptop-{n}",
        phone_device=f"keep-phone-{n}",
        email=f"Keep.Person{n}@Example.net",
        name=f"Björn Keepsake {n}",
        phone=f"+44 20 7946 00{n}{n}",
    )
    for n in range(1, 6)
]
PLAN = {
    "unplanned": "allow",
    "events": {
        "Order Completed": {
            "mode": "block",
            "schema": {
                "type": "object",
                "required": ["revenue"],
                "properties": {"revenue": {"type": "number"}},
            },
        }
    },
}


class Api:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=60)
        creds = server.credentials
        self.write_key = creds["writeKey"]
        reply = self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(creds["clientId"], creds["clientSecret"]),
        )
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["access_token"]

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        reply = self.http.request(method, path, json=body, headers=bearer(self.token))
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json() if reply.content and "json" in reply.headers["content-type"] else reply

    def batch(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        reply = self.http.post("/v1/batch", json={"batch": events}, headers=basic(self.write_key))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def sql(self, query: str) -> list[list[Any]]:
        rows: list[list[Any]] = self.call("POST", "/v1/sql", {"query": query})["rows"]
        return rows

    def wait_request(self, request_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state: dict[str, Any] = self.call("GET", f"/v1/privacy/requests/{request_id}")
            if state["status"] in ("done", "failed"):
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.5)


def _at(day: int, minute: int) -> str:
    return (BASE + timedelta(days=day, minutes=minute)).isoformat()


def person_batches(person: Person, tag: str) -> list[list[dict[str, Any]]]:
    """The person's events, as the batches they are sent in (one or two days each)."""
    batches: list[list[dict[str, Any]]] = []
    counter = 0

    def event(day: int, minute: int, **fields: Any) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        message_id = f"{tag}-msg-{counter:04d}"
        person.message_ids.append(message_id)
        return {"messageId": message_id, "timestamp": _at(day, minute), **fields}

    for day in range(0, DAYS, 2):
        batch = [
            event(
                day,
                1,
                type="page",
                anonymousId=person.laptop,
                name="Home",
                properties={"path": "/", "url": "https://shop.example/"},
            ),
            event(
                day,
                3,
                type="track",
                event="Viewed Product",
                anonymousId=person.laptop,
                properties={"sku": f"sku-{day}"},
            ),
            event(
                day + 1,
                5,
                type="track",
                event="Viewed Product",
                anonymousId=person.phone_device,
                properties={"sku": f"sku-{day}-m"},
            ),
        ]
        if day == 2:  # logs in on the laptop: identify with traits
            batch.append(
                event(
                    day,
                    7,
                    type="identify",
                    userId=person.user_id,
                    anonymousId=person.laptop,
                    traits={"email": person.email, "name": person.name, "phone": person.phone},
                )
            )
        if day == 6:  # logs in on the phone: its anonymous profile merges into theirs
            batch.append(
                event(
                    day + 1,
                    9,
                    type="track",
                    event="Signed In",
                    userId=person.user_id,
                    anonymousId=person.phone_device,
                )
            )
        if day >= 8:
            batch.append(
                event(
                    day,
                    11,
                    type="track",
                    event="Added to Cart",
                    userId=person.user_id,
                    properties={"sku": f"sku-{day}"},
                )
            )
        if day == 10:
            batch.append(
                event(
                    day,
                    13,
                    type="track",
                    event="Order Completed",
                    userId=person.user_id,
                    properties={"revenue": 42.5},
                )
            )
        if day == 12:  # blocked by the tracking plan: a processor dead letter
            batch.append(
                event(
                    day,
                    15,
                    type="track",
                    event="Order Completed",
                    userId=person.user_id,
                    properties={"coupon": "X"},
                )
            )
        if day == 14 and person.old_user_id:
            batch.append(
                event(day, 17, type="alias", userId=person.user_id, previousId=person.old_user_id)
            )
        batches.append(batch)
    return batches


def send_all(api: Api, people: list[tuple[Person, str]]) -> int:
    """Interleave everyone's batches, one request each with a pause, so the processor
    commits many micro-batches (many data files and snapshots). Returns events accepted."""
    plans = [person_batches(p, tag) for p, tag in people]
    accepted = 0
    for index in range(max(len(b) for b in plans)):
        for batches in plans:
            if index < len(batches):
                accepted += api.batch(batches[index])["accepted"]
        time.sleep(0.5)
    return accepted


def collector_dead_letter(api: Api, person: Person) -> None:
    """A batch whose second event has no event name: the collector rejects it."""
    reply = api.batch(
        [
            {
                "type": "track",
                "event": "Ping",
                "userId": person.user_id,
                "messageId": f"ping-{person.user_id}",
                "timestamp": _at(20, 1),
            },
            {
                "type": "track",
                "userId": person.user_id,
                "anonymousId": person.laptop,
                "traits": {"email": person.email},
                "timestamp": _at(20, 2),
            },
        ]
    )
    assert reply["accepted"] == 1, reply
    assert len(reply["rejected"]) == 1, reply
    person.message_ids.append(f"ping-{person.user_id}")


def decisions(api: Api, person: Person) -> None:
    for n in range(3):
        chosen = api.call(
            "POST",
            "/v1/decide",
            {
                "decisionPoint": "hero",
                "userId": person.user_id,
                "context": {"page": "home", "visit": n},
                "actions": [{"id": "sale", "features": {"tone": "loud"}}, {"id": "calm"}],
            },
        )
        person.decision_ids.append(chosen["eventId"])
        if n < 2:
            api.call("POST", f"/v1/decisions/{chosen['eventId']}/reward", {"value": 1.0})


@dataclass
class World:
    server: Server
    api: Api
    data_dir: Path
    target_profiles: list[str]
    before: dict[str, Any]
    erasure: dict[str, Any]
    target_archive: str
    other_archive: str
    hits_running: list[Any]


def profile(api: Api, person: Person) -> dict[str, Any]:
    result: dict[str, Any] = api.call("GET", f"/v1/profiles/user_id/{person.user_id}")
    return result


def wait_processed(api: Api, expected_events: int, timeout: float = 300) -> None:
    warehouse = api.server.data_dir / "lake" / "warehouse" / api.server.credentials["workspace"]
    deadline = time.monotonic() + timeout
    while not all((warehouse / t / "metadata").is_dir() for t in ("events", "identities")):
        assert time.monotonic() < deadline, "the processor wrote no lake tables"
        time.sleep(0.3)
    while True:
        [[events]] = api.sql("SELECT count(*) FROM events")
        if events >= expected_events:
            return
        assert time.monotonic() < deadline, f"lake has {events} of {expected_events} events"
        time.sleep(0.5)


def others_state(api: Api) -> dict[str, Any]:
    """What the other people look like through the API (profiles, SQL, a trend, a funnel)."""
    state: dict[str, Any] = {"profiles": {}, "events": {}}
    for person in OTHERS:
        body = profile(api, person)
        state["profiles"][person.user_id] = {
            "identities": sorted((i["type"], i["value"]) for i in body["identities"]),
            "traits": body["traits"],
            "computed": body["computedTraits"],
            "merges": body["merges"],
        }
        [[count]] = api.sql(
            f"SELECT count(*) FROM events WHERE user_id = '{person.user_id}'"
            f" OR anonymous_id IN ('{person.laptop}', '{person.phone_device}')"
        )
        state["events"][person.user_id] = count
    window = {"from": BASE.isoformat(), "to": (BASE + timedelta(days=DAYS + 2)).isoformat()}
    state["trend"] = api.call(
        "POST", "/v1/analytics/trends", {**window, "events": ["Viewed Product"]}
    )
    state["funnel"] = api.call(
        "POST",
        "/v1/analytics/funnels",
        {
            **window,
            "steps": [{"event": "Viewed Product"}, {"event": "Added to Cart"}],
            "conversionWindow": 30 * 86400,
        },
    )
    return state


def _series_total(trend: dict[str, Any]) -> int:
    return int(sum(series["total"] for series in trend["series"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("erasure") / "data"
    server = start_server(data_dir, None, *SERVE_SETTINGS)
    api: Api | None = None
    try:
        api = Api(server)
        api.call("PUT", "/v1/tracking-plan", PLAN)
        # wait for the processor child, so the events below land in many micro-batches
        warm = {
            "type": "track",
            "event": "Warm Up",
            "anonymousId": "warm-up",
            "timestamp": _at(0, 0),
        }
        api.batch([warm])
        wait_processed(api, 1)
        people = [(TARGET, "target")] + [(p, f"keep{n}") for n, p in enumerate(OTHERS, 1)]
        accepted = 1 + send_all(api, people)
        for person, _tag in people[:2]:
            collector_dead_letter(api, person)
        accepted += 2
        blocked = len(people)  # one blocked Order Completed each
        wait_processed(api, accepted - blocked)
        for person, _tag in people:
            decisions(api, person)
        # the marts, with the person in them
        subprocess.run(
            [AUIE, "transform", "--data-dir", str(data_dir), "--json"],
            check=True,
            capture_output=True,
            timeout=900,
        )
        target_profiles = sorted(
            {profile(api, TARGET)["profileId"]}
            | {m["fromProfileId"] for m in profile(api, TARGET)["merges"]}
        )
        exports = {}
        for person in (TARGET, OTHERS[0]):
            started = api.call("POST", "/v1/privacy/export", {"userId": person.user_id}, 202)
            state = api.wait_request(started["requestId"])
            assert state["status"] == "done", state
            exports[person.user_id] = started["requestId"]
        before = others_state(api)

        started = api.call("POST", "/v1/privacy/erase", {"email": TARGET.email}, 202)
        erasure = api.wait_request(started["requestId"])
        assert erasure["status"] == "done", erasure
        hits = scan(data_dir, needles())
        yield World(
            server,
            api,
            data_dir,
            target_profiles,
            before,
            erasure,
            exports[TARGET.user_id],
            exports[OTHERS[0].user_id],
            hits,
        )
    finally:
        if api is not None:
            api.http.close()
        server.stop()


def needles() -> list[str]:
    values = TARGET.identifiers + TARGET.pii + TARGET.message_ids
    return sorted(set(values))


def test_no_byte_of_the_person_is_left_while_the_server_runs(world: World) -> None:
    kinds = files_scanned(world.data_dir)
    print(json.dumps({"files": kinds, "erasure": world.erasure}, indent=1))
    assert kinds.get("parquet", 0) > 10
    assert kinds.get("avro", 0) > 2
    assert kinds.get("sqlite")
    assert kinds.get("duckdb"), kinds
    assert kinds.get("zip"), kinds
    assert not world.hits_running, "\n".join(str(h) for h in world.hits_running)


def test_profile_ids_and_decisions_of_the_person_are_gone(world: World) -> None:
    hits = scan(world.data_dir, world.target_profiles + TARGET.decision_ids)
    assert not hits, "\n".join(str(h) for h in hits)


def test_the_erasure_reports_counts_for_every_store(world: World) -> None:
    result = world.erasure["result"]
    assert result["identifiers"] >= 5  # user, old user, two devices, e-mail
    assert result["eventLog"]["events"] > 40
    assert result["eventLog"]["decisions"] == 3
    assert result["eventLog"]["rewards"] == 2
    assert result["eventLog"]["deadletters"] >= 1
    assert result["profileStore"]["identityNodes"] >= 5
    assert result["profileStore"]["profileMerges"] >= 1
    assert result["profileStore"]["deadLetters"] >= 2
    assert result["lake"]["events"]["rows"] > 40
    assert result["lake"]["identities"]["rows"] >= 5
    assert result["lake"]["dead_letters"]["rows"] >= 2
    assert result["lakeHistory"]["events"]["snapshotsExpired"] > 3
    assert result["marts"]["rows"] > 0
    assert result["marts"]["rebuilt"] is True
    assert result["archives"] == 1
    assert result["suppressed"] == result["identifiers"]
    assert result["processor"] == "caught up"
    assert result["verification"] == {
        "profileStoreReappeared": 0,
        "eventLogReappeared": 0,
        "manifestBoundsNamingThePerson": 0,
        "modelFilesNamingThePerson": 0,
    }
    text = json.dumps(world.erasure)
    assert not any(v.lower() in text.lower() for v in needles())


def test_the_person_is_unknown_and_suppressed(world: World) -> None:
    api = world.api
    for id_type, value in (
        ("user_id", TARGET.user_id),
        ("email", TARGET.email),
        ("anonymous_id", TARGET.phone_device),
    ):
        api.call("GET", f"/v1/profiles/{id_type}/{value}", status=404)
    [[count]] = api.sql(
        f"SELECT count(*) FROM events WHERE user_id = '{TARGET.user_id}'"
        f" OR anonymous_id IN ('{TARGET.laptop}', '{TARGET.phone_device}')"
    )
    assert count == 0
    archive = world.api.http.get(
        f"/v1/privacy/requests/{world.target_archive}/archive", headers=bearer(api.token)
    )
    assert archive.status_code == 404
    assert archive.json()["code"] == "archive_gone"


def test_everyone_else_is_intact_and_queryable(world: World) -> None:
    after = others_state(world.api)
    before = world.before
    assert after["profiles"] == before["profiles"]
    assert after["events"] == before["events"]
    assert all(count > 40 for count in after["events"].values())
    # the person's "Viewed Product" events are gone from the trend, nobody else's
    target_views = 2 * len(range(0, DAYS, 2))  # two "Viewed Product" per batch
    assert _series_total(after["trend"]) == _series_total(before["trend"]) - target_views
    steps_before = [s["count"] for s in before["funnel"]["steps"]]
    steps_after = [s["count"] for s in after["funnel"]["steps"]]
    assert steps_after == [steps_before[0] - 1, steps_before[1] - 1]


def test_another_persons_archive_survives_and_is_complete(world: World) -> None:
    reply = world.api.http.get(
        f"/v1/privacy/requests/{world.other_archive}/archive", headers=bearer(world.api.token)
    )
    assert reply.status_code == 200
    path = world.data_dir.parent / "other.zip"
    path.write_bytes(reply.content)
    hits = scan(path.parent, [TARGET.user_id, TARGET.email, TARGET.laptop])
    assert not [h for h in hits if h.path == path]


def test_the_audit_log_records_the_erasure_without_identifiers_and_verifies(
    world: World,
) -> None:
    entries = world.api.call("GET", "/v1/admin/audit?limit=1000")
    erasures = [e for e in entries if e["action"] == "privacy.erasure"]
    assert len(erasures) == 1
    assert erasures[0]["target"] == world.erasure["requestId"]
    assert erasures[0]["details"]["eventLog"]["events"] > 40
    out = subprocess.run(
        [AUIE, "audit", "verify", "--data-dir", str(world.data_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    assert "intact" in out.stdout


def test_events_for_the_person_arriving_later_are_suppressed_in_the_list(world: World) -> None:
    from auie.config import load_settings
    from auie.runtime import Runtime

    runtime = Runtime(load_settings({"data_dir": world.data_dir}, environ={}))
    try:
        ws = world.server.credentials["workspace"]
        suppressions = runtime.privacy.suppressions
        assert suppressions.is_suppressed(ws, "user_id", TARGET.user_id)
        assert suppressions.is_suppressed(ws, "email", TARGET.email.upper())
        assert suppressions.is_suppressed(ws, "anonymous_id", TARGET.laptop)
        assert not suppressions.is_suppressed(ws, "user_id", OTHERS[0].user_id)
    finally:
        runtime.close()


def test_nothing_is_left_after_the_server_stops(world: World) -> None:
    world.server.stop()  # shutdown writes policy snapshots and flushes the lake
    hits = scan(world.data_dir, needles() + world.target_profiles)
    assert not hits, "\n".join(str(h) for h in hits)
