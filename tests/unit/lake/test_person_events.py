"""A person's recent events from the lake (``GET /v1/profiles/.../events``): newest first,
the same answer as sorting every event of the person, whatever the files hold."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.table import Table

from auie.events import format_time
from auie.lake import query
from auie.lake.catalog import Lake, open_catalog
from auie.lake.query import person_events
from auie.lake.tables import EVENTS
from auie.lake.writer import LakeWriter
from helpers import make_settings

WS = "ws_person_events"
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def writer(tmp_path: Path) -> LakeWriter:
    lake = Lake(open_catalog(make_settings(tmp_path / "data")))
    return LakeWriter(lake, max_records=10_000, max_seconds=3600)


def event(offset: int, when: datetime, user: str | None, anonymous: str | None) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Read",
        "messageId": f"m-{offset:05d}",
        "userId": user,
        "anonymousId": anonymous,
        "timestamp": format_time(when),
        "receivedAt": format_time(when),
        "properties": {"n": offset},
    }


def write(writer: LakeWriter, batches: list[list[dict[str, Any]]]) -> Table:
    """One flush (one snapshot, a data file per day it touches) per batch."""
    offset = 0
    for batch in batches:
        for item in batch:
            writer.add_event(
                WS,
                item,
                enrichment={},
                source_id=None,
                plan_version=None,
                violations=None,
                partition=0,
                offset=offset,
            )
            offset += 1
        writer.flush({"events": {0: offset}})
    return writer.lake.refresh(WS, EVENTS)


def mine(user: str | None, anonymous: str | None) -> bool:
    """The person: user u1 with device a1 (a1 with user u2 is u2's: a shared device)."""
    return user == "u1" or (user is None and anonymous == "a1")


@pytest.mark.parametrize("chunk", [3, 50_000])
def test_the_newest_events_are_those_of_a_full_sort_whatever_the_files(
    writer: LakeWriter, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "_CHUNK_ROWS", chunk)  # the first pass's rows, a few at a time
    rng = random.Random(20261127)
    people = [("u1", "a1"), ("u1", None), (None, "a1"), ("u2", "a1"), ("u2", None), (None, "a9")]
    batches = []
    offset = 0
    for _ in range(12):
        batch = []
        for _ in range(rng.randrange(1, 15)):
            # Few distinct times: ties in event time across files and within them.
            when = START + timedelta(days=rng.randrange(20), hours=rng.choice([0, 12]))
            batch.append(event(offset, when, *rng.choice(people)))
            offset += 1
        batches.append(batch)
    table = write(writer, batches)
    assert len(list(table.scan().plan_files())) > 12  # several files per flush and day
    everything = [e for batch in batches for e in batch if mine(e["userId"], e["anonymousId"])]
    expected = sorted(everything, key=lambda e: e["messageId"])
    expected.sort(key=lambda e: e["timestamp"], reverse=True)
    for limit in (1, 2, 3, 5, 8, 13, len(expected), len(expected) + 5):
        found = person_events(table, ["u1"], ["a1"], limit, mine)
        assert [e["messageId"] for e in found] == [e["messageId"] for e in expected[:limit]]
    [first] = person_events(table, ["u1"], ["a1"], 1, mine)
    assert first["properties"] == expected[0]["properties"]
    assert person_events(table, ["nobody"], [], 10, mine) == []


def test_identifiers_are_values_never_sql(writer: LakeWriter) -> None:
    hostile = "o'brien\" OR TRUE --"
    table = write(
        writer,
        [
            [
                event(0, START, hostile, None),
                event(1, START, "u1", None),
                event(2, START, None, "a1"),
            ]
        ],
    )
    found = person_events(table, [hostile], [], 10, lambda user, _anon: user == hostile)
    assert [(e["messageId"], e["userId"]) for e in found] == [("m-00000", hostile)]
    assert person_events(table, ["' OR '1'='1"], ["a1' --"], 10, mine) == []
