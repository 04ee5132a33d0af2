"""The log writer process (``eventlog.writer = "process"``, the default of ``auie serve``):
same guarantees as the thread writer, commits shared between requests, and a child that
dies fails its waiting requests instead of hanging them, then comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auie.collect.writer_process import ProcessLogWriter
from auie.config import Settings
from auie.errors import StorageUnavailable
from auie.eventlog import EVENTS_TOPIC, LogRecord, open_event_log
from auie.metrics import LOG_COMMIT_RECORDS, LOG_WRITER_CPU
from helpers import make_settings


def records(request: int, count: int, *, repeat_of: int | None = None) -> list[LogRecord]:
    return [
        LogRecord(
            topic=EVENTS_TOPIC,
            key=f"person-{i % 7}".encode(),
            value=f'{{"request": {request}, "i": {i}}}'.encode(),
            timestamp_ms=int(time.time() * 1000),
            headers={"workspaceId": "ws", "sourceId": "src"},
            dedupe_key=f"ws:m-{repeat_of if repeat_of is not None else request}-{i}",
        )
        for i in range(count)
    ]


def stored_values(settings: Settings) -> list[bytes]:
    log = open_event_log(settings)
    try:
        return [
            r.value
            for part in range(log.partitions(EVENTS_TOPIC))
            for r in log.read(EVENTS_TOPIC, part, 0, 100_000)
        ]
    finally:
        log.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data", eventlog={"writer": "process"})
    open_event_log(settings).close()  # the topics exist, as auie serve makes sure
    return settings


@pytest.fixture
def writer(settings: Settings) -> Iterator[ProcessLogWriter]:
    writer = ProcessLogWriter(settings)
    writer.start()
    yield writer
    writer.stop()  # the scenarios stop it in their loop; this covers a failed one


def _commits() -> float:
    return sum(
        s.value for s in LOG_COMMIT_RECORDS.collect()[0].samples if s.name.endswith("_count")
    )


def test_concurrent_appends_are_committed_once_each_in_shared_commits(
    writer: ProcessLogWriter, settings: Settings
) -> None:
    commits_before = _commits()

    async def scenario() -> list[list[bool]]:
        await writer.connect()
        fresh = [writer.append(records(n, 20)) for n in range(40)]
        replays = [writer.append(records(100 + n, 20, repeat_of=n)) for n in range(5)]
        outcomes = await asyncio.gather(*fresh)
        repeated = await asyncio.gather(*replays)
        assert all(o.offset is not None for batch in outcomes for o in batch)
        writer.stop()
        return [[o.duplicate for o in batch] for batch in repeated]

    duplicates = asyncio.run(scenario())
    assert duplicates == [[True] * 20] * 5  # stored once, acknowledged as duplicates
    values = stored_values(settings)
    assert len(values) == len(set(values)) == 40 * 20
    # The metrics reach the server's registry, and requests shared commits.
    assert 1 <= _commits() - commits_before < 40 + 5
    assert LOG_WRITER_CPU._value.get() > 0  # the child's CPU, for operators and benchmarks
    assert writer.backlog == 0


def test_a_dead_writer_fails_its_waiting_requests_and_is_restarted(
    writer: ProcessLogWriter, settings: Settings
) -> None:
    async def scenario() -> None:
        await writer.connect()
        await writer.append(records(1, 3))
        child = writer._process
        assert child is not None
        assert child.pid is not None
        os.kill(child.pid, signal.SIGSTOP)  # the request below is sent, never answered
        waiting = asyncio.ensure_future(writer.append(records(2, 3)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(waiting, 10)
        assert not writer.alive
        # The next append starts a new child, which rebuilt the dedupe index from the log.
        again = await asyncio.wait_for(writer.append(records(3, 3, repeat_of=1)), 60)
        assert [o.duplicate for o in again] == [True] * 3
        assert writer.alive
        assert writer.backlog == 0
        writer.stop()
        assert not writer.alive

    asyncio.run(scenario())
    assert len(stored_values(settings)) == 3
