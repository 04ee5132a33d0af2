"""This machine's floor for the collector's work, in one process with no HTTP at all.

The same ``/v1/batch`` bodies the load generator sends are decoded with msgspec, each
event re-encoded and wrapped in a :class:`~auie.eventlog.LogRecord` (partition key,
dedupe key, headers; as the collector does, minus normalisation), and appended to a
:class:`~auie.eventlog.sqlite.SQLiteEventLog` (WAL, ``synchronous=FULL``: one fsync per
append) in a tight loop. ``bodies_per_commit`` bodies share one append, like requests
share one group commit in the server.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC, LogRecord
from auie.eventlog.sqlite import SQLiteEventLog
from bench.ingest.payloads import batch_template, render
from bench.ingest.server import log_files_mib

_HEADERS = {"workspaceId": "ws_bench0000000000000000", "sourceId": "src_bench000000000000000"}


class Baseline:
    """One event log in a temporary directory, appended to by :meth:`run`."""

    def __init__(self, seed: int, templates: int = 32, events_per_body: int = 100) -> None:
        rng = random.Random(seed)
        self.tag = f"base{seed % 10_000:04d}"
        self.templates = [batch_template(rng, self.tag, events_per_body) for _ in range(templates)]
        self.root = Path(tempfile.mkdtemp(prefix="auie-bench-baseline-"))
        self.log = SQLiteEventLog(self.root / "eventlog.db")
        self.log.ensure_topic(EVENTS_TOPIC, 4)
        self.log.ensure_topic(DEAD_LETTERS_TOPIC, 1)
        self.seq = 0
        self.stored = 0

    def run(self, seconds: float, bodies_per_commit: int) -> dict[str, Any]:
        decode = msgspec.json.Decoder().decode
        encode = msgspec.json.Encoder().encode
        workspace = _HEADERS["workspaceId"]
        templates = self.templates
        events = commits = 0
        started = time.perf_counter()
        cpu_started = time.process_time()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            records: list[LogRecord] = []
            now_ms = int(time.time() * 1000)
            for _ in range(bodies_per_commit):
                self.seq += 1
                payload = decode(render(templates[self.seq % len(templates)], self.seq))
                for event in payload["batch"]:
                    person = event.get("userId") or event["anonymousId"]
                    records.append(
                        LogRecord(
                            topic=EVENTS_TOPIC,
                            key=person.encode(),
                            value=encode(event),
                            timestamp_ms=now_ms,
                            headers=_HEADERS,
                            dedupe_key=f"{workspace}:{event['messageId']}",
                        )
                    )
            outcomes = self.log.append(records)
            if any(outcome.duplicate for outcome in outcomes):
                raise RuntimeError("baseline produced duplicate messageIds")
            events += len(records)
            commits += 1
        elapsed = time.perf_counter() - started
        self.stored += events
        return {
            "events": events,
            "commits": commits,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "cpu_s": time.process_time() - cpu_started,
            "log_events": self.stored,
            "log_mib": log_files_mib(self.root / "eventlog.db"),
        }

    def close(self) -> None:
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
