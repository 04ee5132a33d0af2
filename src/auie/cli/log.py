"""``auie log tail|stats``: look into the event log."""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterator

import click
from rich.table import Table

from auie.cli.common import console, open_runtime, safe_text, settings_options
from auie.config import Settings
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC, EventLog, StoredRecord

_CHUNK = 1000


def _partition(log: EventLog, topic: str, partition: int, start: int) -> Iterator[StoredRecord]:
    offset = start
    while True:
        records = log.read(topic, partition, offset, _CHUNK)
        yield from records
        if len(records) < _CHUNK:
            return
        offset = records[-1].offset + 1


def _records(log: EventLog, topic: str, starts: dict[int, int]) -> Iterator[StoredRecord]:
    """Every record from ``starts``, merged across partitions in append-time order."""
    streams = [_partition(log, topic, part, start) for part, start in starts.items()]
    return heapq.merge(*streams, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def _line(record: StoredRecord, as_json: bool, meta: bool) -> str:
    if as_json:
        if not meta:
            return record.value.decode()
        value = json.loads(record.value)
        value["_log"] = {"partition": record.partition, "offset": record.offset, **record.headers}
        return json.dumps(value)
    event = json.loads(record.value)
    if record.topic == DEAD_LETTERS_TOPIC:
        return f"{event.get('receivedAt')}  {event.get('code')}: {event.get('message')}"
    what = event.get("event") or event.get("name") or event.get("groupId") or ""
    who = event.get("userId") or f"anon:{event.get('anonymousId')}"
    when, kind, message_id = event.get("timestamp"), event.get("type"), event.get("messageId")
    return f"{when}  {kind:<8} {what:<24} {who}  {message_id}"


@click.group()
def log() -> None:
    """The durable event log between collector and processor."""


@log.command("tail")
@click.option(
    "--topic",
    type=click.Choice([EVENTS_TOPIC, DEAD_LETTERS_TOPIC]),
    default=EVENTS_TOPIC,
    show_default=True,
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only about the last N records of each partition [default: all].",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records.")
@click.option("--workspace", "-w", default=None, help="Only this workspace (id or name).")
@click.option("--meta", is_flag=True, help="With --json: add _log {partition, offset, ...}.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@settings_options()
def tail(
    topic: str,
    limit: int | None,
    follow: bool,
    workspace: str | None,
    meta: bool,
    as_json: bool,
    settings: Settings,
) -> None:
    """Print stored records, oldest first (normalised Segment events for --topic events)."""
    runtime = open_runtime(settings)
    if workspace is not None:
        workspace = runtime.tenancy.workspace(workspace).id  # a name or an id
    log_ = runtime.eventlog
    begins, ends = log_.begin_offsets(topic), log_.end_offsets(topic)
    starts = {p: begins[p] if limit is None else max(begins[p], ends[p] - limit) for p in begins}
    while True:
        for record in _records(log_, topic, starts):
            starts[record.partition] = record.offset + 1
            if workspace is None or record.headers.get("workspaceId") == workspace:
                line = _line(record, as_json, meta)
                click.echo(line if as_json else safe_text(line))  # JSON escapes its own
        if not follow:
            return
        time.sleep(0.5)


@log.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@settings_options()
def stats(as_json: bool, settings: Settings) -> None:
    """Offsets, sizes and consumer-group lag of every topic."""
    log_ = open_runtime(settings).eventlog
    topics = [log_.stats(topic) for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC)]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "topic": t.topic,
                        "records": t.records,
                        "partitions": [
                            {
                                "partition": p.partition,
                                "beginOffset": p.begin_offset,
                                "endOffset": p.end_offset,
                                "records": p.records,
                                "bytes": p.bytes,
                            }
                            for p in t.partitions
                        ],
                        "lag": {group: t.lag(group) for group in t.committed},
                    }
                    for t in topics
                ]
            )
        )
        return
    for t in topics:
        table = Table(title=f"topic {t.topic}: {t.records} records")
        for col in ("partition", "begin", "end", "records", "bytes"):
            table.add_column(col, justify="right")
        for p in t.partitions:
            table.add_row(
                *(str(v) for v in (p.partition, p.begin_offset, p.end_offset, p.records, p.bytes))
            )
        console.print(table)
        for group in t.committed:
            console.print(f"  consumer group {group}: lag {t.lag(group)}")
