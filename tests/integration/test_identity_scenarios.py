"""The classic identity scenarios through ProfileService and a real profile store, on every
store backend, and the profile API on top of the whole pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auie.errors import NotFound
from auie.events import format_time
from auie.profiles.identity import IdentityRules, Merge, profile_id
from auie.profiles.service import ProfileService
from auie.profiles.state import StateFolder
from auie.profiles.store.sql import SqlProfileStore
from conftest import App
from helpers import basic, bearer, get_token
from pipeline import drain, feed

WS = "ws_scenarios"
START = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
GAP = 30 * 60_000


def at(minute: float) -> str:
    return format_time(START + timedelta(minutes=minute))


def ms(minute: float) -> int:
    return int((START + timedelta(minutes=minute)).timestamp() * 1000)


def ev(kind: str, mid: str, minute: float, **fields: Any) -> dict[str, Any]:
    """A normalised event."""
    event: dict[str, Any] = {
        "type": kind,
        "messageId": mid,
        "timestamp": at(minute),
        "receivedAt": at(minute),
        "context": {},
        **fields,
    }
    if kind == "track":
        event.setdefault("event", "Clicked")
    return event


def pid(node: str) -> str:
    return profile_id(WS, node)


@pytest.fixture
def service(profile_store: SqlProfileStore) -> ProfileService:
    return ProfileService(profile_store, IdentityRules(), StateFolder(GAP))


def identities(service: ProfileService, id_type: str, value: str) -> set[tuple[str, str]]:
    profile = service.profile(WS, id_type, value)
    return {(i["type"], i["value"]) for i in profile.identities}


def same_profile(service: ProfileService, *ids: tuple[str, str]) -> str:
    found = {service.profile(WS, t, v).profile_id for t, v in ids}
    assert len(found) == 1, found
    return found.pop()


# -- anonymous browsing, then login -------------------------------------------------------


def browsing_then_login() -> list[dict[str, Any]]:
    return [
        ev("page", "m-01", 0, anonymousId="a-1", name="Home"),
        ev("page", "m-02", 2, anonymousId="a-1", name="Pricing"),
        ev("track", "m-03", 3, anonymousId="a-1", event="Started Trial"),
        ev("identify", "login-1", 5, userId="u-1", anonymousId="a-1", traits={"plan": "pro"}),
        ev("track", "m-05", 6, userId="u-1", event="Upgraded"),
    ]


@pytest.mark.parametrize("batch", [1, 5])
def test_anonymous_browsing_then_login(service: ProfileService, batch: int) -> None:
    ids = feed(service, WS, browsing_then_login(), batch=batch)
    user = pid("user_id:u-1")
    assert ids[3:] == [user, user]
    profile = service.profile(WS, "anonymous_id", "a-1")
    assert profile == service.profile(WS, "user_id", "u-1")
    assert profile.profile_id == user
    assert {(i["type"], i["value"]) for i in profile.identities} == {
        ("user_id", "u-1"),
        ("anonymous_id", "a-1"),
    }
    # The anonymous events are part of the user's profile.
    assert profile.computed_traits["eventCounts"] == {
        "Started Trial": 1,
        "Upgraded": 1,
        "identify": 1,
        "page": 2,
    }
    assert profile.computed_traits["firstSeen"] == at(0)
    assert profile.computed_traits["sessions"] == 1
    assert profile.computed_traits["lastPage"] == {"name": "Pricing"}
    assert profile.traits == {"plan": "pro"}
    assert profile.merges == [Merge(pid("anonymous_id:a-1"), user, "login-1", ms(5), "link")]
    assert service.store.profile_ids(WS) == [user]


# -- one user, two devices ----------------------------------------------------------------


def test_two_devices_of_one_user(service: ProfileService) -> None:
    events = [
        ev("page", "m-1", 0, anonymousId="phone"),
        ev("page", "m-2", 60, anonymousId="laptop"),
        ev("identify", "m-3", 61, userId="u-1", anonymousId="laptop"),
        ev("track", "m-4", 120, anonymousId="phone"),
        ev("identify", "m-5", 121, userId="u-1", anonymousId="phone"),
    ]
    feed(service, WS, events)
    user = same_profile(
        service, ("user_id", "u-1"), ("anonymous_id", "phone"), ("anonymous_id", "laptop")
    )
    assert identities(service, "user_id", "u-1") == {
        ("user_id", "u-1"),
        ("anonymous_id", "phone"),
        ("anonymous_id", "laptop"),
    }
    merges = service.profile(WS, "user_id", "u-1").merges
    assert [(m.from_profile, m.message_id) for m in merges] == [
        (pid("anonymous_id:laptop"), "m-3"),
        (pid("anonymous_id:phone"), "m-5"),
    ]
    assert service.store.profile_ids(WS) == [user]
    assert service.profile(WS, "user_id", "u-1").computed_traits["sessions"] == 3


# -- a shared device ----------------------------------------------------------------------


def shared_device() -> list[dict[str, Any]]:
    return [
        ev("page", "m-1", 0, anonymousId="kiosk"),
        ev("identify", "m-2", 1, userId="alice", anonymousId="kiosk", traits={"name": "Alice"}),
        ev("track", "m-3", 2, userId="alice", anonymousId="kiosk"),
        ev("identify", "m-4", 90, userId="bob", anonymousId="kiosk", traits={"name": "Bob"}),
        ev("track", "m-5", 91, userId="bob", anonymousId="kiosk"),
    ]


@pytest.mark.parametrize("order", ["in order", "reversed", "bob first"])
def test_shared_device_keeps_two_people_apart(service: ProfileService, order: str) -> None:
    events = shared_device()
    if order == "reversed":
        events = events[::-1]
    elif order == "bob first":
        events = events[3:] + events[:3]
    feed(service, WS, events)
    alice = service.profile(WS, "user_id", "alice")
    bob = service.profile(WS, "user_id", "bob")
    assert alice.profile_id != bob.profile_id
    # The device belongs to whoever used it first by event time, whatever the arrival order.
    assert service.profile(WS, "anonymous_id", "kiosk").profile_id == alice.profile_id
    assert {(i["type"], i["value"]) for i in alice.identities} == {
        ("user_id", "alice"),
        ("anonymous_id", "kiosk"),
    }
    assert bob.identities == [{"type": "user_id", "value": "bob"}]
    assert alice.traits == {"name": "Alice"}
    assert bob.traits == {"name": "Bob"}
    assert alice.merges == [
        Merge(pid("anonymous_id:kiosk"), alice.profile_id, "m-2", ms(1), "link")
    ]
    assert bob.merges == []
    assert sorted(service.store.profile_ids(WS)) == sorted([alice.profile_id, bob.profile_id])
    # Bob's events on the kiosk are Bob's.
    assert bob.computed_traits["eventCounts"] == {"Clicked": 1, "identify": 1}
    assert alice.computed_traits["eventCounts"] == {"Clicked": 1, "identify": 1, "page": 1}


def test_shared_device_results_do_not_depend_on_arrival(profile_store: SqlProfileStore) -> None:
    """Every arrival order of the scenario gives identical profiles (one store per order:
    a workspace each)."""
    service = ProfileService(profile_store, IdentityRules(), StateFolder(GAP))
    results = []
    orders = [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [3, 4, 0, 1, 2], [2, 4, 1, 3, 0]]
    for n, order in enumerate(orders):
        workspace = f"ws_{n}"
        feed(service, workspace, [shared_device()[i] for i in order])
        profiles = []
        for user in ("alice", "bob"):
            data = service.profile(workspace, "user_id", user).to_dict()
            text = json.dumps(data, sort_keys=True)
            for key in ("user_id:alice", "user_id:bob", "anonymous_id:kiosk"):
                text = text.replace(profile_id(workspace, key), key)
            profiles.append(text)
        results.append(profiles)
    assert all(r == results[0] for r in results)


# -- alias chains -------------------------------------------------------------------------


def alias_chain() -> list[dict[str, Any]]:
    return [
        ev("page", "m-1", 0, anonymousId="a-1"),
        ev("alias", "alias-1", 1, userId="u-1", previousId="a-1"),
        ev("track", "m-3", 2, userId="u-1", anonymousId="a-7"),
        ev("alias", "alias-2", 3, userId="u-2", previousId="u-1"),
        ev("identify", "m-5", 4, userId="u-2", traits={"plan": "pro"}),
    ]


@pytest.mark.parametrize("reverse", [False, True])
def test_alias_chains_make_one_profile(service: ProfileService, reverse: bool) -> None:
    events = alias_chain()
    feed(service, WS, events[::-1] if reverse else events)
    one = same_profile(
        service,
        ("anonymous_id", "a-1"),
        ("anonymous_id", "a-7"),
        ("user_id", "u-1"),
        ("user_id", "u-2"),
    )
    # An alias's previousId may have been an anonymous id: the profile lists it as one.
    assert identities(service, "user_id", "u-2") == {
        ("anonymous_id", "a-1"),
        ("anonymous_id", "a-7"),
        ("anonymous_id", "u-1"),
        ("user_id", "u-1"),
        ("user_id", "u-2"),
    }
    assert service.store.profile_ids(WS) == [one]
    merges = service.profile(WS, "user_id", "u-1").merges
    assert {m.message_id for m in merges} == {"alias-1", "m-3", "alias-2"}
    assert [m.kind for m in merges] == ["alias", "link", "alias"]


def test_alias_joins_users_that_each_used_a_shared_device(service: ProfileService) -> None:
    """User ids joined by alias count as one user, so a later link does not split them."""
    events = [
        ev("identify", "m-1", 0, userId="old", anonymousId="kiosk"),
        ev("alias", "m-2", 1, userId="new", previousId="old"),
        ev("identify", "m-3", 2, userId="new", anonymousId="kiosk"),
        ev("identify", "m-4", 3, userId="other", anonymousId="kiosk"),
    ]
    feed(service, WS, events)
    joined = same_profile(
        service, ("user_id", "old"), ("user_id", "new"), ("anonymous_id", "kiosk")
    )
    assert service.profile(WS, "user_id", "other").profile_id != joined


# -- junk identifiers ---------------------------------------------------------------------

JUNK = ["null", "undefined", "0", "anonymous", "", "NULL", " undefined ", "none"]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_ids_never_link_two_people(service: ProfileService, junk: str) -> None:
    events = [
        ev("identify", "m-1", 0, userId="ann", anonymousId=junk, traits={"email": junk}),
        ev("identify", "m-2", 1, userId="ben", anonymousId=junk, traits={"email": junk}),
        ev("alias", "m-3", 2, userId="ann", previousId=junk),
        ev(
            "track",
            "m-4",
            3,
            userId="cid",
            anonymousId="a-c",
            context={"externalIds": [{"type": "crm", "id": junk}]},
        ),
        ev("track", "m-5", 4, userId="dan", context={"externalIds": [{"type": "crm", "id": junk}]}),
    ]
    ids = feed(service, WS, events, batch=2)
    assert len(set(ids)) == 4
    assert len(service.store.profile_ids(WS)) == 4
    assert identities(service, "user_id", "ann") == {("user_id", "ann")}
    assert identities(service, "user_id", "ben") == {("user_id", "ben")}
    assert service.store.nodes(WS, [f"anonymous_id:{junk}", f"email:{junk}"]) == {}
    with pytest.raises(NotFound):
        service.profile(WS, "anonymous_id", junk)


def test_events_with_only_junk_ids_have_no_profile(service: ProfileService) -> None:
    events = [
        ev("track", f"m-{i}", i, userId=junk, anonymousId=junk) for i, junk in enumerate(JUNK)
    ]
    assert feed(service, WS, events, batch=3) == [None] * len(JUNK)
    assert service.store.profile_ids(WS) == []


def test_one_email_never_joins_two_users(service: ProfileService) -> None:
    events = [
        ev("identify", "m-1", 0, userId="ann", traits={"email": "family@example.com"}),
        ev("identify", "m-2", 1, userId="ben", traits={"email": "family@example.com"}),
    ]
    feed(service, WS, events)
    assert service.profile(WS, "email", "family@example.com").profile_id == pid("user_id:ann")
    assert service.profile(WS, "user_id", "ben").profile_id == pid("user_id:ben")


# -- email ----------------------------------------------------------------------------------


def test_email_trait_links_a_second_anonymous_id(service: ProfileService) -> None:
    events = [
        ev("identify", "m-1", 0, anonymousId="a-1", traits={"email": "Ada@Example.com"}),
        ev("page", "m-2", 1, anonymousId="a-2"),
        ev("identify", "m-3", 600, anonymousId="a-2", traits={"email": " ada@example.COM"}),
    ]
    feed(service, WS, events)
    one = same_profile(
        service,
        ("anonymous_id", "a-1"),
        ("anonymous_id", "a-2"),
        ("email", "ada@example.com"),
        ("email", "ADA@EXAMPLE.COM"),
        ("email", " Ada@Example.com "),
    )
    assert one == pid("email:ada@example.com")
    profile = service.profile(WS, "email", "ada@example.com")
    assert {(i["type"], i["value"]) for i in profile.identities} == {
        ("anonymous_id", "a-1"),
        ("anonymous_id", "a-2"),
        ("email", "ada@example.com"),
    }
    # The trait keeps what was sent last (by event time), unnormalised.
    assert profile.traits == {"email": " ada@example.COM"}
    # A later login moves everything under the user id.
    feed(service, WS, [ev("identify", "m-4", 700, userId="u-9", anonymousId="a-2")])
    assert same_profile(service, ("email", "ada@example.com"), ("user_id", "u-9")) == pid(
        "user_id:u-9"
    )
    assert service.store.profile_ids(WS) == [pid("user_id:u-9")]


# -- large batches: the component cap is per component ------------------------------------


def shared_devices(people: range) -> list[dict[str, Any]]:
    """Per person ``i``: alice-i, then bob-i, log in on kiosk-i (the kiosk is alice-i's)."""
    return [
        e
        for i in people
        for e in (
            ev("identify", f"first-{i}", 0, userId=f"alice-{i}", anonymousId=f"kiosk-{i}"),
            ev("identify", f"second-{i}", 1, userId=f"bob-{i}", anonymousId=f"kiosk-{i}"),
        )
    ]


def second_users_phones(people: range, minute: float) -> list[dict[str, Any]]:
    return [
        ev("identify", f"phone-{i}", minute, userId=f"bob-{i}", anonymousId=f"phone-{i}")
        for i in people
    ]


def assert_kiosks_stay_with_first_users(service: ProfileService, people: range) -> None:
    for i in people:
        alice = service.profile(WS, "user_id", f"alice-{i}").profile_id
        bob = service.profile(WS, "user_id", f"bob-{i}").profile_id
        assert service.profile(WS, "anonymous_id", f"kiosk-{i}").profile_id == alice
        assert service.profile(WS, "anonymous_id", f"phone-{i}").profile_id == bob
        assert alice != bob


def test_a_batch_of_many_people_reads_each_component_whole(
    profile_store: SqlProfileStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Thirty people each on a shared device: the device stays with its first user when the
    second user's next login arrives in one large batch with everyone else's. The batch
    touches more identifiers than ``max_component_nodes`` in all, but each person's
    component is small: none is cut short (a cut one would lose the first user's edge and
    hand the device to the second)."""
    service = ProfileService(profile_store, IdentityRules(), StateFolder(GAP), 10)
    people = range(30)
    feed(service, WS, shared_devices(people))
    later = second_users_phones(people, 2)
    with caplog.at_level("WARNING", logger="auie.profiles.service"):
        feed(service, WS, later, batch=len(later))
    assert "exceeds" not in caplog.text
    assert_kiosks_stay_with_first_users(service, people)


def test_a_component_beyond_the_cap_is_cut_short_and_named(
    profile_store: SqlProfileStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A value shared by everyone that no junk rule catches (one e-mail on every sign-up)
    makes one component of every identifier; past ``max_component_nodes`` it stops growing,
    one warning names it, and the batch is still resolved. Shared-device people in the same
    batch are read whole (their devices stay with their first users)."""
    service = ProfileService(profile_store, IdentityRules(), StateFolder(GAP), 10)
    signups = [
        ev("identify", f"s-{i}", i, anonymousId=f"a-{i}", traits={"email": "x@example.com"})
        for i in range(20)
    ]
    people = range(5)
    feed(service, WS, signups + shared_devices(people))
    caplog.clear()
    batch = [
        ev("identify", "late", 30, anonymousId="a-late", traits={"email": "x@example.com"}),
        *second_users_phones(people, 31),
    ]
    with caplog.at_level("WARNING", logger="auie.profiles.service"):
        ids = feed(service, WS, batch, batch=len(batch))
    warnings = [r.getMessage() for r in caplog.records if "exceeds" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "exceeds 10 identifiers" in warnings[0]
    assert "anonymous_id:a-late" in warnings[0]
    assert ids[0] == service.profile(WS, "email", "x@example.com").profile_id
    assert_kiosks_stay_with_first_users(service, people)


def test_lookup_by_each_identifier(service: ProfileService) -> None:
    feed(service, WS, browsing_then_login())
    feed(
        service,
        WS,
        [ev("identify", "m-9", 9, userId="u-1", traits={"email": "Someone@Example.org"})],
    )
    user = pid("user_id:u-1")
    for id_type, value in [
        ("user_id", "u-1"),
        ("anonymous_id", "a-1"),
        ("email", "someone@example.org"),
        ("email", "SOMEONE@example.ORG"),
    ]:
        assert service.profile(WS, id_type, value).profile_id == user
    for id_type, value in [("user_id", "U-1"), ("user_id", "nobody"), ("phone", "1")]:
        with pytest.raises(NotFound):
            service.profile(WS, id_type, value)
    with pytest.raises(NotFound):
        service.profile("ws_elsewhere", "user_id", "u-1")


# -- the API over the whole pipeline ------------------------------------------------------


def send(app: App, messages: Sequence[dict[str, Any]]) -> None:
    reply = app.client.post(
        "/v1/batch",
        content=json.dumps({"batch": list(messages)}),
        headers={"Content-Type": "application/json", **basic(app.boot.write_key)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["rejected"] == []


@pytest.fixture
def api(make_app: Callable[..., App], store_url: str) -> App:
    """An app whose profile store is the backend under test, with a login scenario
    collected and processed."""
    app = make_app(**{"profiles.url": store_url, "lake.flush_max_seconds": 0.01})
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    send(
        app,
        [
            {
                "type": "page",
                "anonymousId": "a-1",
                "name": "Home",
                "messageId": "p-1",
                "timestamp": at(0),
                "context": {"userAgent": ua},
            },
            {
                "type": "identify",
                "userId": "u-1",
                "anonymousId": "a-1",
                "messageId": "i-1",
                "timestamp": at(1),
                "traits": {"email": "Ada@Example.com", "plan": "pro"},
            },
            {
                "type": "track",
                "userId": "u-1",
                "event": "Upgraded",
                "messageId": "t-1",
                "timestamp": at(2),
            },
        ],
    )
    drain(app.runtime.processor())
    return app


def test_profile_api(api: App) -> None:
    token = get_token(api.client, api.boot.client_id, api.boot.client_secret, "profiles:read")
    reply = api.client.get("/v1/profiles/user_id/u-1", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {
        "profileId",
        "identities",
        "traits",
        "computedTraits",
        "consent",
        "merges",
    }
    assert body["consent"] == {"current": {}, "history": []}
    ws = api.boot.workspace
    assert body["profileId"] == profile_id(ws, "user_id:u-1")
    assert sorted(body["identities"], key=lambda i: i["type"]) == [
        {"type": "anonymous_id", "value": "a-1"},
        {"type": "email", "value": "ada@example.com"},
        {"type": "user_id", "value": "u-1"},
    ]
    assert body["traits"] == {"email": "Ada@Example.com", "plan": "pro"}
    computed = body["computedTraits"]
    assert computed["eventCounts"] == {"Upgraded": 1, "identify": 1, "page": 1}
    assert computed["firstSeen"] == at(0)
    assert computed["lastSeen"] == at(2)
    assert computed["sessions"] == 1
    assert computed["lastPage"] == {"name": "Home"}
    assert body["merges"] == [
        {
            "fromProfileId": profile_id(ws, "anonymous_id:a-1"),
            "intoProfileId": body["profileId"],
            "messageId": "i-1",
            "timestamp": at(1),
            "kind": "link",
        }
    ]
    for path in ("anonymous_id/a-1", "email/ADA%40example.com", "email/ada@example.com"):
        again = api.client.get(f"/v1/profiles/{path}", headers=bearer(token))
        assert again.status_code == 200, (path, again.text)
        assert again.json() == body

    events = api.client.get("/v1/profiles/email/ada@example.com/events", headers=bearer(token))
    assert events.status_code == 200, events.text
    assert [e["messageId"] for e in events.json()["events"]] == ["t-1", "i-1", "p-1"]
    # The lake holds the e-mail encrypted (field encryption); the API shows it as the
    # profile does.
    assert events.json()["events"][1]["traits"] == {"email": "Ada@Example.com", "plan": "pro"}
    raw = api.runtime.lake.refresh(ws, "events").scan(selected_fields=("traits",)).to_arrow()
    assert not any("Ada@Example.com" in (t or "") for t in raw["traits"].to_pylist())


def assert_error(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"code", "message"}
    assert reply.json()["code"] == code
    assert reply.json()["message"]


def test_profile_api_errors_and_isolation(api: App) -> None:
    token = get_token(api.client, api.boot.client_id, api.boot.client_secret, "profiles:read")
    for path in ("user_id/nobody", "anonymous_id/null", "email/x@example.com", "crm/1"):
        assert_error(
            api.client.get(f"/v1/profiles/{path}", headers=bearer(token)), 404, "not_found"
        )
        assert_error(
            api.client.get(f"/v1/profiles/{path}/events", headers=bearer(token)), 404, "not_found"
        )
    for path in ("User_Id/u-1", "crm-id/1", "9/1", f"{'t' * 41}/1"):  # no identifier's type
        for suffix in ("", "/events"):
            reply = api.client.get(f"/v1/profiles/{path}{suffix}", headers=bearer(token))
            assert_error(reply, 400, "invalid_id_type")
    for limit in ("0", "1001", "ten"):
        reply = api.client.get(
            f"/v1/profiles/user_id/u-1/events?limit={limit}", headers=bearer(token)
        )
        assert_error(reply, 400, "invalid_request")
        assert reply.json()["message"].startswith("query.limit: "), reply.json()

    admin_only = get_token(api.client, api.boot.client_id, api.boot.client_secret, "admin")
    assert_error(
        api.client.get("/v1/profiles/user_id/u-1", headers=bearer(admin_only)),
        403,
        "insufficient_scope",
    )
    assert_error(api.client.get("/v1/profiles/user_id/u-1"), 401, "missing_token")

    # A client of another workspace never sees this workspace's profiles.
    runtime = api.runtime
    other = runtime.tenancy.create_workspace("other")
    client = runtime.clients.create(other.id, "reader", ["profiles:read"])
    foreign = get_token(api.client, client.client.id, client.secret, "profiles:read")
    for path in ("user_id/u-1", "anonymous_id/a-1", "email/ada@example.com"):
        assert_error(
            api.client.get(f"/v1/profiles/{path}", headers=bearer(foreign)), 404, "not_found"
        )
        assert_error(
            api.client.get(f"/v1/profiles/{path}/events", headers=bearer(foreign)), 404, "not_found"
        )


def test_the_profile_bounds_are_settings(make_app: Callable[..., App]) -> None:
    """``profiles.max_event_names``, ``profiles.max_sessions`` and ``profiles.max_traits``
    reach the processor: the profile counts the alphabetically first names and the rest as
    ``otherEvents``, counts closed sessions with the kept ones, and keeps the traits written
    last (and ``email``)."""
    app = make_app(
        **{
            "profiles.max_event_names": 1,
            "profiles.max_sessions": 1,
            "profiles.max_traits": 2,
            "profiles.computed": [{"name": "checkouts", "kind": "count", "event": "Checkout"}],
            "lake.flush_max_seconds": 0.01,
        }
    )
    names = ["Viewed C", "Viewed A", "Checkout", "Viewed B", "Viewed A"]
    send(
        app,
        [
            {
                "type": "track",
                "userId": "u-7",
                "event": name,
                "messageId": f"t-{i}",
                "timestamp": at(i * 90),  # every event a session of its own
            }
            for i, name in enumerate(names)
        ]
        + [
            {
                "type": "identify",
                "userId": "u-7",
                "messageId": f"i-{i}",
                "timestamp": at(i),
                "traits": traits,
            }
            for i, traits in enumerate(
                [{"plan": "pro", "email": "u7@example.com"}, {"k1": 1}, {"k2": 2, "plan": "team"}]
            )
        ],
    )
    drain(app.runtime.processor())
    token = get_token(app.client, app.boot.client_id, app.boot.client_secret, "profiles:read")
    reply = app.client.get("/v1/profiles/user_id/u-7", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    computed = reply.json()["computedTraits"]
    assert computed["eventCounts"] == {"Checkout": 1, "Viewed A": 2, "identify": 3}
    assert computed["otherEvents"] == 2
    assert computed["checkouts"] == 1
    assert computed["sessions"] == 5
    # (email, an identifier trait, is always kept)
    assert reply.json()["traits"] == {"email": "u7@example.com", "k2": 2, "plan": "team"}
    stored = app.runtime.profile_store.nodes(app.boot.workspace, ["user_id:u-7"])
    state = stored["user_id:u-7"].state
    assert state is not None
    assert (len(state.sessions), state.closed_sessions) == (1, 4)


def test_profile_events_are_the_persons_own_on_a_shared_device(
    make_app: Callable[..., App],
) -> None:
    """Carol and Dave share a device: the device's anonymous events are Carol's (she logged
    in on it first), Dave's events on it are his, and neither sees the other's. Ids with
    surrounding white space or a slash are read like any other."""
    app = make_app(**{"lake.flush_max_seconds": 0.01})
    send(
        app,
        [
            {"type": "track", "anonymousId": "dev-S", "event": "Viewed", "timestamp": at(0)},
            {"type": "identify", "anonymousId": "dev-S", "userId": "carol", "timestamp": at(10)},
            {"type": "identify", "anonymousId": "dev-S", "userId": "dave", "timestamp": at(30)},
            {
                "type": "track",
                "anonymousId": "dev-S",
                "userId": "dave",
                "event": "Bought",
                "timestamp": at(31),
            },
            {"type": "track", "userId": " spaced ", "event": "S", "timestamp": at(40)},
            {"type": "track", "userId": "spaced", "event": "S", "timestamp": at(41)},
            {"type": "track", "userId": "team/a b", "event": "T", "timestamp": at(50)},
        ],
    )
    drain(app.runtime.processor())
    token = get_token(app.client, app.boot.client_id, app.boot.client_secret, "profiles:read")

    def events(path: str) -> list[tuple[str, str | None]]:
        reply = app.client.get(f"/v1/profiles/{path}/events", headers=bearer(token))
        assert reply.status_code == 200, reply.text
        return [(e["type"], e.get("event")) for e in reply.json()["events"]]

    assert events("user_id/carol") == [("identify", None), ("track", "Viewed")]
    assert events("anonymous_id/dev-S") == events("user_id/carol")
    assert events("user_id/dave") == [("track", "Bought"), ("identify", None)]
    assert events("user_id/spaced") == [("track", "S"), ("track", "S")]
    assert events("user_id/team%2Fa%20b") == [("track", "T")]
    reply = app.client.get("/v1/profiles/user_id/team%2Fa%20b", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    assert {"type": "user_id", "value": "team/a b"} in reply.json()["identities"]
