"""Identity changes and profile snapshots exported from the profile store to the lake
(issue 3), on every profile store backend, through the real collector, processor, stores and
Iceberg lake:

* the ``profiles`` table gets one row per changed profile per snapshot (identities, traits,
  computed traits, first and last seen); encrypted traits stay encrypted; unchanged profiles
  get no new row; snapshots are periodic (``lake.profile_snapshot_seconds``) and taken when
  the processor stops;
* a processor that died after the profile store's write and before the lake flush loses
  nothing: the next one exports those identities and profiles, once;
* the latest ``identities`` row of every identifier names its current profile;
* a profile merged into another gets one closing row (``merged_into``), also when the
  processor died after the merge, so the latest row per profile id lists the profiles that
  exist;
* the members of a processor group share the exports, each its own identifiers and
  profiles under its own mark, and a change of group size neither skips nor repeats a row.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from auie.lake.catalog import PROFILE_CHANGES, committed_offsets
from auie.lake.tables import IDENTITIES, PROFILES
from auie.privacy.crypto import is_encrypted
from auie.process.exports import share_of
from auie.profiles.identity import ANONYMOUS_ID, USER_ID, node
from conftest import App
from helpers import basic
from pipeline import drain, lake_table

NAME = "Grace Brewster Hopper"
SETTINGS = {"lake.flush_max_seconds": 3600, "lake.maintenance_minutes": 0}


def send(app: App, *batch: dict[str, Any]) -> None:
    reply = app.client.post(
        "/v1/batch", json={"batch": list(batch)}, headers=basic(app.boot.write_key)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == len(batch)


def track(n: int, **ids: str) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "timestamp": f"2026-01-0{n}T10:00:00Z", **ids}


def snapshots(app: App) -> list[dict[str, Any]]:
    return lake_table(app.runtime.lake, app.boot.workspace, PROFILES).to_pylist()


def pid(app: App, id_type: str, value: str) -> str:
    key = node(id_type, value)
    return app.runtime.profile_store.nodes(app.boot.workspace, [key])[key].profile_id


def assert_identities_current(app: App) -> None:
    """The latest identities row of each identifier names its profile in the store; the
    same move is never exported twice."""
    rows = lake_table(app.runtime.lake, app.boot.workspace, IDENTITIES).to_pylist()
    assert rows
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["changed_at"]):
        latest[(row["id_type"], row["id_value"])] = row
    for (id_type, value), row in latest.items():
        assert row["profile_id"] == pid(app, id_type, value)
    moves = Counter((r["id_type"], r["id_value"], r["profile_id"]) for r in rows)
    assert max(moves.values()) == 1, moves


def test_profiles_snapshots_and_identities_survive_a_crash(
    make_app: Callable[..., App], store_url: str
) -> None:
    app = make_app(**SETTINGS, **{"profiles.url": store_url})
    send(
        app,
        track(1, anonymousId="a-1"),
        {
            **track(2),
            "type": "identify",
            "userId": "u-1",
            "anonymousId": "a-1",
            "traits": {"name": NAME, "plan": "pro"},
        },
        track(3, userId="u-2"),
    )
    drain(app.runtime.processor())  # stopping takes a snapshot
    first = snapshots(app)
    one, two = pid(app, USER_ID, "u-1"), pid(app, USER_ID, "u-2")
    assert pid(app, ANONYMOUS_ID, "a-1") == one
    assert sorted(r["profile_id"] for r in first) == sorted([one, two])
    row = next(r for r in first if r["profile_id"] == one)
    identities = json.loads(row["identities"])
    assert {(i["type"], i["value"]) for i in identities} == {
        (USER_ID, "u-1"),
        (ANONYMOUS_ID, "a-1"),
    }
    traits = json.loads(row["traits"])
    assert traits["plan"] == "pro"
    assert is_encrypted(traits["name"]), "an encrypted trait stays encrypted in the lake"
    assert NAME not in row["traits"]
    computed = json.loads(row["computed_traits"])
    assert computed["eventCounts"] == {"Viewed": 1, "identify": 1}
    assert row["first_seen"].isoformat() == "2026-01-01T10:00:00+00:00"
    assert row["last_seen"].isoformat() == "2026-01-02T10:00:00+00:00"
    assert_identities_current(app)

    # Only the changed profile gets a new row.
    send(app, track(4, userId="u-2"))
    drain(app.runtime.processor())
    assert Counter(r["profile_id"] for r in snapshots(app)) == {one: 1, two: 2}

    # The profile store absorbs a batch and the processor dies before any lake commit;
    # u-3 is new and a-9 joins u-2.
    send(
        app,
        {**track(5), "type": "identify", "userId": "u-1", "traits": {"plan": "team"}},
        track(6, userId="u-3"),
        track(7, userId="u-2", anonymousId="a-9"),
    )
    crashed = app.runtime.processor()
    assert crashed.step().events == 3
    assert crashed.writer.pending > 0
    drain(app.runtime.processor())
    three = pid(app, USER_ID, "u-3")
    assert pid(app, ANONYMOUS_ID, "a-9") == two
    rows = snapshots(app)
    assert Counter(r["profile_id"] for r in rows) == {one: 2, two: 3, three: 1}
    latest = max((r for r in rows if r["profile_id"] == one), key=lambda r: r["snapshot_at"])
    assert json.loads(latest["traits"])["plan"] == "team"
    assert_identities_current(app)
    exported = lake_table(app.runtime.lake, app.boot.workspace, IDENTITIES).to_pylist()
    assert {(r["id_value"], r["profile_id"]) for r in exported} >= {("u-3", three), ("a-9", two)}

    # Restarting without changes exports nothing again.
    before = (len(rows), len(exported))
    drain(app.runtime.processor())
    after = lake_table(app.runtime.lake, app.boot.workspace, IDENTITIES).num_rows
    assert (len(snapshots(app)), after) == before


def test_profiles_are_snapshotted_periodically_while_running(
    make_app: Callable[..., App], store_url: str
) -> None:
    app = make_app(
        **{"lake.profile_snapshot_seconds": 0.3, "lake.flush_max_seconds": 0.1},
        **{"profiles.url": store_url, "lake.maintenance_minutes": 0},
    )
    processor = app.runtime.processor()
    send(app, track(1, userId="u-1"))
    deadline = time.monotonic() + 30
    while not snapshots(app):  # no final flush: the running processor's own snapshot
        assert time.monotonic() < deadline, "no profile snapshot"
        processor.step()
        time.sleep(0.05)
    assert [r["profile_id"] for r in snapshots(app)] == [pid(app, USER_ID, "u-1")]
    send(app, track(2, userId="u-2"))
    while len(snapshots(app)) < 2:
        assert time.monotonic() < deadline, "no second snapshot"
        processor.step()
        time.sleep(0.05)
    assert sorted(r["profile_id"] for r in snapshots(app)) == sorted(
        [pid(app, USER_ID, "u-1"), pid(app, USER_ID, "u-2")]
    )
    processor.flush()


def test_a_merged_profile_gets_one_closing_row(
    make_app: Callable[..., App], store_url: str
) -> None:
    app = make_app(**SETTINGS, **{"profiles.url": store_url})
    send(app, track(1, anonymousId="a-5"), track(1, userId="u-6"))
    drain(app.runtime.processor())
    anonymous, other = pid(app, ANONYMOUS_ID, "a-5"), pid(app, USER_ID, "u-6")
    assert {r["profile_id"] for r in snapshots(app)} == {anonymous, other}
    assert all(r["merged_into"] is None for r in snapshots(app))

    # The visitor logs in: their anonymous profile is merged into the user's. The processor
    # dies after the profile store's write, before any lake commit.
    send(app, {**track(2), "type": "identify", "userId": "u-5", "anonymousId": "a-5"})
    crashed = app.runtime.processor()
    assert crashed.step().events == 1
    drain(app.runtime.processor())
    user = pid(app, USER_ID, "u-5")
    assert user != anonymous
    assert pid(app, ANONYMOUS_ID, "a-5") == user
    rows = snapshots(app)
    (closing,) = [r for r in rows if r["merged_into"] is not None]
    assert closing["profile_id"] == anonymous
    assert closing["merged_into"] == user
    assert (closing["identities"], closing["traits"], closing["computed_traits"]) == (
        "[]",
        "{}",
        "{}",
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["snapshot_at"]):
        latest[row["profile_id"]] = row
    existing = {p for p, row in latest.items() if row["merged_into"] is None}
    assert (
        existing == {user, other} == set(app.runtime.profile_store.profile_ids(app.boot.workspace))
    )

    # The closing row is written once: more events and restarts add none.
    send(app, track(3, userId="u-5"))
    drain(app.runtime.processor())
    drain(app.runtime.processor())
    assert sum(r["merged_into"] is not None for r in snapshots(app)) == 1


def run_group(app: App, members: int) -> None:
    """The members of a group, in turn in this thread: each drains its partitions, then
    each flushes, exporting its share."""
    group = [app.runtime.processor(m, members) for m in range(members)]
    for member in group:
        while not member.step().idle:
            pass
    for member in group:
        member.flush()


def marks(app: App, table: str) -> dict[int, int]:
    lake = app.runtime.lake
    return committed_offsets(lake.refresh(app.boot.workspace, table))[PROFILE_CHANGES]


def test_a_group_shares_the_exports_and_a_change_of_size_skips_nothing(
    make_app: Callable[..., App], store_url: str
) -> None:
    app = make_app(**SETTINGS, **{"profiles.url": store_url})
    store = app.runtime.profile_store
    send(app, *[track(1, userId=f"u-{i}", anonymousId=f"a-{i}") for i in range(30)])
    run_group(app, 2)
    sequence = store.change_sequence()
    for table in (IDENTITIES, PROFILES):  # each member's mark, at the same point
        assert marks(app, table) == {2000: sequence + 1, 2001: sequence + 1}
    profile_ids = store.profile_ids(app.boot.workspace)
    assert {share_of(p, 2) for p in profile_ids} == {0, 1}  # both members had a share
    assert sorted(r["profile_id"] for r in snapshots(app)) == sorted(profile_ids)
    identities = lake_table(app.runtime.lake, app.boot.workspace, IDENTITIES).to_pylist()
    assert len(identities) == 60
    assert_identities_current(app)

    # One processor again, then a group of three: new people, and logins that move
    # identifiers exported by the earlier group.
    send(app, *[track(2, userId=f"u-{i}", anonymousId=f"a-{i}") for i in range(30, 40)])
    send(
        app,
        *[
            {**track(3), "type": "alias", "userId": f"u-{i}", "previousId": f"u-{i + 1}"}
            for i in range(0, 10, 2)
        ],
    )
    drain(app.runtime.processor())
    assert marks(app, IDENTITIES) == {0: store.change_sequence() + 1}
    send(app, *[track(4, userId=f"u-{i}", anonymousId=f"a-{i}") for i in range(40, 50)])
    run_group(app, 3)
    sequence = store.change_sequence()
    assert marks(app, PROFILES) == {3000: sequence + 1, 3001: sequence + 1, 3002: sequence + 1}
    assert_identities_current(app)  # every move once, the latest one current
    exported = {
        (r["id_type"], r["id_value"])
        for r in lake_table(app.runtime.lake, app.boot.workspace, IDENTITIES).to_pylist()
    }
    named = {(ANONYMOUS_ID, f"u-{i + 1}") for i in range(0, 10, 2)}  # by the aliases
    assert exported == {(USER_ID, f"u-{i}") for i in range(50)} | named | {
        (ANONYMOUS_ID, f"a-{i}") for i in range(50)
    }
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(snapshots(app), key=lambda r: r["snapshot_at"]):
        latest[row["profile_id"]] = row
    alive = {p for p, row in latest.items() if row["merged_into"] is None}
    assert alive == set(store.profile_ids(app.boot.workspace))

    # One person changes: two of the three shares have nothing to export, and their marks
    # move all the same (a lagging one would make the next change of size export again).
    # (No identifier moved: the identities marks stay where they were, all three together.)
    send(app, track(5, userId="u-0"))
    run_group(app, 3)
    sequence = store.change_sequence()
    assert marks(app, PROFILES) == {3000: sequence + 1, 3001: sequence + 1, 3002: sequence + 1}
    assert len(set(marks(app, IDENTITIES).values())) == 1
    rows = snapshots(app)
    newest = max(r["snapshot_at"] for r in rows)
    assert [r["profile_id"] for r in rows if r["snapshot_at"] == newest] == [
        pid(app, USER_ID, "u-0")
    ]
    assert_identities_current(app)
