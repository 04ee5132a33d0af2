"""The exactly-once proof: ``kill -9`` the real ``auie process`` again and again, restart it,
let it finish, and count.

The event log of a fresh data directory is filled with normalised events and some
collector dead letters, as the collector writes them. The processor runs as a subprocess
with small micro-batches and is killed with SIGKILL at seeded random moments: while it
starts, some time after a flush, and right after a lake commit (when the other tables of
the flush and the log's offsets are not committed yet, so the restart must skip rows the
lake already holds). Lake maintenance (compaction and snapshot expiry) runs every half
second in the first test, so kills land in it too. The first test runs a group of two
processor processes (``process.workers=2``, each on its own partitions, sharing the lake
and the profile store), and a kill takes down the whole group; the second runs one. After
a last run to completion:

* the lake's ``events`` table holds every messageId exactly once, ``dead_letters`` every
  dead letter exactly once;
* the profile store's event counts add up to the number of events (nothing folded twice);
* the consumer group and the profile store have absorbed the whole log.

The second test keeps appending to the log while the processor is being killed, to show
that nothing appended during the chaos is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from auie.config import Settings
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC, EventLog, LogRecord
from auie.events import Normalizer
from auie.lake.catalog import Lake, committed_offsets, open_catalog
from auie.lake.tables import DEAD_LETTERS, EVENTS
from auie.process import GROUP
from auie.process.processor import PROFILES_CONSUMER, dead_letter_id
from auie.profiles.identity import ANONYMOUS_ID, USER_ID, node
from auie.runtime import Bootstrap, Runtime
from helpers import AUIE, make_settings

pytestmark = pytest.mark.slow

USERS = 1500
BASE_TIME = datetime(2024, 5, 1, tzinfo=UTC)
#: Small micro-batches, so there are many commits to be killed in.
PROCESS_SETTINGS = (
    "lake.flush_max_records=2000",
    "lake.flush_max_seconds=0.2",
    "process.poll_max_records=1000",
)
#: Lake maintenance every ~0.5 s, expiring every snapshot it may.
MAINTENANCE_SETTINGS = ("lake.maintenance_minutes=0.008", "lake.snapshot_retention_hours=0")
_encode = msgspec.json.Encoder().encode


# -- the log --------------------------------------------------------------------------------


def message(i: int, prefix: str) -> dict[str, object]:
    """A Segment message; people appear anonymous, identified, and both (which links them)."""
    user = i % USERS
    msg: dict[str, object] = {
        "messageId": f"{prefix}-{i:06d}",
        "timestamp": (BASE_TIME + timedelta(seconds=10 * i)).isoformat(),
    }
    if i % 3 == 0:
        msg["anonymousId"] = f"anon-{user}"
    elif i % 3 == 1:
        msg["userId"] = f"user-{user}"
    else:
        msg["userId"], msg["anonymousId"] = f"user-{user}", f"anon-{user}"
    if i % 11 == 0:
        msg.update(type="identify", traits={"plan": ["free", "pro"][i % 2], "seen": i})
    elif i % 5 == 0:
        msg.update(type="page", name="Home", properties={"path": f"/p/{i % 13}"})
    else:
        msg.update(type="track", event=f"Event {i % 4}", properties={"i": i, "pad": "x" * 40})
    return msg


def records(start: int, count: int, boot: Bootstrap, prefix: str) -> list[LogRecord]:
    """Log records exactly as the collector writes them (see ``collect/service.py``)."""
    received = datetime.now(UTC)
    normalizer = Normalizer(received_at=received, peer_ip="198.51.100.7")
    headers = {"workspaceId": boot.workspace, "sourceId": boot.source}
    out = []
    for i in range(start, start + count):
        event = normalizer.normalize(message(i, prefix))
        person = event.get("userId") or event["anonymousId"]
        out.append(
            LogRecord(
                topic=EVENTS_TOPIC,
                key=person.encode(),
                value=_encode(event),
                timestamp_ms=int(received.timestamp() * 1000),
                headers=headers,
                dedupe_key=f"{boot.workspace}:{event['messageId']}",
            )
        )
    return out


def dead_letter(i: int, boot: Bootstrap) -> LogRecord:
    """A collector dead letter (an item a batch rejected), as ``collect/service.py`` writes it."""
    received = datetime.now(UTC)
    return LogRecord(
        topic=DEAD_LETTERS_TOPIC,
        key=boot.source.encode(),
        value=_encode(
            {
                "stage": "collect",
                "code": "missing_identity",
                "message": "userId or anonymousId is required",
                "index": i,
                "receivedAt": received.isoformat(),
                "workspaceId": boot.workspace,
                "sourceId": boot.source,
                "payload": {"type": "track", "event": "Orphan", "n": i},
            }
        ),
        timestamp_ms=int(received.timestamp() * 1000),
        headers={"workspaceId": boot.workspace, "sourceId": boot.source},
    )


@dataclass
class Written:
    """What was appended to the log: messageIds, and the ids of the dead letters."""

    ids: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)


def fill(log: EventLog, boot: Bootstrap, start: int, count: int, prefix: str) -> Written:
    """Append events ``start``... (and a dead letter for every 25 events), 5,000 at a time."""
    written = Written()
    for chunk in range(start, start + count, 5000):
        batch = records(chunk, min(5000, start + count - chunk), boot, prefix)
        batch += [dead_letter(i, boot) for i in range(chunk, chunk + len(batch)) if i % 25 == 0]
        outcomes = log.append(batch)
        assert not any(o.duplicate for o in outcomes)
        for record, outcome in zip(batch, outcomes, strict=True):
            if record.topic == EVENTS_TOPIC:
                written.ids.append(json.loads(record.value)["messageId"])
            else:
                assert outcome.offset is not None
                written.dead_letters.append(
                    dead_letter_id(DEAD_LETTERS_TOPIC, outcome.partition, outcome.offset)
                )
    return written


# -- the processor --------------------------------------------------------------------------


@dataclass
class Chaos:
    """Runs and kills ``auie process`` on one data directory."""

    data_dir: Path
    log: EventLog
    extra: tuple[str, ...] = ()
    kills: list[str] = field(default_factory=list)
    runs: int = 0

    workers: int = 2

    def command(self, *args: str) -> list[str]:
        sets = [part for s in (*PROCESS_SETTINGS, *self.extra) for part in ("--set", s)]
        workers = ("--workers", str(self.workers))
        return [AUIE, "process", "--data-dir", str(self.data_dir), *workers, *sets, *args]

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
        out = (self.data_dir.parent / f"process-{self.runs}.log").open("wb")
        with out:
            return subprocess.Popen(
                self.command(*args),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir.parent,
                start_new_session=True,  # a kill takes down every processor of the group
            )

    def output(self) -> str:
        return (self.data_dir.parent / f"process-{self.runs}.log").read_text(errors="replace")

    def committed(self) -> int:
        return sum(self.log.committed(GROUP, EVENTS_TOPIC).values())

    def lag(self) -> int:
        ends = self.log.end_offsets(EVENTS_TOPIC)
        done = self.log.committed(GROUP, EVENTS_TOPIC)
        return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())

    def lake_commit(self) -> str | None:
        """The events table's metadata location in the lake's SQL catalog."""
        catalog = self.data_dir / "lake" / "catalog.db"
        if not catalog.exists():
            return None
        with contextlib.closing(sqlite3.connect(catalog, timeout=10)) as conn:
            try:
                row = conn.execute(
                    "SELECT metadata_location FROM iceberg_tables WHERE table_name = ?", (EVENTS,)
                ).fetchone()
            except sqlite3.OperationalError:  # the catalog's tables are not created yet
                return None
        return None if row is None else str(row[0])

    def lake_ahead(self, settings: Settings, workspace: str) -> bool:
        """Does the events table cover log offsets the consumer group has not committed?"""
        lake = Lake(open_catalog(settings))
        if not lake.exists(workspace, EVENTS):
            return False
        covered = committed_offsets(lake.table(workspace, EVENTS)).get(EVENTS_TOPIC, {})
        done = self.log.committed(GROUP, EVENTS_TOPIC)
        return any(offset > done.get(p, 0) for p, offset in covered.items())

    def run_and_kill(self, moment: str, rng: random.Random) -> None:
        """Start the processor and SIGKILL it at ``moment``: ``start`` (a random delay after
        starting), ``flush`` (a random delay after its next log commit) or ``lake`` (as soon
        as it has committed to the events table)."""
        process = self.spawn()
        started = time.monotonic()

        def wait_for(changed: Callable[[], bool]) -> None:
            while not changed():
                assert process.poll() is None, f"processor exited early:\n{self.output()}"
                assert time.monotonic() - started < 60, "the processor made no progress"
                time.sleep(0.002)

        if moment == "start":
            time.sleep(rng.uniform(0.2, 3.0))
        elif moment == "flush":
            before = self.committed()
            wait_for(lambda: self.committed() != before)
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            before_commit = self.lake_commit()
            wait_for(lambda: self.lake_commit() != before_commit)
        assert process.poll() is None, f"processor exited early:\n{self.output()}"
        os.killpg(process.pid, signal.SIGKILL)  # no signal handler, no final flush
        assert process.wait(10) == -9
        self.kills.append(f"{moment} at {time.monotonic() - started:.2f}s, lag {self.lag()}")

    def chaos(self, rng: random.Random, kills: int, settings: Settings, workspace: str) -> int:
        """Kill the processor ``kills`` times (fewer if the log is done); returns how many
        kills left the lake ahead of the log (so the restart had to skip rows)."""
        moments = ["start", "flush", "lake", "lake", "flush", "lake"][:kills]
        moments += ["flush"] * (kills - len(moments))
        rng.shuffle(moments)
        ahead = 0
        for moment in moments:
            if self.lag() == 0:
                break
            self.run_and_kill(moment, rng)
            ahead += self.lake_ahead(settings, workspace)
        return ahead

    def finish(self) -> None:
        """Run to completion (``--once``), on the small micro-batches, without maintenance."""
        self.extra = ()
        process = self.spawn("--once")
        assert process.wait(180) == 0, self.output()


# -- the proof ------------------------------------------------------------------------------


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Settings, Runtime, Bootstrap]]:
    settings = make_settings(tmp_path / "data")
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    yield settings, runtime, boot
    runtime.close()


def assert_exactly_once(
    settings: Settings, runtime: Runtime, boot: Bootstrap, written: Written
) -> None:
    log, store = runtime.eventlog, runtime.profile_store
    # Nothing was left unprocessed.
    for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC):
        assert log.committed(GROUP, topic) == log.end_offsets(topic)
        assert store.offsets(PROFILES_CONSUMER, topic) == log.end_offsets(topic)

    # The lake: every messageId exactly once, every dead letter exactly once.
    lake = Lake(open_catalog(settings))
    table = lake.table(boot.workspace, EVENTS, create=False)
    stored = table.scan(selected_fields=("message_id",)).to_arrow()["message_id"].to_pylist()
    counts = Counter(stored)
    duplicates = {m: n for m, n in counts.items() if n > 1}
    missing = set(written.ids) - set(counts)
    assert not duplicates, f"{len(duplicates)} duplicated, e.g. {list(duplicates)[:5]}"
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert len(stored) == len(written.ids)
    assert committed_offsets(table)[EVENTS_TOPIC] == log.end_offsets(EVENTS_TOPIC)
    letters = lake.table(boot.workspace, DEAD_LETTERS, create=False)
    letter_ids = letters.scan(selected_fields=("id",)).to_arrow()["id"].to_pylist()
    assert sorted(letter_ids) == sorted(written.dead_letters)

    # The profile store: each event folded once, each dead letter kept once, none added.
    keys = [node(USER_ID, f"user-{u}") for u in range(USERS)]
    keys += [node(ANONYMOUS_ID, f"anon-{u}") for u in range(USERS)]
    profiles = {n.profile_id for n in store.nodes(boot.workspace, keys).values()}
    total = 0
    for pid in profiles:
        computed = runtime.profiles.profile_by_id(boot.workspace, pid).computed_traits
        total += sum(computed["eventCounts"].values())
    assert total == len(written.ids)
    kept = store.dead_letters(boot.workspace, limit=1_000_000)
    assert sorted(d.id for d in kept) == sorted(written.dead_letters)
    assert {d.stage for d in kept} == {"collect"}


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    instance: tuple[Settings, Runtime, Bootstrap],
) -> None:
    settings, runtime, boot = instance
    written = fill(runtime.eventlog, boot, 0, 50_000, "once")
    chaos = Chaos(settings.data_dir, runtime.eventlog, extra=MAINTENANCE_SETTINGS)
    ahead = chaos.chaos(random.Random(20240501), 6, settings, boot.workspace)
    assert len(chaos.kills) >= 5, chaos.kills
    assert ahead >= 1, f"no kill left the lake ahead of the log: {chaos.kills}"
    chaos.finish()
    assert_exactly_once(settings, runtime, boot, written)


def test_events_appended_during_the_chaos_are_not_lost(
    instance: tuple[Settings, Runtime, Bootstrap],
) -> None:
    settings, runtime, boot = instance
    written = fill(runtime.eventlog, boot, 0, 5_000, "before")
    chaos = Chaos(settings.data_dir, runtime.eventlog, workers=1)
    stop = threading.Event()
    during = Written()
    errors: list[BaseException] = []

    def writer() -> None:
        # Its own connection (the log opens one per thread); 200 events every ~200 ms.
        start = 0
        try:
            while not stop.is_set() and start < 15_000:
                more = fill(runtime.eventlog, boot, start, 200, "during")
                during.ids.extend(more.ids)
                during.dead_letters.extend(more.dead_letters)
                start += 200
                stop.wait(0.2)
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        chaos.chaos(random.Random(7), 5, settings, boot.workspace)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert len(chaos.kills) == 5, chaos.kills
    assert len(during.ids) >= 2000, "the writer barely ran during the chaos"
    chaos.finish()
    everything = Written(written.ids + during.ids, written.dead_letters + during.dead_letters)
    assert_exactly_once(settings, runtime, boot, everything)


def test_identity_changes_reach_the_lake_after_a_crash(tmp_path: Path) -> None:
    """In process and deterministic: one step (the profile store absorbs the batch, the
    lake rows wait in the buffer), a "crash" (no flush), a new processor to the end."""
    settings = make_settings(
        tmp_path / "data", **{"lake.flush_max_seconds": 3600, "lake.maintenance_minutes": 0}
    )
    runtime = Runtime(settings)
    try:
        boot = runtime.bootstrap()
        assert boot is not None
        written = fill(runtime.eventlog, boot, 0, 300, "crash")
        first = runtime.processor()
        first.step()
        assert first.writer.pending > 0
        second = runtime.processor()  # the first one died without flushing
        while second.step().events:
            pass
        second.flush()

        lake = Lake(open_catalog(settings))
        events = lake.table(boot.workspace, EVENTS, create=False).scan().to_arrow()
        assert sorted(events["message_id"].to_pylist()) == sorted(written.ids)  # events: fine
        rows = lake.table(boot.workspace, "identities").scan().to_arrow().to_pylist()
        have = {(r["id_type"], r["id_value"]) for r in rows}
        want = {(ANONYMOUS_ID, f"anon-{i}") for i in range(300) if i % 3 != 1}
        want |= {(USER_ID, f"user-{i}") for i in range(300) if i % 3 != 0}
        assert want <= have, f"{len(want - have)} of {len(want)} identifiers never reached it"
    finally:
        runtime.close()
