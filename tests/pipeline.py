"""Helpers for tests of the processing pipeline: log records as the collector writes them,
running a processor to completion, feeding a ProfileService directly, reading the lake."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from auie.eventlog import EVENTS_TOPIC, LogRecord
from auie.lake.catalog import Lake
from auie.process.processor import Processor
from auie.profiles.service import Item, ProfileService

_encode = msgspec.json.Encoder().encode


def log_record(
    event: Mapping[str, Any], workspace: str, source: str = "src_test", received_ms: int = 0
) -> LogRecord:
    """The ``events`` record the collector appends for a normalised event."""
    person = event.get("userId") or event.get("anonymousId") or ""
    return LogRecord(
        topic=EVENTS_TOPIC,
        key=str(person).encode("utf-8", "surrogatepass"),
        value=_encode(event),
        timestamp_ms=received_ms,
        headers={"workspaceId": workspace, "sourceId": source},
        dedupe_key=f"{workspace}:{event['messageId']}",
    )


def drain(processor: Processor, max_steps: int = 1_000_000) -> int:
    """Step until the log has nothing new, then flush; returns the records processed."""
    processed = 0
    for _ in range(max_steps):
        report = processor.step()
        processed += report.events + report.dead_letters + report.decisions
        if report.idle:
            break
    processor.flush()
    return processed


def event_ms(event: Mapping[str, Any]) -> int:
    return int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)


def feed(
    service: ProfileService,
    workspace: str,
    events: Sequence[Mapping[str, Any]],
    batch: int = 1,
) -> list[str | None]:
    """Resolve events in batches of ``batch`` and write each batch's changes, as the
    processor does; returns each event's profile id."""
    ids: list[str | None] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        resolution = service.resolve([Item(workspace, e, event_ms(e)) for e in chunk])
        service.store.write(resolution.write)
        ids.extend(resolution.profile_ids)
    return ids


def lake_table(lake: Lake, workspace: str, name: str) -> pa.Table:
    """A lake table's rows (empty if it was never created)."""
    if not lake.exists(workspace, name):
        return pa.table({})
    return lake.refresh(workspace, name).scan().to_arrow()
