"""Finding and deleting a person in the profile store, on SQLite and PostgreSQL: every
identifier of their profiles, the edges touching them, merges, dead letters and violation
counters quoting them — and nothing of anybody else, even on a shared device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from auie.privacy import profileops
from auie.privacy.person import Subject, resolve_person
from auie.profiles.identity import IdentityRules
from auie.profiles.nodecache import NodeCache
from auie.profiles.service import ProfileService
from auie.profiles.state import StateFolder
from auie.profiles.store.base import DeadLetter, ProfileWrite, Violation
from auie.profiles.store.sql import SqlProfileStore
from pipeline import feed

WS = "ws_priv"
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _event(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "E",
        "messageId": f"m-{n:03d}",
        "timestamp": (BASE + timedelta(minutes=n)).isoformat(),
        **fields,
    }


EVENTS = [
    _event(1, anonymousId="dev-laptop"),
    _event(2, anonymousId="dev-phone"),
    _event(
        3,
        type="identify",
        userId="ada",
        anonymousId="dev-laptop",
        traits={
            "email": "Ada@Example.com",
            "name": "Ada Lovelace",
            # a PII field nested in an array, one holding several values, a number
            "family": [{"name": ["Augusta Ada King", "Ada Byron"]}],
            "phone": 4930123456,
            # an object-valued PII field: its street is PII (by name), its city is not
            "address": {"city": "Berlin", "street": "Analytical Way 12"},
        },
    ),
    _event(4, userId="ada", anonymousId="dev-phone"),  # merges the phone's profile
    _event(5, type="alias", userId="ada", previousId="ada-old"),
    _event(6, userId="bob", anonymousId="dev-shared"),
    _event(7, userId="ada", anonymousId="dev-shared"),  # later on bob's device: stays bob's
    _event(
        8,
        type="identify",
        userId="carol",
        anonymousId="dev-carol",
        traits={"email": "carol@example.com"},
    ),
]


def setup(store: SqlProfileStore) -> ProfileService:
    service = ProfileService(store, IdentityRules(), StateFolder(30 * 60_000))
    feed(service, WS, EVENTS)
    now = datetime.now(UTC)
    letters = [
        DeadLetter(
            "dl-1",
            WS,
            "plan",
            "plan_violation",
            "x",
            '{"userId":"ada","event":"O"}',
            None,
            0,
            1,
            now,
        ),
        DeadLetter("dl-2", WS, "collect", "invalid", "y", '{"userId":"adam"}', None, 0, 2, now),
        DeadLetter(
            "dl-3",
            WS,
            "collect",
            "invalid",
            "z",
            '{"traits":{"email":"ADA@example.com"}}',
            None,
            0,
            3,
            now,
        ),
    ]
    violations = [
        Violation(WS, "Signed Up", 1, False, "'Ada Lovelace' is too long"),
        Violation(WS, "Viewed", 1, False, "'adam' is not valid"),
        Violation(WS, "Family Changed", 1, False, "'Augusta Ada King' is not valid"),
        Violation(WS, "Moved", 1, False, "'Berlin' is too short"),  # anybody's city
    ]
    store.write(ProfileWrite(dead_letters=letters, violations=violations))
    return service


def test_the_person_and_only_the_person_is_found_and_deleted(
    profile_store: SqlProfileStore,
) -> None:
    service = setup(profile_store)
    person = resolve_person(
        WS,
        Subject.of([("email", "ADA@example.com")]),
        profile_store,
        pii_fields=("name", "address", "street", "phone"),
    )
    assert person.nodes == {
        "user_id:ada",
        "anonymous_id:dev-laptop",
        "anonymous_id:dev-phone",
        "email:ada@example.com",
        "user_id:ada-old",
        "anonymous_id:ada-old",
    }
    assert person.pii == {
        "Ada Lovelace",
        "Augusta Ada King",
        "Ada Byron",
        "4930123456",
        "Analytical Way 12",
    }
    rows = profileops.find(profile_store, person)
    assert {r["id"] for r in rows.dead_letters} == {"dl-1", "dl-3"}
    assert sorted(r["event_key"] for r in rows.violations) == ["Family Changed", "Signed Up"]
    assert len(rows.merges) >= 1
    # the edge ada—dev-shared touches one of ada's identifiers: it goes too
    assert ("anonymous_id:dev-shared", "user_id:ada", "link") in {
        (e["a"], e["b"], e["kind"]) for e in rows.edges
    }
    bob_before = service.profile(WS, "user_id", "bob").to_dict()
    cache = NodeCache(profile_store, 100)  # a running processor's
    cache.check()
    assert set(cache.nodes(WS, person.nodes)) == person.nodes
    counts = profileops.delete_rows(profile_store, person, rows)
    cache.check()
    assert cache.nodes(WS, person.nodes) == {}, "the processor forgets the erased nodes"
    assert counts["identityNodes"] == 6
    assert counts["deadLetters"] == 2
    assert counts["planViolations"] == 2
    assert profileops.find(profile_store, person).counts() == dict.fromkeys(counts, 0)
    # everyone else is untouched
    assert service.profile(WS, "user_id", "bob").to_dict() == bob_before
    assert service.profile(WS, "email", "carol@example.com").profile_id
    assert {d.id for d in profile_store.dead_letters(WS)} == {"dl-2"}
    assert sorted(v.event_key for v in profile_store.violations(WS)) == ["Moved", "Viewed"]
