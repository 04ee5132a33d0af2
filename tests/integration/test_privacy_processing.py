"""The processor's privacy stage, through the real collector, processor, stores and lake:
field encryption and crypto-shredding, consent (events and API) and its enforcement in the
lake and the decision service, suppression, PII in free text."""

from __future__ import annotations

import contextlib
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auie.analytics.segments import segments_of
from auie.eventlog import DECISIONS_TOPIC, LogRecord
from auie.profiles.service import Item
from auie.transform.runner import TransformRunner
from conftest import App
from helpers import basic, bearer, get_token, stored_events
from pipeline import drain

NAME = "Ada Lovelace-Byron"
PHONE = "+44 20 7946 0958"


def send(app: App, *batch: dict[str, Any]) -> None:
    reply = app.client.post(
        "/v1/batch", json={"batch": list(batch)}, headers=basic(app.boot.write_key)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == len(batch)


def process(app: App) -> None:
    drain(app.runtime.processor())


def token(app: App, scope: str | None = None) -> dict[str, str]:
    return bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, scope))


def lake_rows(app: App, query: str) -> list[tuple[Any, ...]]:
    return app.runtime.analytics.query(app.boot.workspace, query).rows


def finished(app: App, admin: dict[str, str], path: str, body: dict[str, Any]) -> str:
    """Start a privacy request (export or erasure), wait until it is done; its id."""
    request_id = str(app.client.post(path, json=body, headers=admin).json()["requestId"])
    deadline = time.monotonic() + 60
    while (status := app.client.get(f"/v1/privacy/requests/{request_id}", headers=admin).json())[
        "status"
    ] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "done", status
    return request_id


ACTIONS = [{"id": "a"}, {"id": "b"}]


def hero_point(app: App, headers: dict[str, str]) -> None:
    """Configure the decision point ``hero`` (two actions, epsilon-greedy)."""
    point = {"actions": ACTIONS, "policy": {"type": "epsilon_greedy"}}
    reply = app.client.put("/v1/decision-points/hero", json=point, headers=headers)
    assert reply.status_code == 200, reply.text


def decide_logged(app: App, headers: dict[str, str], user_id: str) -> dict[str, Any]:
    """Configure ``hero``, decide for ``user_id``; the decision as the event log holds it."""
    hero_point(app, headers)
    decide = {"decisionPoint": "hero", "userId": user_id, "actions": ACTIONS}
    reply = app.client.post("/v1/decide", json=decide, headers=headers)
    assert reply.status_code == 200, reply.text
    [record] = stored_events(app.runtime, DECISIONS_TOPIC)
    return record


def files_contain(root: Path, needle: str, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name.endswith(suffixes) and needle.encode() in path.read_bytes():
            found.append(path)
    return found


def test_pii_fields_are_encrypted_at_rest_and_shredded_by_key_destruction(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    send(
        app,
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"name": NAME, "phone": PHONE, "plan": "pro"},
        },
    )
    process(app)
    data = app.runtime.settings.data_dir
    # Neither the profile store nor the lake's files hold the plain values.
    assert files_contain(data / "lake", NAME, (".parquet",)) == []
    assert files_contain(data, PHONE, ("profiles.db", "profiles.db-wal")) == []
    [[traits]] = lake_rows(app, "SELECT traits FROM events WHERE type = 'identify'")
    assert json.loads(traits)["name"].startswith("enc:v1:")
    assert json.loads(traits)["plan"] == "pro"
    # The API decrypts.
    profile = app.client.get("/v1/profiles/user_id/u1", headers=token(app)).json()
    assert profile["traits"] == {"name": NAME, "phone": PHONE, "plan": "pro"}
    # Destroying the person's keys makes every copy unreadable, the lake's included.
    cipher = app.runtime.privacy.cipher
    assert cipher.shred(app.boot.workspace, ["user_id:u1"]) == 1
    cipher.forget_cache()
    assert cipher.decrypt(app.boot.workspace, json.loads(traits)["name"]) == "[erased]"
    profile = app.client.get("/v1/profiles/user_id/u1", headers=token(app)).json()
    assert profile["traits"]["name"] == "[erased]"
    assert profile["traits"]["plan"] == "pro"


def test_pii_fields_nested_in_traits_are_encrypted_and_left_out(
    make_app: Callable[..., App],
) -> None:
    """A PII field is one by its name at any depth of the person's traits (and
    ``context.traits``): encrypted at rest, decrypted by the API, left out of a decision's
    joined traits, and gone with the traits from the lake row of a person without
    ``analytics`` consent. In ``properties`` only the top level counts: a product's
    ``name`` stays readable, nested text is scanned as free text."""
    app = make_app()
    email, street, phone = "ada.nested@example.com", "12 Analytical Way", "+44 20 7946 0111"
    traits = {"plan": "pro", "contact": {"email": email, "kind": "work"}}
    products = [{"name": "Blue Shirt", "sku": "s-1"}]
    send(
        app,
        {
            "type": "identify",
            "userId": "nested",
            "traits": {**traits, "homes": [{"address": {"street": street}}]},
            "context": {"traits": {"contact": {"phone": phone}}},
        },
        {
            "type": "track",
            "userId": "nested",
            "event": "Ordered",
            "properties": {
                "products": products,
                "customer": {"phone": phone, "tier": "gold"},
                "email": email,  # a top-level PII property: encrypted
                "recipient": {"email": "bob.nested@example.com"},  # same name, nested: text
            },
            "buyer": {"email": "carol.nested@example.com"},  # an extra field: walked
        },
        {
            "type": "identify",
            "userId": "nested",
            # an array, kept as sent by the collector: walked like traits
            "context": {"traits": [{"email": "dan.nested@example.com"}]},
        },
        {
            "type": "identify",
            "userId": "refuser",
            "traits": {"contact": {"email": email}},
            "context": {"consent": {"categoryPreferences": {"analytics": False}}},
        },
    )
    process(app)
    data = app.runtime.settings.data_dir
    secrets = (email, street, phone, "bob.nested@", "carol.nested@", "dan.nested@")
    for secret in secrets:
        assert files_contain(data / "lake", secret, (".parquet",)) == []
        assert files_contain(data, secret, ("profiles.db", "profiles.db-wal")) == []
    headers = token(app)
    profile = app.client.get("/v1/profiles/user_id/nested", headers=headers).json()
    # (context.traits are the profile's traits too)
    assert profile["traits"]["contact"] == {"email": email, "kind": "work", "phone": phone}
    assert profile["traits"]["homes"] == [{"address": {"street": street}}]
    events = app.client.get("/v1/profiles/user_id/nested/events", headers=headers).json()
    identify = next(
        e for e in events["events"] if e["type"] == "identify" and "plan" in e.get("traits", {})
    )
    assert identify["traits"]["contact"] == {"email": email, "kind": "work", "phone": phone}
    assert identify["context"]["traits"] == {"contact": {"phone": phone}}
    query = "SELECT properties FROM events WHERE user_id = 'nested' AND event = 'Ordered'"
    [[properties]] = lake_rows(app, query)
    stored = json.loads(properties)
    assert stored["email"].startswith("enc:v1:")
    assert stored == {
        "products": products,  # a product's name is no person's
        "customer": {"phone": "[phone]", "tier": "gold"},  # free text, masked
        "email": stored["email"],
        "recipient": {"email": "[email]"},
    }
    # Without analytics consent the traits, nested PII and all, are not in the row.
    assert lake_rows(app, "SELECT traits FROM events WHERE user_id LIKE 'h_%'") == [(None,)]
    # A decision joins the traits without the nested PII fields.
    record = decide_logged(app, headers, "nested")
    assert record["context"]["user"]["traits"] == {
        "plan": "pro",
        "contact": {"kind": "work"},
        "homes": [{}],
    }


def test_without_analytics_consent_events_reach_the_lake_pseudonymised(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    refuse = {"consent": {"categoryPreferences": {"analytics": False, "advertising": True}}}
    send(
        app,
        {
            "type": "identify",
            "userId": "no",
            "traits": {"name": NAME, "plan": "pro"},
            "context": {**refuse, "ip": "198.51.100.3"},
            "timestamp": "2026-01-01T00:00:00Z",
        },
        {
            "type": "track",
            "userId": "no",
            "event": "Read",
            "properties": {"phone": PHONE},
            "context": {"ip": "198.51.100.3"},
            "timestamp": "2026-01-02T00:00:00Z",
        },
        {"type": "track", "userId": "yes", "event": "Read", "context": {"ip": "198.51.100.4"}},
    )
    process(app)
    rows = lake_rows(
        app,
        "SELECT user_id, user_hash, traits, context_ip, properties FROM events ORDER BY timestamp",
    )
    pseudonymous = [r for r in rows if r[0] != "yes"]
    assert len(pseudonymous) == 2
    for user_id, user_hash, traits, ip, properties in pseudonymous:
        assert user_id == user_hash
        assert user_id.startswith("h_")
        assert traits is None
        assert ip is None
        assert PHONE not in (properties or "")
    assert ("yes", "198.51.100.4") in [(r[0], r[3]) for r in rows]
    consent = app.client.get("/v1/privacy/consent/user_id/no", headers=token(app)).json()
    assert consent["current"] == {"analytics": False, "marketing": True}
    assert [h["purpose"] for h in consent["history"]] == ["analytics", "marketing"]
    # The access export carries the consent and its history.
    admin = token(app, "privacy:admin")
    request_id = finished(app, admin, "/v1/privacy/export", {"userId": "no"})
    archive = app.client.get(f"/v1/privacy/requests/{request_id}/archive", headers=admin)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        exported = json.loads(opened.read("consent.json"))
    current = {(c["purpose"], c["granted"]) for c in exported if c["kind"] == "current"}
    assert current == {("analytics", False), ("marketing", True)}
    statements = [c for c in exported if c["kind"] == "statement"]
    assert {(c["purpose"], c["granted"], c["source"]) for c in statements} == {
        ("analytics", False, "event"),
        ("marketing", True, "event"),
    }
    assert all(c["statedAt"].startswith("2026-01-01T00:00:00") for c in statements)


def test_pseudonymised_events_join_no_identity_and_erasure_still_finds_them(
    make_app: Callable[..., App],
) -> None:
    """A pseudonymised event's ids are hashes no other table holds: SQL with or without
    ``pii:read`` cannot join it through ``identities`` to the person's profile (the
    consenting person's events join as before), and erasure still finds every such row
    (by the unlinked hashes of the person's identifiers). The lake's profile snapshots of
    such a person hold their identities, not what their events told (computed traits,
    first and last seen) nor their traits."""
    app = make_app()
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    send(
        app,
        {
            "type": "identify",
            "userId": "u-no",
            "anonymousId": "a-no",
            "traits": {"plan": "pro"},
            "context": refuse,
        },
        {
            "type": "page",
            "userId": "u-no",
            "name": "Settings",
            "properties": {
                "url": "https://shop.example/users/u-no/settings?utm_term=u-no",
                "path": "/users/u-no/settings",
                "title": "Settings of u-no",
                "plan": "pro",
            },
            "context": {
                "page": {"url": "https://shop.example/users/u-no/settings?utm_term=u-no"},
                "device": {
                    "id": "device-u-no",
                    "name": "u-no's phone",
                    "type": "ios",
                    "model": "iPhone15,2",
                    "manufacturer": "Apple",
                },
                "library": {"name": "analytics-ios", "version": "4.1.8", "user": "u-no"},
                "channel": "mobile",
                "location": {"city": "Lovelace"},
                "referrer": {"id": "ref-u-no"},
                "campaign": {"name": "u-no"},
                "groupId": "g-no",
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
                "locale": "en-GB",
                "sessionRef": "u-no-session",
                "app": {"name": "Shop", "version": "4.2", "owner": {"id": "u-no"}},
                "os": {"name": "iOS", "version": "17.4.1"},
                "screen": {"width": 1179, "height": 2556},
                "timezone": {"name": "u-no's zone"},
            },
            "integrations": {"All": True, "Amplitude": {"session_id": "u-no-session"}},
            "sessionOwner": "u-no",
        },
        {"type": "track", "userId": "u-no", "event": "Read"},
        {"type": "alias", "userId": "u-no", "previousId": "old-no"},
        {"type": "group", "userId": "u-no", "groupId": "g-no"},
        {"type": "identify", "userId": "u-yes", "anonymousId": "a-yes", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "u-yes", "event": "Read"},
    )
    process(app)
    joins = [
        (
            token(app),
            "SELECT DISTINCT i.profile_id FROM events e JOIN identities i"
            " ON e.user_hash = i.id_hash OR e.anonymous_hash = i.id_hash",
        ),
        (
            token(app, "analytics:read"),
            "SELECT DISTINCT i.profile_id FROM events e JOIN identities i"
            " ON e.user_id = i.id_value OR e.anonymous_id = i.id_value",
        ),
    ]
    consenting = app.client.get("/v1/profiles/user_id/u-yes", headers=token(app)).json()
    for headers, query in joins:
        reply = app.client.post("/v1/sql", json={"query": query}, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["rows"] == [[consenting["profileId"]]]
    pseudonyms, workspace = app.runtime.privacy.pseudonyms, app.boot.workspace
    [(previous,)] = lake_rows(app, "SELECT previous_id FROM events WHERE type = 'alias'")
    assert previous == pseudonyms.unlinked(workspace, "user_id:old-no")
    # Nothing else of the page view can be matched with the person's other rows: its
    # context keeps only impersonal fields, its page properties and URL columns are gone.
    [page] = lake_rows(
        app,
        "SELECT context, properties, extra, integrations, page_path, page_host, utm_term,"
        " browser_name, os_version, device_model FROM events WHERE type = 'page'",
    )
    context, properties, extra, integrations, *columns = page
    assert json.loads(context) == {
        "app": {"name": "Shop", "version": "4.2"},
        "channel": "mobile",
        "library": {"name": "analytics-ios", "version": "4.1.8"},
        "device": {"type": "ios"},
        "locale": "en-GB",
        "os": {"name": "iOS"},
    }
    assert json.loads(properties) == {"plan": "pro"}
    assert extra is None
    assert json.loads(integrations) == {"All": True}
    assert columns == [None, None, None, "Mobile Safari UI/WKWebView", None, None]
    [(group_id,)] = lake_rows(app, "SELECT group_id FROM events WHERE type = 'group'")
    assert group_id == pseudonyms.unlinked(workspace, "group_id:g-no")
    # The profile snapshots keep what the events told of the consenting person only.
    refuser = app.client.get("/v1/profiles/user_id/u-no", headers=token(app)).json()
    assert refuser["traits"] == {"plan": "pro"}  # the profile store has it all
    snapshots = {
        pid: (json.loads(traits), json.loads(computed), first_seen, withheld)
        for pid, traits, computed, first_seen, withheld in lake_rows(
            app, "SELECT profile_id, traits, computed_traits, first_seen, withheld FROM profiles"
        )
    }
    assert snapshots[refuser["profileId"]] == ({}, {}, None, True)
    traits, computed, first_seen, withheld = snapshots[consenting["profileId"]]
    assert (traits, withheld) == ({"plan": "pro"}, False)
    assert computed["eventCounts"] == {"identify": 1, "Read": 1}
    assert first_seen is not None
    finished(app, token(app, "privacy:admin"), "/v1/privacy/erase", {"userId": "u-no"})
    assert sorted(lake_rows(app, "SELECT user_id, type FROM events")) == [
        ("u-yes", "identify"),
        ("u-yes", "track"),
    ]


def process_before_snapshots(app: App) -> None:
    """Process the log, then flush the lake as the processor does before the first profile
    snapshot is due (identities, no profiles): analyses read traits from the store."""
    processor = app.runtime.processor()
    while not processor.step().idle:
        pass
    processor.writer.flush(processor.positions, after=processor.exports.run)


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "profile-store"])
def test_with_explicit_consent_only_a_grant_shows_traits_to_analyses(
    make_app: Callable[..., App], snapshot: bool
) -> None:
    """With ``privacy.require_explicit_consent``, a person who never granted ``analytics``
    has withheld traits, from the snapshot and from the profile store alike."""
    app = make_app(
        **{"privacy.require_explicit_consent": True, "lake.profile_snapshot_seconds": 86_400}
    )
    grant = {"consent": {"categoryPreferences": {"analytics": True}}}
    send(
        app,
        {"type": "identify", "userId": "u-silent", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "u-granted", "traits": {"plan": "pro"}, "context": grant},
    )
    if snapshot:
        process(app)
    else:
        process_before_snapshots(app)
    headers = token(app)
    snapshotted = lake_rows(app, "SELECT count(*) FROM profiles")
    assert snapshotted == [(2 if snapshot else 0,)]
    granted = app.client.get("/v1/profiles/user_id/u-granted", headers=headers).json()
    for definition in (
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"trait": "plan", "op": "neq", "value": "free"},
    ):
        reply = app.client.post(
            "/v1/analytics/segments",
            json={"name": json.dumps(definition), "definition": definition},
            headers=headers,
        )
        assert reply.status_code == 201, reply.text
        path = f"/v1/analytics/segments/{reply.json()['id']}/members"
        members = app.client.get(path, headers=headers).json()["members"]
        assert [m["profileId"] for m in members] == [granted["profileId"]], definition


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "profile-store"])
def test_withheld_traits_meet_no_segment_condition_but_decisions_see_them(
    make_app: Callable[..., App], snapshot: bool
) -> None:
    """The traits of a person without ``analytics`` consent are withheld from analyses:
    no trait condition holds for them in a segment's members, ``neq`` and ``is_set: false``
    included (withheld is not "has none"), whether read from their lake snapshot or, before
    one exists, from the profile store; nor in trend and funnel filters, for their events
    before the refusal (the profile's) and after it (pseudonymised). The decision service's
    segments of that person read the profile store and see the traits (``personalization``
    consent governs decisions)."""
    app = make_app(**({} if snapshot else {"lake.profile_snapshot_seconds": 86_400}))
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    send(
        app,
        {"type": "track", "userId": "u-no", "event": "Read"},  # before the refusal
        {"type": "identify", "userId": "u-no", "traits": {"plan": "pro"}, "context": refuse},
        {"type": "track", "userId": "u-no", "event": "Read"},
        {"type": "identify", "userId": "u-free", "traits": {"plan": "free"}},
        {"type": "track", "userId": "u-free", "event": "Read"},
        {"type": "track", "userId": "u-none", "event": "Read"},
    )
    if snapshot:
        process(app)
    else:
        process_before_snapshots(app)
    headers = token(app)
    snapshotted = {row[0] for row in lake_rows(app, "SELECT profile_id FROM profiles")}
    assert lake_rows(app, "SELECT count(*) FROM identities") == [(3,)]
    person = {
        user: app.client.get(f"/v1/profiles/user_id/{user}", headers=headers).json()["profileId"]
        for user in ("u-no", "u-free", "u-none")
    }
    assert snapshotted == (set(person.values()) if snapshot else set())
    segments: dict[str, str] = {}
    for name, definition in (
        ("a: pro", {"trait": "plan", "op": "eq", "value": "pro"}),
        ("b: not pro", {"trait": "plan", "op": "neq", "value": "pro"}),
        ("c: no plan", {"trait": "plan", "op": "is_set", "value": False}),
        ("d: identified", {"computedTrait": "eventCounts.identify", "op": "gte", "value": 1}),
    ):
        reply = app.client.post(
            "/v1/analytics/segments",
            json={"name": name, "definition": definition},
            headers=headers,
        )
        assert reply.status_code == 201, reply.text
        segments[name] = reply.json()["id"]
    members = {}
    for name, segment_id in segments.items():
        reply = app.client.get(f"/v1/analytics/segments/{segment_id}/members", headers=headers)
        assert reply.status_code == 200, reply.text
        members[name] = {m["profileId"] for m in reply.json()["members"]}
    assert members == {
        "a: pro": set(),
        "b: not pro": {person["u-free"], person["u-none"]},
        "c: no plan": {person["u-none"]},
        "d: identified": {person["u-free"]},
    }
    decided = {
        user: segments_of(app.runtime, app.boot.workspace, profile_id)
        for user, profile_id in person.items()
    }
    assert decided == {
        "u-no": [segments["a: pro"], segments["d: identified"]],
        "u-free": [segments["b: not pro"], segments["d: identified"]],
        "u-none": [segments["b: not pro"], segments["c: no plan"]],
    }
    # Trends and funnels: the refuser's two Reads belong to their profile (the first) and
    # to a pseudonymous person (the second); neither meets a trait filter.
    now = datetime.now(UTC)
    span = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
    }
    for definition, expected in (
        ({"trait": "plan", "op": "eq", "value": "pro"}, 0),
        ({"trait": "plan", "op": "neq", "value": "pro"}, 2),
        ({"trait": "plan", "op": "is_set", "value": False}, 1),
        ({"computedTrait": "eventCounts.Read", "op": "gte", "value": 1}, 2),
    ):
        trend = {"events": ["Read"], "measure": "people", "filters": [definition], **span}
        reply = app.client.post("/v1/analytics/trends", json=trend, headers=headers)
        assert reply.status_code == 200, reply.text
        assert sum(sum(s["values"]) for s in reply.json()["series"]) == expected, definition
        steps = [{"event": "Read", "filters": [definition]}, {"event": "Read"}]
        funnel = {"steps": steps, **span}
        reply = app.client.post("/v1/analytics/funnels", json=funnel, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["steps"][0]["count"] == expected, definition


def test_drop_mode_and_explicit_consent(make_app: Callable[..., App]) -> None:
    app = make_app(
        **{"privacy.without_analytics_consent": "drop", "privacy.require_explicit_consent": True}
    )
    grant = {"consent": {"categoryPreferences": {"analytics": True}}}
    send(
        app,
        {"type": "track", "userId": "silent", "event": "Read"},
        {"type": "track", "userId": "granted", "event": "Read", "context": grant},
    )
    process(app)
    assert lake_rows(app, "SELECT user_id FROM events") == [("granted",)]
    # The profile of the silent person still exists (identity and consent live there).
    assert app.client.get("/v1/profiles/user_id/silent", headers=token(app)).status_code == 200
    # It has no events in the lake (a read of none of its rows, not an error).
    reply = app.client.get("/v1/profiles/user_id/silent/events", headers=token(app))
    assert reply.status_code == 200, reply.text
    assert reply.json()["events"] == []


def test_consent_from_the_api_governs_decisions(make_app: Callable[..., App]) -> None:
    app = make_app()
    send(app, {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}})
    process(app)
    headers = token(app)
    reply = app.client.put(
        "/v1/privacy/consent/email/U1@example.com", json={"personalization": False}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    process(app)
    consent = app.client.get("/v1/privacy/consent/user_id/u1", headers=headers).json()
    assert consent["current"] == {"personalization": False}
    assert consent["history"][0]["source"] == "api"
    point = {
        "baseline": "a",
        "actions": [{"id": "a"}, {"id": "b"}],
        "policy": {"type": "epsilon_greedy", "epsilon": 1.0},
    }
    assert (
        app.client.put("/v1/decision-points/hero", json=point, headers=headers).status_code == 200
    )
    decide = {"decisionPoint": "hero", "userId": "u1", "actions": [{"id": "a"}, {"id": "b"}]}
    for _ in range(20):
        decision = app.client.post("/v1/decide", json=decide, headers=headers).json()
        assert decision["actionId"] == "a"  # the baseline, whatever the policy would explore
        app.client.post(
            f"/v1/decisions/{decision['eventId']}/reward", json={"value": 1}, headers=headers
        )
    report = app.client.get("/v1/decision-points/hero/report", headers=headers).json()
    assert report["arms"]["main"]["rewarded"] == 20
    decision_service = app.client.app.state.decisions  # type: ignore[attr-defined]
    assert decision_service.point(app.boot.workspace, "hero").policies[""].steps == 0


def test_a_refusal_on_any_identifier_of_a_person_covers_all_of_their_events(
    make_app: Callable[..., App],
) -> None:
    """Consent is the person's, not one identifier's: a banner refused before login (on
    the anonymous id, by an event or through the API) governs the user id's events and
    decisions after the login links them, in later batches and in the same batch; a later
    statement on any of the person's identifiers supersedes it."""
    app = make_app()
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    grant = {"consent": {"categoryPreferences": {"analytics": True}}}

    def at(day: int) -> str:
        return f"2026-01-{day:02d}T00:00:00Z"

    send(
        app,
        {"type": "page", "anonymousId": "a-banner", "context": refuse, "timestamp": at(1)},
        {"type": "page", "anonymousId": "a-control", "timestamp": at(1)},
    )
    process(app)
    headers = token(app)
    reply = app.client.put(
        "/v1/privacy/consent/anonymous_id/a-api", json={"analytics": False}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    send(  # logins, then use under the user ids alone
        app,
        {"type": "identify", "userId": "u-banner", "anonymousId": "a-banner", "timestamp": at(2)},
        {"type": "identify", "userId": "u-api", "anonymousId": "a-api", "timestamp": at(2)},
        {"type": "identify", "userId": "u-control", "anonymousId": "a-control", "timestamp": at(2)},
        {"type": "track", "userId": "u-banner", "event": "Read", "timestamp": at(3)},
        {"type": "track", "userId": "u-api", "event": "Read", "timestamp": at(3)},
        {"type": "track", "userId": "u-control", "event": "Read", "timestamp": at(3)},
        # refused and logged in within one batch
        {"type": "page", "anonymousId": "a-same", "context": refuse, "timestamp": at(2)},
        {"type": "identify", "userId": "u-same", "anonymousId": "a-same", "timestamp": at(3)},
        {"type": "track", "userId": "u-same", "event": "Read", "timestamp": at(3)},
    )
    process(app)
    hero_point(app, headers)
    decide = {"decisionPoint": "hero", "userId": "u-banner", "actions": ACTIONS}
    assert app.client.post("/v1/decide", json=decide, headers=headers).status_code == 200
    process(app)

    def hashed(value: str) -> str:  # as a pseudonymised row holds it
        return app.runtime.privacy.pseudonyms.unlinked(app.boot.workspace, f"user_id:{value}")

    tracked = {row[0] for row in lake_rows(app, "SELECT user_id FROM events WHERE event = 'Read'")}
    assert tracked == {hashed("u-banner"), hashed("u-api"), hashed("u-same"), "u-control"}
    assert lake_rows(app, "SELECT user_id FROM decisions") == [(hashed("u-banner"),)]
    # What the profile API shows is what the lake applied.
    profile = app.client.get("/v1/profiles/user_id/u-banner", headers=headers).json()
    assert profile["consent"]["current"] == {"analytics": False}

    # The person grants later, on the user id: their next events are in the clear again.
    send(
        app,
        {
            "type": "track",
            "userId": "u-banner",
            "event": "Granted",
            "context": grant,
            "timestamp": at(4),
        },
        {"type": "track", "userId": "u-banner", "event": "Read again", "timestamp": at(5)},
    )
    process(app)
    later = lake_rows(app, "SELECT user_id FROM events WHERE event LIKE '% again'")
    assert later == [("u-banner",)]


def test_a_merge_by_another_group_member_does_not_lose_a_refusal(
    make_app: Callable[..., App],
) -> None:
    """A processor reads an event's consent after its profile write, outside the group's
    identity section: another member may merge the event's profile into another in
    between (a login from another partition). The refusal on the event's identifier
    still governs it: consent is read by the identifier, which takes its statements to
    its new profile (a lookup by the profile id the batch resolved found nothing)."""
    app = make_app()
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    at = "2026-01-01T00:00:00Z"
    send(app, {"type": "page", "anonymousId": "a-x", "context": refuse, "timestamp": at})
    process(app)
    send(app, {"type": "track", "anonymousId": "a-x", "event": "Read", "timestamp": at})
    processor = app.runtime.processor()
    workspace = app.boot.workspace
    login = {"type": "identify", "userId": "u-x", "anonymousId": "a-x", "messageId": "m-login"}

    @contextlib.contextmanager
    def section_then_another_members_login() -> Iterator[None]:
        yield
        # what the other member writes as soon as this one leaves the identity section
        resolved = processor.profiles.resolve([Item(workspace, login, 1_767_225_600_000)])
        app.runtime.profile_store.write(resolved.write)

    processor.profile_lock = section_then_another_members_login
    drain(processor)
    profile = app.client.get("/v1/profiles/user_id/u-x", headers=token(app)).json()
    assert {"type": "anonymous_id", "value": "a-x"} in profile["identities"]  # it merged
    [(anonymous_id,)] = lake_rows(app, "SELECT anonymous_id FROM events WHERE event = 'Read'")
    hashed = app.runtime.privacy.pseudonyms.unlinked(workspace, "anonymous_id:a-x")
    assert anonymous_id == hashed


def test_suppressed_identifiers_are_dropped_and_counted(make_app: Callable[..., App]) -> None:
    app = make_app()
    suppressions = app.runtime.privacy.suppressions
    suppressions.add(app.boot.workspace, ["user_id:gone"], request_id="req-test")
    send(
        app,
        {"type": "track", "userId": "gone", "event": "Back"},
        {"type": "track", "userId": "here", "event": "Back"},
    )
    process(app)
    suppressions.flush()
    assert lake_rows(app, "SELECT user_id FROM events") == [("here",)]
    assert app.client.get("/v1/profiles/user_id/gone", headers=token(app)).status_code == 404
    stats = suppressions.stats(app.boot.workspace)
    assert (stats["identifiers"], stats["dropped"]) == (1, 1)


def test_an_erased_person_gets_the_baseline_and_leaves_no_decision_or_reward(
    make_app: Callable[..., App],
) -> None:
    """After an erasure, the person's decisions are still served (the baseline) but kept
    nowhere: no decision or reward reaches the log or the lake (the processor would drop the
    decision, but a reward carries only its eventId and would stay as an orphan), and none
    is learned from, including a decision made before the erasure and rewarded after it."""
    app = make_app()
    headers = token(app)
    point = {
        "baseline": "a",
        "actions": ACTIONS,
        "policy": {"type": "epsilon_greedy", "epsilon": 1.0},
    }
    assert (
        app.client.put("/v1/decision-points/hero", json=point, headers=headers).status_code == 200
    )

    def decide(**person: str) -> tuple[str, str]:
        body = {"decisionPoint": "hero", "actions": ACTIONS, **person}
        reply = app.client.post("/v1/decide", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["eventId"]), str(reply.json()["actionId"])

    open_before, _ = decide(userId="u-gone")
    app.runtime.privacy.suppressions.add(
        app.boot.workspace, ["user_id:u-gone", "anonymous_id:a-gone"], request_id="req-test"
    )
    erased = [decide(userId="u-gone"), decide(anonymousId="a-gone"), decide(userId="u-gone")]
    erased += [decide(userId="u-new", anonymousId="a-gone")]  # a new login on an erased device
    assert {action for _, action in erased} == {"a"}  # the baseline, never explored
    kept, _ = decide(userId="u-here")
    for event_id in [open_before, *(e for e, _ in erased), kept]:
        reward = app.client.post(
            f"/v1/decisions/{event_id}/reward", json={"value": 1}, headers=headers
        )
        assert reward.status_code == 200, reward.text
        assert reward.json()["status"] == "recorded"
    process(app)
    # The decision made before the erasure reached the log; the processor dropped it.
    assert lake_rows(app, "SELECT event_id FROM decisions") == [(kept,)]
    assert lake_rows(app, "SELECT event_id FROM rewards") == [(kept,)]
    service = app.client.app.state.decisions  # type: ignore[attr-defined]
    assert service.point(app.boot.workspace, "hero").policies[""].steps == 1  # u-here's only


def test_an_analysis_by_a_trait_holding_nested_pii_shows_no_ciphertext(
    make_app: Callable[..., App],
) -> None:
    """A trait that is not PII may hold a PII field (``contact.email``): encrypted in the
    lake, a breakdown by the trait showed its ciphertext, and the key id in it is the
    person's own, so a filter ``contains "enc:v1:<key id>"`` picked them out. Analyses show
    ``[encrypted]`` instead."""
    app = make_app()
    send(
        app,
        {
            "type": "identify",
            "userId": "u-ada",
            "traits": {"contact": {"email": "ada@example.com", "city": "Berlin"}},
        },
        {"type": "track", "userId": "u-ada", "event": "Signed Up"},
    )
    process(app)
    [(traits,)] = lake_rows(app, "SELECT traits FROM events WHERE type = 'identify'")
    key_id = json.loads(traits)["contact"]["email"].split(":")[2]  # enc:v1:<key id>:...
    now = datetime.now(UTC)
    span = {"from": (now - timedelta(days=1)).isoformat()}
    span["to"] = (now + timedelta(days=1)).isoformat()
    analyst = token(app, "analytics:read")
    by_contact = {"events": ["Signed Up"], "breakdown": {"trait": "contact"}, **span}
    reply = app.client.post("/v1/analytics/trends", json=by_contact, headers=analyst)
    assert reply.status_code == 200, reply.text
    [series] = reply.json()["series"]
    assert json.loads(series["breakdown"]) == {"email": "[encrypted]", "city": "Berlin"}
    assert "enc:v1:" not in reply.text
    for value in (f"enc:v1:{key_id}", key_id):
        guess = {"trait": "contact", "op": "contains", "value": value}
        trend = {"events": ["Signed Up"], "filters": [guess], **span}
        reply = app.client.post("/v1/analytics/trends", json=trend, headers=analyst)
        assert reply.status_code == 200, reply.text
        assert reply.json()["series"][0]["total"] == 0, value
    berlin = {"trait": "contact", "op": "contains", "value": "Berlin"}
    trend = {"events": ["Signed Up"], "filters": [berlin], **span}
    reply = app.client.post("/v1/analytics/trends", json=trend, headers=analyst)
    assert reply.json()["series"][0]["total"] == 1  # the rest of the trait still counts


def test_erasure_leaves_no_identifier_in_saved_segments(make_app: Callable[..., App]) -> None:
    """A saved segment may name a person (built with pii:read): erasure replaces the
    values that name them, at any depth and in lists, and the segment keeps working for
    everyone else."""
    app = make_app()
    send(
        app,
        {
            "type": "identify",
            "userId": "u-ada",
            "traits": {"email": "ada@example.com", "phone": 4155550100},
        },
        {"type": "identify", "userId": "u-bob", "traits": {"email": "bob@example.com"}},
        {"type": "track", "userId": "u-ada", "event": "Bought"},
        {"type": "track", "userId": "u-bob", "event": "Bought"},
    )
    process(app)
    headers = token(app, "analytics:read pii:read privacy:admin")
    bought = {"field": "user_id", "op": "in", "value": ["u-ada", "u-bob"]}
    definition = {
        "or": [
            {"trait": "email", "op": "eq", "value": " ADA@example.com"},
            {"event": "Bought", "inLastDays": 3650, "filters": [bought]},
            # A number names her too (her phone trait, sent as a number); other numbers
            # and true stay.
            {"trait": "phone", "op": "in", "value": [4155550100.0, 17, True]},
            # The same number on a condition that is not personal names no one.
            {"trait": "score", "op": "eq", "value": 4155550100},
        ]
    }
    created = app.client.post(
        "/v1/analytics/segments",
        json={"name": "friends", "definition": definition},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    segment = f"/v1/analytics/segments/{created.json()['id']}"
    members = app.client.get(f"{segment}/members", headers=headers).json()
    assert len(members["members"]) == 2

    erasure = finished(app, headers, "/v1/privacy/erase", {"userId": "u-ada"})
    state = app.client.get(f"/v1/privacy/requests/{erasure}", headers=headers).json()
    assert state["result"]["segments"] == 1
    stored = app.client.get(segment, headers=headers).json()
    assert "ada" not in json.dumps(stored).lower()
    assert stored["definition"]["or"][0]["value"] == "[erased]"
    assert stored["definition"]["or"][1]["filters"][0]["value"] == ["[erased]", "u-bob"]
    assert stored["definition"]["or"][2]["value"] == ["[erased]", 17, True]
    assert stored["definition"]["or"][3]["value"] == 4155550100
    members = app.client.get(f"{segment}/members", headers=headers).json()
    assert len(members["members"]) == 1  # Bob's events still match


def test_pii_in_free_text_is_masked_or_flagged(make_app: Callable[..., App]) -> None:
    masked = make_app("mask")
    text = "call +44 20 7946 0958 or write to ada@example.com, card 4111 1111 1111 1111"
    send(masked, {"type": "track", "userId": "u", "event": "Note", "properties": {"text": text}})
    process(masked)
    [[properties]] = lake_rows(masked, "SELECT properties FROM events")
    assert json.loads(properties)["text"] == "call [phone] or write to [email], card [card]"

    # Without field encryption, a PII field (at any depth) is masked like any other text.
    plain = make_app("plain", **{"privacy.encrypt_pii": False})
    nested = {"customer": {"email": "ann@example.com", "note": "call ann@example.com"}}
    send(plain, {"type": "track", "userId": "u", "event": "Note", "properties": nested})
    process(plain)
    [[properties]] = lake_rows(plain, "SELECT properties FROM events")
    assert json.loads(properties) == {"customer": {"email": "[email]", "note": "call [email]"}}

    flagged = make_app("flag", **{"privacy.pii_in_text": "flag"})
    send(flagged, {"type": "track", "userId": "u", "event": "Note", "properties": {"text": text}})
    process(flagged)
    [[properties, flags]] = lake_rows(flagged, "SELECT properties, pii_flags FROM events")
    assert json.loads(properties)["text"] == text
    assert flags == "card,email,phone"


def test_decisions_log_no_pii_traits_and_sql_without_pii_read_hides_them(
    make_app: Callable[..., App],
) -> None:
    """The decision context joins the profile's traits but never its PII fields (so neither
    the log, the lake's ``decisions`` nor the training mart hold them, and training sees what
    the policy saw); the pseudonymised view hides ``context.user.traits`` of older records
    and hashes the decisions' ids as the events' view does."""
    app = make_app()
    email = "ada@example.com"
    send(
        app,
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": email, "name": NAME, "plan": "pro"},
        },
    )
    process(app)
    headers = token(app)
    record = decide_logged(app, headers, "u1")
    assert record["context"]["user"]["traits"] == {"plan": "pro"}
    assert email not in json.dumps(record)
    assert NAME not in json.dumps(record)
    # A record as an older version logged it, with the person's traits in the clear.
    older = {**record, "eventId": "older", "context": {"user": {"traits": {"email": email}}}}
    app.runtime.eventlog.append(
        [
            LogRecord(
                topic=DECISIONS_TOPIC,
                key=b"older",
                value=json.dumps(older).encode(),
                timestamp_ms=int(time.time() * 1000),
                headers={"workspaceId": app.boot.workspace},
            )
        ]
    )
    process(app)
    analyst = token(app, "analytics:read")
    reply = app.client.post(
        "/v1/sql",
        json={"query": "SELECT user_id, anonymous_id, context FROM decisions ORDER BY event_id"},
        headers=analyst,
    )
    assert reply.status_code == 200, reply.text
    rows = reply.json()["rows"]
    hashed = app.runtime.privacy.pseudonyms.pseudonym(app.boot.workspace, "user_id:u1")
    assert [row[0] for row in rows] == [hashed, hashed]
    assert email not in reply.text
    contexts = [json.loads(row[2]) for row in rows]
    assert all("traits" not in c.get("user", {}) for c in contexts)
    # With pii:read the raw rows are there.
    raw = app.client.post(
        "/v1/sql", json={"query": "SELECT user_id, context FROM decisions"}, headers=headers
    )
    assert {row[0] for row in raw.json()["rows"]} == {"u1"}
    assert email in raw.text


@pytest.mark.parametrize("mode", ["pseudonymise", "drop"])
def test_decisions_of_a_person_without_analytics_consent_hold_only_hashed_ids(
    make_app: Callable[..., App], mode: str
) -> None:
    """Events of a person who refused ``analytics`` reach the lake pseudonymised (or not
    at all); their decisions reach it with the ids' keyed hashes in place of the ids, in
    both modes (the row is the decision point's record of what it served). Every decision
    row carries the hashes beside the ids, so SQL without ``pii:read`` shows one hash per
    person in ``decisions`` and ``events`` alike, and erasure finds the hashed rows."""
    app = make_app(mode, **{"privacy.without_analytics_consent": mode})
    refuser, consenter = "refuser-7f3a91", "consenter-5c2e"
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    send(
        app,
        {"type": "identify", "userId": refuser, "traits": {"plan": "pro"}, "context": refuse},
        {"type": "track", "userId": refuser, "event": "Read"},
        {"type": "track", "userId": consenter, "event": "Read"},
    )
    process(app)
    headers = token(app)
    hero_point(app, headers)
    for user in (refuser, consenter):
        # a request context with personal fields, as a web client might send it
        context = {
            "ip": "198.51.100.7",
            "traits": {"email": f"{user}@example.com"},
            "email": f"{user}@example.com",  # a top-level PII field of the request context
            "page": {"url": f"https://shop.example/?uid={user}"},
            "screen": "home",
        }
        decide = {"decisionPoint": "hero", "userId": user, "actions": ACTIONS}
        reply = app.client.post("/v1/decide", json={**decide, "context": context}, headers=headers)
        assert reply.status_code == 200, reply.text
    decide = {"decisionPoint": "hero", "anonymousId": "anon-new-81d0", "actions": [{"id": "a"}]}
    assert app.client.post("/v1/decide", json=decide, headers=headers).status_code == 200
    process(app)

    def hashed(kind: str, value: str) -> str:
        return app.runtime.privacy.pseudonyms.pseudonym(app.boot.workspace, f"{kind}:{value}")

    def unlinked(kind: str, value: str) -> str:  # a pseudonymised row's
        return app.runtime.privacy.pseudonyms.unlinked(app.boot.workspace, f"{kind}:{value}")

    rows = lake_rows(app, "SELECT user_id, user_hash, anonymous_id, anonymous_hash FROM decisions")
    assert sorted(rows, key=str) == sorted(
        [
            (unlinked("user_id", refuser), unlinked("user_id", refuser), None, None),
            (consenter, hashed("user_id", consenter), None, None),
            (None, None, "anon-new-81d0", hashed("anonymous_id", "anon-new-81d0")),
        ],
        key=str,
    )
    # (The identity graph's own tables, ``identities`` and ``profiles``, keep the person.)
    # The refuser's row keeps no personal field of its context, nor the joined traits, and
    # its profile id is hashed (the identities table would name the person).
    rows = lake_rows(app, "SELECT user_hash, profile_id, context FROM decisions")
    contexts = {user_hash: (profile, json.loads(text)) for user_hash, profile, text in rows}
    profile, logged = contexts[unlinked("user_id", refuser)]
    assert profile.startswith("h_")
    assert logged["screen"] == "home"
    assert not {"ip", "traits", "page", "email", "user"} & logged.keys()
    profile, logged = contexts[hashed("user_id", consenter)]  # as logged
    assert profile.startswith("p_")
    assert logged["ip"] == "198.51.100.7"
    found = files_contain(app.runtime.settings.data_dir / "lake", refuser, (".parquet",))
    assert [p for p in found if "/decisions/" in str(p) or "/events/" in str(p)] == []
    # Without pii:read: one hash per person, in decisions as in events (not hashed twice);
    # the refuser's is not their id's own hash, which identities would join to a profile.
    analyst = token(app, "analytics:read")
    query = "SELECT DISTINCT user_id FROM decisions WHERE user_id IS NOT NULL"
    reply = app.client.post("/v1/sql", json={"query": query}, headers=analyst)
    assert reply.status_code == 200, reply.text
    decided = {row[0] for row in reply.json()["rows"]}
    assert decided == {unlinked("user_id", refuser), hashed("user_id", consenter)}
    query = "SELECT DISTINCT user_id FROM events"
    reply = app.client.post("/v1/sql", json={"query": query}, headers=analyst)
    events_users = {row[0] for row in reply.json()["rows"]}
    dropped = mode == "drop"  # the refuser's events are not in the lake at all
    assert events_users == {hashed("user_id", consenter)} | (
        set() if dropped else {unlinked("user_id", refuser)}
    )
    # The training mart too (its id columns shown as the stored hashes, not hashed again).
    result = TransformRunner(app.runtime.settings, app.runtime.lake).run(app.boot.workspace)
    assert result.success, result.error
    query = "SELECT DISTINCT user_id FROM decision_training WHERE user_id IS NOT NULL"
    reply = app.client.post("/v1/sql", json={"query": query}, headers=analyst)
    assert reply.status_code == 200, reply.text
    assert {row[0] for row in reply.json()["rows"]} == decided
    # Erasure finds the pseudonymised decision.
    finished(app, token(app, "privacy:admin"), "/v1/privacy/erase", {"userId": refuser})
    left = lake_rows(app, "SELECT user_id FROM decisions WHERE user_id IS NOT NULL")
    assert left == [(consenter,)]


def test_top_level_pii_external_ids_and_advertising_id(make_app: Callable[..., App]) -> None:
    """Top-level fields without a column of their own land in ``extra``: their PII fields
    are encrypted like those of properties and traits, removed without analytics consent
    and from the pseudonymised view, which also hides external ids and the advertising id."""
    app = make_app()
    context = {
        "externalIds": [{"id": "crm-4711", "type": "crm_id", "collection": "users"}],
        "device": {"advertisingId": "ad-9f0e", "type": "ios"},
    }
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    email = "hal@example.com"
    send(
        app,
        {
            "type": "track",
            "userId": "hal",
            "event": "Read",
            "email": email,
            "phone": PHONE,
            "shelf": "b",
            "context": context,
        },
        {
            "type": "track",
            "userId": "no",
            "event": "Read",
            "email": "no@example.com",
            "context": {**context, **refuse},
        },
    )
    process(app)
    rows = dict(lake_rows(app, "SELECT user_id, extra FROM events"))
    extra = json.loads(rows["hal"])
    assert extra["email"].startswith("enc:v1:")
    assert extra["phone"].startswith("enc:v1:")
    assert extra["shelf"] == "b"
    assert app.runtime.privacy.cipher.decrypt(app.boot.workspace, extra["email"]) == email
    [refused] = [json.loads(v or "{}") for k, v in rows.items() if k != "hal"]
    assert "email" not in refused
    assert files_contain(app.runtime.settings.data_dir / "lake", email, (".parquet",)) == []
    analyst = token(app, "analytics:read")
    reply = app.client.post(
        "/v1/sql", json={"query": "SELECT extra, context FROM events"}, headers=analyst
    )
    assert reply.status_code == 200, reply.text
    for needle in ("enc:v1:", "crm-4711", "ad-9f0e", "no@example.com"):
        assert needle not in reply.text
    shown = sorted(reply.json()["rows"], key=lambda row: row[0] is None)
    assert json.loads(shown[0][0]) == {"shelf": "b"}
    assert shown[1][0] is None
    assert all(json.loads(row[1])["device"] == {"type": "ios"} for row in shown)


def test_segment_names_of_things_stay_readable_and_pii_properties_can_claim_them(
    make_app: Callable[..., App],
) -> None:
    """Segment's spec reserves ``properties.name`` for a page's or product's name: by default
    it is no PII field there (so analysts can group by product), while a person's ``name``
    trait still is. ``privacy.pii_properties`` names the property fields explicitly."""
    product = {"type": "track", "userId": "u1", "event": "Product Viewed"}
    page = {"type": "page", "userId": "u1", "name": "Pricing"}
    batch = (
        {"type": "identify", "userId": "u1", "traits": {"name": NAME}},
        {**product, "properties": {"name": "Blue Shoes", "Email": "ada@example.com"}},
        {**page, "properties": {"name": "Pricing", "path": "/pricing"}},
    )
    app = make_app()
    send(app, *batch)
    process(app)
    rows = lake_rows(app, "SELECT type, traits, properties FROM events ORDER BY type")
    identify, page_row, track = ((t, json.loads(p) if p else None, r) for t, p, r in rows)
    assert identify[1]["name"].startswith("enc:v1:")
    assert json.loads(page_row[2])["name"] == "Pricing"
    properties = json.loads(track[2])
    assert properties["name"] == "Blue Shoes"
    assert properties["Email"].startswith("enc:v1:")  # any case
    # Claimed explicitly, the property is encrypted like a trait.
    strict = make_app(name="strict", **{"privacy.pii_properties": ["name", "email"]})
    send(strict, *batch)
    process(strict)
    [[stored]] = lake_rows(strict, "SELECT properties FROM events WHERE type = 'track'")
    assert json.loads(stored)["name"].startswith("enc:v1:")

    def plain_in_lake(app: App) -> bool:
        lake = app.runtime.settings.data_dir / "lake"
        return bool(files_contain(lake, "Blue Shoes", (".parquet",)))

    assert plain_in_lake(app)
    assert not plain_in_lake(strict)


def test_sql_without_pii_read_hides_plain_pii_fields_of_any_spelling_and_depth(
    make_app: Callable[..., App],
) -> None:
    """With ``privacy.encrypt_pii = false`` the lake holds PII fields in the clear; SQL
    without ``pii:read`` must still not show them, however the key is spelled and wherever
    the privacy stage would have found it."""
    app = make_app(**{"privacy.encrypt_pii": False})
    email, phone = "grace@example.com", "+1 202 555 0143"
    send(
        app,
        {
            "type": "identify",
            "userId": "u2",
            "traits": {"EMAIL": email, "contact": {"Phone": phone}, "plan": "team"},
        },
        {
            "type": "track",
            "userId": "u2",
            "event": "Signed Up",
            "properties": {"Email": email, "name": "Team plan"},
            "account": {"owner": {"email": email}, "seats": 5},  # an extra field
        },
    )
    process(app)
    with_pii = app.client.post(
        "/v1/sql",
        json={"query": "SELECT traits, properties, extra FROM events"},
        headers=token(app),
    )
    assert email in with_pii.text  # stored in the clear, as configured
    reply = app.client.post(
        "/v1/sql",
        json={"query": "SELECT type, traits, properties, extra FROM events ORDER BY type"},
        headers=token(app, "analytics:read"),
    )
    assert reply.status_code == 200, reply.text
    assert email not in reply.text
    assert phone not in reply.text
    identify, track = reply.json()["rows"]
    assert json.loads(identify[1]) == {"contact": {}, "plan": "team"}
    assert json.loads(track[2]) == {"name": "Team plan"}
    assert json.loads(track[3]) == {"account": {"owner": {}, "seats": 5}}


def test_computed_traits_over_pii_properties_are_withheld_from_decisions(
    make_app: Callable[..., App],
) -> None:
    """A declared computed trait over a property of ``privacy.pii_properties`` is not joined
    into a decision's context (it is logged with the decision); one over a property that
    is not PII there (Segment's ``properties.name``, by default) is."""
    computed = [
        {"name": "last_ssn", "kind": "last", "property": "ssn"},
        {"name": "last_product", "kind": "last", "property": "name"},
    ]
    app = make_app(**{"profiles.computed": computed, "privacy.pii_properties": ["email", "ssn"]})
    send(
        app,
        {
            "type": "track",
            "userId": "u3",
            "event": "Product Viewed",
            "properties": {"name": "Blue Shoes", "ssn": "078-05-1120"},
        },
    )
    process(app)
    headers = token(app)
    record = decide_logged(app, headers, "u3")
    joined = record["context"]["user"]["computed"]
    assert joined["last_product"] == "Blue Shoes"
    assert "last_ssn" not in joined
    assert "078-05-1120" not in json.dumps(record)


def test_pseudonymised_events_have_one_pseudonymous_key_in_analyses_and_marts(
    make_app: Callable[..., App],
) -> None:
    """The pseudonymised events of a person without ``analytics`` consent are grouped as an
    unresolved visitor's are, one person per device, across its login (a funnel from before
    the login to after it converts), keyed ``pseudo:<anonymous id hash>`` in the analyses
    and the marts alike. The pseudonymous SQL views show that key as it is (it is a hash
    already; it used to be hashed a second time), so it joins the events' hashed ids there,
    and erasure removes it."""
    app = make_app()
    # (a consent manager's wrapper sends the categories with every event)
    refuse = {"consent": {"categoryPreferences": {"analytics": False}}}
    events = [
        ("identify", None, None, "dev-1"),
        ("track", "Viewed", None, "dev-1"),
        ("identify", None, "no2", "dev-1"),
        ("track", "Bought", "no2", "dev-1"),
        ("track", "Viewed", "no2", "dev-2"),
    ]
    send(
        app,
        *(
            {
                "type": kind,
                **({"event": name} if name else {}),
                **({"userId": user} if user else {}),
                "anonymousId": device,
                "context": refuse,
                "timestamp": f"2026-03-02T10:{minute:02d}:00Z",
            }
            for minute, (kind, name, user, device) in enumerate(events)
        ),
    )
    process(app)
    assert {row[0] for row in lake_rows(app, "SELECT anonymous_id FROM events")} == {
        app.runtime.privacy.pseudonyms.unlinked(app.boot.workspace, f"anonymous_id:{d}")
        for d in ("dev-1", "dev-2")
    }  # (all pseudonymised)
    analyst = token(app, "analytics:read")
    span = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    trends = {"events": ["Viewed"], "measure": "people", **span}
    reply = app.client.post("/v1/analytics/trends", json=trends, headers=analyst)
    assert reply.status_code == 200, reply.text
    assert reply.json()["series"][0]["total"] == 2  # one per device
    funnel = {"steps": [{"event": "Viewed"}, {"event": "Bought"}], **span}
    reply = app.client.post("/v1/analytics/funnels", json=funnel, headers=analyst)
    assert reply.status_code == 200, reply.text
    assert [step["count"] for step in reply.json()["steps"]] == [2, 1]  # across the login
    keys = {
        "pseudo:" + app.runtime.privacy.pseudonyms.unlinked(app.boot.workspace, f"anonymous_id:{d}")
        for d in ("dev-1", "dev-2")
    }
    result = TransformRunner(app.runtime.settings, app.runtime.lake).run(app.boot.workspace)
    assert result.success, result.error
    query = "SELECT person_id FROM user_features"
    for headers in (token(app), analyst):  # with and without pii:read: the same keys
        reply = app.client.post("/v1/sql", json={"query": query}, headers=headers)
        assert reply.status_code == 200, reply.text
        assert {row[0] for row in reply.json()["rows"]} == keys
    joined = (
        "SELECT count(*) FROM user_features f JOIN events e"
        " ON f.person_id = 'pseudo:' || e.anonymous_id WHERE e.event = 'Viewed'"
    )
    reply = app.client.post("/v1/sql", json={"query": joined}, headers=analyst)
    assert reply.json()["rows"] == [[2]]
    # Erasure removes the pseudonymous person's mart rows.
    finished(app, token(app, "privacy:admin"), "/v1/privacy/erase", {"userId": "no2"})
    reply = app.client.post("/v1/sql", json={"query": query}, headers=token(app))
    assert reply.json()["rows"] == []
