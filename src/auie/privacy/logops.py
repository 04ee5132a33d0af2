"""Finding and deleting a person's records in the embedded event log (every topic).

Each partition table is read once and searched for the person's identifiers as JSON
strings, quotes included (``"u1"``; emails case-insensitively): a cheap pre-filter that
never matches a longer id. Each candidate is then decoded and kept
only if an identifying field names the person (:meth:`Person.mentions`). The ``decisions``
topic goes first, so the ``rewards`` of the person's decisions are found by ``eventId``.
"""

from __future__ import annotations

import bisect
import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auie.eventlog import DECISIONS_TOPIC
from auie.privacy.person import Person

_CHUNK = 500
_SCAN_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class LogMatch:
    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int
    headers: dict[str, str]

    def decoded(self) -> Any:
        try:
            return json.loads(self.value)
        except ValueError:
            return self.value.decode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestampMs": self.timestamp_ms,
            "headers": self.headers,
            "value": self.decoded(),
        }


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def _partitions(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    try:
        rows = conn.execute("SELECT name, partitions FROM topics ORDER BY name").fetchall()
    except sqlite3.OperationalError:
        return []
    # decisions first: rewards are matched by the eventId of the person's decisions
    rows.sort(key=lambda r: (r[0] != DECISIONS_TOPIC, r[0]))
    return [(str(name), part) for name, count in rows for part in range(int(count))]


def _table(topic: str, partition: int) -> str:
    return f"p_{topic}_{partition}"


def _candidates(
    conn: sqlite3.Connection, table: str, needles: list[tuple[bytes, bool]]
) -> Iterator[tuple[int, bytes, int, str]]:
    """Rows whose value contains a needle. SQLite's ``instr`` compares at every position,
    so the rows are read in chunks and searched in Python instead: the chunk's values
    joined into one buffer, each needle found with ``bytes.find`` (and in a lower-cased
    copy for case-insensitive needles), hits mapped back to rows."""
    cursor = conn.execute(f"SELECT offset, value, ts, headers FROM {table} ORDER BY offset")
    while True:
        rows = cursor.fetchmany(_SCAN_CHUNK)
        if not rows:
            return
        values = [bytes(row[1]) for row in rows]
        starts = list(itertools.accumulate((len(v) + 1 for v in values[:-1]), initial=0))
        joined = b"\0".join(values)
        lowered = joined.lower() if any(insensitive for _n, insensitive in needles) else joined
        hits: set[int] = set()
        for needle, insensitive in needles:
            haystack = lowered if insensitive else joined
            position = haystack.find(needle)
            while position >= 0:
                index = bisect.bisect_right(starts, position) - 1
                hits.add(index)
                following = starts[index + 1] if index + 1 < len(starts) else len(haystack)
                position = haystack.find(needle, following)
        for index in sorted(hits):
            offset, _value, ts, headers = rows[index]
            yield int(offset), values[index], int(ts), str(headers)


def find(path: Path, person: Person, *, workspace: str | None = None) -> list[LogMatch]:
    """Every record of every topic about the person (optionally of one workspace)."""
    if not path.exists():
        return []
    conn = _connect(path)
    try:
        found: list[LogMatch] = []
        for topic, partition in _partitions(conn):
            for offset, value, ts, raw_headers in _candidates(
                conn, _table(topic, partition), person.needles()
            ):
                try:
                    headers = json.loads(raw_headers)
                except ValueError:
                    headers = {}
                if workspace is not None and headers.get("workspaceId") not in (None, workspace):
                    continue
                if not person.mentions_text(value):
                    continue
                match = LogMatch(topic, partition, offset, value, ts, headers)
                if topic == DECISIONS_TOPIC:
                    decoded = match.decoded()
                    if isinstance(decoded, dict) and decoded.get("eventId"):
                        person.decision_ids.add(str(decoded["eventId"]))
                found.append(match)
        return found
    finally:
        conn.close()


def _chunks(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def delete(path: Path, matches: Iterable[LogMatch]) -> dict[str, int]:
    """Delete the matched records (``secure_delete``); returns records deleted per topic."""
    by_table: dict[tuple[str, int], list[int]] = {}
    for match in matches:
        by_table.setdefault((match.topic, match.partition), []).append(match.offset)
    counts: dict[str, int] = {}
    if not by_table:
        return counts
    conn = _connect(path)
    try:
        for (topic, partition), offsets in sorted(by_table.items()):
            table = _table(topic, partition)
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for chunk in _chunks(sorted(offsets)):
                    marks = ",".join("?" * len(chunk))
                    cursor = conn.execute(f"DELETE FROM {table} WHERE offset IN ({marks})", chunk)
                    deleted += cursor.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            counts[topic] = counts.get(topic, 0) + deleted
        return counts
    finally:
        conn.close()
