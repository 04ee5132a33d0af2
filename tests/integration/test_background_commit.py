"""The processor commits to the lake in a background thread while it processes the next
batch; the log's committed offsets still move only after the lake commit that covers them,
and only to the offsets that commit recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from auie.eventlog import EVENTS_TOPIC
from auie.lake.catalog import committed_offsets
from auie.lake.tables import EVENTS, IDENTITIES, PROFILES
from auie.process import GROUP
from auie.process.processor import Processor
from auie.runtime import Bootstrap, Runtime
from helpers import make_settings
from pipeline import lake_table, log_record


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Runtime, Bootstrap]]:
    settings = make_settings(
        tmp_path / "data",
        **{"lake.flush_max_records": 40, "lake.maintenance_minutes": 0},
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    try:
        yield runtime, boot
    finally:
        runtime.close()


def write(runtime: Runtime, boot: Bootstrap, start: int, count: int) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    events = []
    for i in range(start, start + count):
        moment = (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        events.append(
            {
                "type": "track",
                "event": "Clicked",
                "messageId": f"m-{i:04d}",
                "anonymousId": f"a-{i % 7}",
                "properties": {"i": i},
                "context": {},
                "timestamp": moment,
                "receivedAt": moment,
            }
        )
    runtime.eventlog.append([log_record(e, boot.workspace) for e in events])


def hold(processor: Processor) -> tuple[threading.Event, threading.Event]:
    """Make lake commits wait until ``release`` is set; ``entered`` says one is waiting."""
    entered, release = threading.Event(), threading.Event()
    append = processor.writer._append

    def held(key: tuple[str, str], data: pa.Table, offsets: Any) -> None:
        entered.set()
        assert release.wait(60)
        append(key, data, offsets)

    processor.writer._append = held  # type: ignore[method-assign]
    return entered, release


def wait_for_commit(processor: Processor) -> None:
    deadline = time.monotonic() + 60
    while processor._flushing is not None and not processor._flushing.done():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def lake_ids(runtime: Runtime, boot: Bootstrap) -> list[str]:
    table = lake_table(runtime.lake, boot.workspace, EVENTS)
    return sorted(str(m) for m in table.column("message_id").to_pylist())


def test_the_log_moves_only_after_the_lake_commit(setup: tuple[Runtime, Bootstrap]) -> None:
    runtime, boot = setup
    log = runtime.eventlog
    write(runtime, boot, 0, 50)
    processor = runtime.processor()
    entered, release = hold(processor)

    first = processor.step()
    taken = dict(processor.positions[EVENTS_TOPIC])
    assert first.events == 50
    assert first.flushes == []
    assert entered.wait(60), "no lake commit started"
    assert log.committed(GROUP, EVENTS_TOPIC) == {}

    write(runtime, boot, 50, 20)  # processed while the commit waits (no back-pressure yet)
    second = processor.step()
    assert second.events == 20
    assert second.flushes == []
    assert log.committed(GROUP, EVENTS_TOPIC) == {}

    release.set()
    wait_for_commit(processor)
    third = processor.step()
    assert [(f.table, f.rows) for f in third.flushes] == [(EVENTS, 50), (IDENTITIES, 7)]
    assert log.committed(GROUP, EVENTS_TOPIC) == taken
    table = runtime.lake.refresh(boot.workspace, EVENTS)
    assert committed_offsets(table)[EVENTS_TOPIC] == taken

    rest = processor.flush()  # the last flush also snapshots the 7 changed profiles
    assert [(f.table, f.rows) for f in rest] == [(EVENTS, 20), (PROFILES, 7)]
    assert log.committed(GROUP, EVENTS_TOPIC) == processor.positions[EVENTS_TOPIC]
    assert lake_ids(runtime, boot) == [f"m-{i:04d}" for i in range(70)]


def test_a_failed_background_commit_raises_and_its_rows_are_committed_later(
    setup: tuple[Runtime, Bootstrap],
) -> None:
    runtime, boot = setup
    write(runtime, boot, 0, 60)
    processor = runtime.processor()
    append = processor.writer._append
    calls = []

    def fails_once(key: tuple[str, str], data: pa.Table, offsets: Any) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("catalog unavailable")
        append(key, data, offsets)

    processor.writer._append = fails_once  # type: ignore[method-assign]
    assert processor.step().events == 60
    wait_for_commit(processor)
    with pytest.raises(RuntimeError, match="catalog unavailable"):
        processor.step()
    assert runtime.eventlog.committed(GROUP, EVENTS_TOPIC) == {}
    assert processor.writer.pending == 60  # identities are exported from the profile store

    processor.flush()
    assert lake_ids(runtime, boot) == [f"m-{i:04d}" for i in range(60)]
    committed = runtime.eventlog.committed(GROUP, EVENTS_TOPIC)
    assert committed == processor.positions[EVENTS_TOPIC]


def test_a_new_processor_after_a_lost_commit_writes_each_event_once(
    setup: tuple[Runtime, Bootstrap],
) -> None:
    """The first processor dies while its lake commit is in flight (the commit never
    lands); the next one starts from the log's committed offsets."""
    runtime, boot = setup
    write(runtime, boot, 0, 60)
    first = runtime.processor()

    def lost(key: tuple[str, str], data: pa.Table, offsets: Any) -> None:
        raise SystemExit  # the thread dies with the process

    first.writer._append = lost  # type: ignore[method-assign]
    first.step()
    wait_for_commit(first)

    second = runtime.processor()
    while second.step().events:
        pass
    second.flush()
    assert lake_ids(runtime, boot) == [f"m-{i:04d}" for i in range(60)]
    assert runtime.eventlog.committed(GROUP, EVENTS_TOPIC) == second.positions[EVENTS_TOPIC]
