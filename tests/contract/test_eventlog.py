"""One behaviour suite for the EventLog interface, run against every backend."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auie.errors import NotFound
from auie.eventlog import EventLog, LogRecord, partition_for
from auie.eventlog.sqlite import SQLiteEventLog

Factory = Callable[..., EventLog]


@pytest.fixture(params=["sqlite"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[EventLog] = []

    def factory(dedupe_window_ms: int = 60_000, name: str = "log") -> EventLog:
        if request.param == "sqlite":
            log: EventLog = SQLiteEventLog(
                tmp_path / f"{name}.db", dedupe_window_ms=dedupe_window_ms
            )
        opened.append(log)
        return log

    yield factory
    for log in opened:
        log.close()


def rec(key: str, value: str, topic: str = "t", dedupe: str | None = None) -> LogRecord:
    return LogRecord(
        topic=topic,
        key=key.encode(),
        value=value.encode(),
        timestamp_ms=int(time.time() * 1000),
        headers={"workspaceId": "ws"},
        dedupe_key=dedupe,
    )


def read_all(log: EventLog, topic: str = "t") -> dict[int, list[str]]:
    return {
        part: [r.value.decode() for r in log.read(topic, part, 0, 10_000)]
        for part in range(log.partitions(topic))
    }


def test_records_of_one_key_stay_in_one_partition_in_order(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 4)
    outcomes = log.append([rec(f"user-{i % 5}", f"{i % 5}:{i}") for i in range(100)])
    assert all(not o.duplicate for o in outcomes)
    by_partition = read_all(log)
    assert sum(len(v) for v in by_partition.values()) == 100
    for part, values in by_partition.items():
        for user in {v.split(":")[0] for v in values}:
            assert partition_for(f"user-{user}".encode(), 4) == part
            sequence = [int(v.split(":")[1]) for v in values if v.startswith(f"{user}:")]
            assert sequence == sorted(sequence)


def test_outcomes_give_the_offsets_that_read_returns(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 2)
    outcomes = log.append([rec("a", "1"), rec("b", "2"), rec("a", "3")])
    for outcome, value in zip(outcomes, "123", strict=True):
        assert outcome.offset is not None
        [record] = log.read("t", outcome.partition, outcome.offset, 1)
        assert record.value.decode() == value
        assert record.headers == {"workspaceId": "ws"}


@pytest.mark.parametrize("size", [1, 2, 3, 511, 512, 513, 1_537])
def test_appends_of_any_size_store_every_record_in_order(make_log: Factory, size: int) -> None:
    # The SQLite backend inserts in multi-row statements of several sizes; none may drop,
    # repeat or reorder a record, and the offsets must continue the earlier appends.
    log = make_log()
    log.ensure_topic("t", 2)
    keys = [
        next(f"k{n}" for n in range(100) if partition_for(f"k{n}".encode(), 2) == p) for p in (0, 1)
    ]
    log.append([rec(keys[0], "before-0"), rec(keys[1], "before-1")])
    records = [rec(keys[i % 2], f"v{i}", dedupe=f"m{i}") for i in range(size)]
    outcomes = log.append([*records, rec(keys[0], "v0-again", dedupe="m0")])
    assert outcomes[-1].duplicate
    stored = {
        (outcome.partition, outcome.offset): record.value.decode()
        for outcome, record in zip(outcomes[:-1], records, strict=True)
    }
    assert len(stored) == size
    for part in (0, 1):
        rows = log.read("t", part, 0, 10_000)
        assert [r.offset for r in rows] == list(range(1, len(rows) + 1))
        assert rows[0].value.decode().startswith("before-")
        assert {(part, r.offset): r.value.decode() for r in rows[1:]} == {
            k: v for k, v in stored.items() if k[0] == part
        }


def test_offsets_only_grow_and_are_never_reused(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 1)
    first = log.append([rec("k", "a"), rec("k", "b")])
    log.apply_retention("t", older_than_ms=int(time.time() * 1000) + 10_000)  # deletes all
    assert log.read("t", 0, 0, 10) == []
    [later] = log.append([rec("k", "c")])
    assert later.offset is not None
    assert all(o.offset is not None and later.offset > o.offset for o in first)
    assert log.begin_offsets("t") == {0: later.offset}
    assert log.end_offsets("t") == {0: later.offset + 1}


def test_dedupe_keys_store_once_within_the_window(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 2)
    first = log.append([rec("k", "a", dedupe="m1"), rec("k", "a-again", dedupe="m1")])
    second = log.append([rec("k", "a-retry", dedupe="m1"), rec("k", "b", dedupe="m2")])
    assert [o.duplicate for o in first + second] == [False, True, True, False]
    assert sorted(v for vs in read_all(log).values() for v in vs) == ["a", "b"]


def test_dedupe_window_expires(make_log: Factory) -> None:
    log = make_log(dedupe_window_ms=50)
    log.ensure_topic("t", 1)
    log.append([rec("k", "a", dedupe="m1")])
    time.sleep(0.1)
    [again] = log.append([rec("k", "a2", dedupe="m1")])
    assert not again.duplicate


def test_purged_dedupe_keys_are_forgotten(make_log: Factory) -> None:
    log = make_log(dedupe_window_ms=60_000)
    log.ensure_topic("t", 1)
    log.append([rec("k", "a", dedupe="m1")])
    assert log.append([rec("k", "a", dedupe="m1")])[0].duplicate
    time.sleep(0.01)
    assert log.purge_dedupe(int(time.time() * 1000) + 60_000) >= 1
    assert not log.append([rec("k", "a", dedupe="m1")])[0].duplicate


def test_dedupe_survives_reopening(make_log: Factory) -> None:
    """The dedupe keys of the window are rebuilt from the log when it is opened again."""
    first = make_log(name="reopen")
    first.ensure_topic("t", 2)
    first.append([rec(f"k{i}", str(i), dedupe=f"m{i}") for i in range(50)])
    first.close()
    second = make_log(name="reopen")
    outcomes = second.append([rec(f"k{i}", str(i), dedupe=f"m{i}") for i in range(60)])
    assert [o.duplicate for o in outcomes] == [True] * 50 + [False] * 10


def test_a_refreshed_writer_knows_the_keys_another_writer_appended(make_log: Factory) -> None:
    """Each writer's dedupe index is its own; ``refresh_dedupe`` adds what other writers
    appended since (interleaved with this writer's own appends), and nothing is lost from
    what it knew."""
    server = make_log(name="shared")
    server.ensure_topic("t", 2)
    server.append([rec("k0", "s0", dedupe="s0")])  # the server's index is loaded
    cli = make_log(name="shared")
    cli.append([rec(f"k{i}", f"c{i}", dedupe=f"c{i}") for i in range(5)])
    server.append([rec("k1", "s1", dedupe="s1")])  # after the other writer's rows
    assert not server.append([rec("k2", "c2-again", dedupe="c2")])[0].duplicate  # unseen
    server.refresh_dedupe()
    again = server.append([rec(f"k{i}", "again", dedupe=f"c{i}") for i in range(5)])
    assert [o.duplicate for o in again] == [True] * 5
    mine = server.append([rec("k0", "again", dedupe="s0"), rec("k1", "again", dedupe="s1")])
    assert [o.duplicate for o in mine] == [True, True]
    server.refresh_dedupe()  # nothing new: a no-op
    assert not server.append([rec("k3", "new", dedupe="new")])[0].duplicate


def test_append_is_all_or_nothing(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 1)
    with pytest.raises(NotFound):
        log.append([rec("k", "ok"), rec("k", "bad", topic="missing")])
    assert read_all(log) == {0: []}


def test_consumer_groups_commit_independently(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 2)
    log.append([rec(str(i), str(i)) for i in range(10)])
    assert log.committed("g1", "t") == {}
    log.commit("g1", "t", {0: 3, 1: 2})
    log.commit("g2", "t", {0: 1})
    assert log.committed("g1", "t") == {0: 3, 1: 2}
    assert log.committed("g2", "t") == {0: 1}
    stats = log.stats("t")
    assert stats.records == 10
    assert stats.lag("g1") == sum(
        p.end_offset - max(p.begin_offset, {0: 3, 1: 2}[p.partition]) for p in stats.partitions
    )
    with pytest.raises(NotFound):
        log.commit("g1", "t", {7: 1})


def test_topics_keep_their_partition_count(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 3)
    log.ensure_topic("t", 8)
    assert log.partitions("t") == 3
    with pytest.raises(NotFound):
        log.partitions("nope")


def test_retention_deletes_only_old_records(make_log: Factory) -> None:
    log = make_log()
    log.ensure_topic("t", 1)
    old = LogRecord("t", b"k", b"old", timestamp_ms=1_000, headers={})
    new = LogRecord("t", b"k", b"new", timestamp_ms=int(time.time() * 1000), headers={})
    log.append([old, new])
    assert log.apply_retention("t", older_than_ms=10_000) == 1
    assert read_all(log) == {0: ["new"]}


def _append_many(path: str, worker: int) -> None:
    log = SQLiteEventLog(Path(path))
    for batch in range(20):
        log.append([rec(f"w{worker}", f"{worker}-{batch}-{i}") for i in range(10)])
    log.close()


def test_several_processes_append_safely(make_log: Factory, tmp_path: Path) -> None:
    log = make_log(name="shared")
    log.ensure_topic("t", 2)
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(path, w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    values = [v for vs in read_all(log).values() for v in vs]
    assert len(values) == len(set(values)) == 3 * 20 * 10


def test_the_checkpointer_moves_the_wal_into_the_database_off_the_append_path(
    tmp_path: Path,
) -> None:
    """Appends leave their pages in the WAL (the automatic checkpoint is a 64-MiB safety
    net); the checkpointer thread copies them into the database file soon after."""
    path = tmp_path / "ckpt.db"
    log = SQLiteEventLog(path)
    try:
        log.ensure_topic("t", 2)
        body = "x" * 2000
        for batch in range(10):
            log.append([rec(f"k{i}", f"{batch}:{i}:{body}") for i in range(100)])

        def in_database() -> int:
            """Bytes of the database file itself (the WAL's pages land there on checkpoint)."""
            return path.stat().st_size

        written = 10 * 100 * 2000
        assert in_database() < written / 2
        assert Path(f"{path}-wal").stat().st_size > written
        log.start_checkpointer(0.05)
        deadline = time.monotonic() + 10
        while in_database() < written:
            assert time.monotonic() < deadline, "the checkpointer never caught up"
            time.sleep(0.05)
        # Appends and reads go on while it runs; close() stops it.
        log.append([rec("k", "after")])
        assert "after" in [v for vs in read_all(log).values() for v in vs]
    finally:
        log.close()
    assert not any(t.name == "auie-log-checkpoint" for t in threading.enumerate())
