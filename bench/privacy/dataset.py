"""The privacy benchmark's data set, written straight into the stores.

Generating 10 million events through the collector and the processor would take far
longer than the measurement (the processor's goal is 30,000 events/s, on an idle machine),
so the stores are written directly, with the schemas and layout the processor produces:

* **lake** — ``events`` (``--events`` rows over ``--days`` days, one append per day, so
  one data file per day partition and one snapshot per day, each carrying
  ``auie.log-offsets`` as the processor's do), ``identities`` (every identifier),
  ``dead_letters`` (``--dead-letters`` letters whose payloads are events);
* **profile store** — one profile per person: user id, e-mail and two devices' anonymous
  ids, the edges between them, a merge (the second device), and node states with traits
  (e-mail, name) and event counts;
* **event log** — the last ``--log-days`` days of events as normalised JSON (the log's
  retention is 7 days), plus decisions and rewards in their topics.

People: ``user-%07d`` with devices ``anon-%07d-a``/``-b`` and ``user-%07d@example.com``;
each event belongs to a uniformly drawn person (about ``events / people`` events each,
spread over the whole period), 60 % of events carry the user id. The *featured* person (the
one the benchmark erases) also has 3 dead letters and 3 decisions, 2 of them rewarded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from auie import db
from auie.config import Settings
from auie.eventlog import (
    DEAD_LETTERS_TOPIC,
    DECISIONS_TOPIC,
    EVENTS_TOPIC,
    REWARDS_TOPIC,
    LogRecord,
    open_event_log,
)
from auie.lake.catalog import Lake, offsets_property, open_catalog
from auie.lake.tables import TABLES
from auie.profiles.identity import Edge, Merge, node, profile_id
from auie.profiles.state import NodeState
from auie.profiles.store.base import NodeRow, ProfileWrite
from auie.profiles.store.sql import SqlProfileStore
from auie.tenancy import TenancyStore

END = datetime(2026, 10, 31, tzinfo=UTC)
PARTITIONS = 4
_encode = msgspec.json.Encoder().encode
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Spec:
    events: int = 10_000_000
    people: int = 200_000
    days: int = 90
    log_days: int = 7
    dead_letters: int = 20_000
    decisions: int = 50_000
    seed: int = 6
    #: The person the benchmark erases: besides their events, they get dead letters and
    #: decisions with rewards (others get them at random).
    featured: int = 123_457

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def user(i: int) -> str:
    return f"user-{i:07d}"


def device(i: int, which: str) -> str:
    return f"anon-{i:07d}-{which}"


def email(i: int) -> str:
    return f"{user(i)}@example.com"


def name(i: int) -> str:
    return f"Person Number{i:07d}"


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and literals."""
    values = [_text(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*values, _text(""))


_NULL = pa.scalar(None, pa.large_string())


def _names(people: int, make: Callable[[int], str]) -> pa.Array:
    return pa.array([make(i) for i in range(people)], pa.large_string())


_EVENTS = np.array(["Viewed Product", "Added to Cart", "Searched", "Order Completed"])
_AGENTS = pa.array(
    [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari",
    ],
    pa.large_string(),
)


class Builder:
    """Writes the data set into an empty data directory."""

    def __init__(self, settings: Settings, spec: Spec, say: Say) -> None:
        self.settings = settings
        self.spec = spec
        self.say = say
        self.rng = np.random.default_rng(spec.seed)
        self.users = _names(spec.people, user)
        self.devices_a = _names(spec.people, lambda i: device(i, "a"))
        self.devices_b = _names(spec.people, lambda i: device(i, "b"))
        self.emails = _names(spec.people, email)
        self.person_partition = np.array(
            [_crc_partition(user(i)) for i in range(spec.people)], dtype=np.int32
        )
        self.offsets = np.zeros(PARTITIONS, dtype=np.int64)

    def build(self) -> dict[str, Any]:
        started = time.perf_counter()
        engine = db.open_database(self.settings.database_url)
        tenancy = TenancyStore(engine)
        workspace = tenancy.create_workspace("bench").id
        engine.dispose()
        lake = Lake(open_catalog(self.settings))
        log = open_event_log(self.settings)
        store = SqlProfileStore.open(self.settings.profiles_url)
        try:
            self._events(lake, log, workspace)
            self._identities(lake, workspace)
            self._dead_letters(lake, store, log, workspace)
            self._decisions(log, workspace)
            self._profiles(store, workspace)
        finally:
            log.close()
            store.close()
        return {"workspace": workspace, "seconds": round(time.perf_counter() - started, 1)}

    # -- events -------------------------------------------------------------------------

    def _day(self, day: int) -> tuple[pa.Table, np.ndarray]:
        spec, rng = self.spec, self.rng
        n = spec.events // spec.days + (1 if day < spec.events % spec.days else 0)
        people = rng.integers(0, spec.people, n)
        start = END - timedelta(days=spec.days - day)
        seconds = np.sort(rng.integers(0, 86_400 * 1_000_000, n))
        base = int(start.timestamp() * 1_000_000)
        ts = pa.array(base + seconds, pa.timestamp("us", tz="UTC"))
        received = pa.array(base + seconds + 150_000, pa.timestamp("us", tz="UTC"))
        identified = rng.random(n) < 0.6
        on_b = rng.random(n) < 0.4
        kinds = rng.choice(np.array(["track", "page", "identify"]), n, p=[0.7, 0.25, 0.05])
        idx = pa.array(people)
        user_ids = pc.if_else(
            pa.array(identified | (kinds == "identify")), self.users.take(idx), _NULL
        )
        anon = pc.if_else(pa.array(on_b), self.devices_b.take(idx), self.devices_a.take(idx))
        events = np.where(kinds == "track", rng.choice(_EVENTS, n), None)
        sku = pa.array(rng.integers(1, 5000, n).astype(str), pa.large_string())
        price = pa.array((rng.random(n) * 100).round(2).astype(str), pa.large_string())
        props = _join('{"sku":"sku-', sku, '","price":', price, "}")
        is_identify = pa.array(kinds == "identify")
        number = pc.utf8_slice_codeunits(self.users.take(idx), 5)
        traits = pc.if_else(
            is_identify,
            _join('{"email":"', self.emails.take(idx), '","name":"Person Number', number, '"}'),
            _NULL,
        )
        path = _join("/p/", sku)
        url = _join("https://shop.example", path)
        agent = _AGENTS.take(pa.array(rng.integers(0, len(_AGENTS), n)))
        context = _join(
            '{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"4.1.0"},'
            '"page":{"path":"',
            path,
            '","url":"',
            url,
            '"},"userAgent":"',
            agent,
            '"}',
        )
        partition = self.person_partition[people]
        offsets = np.empty(n, dtype=np.int64)
        for part in range(PARTITIONS):
            mask = partition == part
            count = int(mask.sum())
            offsets[mask] = self.offsets[part] + np.arange(1, count + 1)
            self.offsets[part] += count
        message_ids = _join(f"m-{day:03d}-", pa.array(np.arange(n).astype(str), pa.large_string()))
        columns: dict[str, Any] = {
            "message_id": message_ids,
            "type": pa.array(kinds, pa.large_string()),
            "event": pa.array(events, pa.large_string()),
            "user_id": user_ids,
            "anonymous_id": anon,
            "timestamp": ts,
            "received_at": received,
            "properties": props,
            "traits": traits,
            "context": context,
            "context_ip": pa.array(["203.0.113.7"] * n, pa.large_string()),
            "context_user_agent": agent,
            "context_library_name": pa.array(["analytics.js"] * n, pa.large_string()),
            "context_page_url": url,
            "context_page_path": path,
            "page_host": pa.array(["shop.example"] * n, pa.large_string()),
            "page_path": path,
            "log_partition": pa.array(partition, pa.int32()),
            "log_offset": pa.array(offsets, pa.int64()),
        }
        return _conform(columns, "events", n), people

    def _events(self, lake: Lake, log: Any, workspace: str) -> None:
        table = lake.table(workspace, "events")
        spec = self.spec
        for day in range(spec.days):
            data, _people = self._day(day)
            offsets = {
                EVENTS_TOPIC: {p: int(self.offsets[p]) + 1 for p in range(PARTITIONS)},
                DEAD_LETTERS_TOPIC: {0: 1},
            }
            table.append(data, snapshot_properties=offsets_property(offsets))
            if day >= spec.days - spec.log_days:
                self._log_events(log, workspace, data)
            if day % 10 == 0 or day == spec.days - 1:
                self.say(f"events: day {day + 1}/{spec.days} ({data.num_rows} rows)")

    def _log_events(self, log: Any, workspace: str, data: pa.Table) -> None:
        headers = {"workspaceId": workspace, "sourceId": "src_bench"}
        rows = data.select(
            [
                "message_id",
                "type",
                "event",
                "user_id",
                "anonymous_id",
                "timestamp",
                "received_at",
                "properties",
                "traits",
                "context",
            ]
        ).to_pylist()
        records = []
        for row in rows:
            event: dict[str, Any] = {
                "messageId": row["message_id"],
                "type": row["type"],
                "anonymousId": row["anonymous_id"],
                "timestamp": row["timestamp"].isoformat(),
                "receivedAt": row["received_at"].isoformat(),
                "properties": json.loads(row["properties"]),
                "context": json.loads(row["context"]),
            }
            if row["event"] is not None:
                event["event"] = row["event"]
            if row["user_id"] is not None:
                event["userId"] = row["user_id"]
            if row["traits"] is not None:
                event["traits"] = json.loads(row["traits"])
            key = row["user_id"] or row["anonymous_id"]
            records.append(
                LogRecord(
                    EVENTS_TOPIC,
                    key.encode(),
                    _encode(event),
                    int(row["received_at"].timestamp() * 1000),
                    headers,
                )
            )
        for start in range(0, len(records), 20_000):
            log.append(records[start : start + 20_000])

    # -- identities, dead letters, decisions, profiles ----------------------------------

    def _identities(self, lake: Lake, workspace: str) -> None:
        spec = self.spec
        kinds = [
            ("user_id", self.users),
            ("email", self.emails),
            ("anonymous_id", self.devices_a),
            ("anonymous_id", self.devices_b),
        ]
        pids = pa.array(
            [profile_id(workspace, node("user_id", user(i))) for i in range(spec.people)],
            pa.large_string(),
        )
        changed = pa.array(
            [END - timedelta(days=spec.days)] * spec.people, pa.timestamp("us", tz="UTC")
        )
        parts = [
            _conform(
                {
                    "id_type": pa.array([kind] * spec.people, pa.large_string()),
                    "id_value": values,
                    "profile_id": pids,
                    "changed_at": changed,
                },
                "identities",
                spec.people,
            )
            for kind, values in kinds
        ]
        data = pa.concat_tables(parts)
        lake.table(workspace, "identities").append(data)
        self.say(f"identities: {data.num_rows} rows")

    def _dead_letters(self, lake: Lake, store: SqlProfileStore, log: Any, workspace: str) -> None:
        from auie.profiles.store.base import DeadLetter

        spec, rng = self.spec, self.rng
        people = rng.integers(0, spec.people, spec.dead_letters)
        people[:3] = spec.featured % spec.people
        now = END
        letters = []
        rows: dict[str, list[Any]] = {
            c: []
            for c in (
                "id",
                "stage",
                "code",
                "message",
                "payload",
                "source_id",
                "received_at",
                "log_partition",
                "log_offset",
            )
        }
        for n, person in enumerate(people):
            payload = _encode(
                {
                    "type": "track",
                    "userId": user(int(person)),
                    "messageId": f"dl-msg-{n}",
                    "properties": {"coupon": "X"},
                }
            ).decode()
            at = now - timedelta(minutes=int(rng.integers(0, 30 * 1440)))
            letter = DeadLetter(
                f"dl-events-0-{n}",
                workspace,
                "plan",
                "plan_violation",
                "'revenue' is a required property",
                payload,
                "src_bench",
                0,
                n,
                at,
            )
            letters.append(letter)
            for column, value in (
                ("id", letter.id),
                ("stage", letter.stage),
                ("code", letter.code),
                ("message", letter.message),
                ("payload", payload),
                ("source_id", "src_bench"),
                ("received_at", at),
                ("log_partition", 0),
                ("log_offset", n),
            ):
                rows[column].append(value)
        lake.table(workspace, "dead_letters").append(
            _conform({k: pa.array(v) for k, v in rows.items()}, "dead_letters", len(letters))
        )
        for start in range(0, len(letters), 5000):
            store.write(ProfileWrite(dead_letters=letters[start : start + 5000]))
        self.say(f"dead letters: {len(letters)}")

    def _decisions(self, log: Any, workspace: str) -> None:
        spec, rng = self.spec, self.rng
        headers = {"workspaceId": workspace}
        decisions, rewards = [], []
        drawn = rng.integers(0, spec.people, spec.decisions)
        drawn[:3] = spec.featured % spec.people
        for n, person in enumerate(drawn):
            event_id = f"dec-{n:07d}"
            value = {
                "eventId": event_id,
                "decisionPoint": "hero",
                "userId": user(int(person)),
                "anonymousId": None,
                "profileId": profile_id(workspace, node("user_id", user(int(person)))),
                "context": {"user": {"traits": {"email": email(int(person))}}},
                "actions": [{"id": "a", "features": {}}, {"id": "b", "features": {}}],
                "probabilities": [0.9, 0.1],
                "chosenAction": "a",
            }
            decisions.append(
                LogRecord(DECISIONS_TOPIC, event_id.encode(), _encode(value), 0, headers)
            )
            if n % 2 == 0:
                rewards.append(
                    LogRecord(
                        REWARDS_TOPIC,
                        event_id.encode(),
                        _encode({"eventId": event_id, "value": 1.0}),
                        0,
                        headers,
                    )
                )
        for batch in (decisions, rewards):
            for start in range(0, len(batch), 20_000):
                log.append(batch[start : start + 20_000])
        self.say(f"decisions: {len(decisions)}, rewards: {len(rewards)}")

    def _profiles(self, store: SqlProfileStore, workspace: str) -> None:
        spec = self.spec
        first = int((END - timedelta(days=spec.days)).timestamp() * 1000)
        last = int(END.timestamp() * 1000)
        chunk = 5000
        for start in range(0, spec.people, chunk):
            change = ProfileWrite()
            for i in range(start, min(spec.people, start + chunk)):
                pid = profile_id(workspace, node("user_id", user(i)))
                stamp = (first, f"m-id-{i}")
                state = NodeState(
                    traits={"email": (email(i), stamp), "name": (name(i), stamp)},
                    first_seen=first,
                    last_seen=last,
                    counts={"Viewed Product": 30},
                    sessions=[[first, first + 600_000]],
                )
                nodes = {
                    node("user_id", user(i)): state,
                    node("email", email(i)): None,
                    node("anonymous_id", device(i, "a")): NodeState(first_seen=first),
                    node("anonymous_id", device(i, "b")): NodeState(first_seen=first),
                }
                for key, node_state in nodes.items():
                    change.nodes.append(NodeRow(workspace, key, pid, True, node_state))
                u = node("user_id", user(i))
                for other in list(nodes)[1:]:
                    change.edges.append(
                        (workspace, Edge.make(u, other, "link", first, f"m-id-{i}"))
                    )
                b_profile = profile_id(workspace, node("anonymous_id", device(i, "b")))
                change.merges[(workspace, pid)] = [
                    Merge(b_profile, pid, f"m-id-{i}", first, "link")
                ]
            store.write(change)
            if start % 50_000 == 0:
                self.say(f"profiles: {start + chunk}/{spec.people}")


def _conform(columns: dict[str, Any], table: str, rows: int) -> pa.Table:
    """An Arrow table with the lake table's schema: given columns cast, the rest null (the
    schema may have gained optional columns since this was written)."""
    schema = TABLES[table].arrow
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _crc_partition(key: str) -> int:
    import zlib

    return zlib.crc32(key.encode()) % PARTITIONS


def write_spec(path: Path, spec: Spec, info: dict[str, Any]) -> None:
    path.write_text(json.dumps({"spec": spec.to_dict(), **info}, indent=1))
