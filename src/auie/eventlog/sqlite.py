"""The embedded event log: one SQLite file in WAL mode with ``synchronous=FULL``.

Layout: one table per topic partition (``p_<topic>_<n>``) whose ``INTEGER PRIMARY KEY
AUTOINCREMENT`` is the offset, so a partition read is a range scan of the table's own
B-tree and offsets are never reused, even after retention or erasure deletes the newest
rows. A record's dedupe key (a 63-bit digest) is stored in its own row, in the same
transaction; the writer checks keys against an in-memory index of the dedupe window that
it rebuilds from those rows on start (:mod:`auie.eventlog.dedupe`), so "stored once" holds
across crashes and retries without a random-key B-tree on the commit path. Dedupe is per
writing process: the collector of ``auie serve`` is the writer of the ``events`` topic.

Connections are per thread; every append is one ``BEGIN IMMEDIATE`` transaction, so
several processes (the server, an importer) can append to one file safely.

WAL checkpoints: SQLite copies the WAL back into the database file after the commit that
crosses ``wal_autocheckpoint`` pages, in the committing thread — on the write path, where
it stalls every request waiting for that commit. A process that appends a lot (``auie
serve``) calls :meth:`SQLiteEventLog.start_checkpointer`: a thread with its own connection
runs ``PRAGMA wal_checkpoint(PASSIVE)`` twice a second, in parallel with the writer
(SQLite releases the GIL), and the automatic checkpoint stays only as a safety net at
:data:`AUTOCHECKPOINT_PAGES` for processes that do not run the thread.

Few SQLite steps per append: Python's sqlite3 releases the GIL around every
``sqlite3_step`` and must take it back afterwards. In ``auie serve`` the writer thread shares
the GIL with the busy event loop, and taking it back can wait a whole switch interval
(5 ms), so an ``executemany`` of 500 rows could take a second. An append therefore inserts
a partition's rows with multi-row ``INSERT`` statements (:func:`_insert_sql`, at most
:data:`_ROWS_PER_INSERT` rows each, sizes that are powers of two so the statements are
cached) and reads every partition's next offset in one row; a commit is a handful of steps
whatever its size (ADR 12).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import cast

from auie.errors import InvalidRequest, NotFound, StorageUnavailable
from auie.eventlog.base import (
    AppendOutcome,
    EventLog,
    LogCapabilities,
    LogRecord,
    PartitionStats,
    StoredRecord,
    TopicStats,
    partition_for,
)
from auie.eventlog.dedupe import DedupeIndex, dedupe_digest

_TOPIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
"""


def _table(topic: str, partition: int) -> str:
    return f"p_{topic}_{partition}"


logger = logging.getLogger(__name__)

#: Rows per multi-row INSERT (6 parameters each; far below SQLite's variable limit).
_ROWS_PER_INSERT = 512
_COLUMNS = "(offset, key, value, ts, headers, dedupe)"


def _insert_sql(table: str, rows: int) -> str:
    return f"INSERT INTO {table} {_COLUMNS} VALUES " + ",".join(["(?,?,?,?,?,?)"] * rows)


def _insert_rows(conn: sqlite3.Connection, table: str, rows: list[tuple[object, ...]]) -> None:
    """Insert in a few statements: chunks of :data:`_ROWS_PER_INSERT`, then the rest split
    into powers of two (so at most ten distinct statements per table, all cached)."""
    start = 0
    while start < len(rows):
        size = min(_ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        conn.execute(_insert_sql(table, size), [value for row in chunk for value in row])
        start += size


#: Pages after which a commit checkpoints the WAL itself (64 MiB of 4-KiB pages): rarely
#: reached when the checkpointer thread runs; bounds the WAL of processes without it.
AUTOCHECKPOINT_PAGES = 16_384


class SQLiteEventLog(EventLog):
    """Event log in one SQLite file; see the module docstring for the layout."""

    capabilities = LogCapabilities(
        ordered_per_partition=True,
        atomic_append=True,
        transactional_dedupe=True,
        supports_delete=True,
    )

    def __init__(self, path: Path, *, dedupe_window_ms: int = 24 * 3600 * 1000) -> None:
        self.path = path
        self.dedupe_window_ms = dedupe_window_ms
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._dedupe = DedupeIndex(dedupe_window_ms)
        self._dedupe_loaded = False  # on the first append: readers never need it
        #: Per partition table, the offset up to which the index holds every row's key
        #: (loaded, refreshed, or this writer's own appends right after it).
        self._dedupe_ends: dict[str, int] = {}
        self._dedupe_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._conn().executescript(_SCHEMA)
        self._upgrade_tables()

    # -- connections -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=1024,  # multi-row INSERTs: ten sizes per partition
                )
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA journal_size_limit = 67108864")
                conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"cannot open event log {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"event log is not writable: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StorageUnavailable(f"event log write failed: {exc}") from exc
            raise

    # -- topics -------------------------------------------------------------------

    def ensure_topic(self, topic: str, partitions: int) -> None:
        if not _TOPIC_NAME.match(topic):
            raise InvalidRequest(f"invalid topic name {topic!r}")
        with self._write() as conn:
            row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
            if row is not None:
                self._partitions[topic] = int(row[0])
                return
            conn.execute("INSERT INTO topics VALUES (?, ?)", (topic, partitions))
            for part in range(partitions):
                conn.execute(
                    f"CREATE TABLE {_table(topic, part)} (offset INTEGER PRIMARY KEY AUTOINCREMENT,"
                    " key BLOB NOT NULL, value BLOB NOT NULL, ts INTEGER NOT NULL,"
                    " headers TEXT NOT NULL, dedupe INTEGER)"
                )
        self._partitions[topic] = partitions

    def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            row = (
                self._conn()
                .execute("SELECT partitions FROM topics WHERE name = ?", (topic,))
                .fetchone()
            )
            if row is None:
                raise NotFound(f"topic {topic!r} does not exist")
            count = self._partitions[topic] = int(row[0])
        return count

    def topics(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT name FROM topics ORDER BY name")]

    # -- append -------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> list[AppendOutcome]:
        if not records:
            return []
        now_ms = int(time.time() * 1000)
        keys = [dedupe_digest(r.dedupe_key) if r.dedupe_key is not None else None for r in records]
        with self._dedupe_lock:
            if not self._dedupe_loaded:
                self._load_dedupe()
            present = [k for k in keys if k is not None]
            known = {
                k
                for k, seen in zip(present, self._dedupe.seen(present, now_ms), strict=True)
                if seen
            }
            with self._write() as conn:
                outcomes, rows, fresh = self._plan(conn, records, keys, known)
                for table, table_rows in rows.items():
                    _insert_rows(conn, table, table_rows)
            self._dedupe.add(fresh, now_ms)
            ends = self._dedupe_ends
            for table, table_rows in rows.items():
                first, last = cast(int, table_rows[0][0]), cast(int, table_rows[-1][0])
                if ends.get(table, 0) == first - 1:  # no other writer in between
                    ends[table] = last
        return outcomes

    def refresh_dedupe(self) -> None:
        """Add the keys of rows past :attr:`_dedupe_ends` (other processes' appends, and
        this writer's own after theirs) to the index: a read of those rows only."""
        with self._dedupe_lock:
            if not self._dedupe_loaded:
                self._load_dedupe()  # reads everything there is
                return
            now_ms = int(time.time() * 1000)
            cutoff = now_ms - self.dedupe_window_ms
            conn = self._conn()
            conn.execute("BEGIN")  # one snapshot: the new ends are those of the rows read
            try:
                for topic in self.topics():
                    for part in range(self.partitions(topic)):
                        table = _table(topic, part)
                        known = self._dedupe_ends.get(table, 0)
                        end = self._end_offset(conn, table)
                        if end <= known:
                            continue
                        keys = conn.execute(
                            f"SELECT dedupe FROM {table} WHERE offset > ? AND offset <= ?"
                            " AND dedupe IS NOT NULL AND ts >= ?",
                            (known, end, cutoff),
                        )
                        self._dedupe.add((key for (key,) in keys), now_ms)
                        self._dedupe_ends[table] = end
            finally:
                conn.execute("COMMIT")

    @staticmethod
    def _end_offset(conn: sqlite3.Connection, table: str) -> int:
        """The last offset ``table`` gave (its rows may be gone to retention: the offset
        sequence remembers it, as appends do)."""
        try:
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
            ).fetchone()
        except sqlite3.OperationalError:  # no AUTOINCREMENT table created yet
            row = None
        if row is not None:
            return int(row[0])
        (last,) = conn.execute(f"SELECT coalesce(max(offset), 0) FROM {table}").fetchone()
        return int(last)

    def _plan(
        self,
        conn: sqlite3.Connection,
        records: Sequence[LogRecord],
        keys: Sequence[int | None],
        known: set[int],
    ) -> tuple[list[AppendOutcome], dict[str, list[tuple[object, ...]]], list[int]]:
        next_offset = self._next_offsets(conn)
        outcomes: list[AppendOutcome] = []
        rows: dict[str, list[tuple[object, ...]]] = {}
        fresh: list[int] = []
        header_cache: dict[int, str] = {}
        for record, key in zip(records, keys, strict=True):
            part = partition_for(record.key, self.partitions(record.topic))
            if key is not None:
                if key in known:
                    outcomes.append(AppendOutcome(part, None))
                    continue
                known.add(key)
                fresh.append(key)
            table = _table(record.topic, part)
            offset = next_offset.get(table, 1)
            next_offset[table] = offset + 1
            headers = header_cache.get(id(record.headers))
            if headers is None:
                headers = header_cache[id(record.headers)] = json.dumps(dict(record.headers))
            rows.setdefault(table, []).append(
                (offset, record.key, record.value, record.timestamp_ms, headers, key)
            )
            outcomes.append(AppendOutcome(part, offset))
        return outcomes, rows, fresh

    @staticmethod
    def _next_offsets(conn: sqlite3.Connection) -> dict[str, int]:
        try:  # one row, so one step (see the module docstring)
            row = conn.execute(
                "SELECT json_group_object(name, seq) FROM sqlite_sequence"
            ).fetchone()
        except sqlite3.OperationalError:  # no AUTOINCREMENT table created yet
            return {}
        return {name: int(seq) + 1 for name, seq in json.loads(row[0]).items()}

    # -- read ---------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[StoredRecord]:
        self._check_partition(topic, partition)
        rows = self._conn().execute(
            f"SELECT offset, key, value, ts, headers FROM {_table(topic, partition)}"
            " WHERE offset >= ? ORDER BY offset LIMIT ?",
            (offset, max_records),
        )
        # Records of one source carry the same headers: decode each distinct text once per
        # read (the records share the read-only mapping).
        headers_of: dict[str, Mapping[str, str]] = {}
        records = []
        for off, key, value, ts, text in rows:
            headers = headers_of.get(text)
            if headers is None:
                headers = headers_of[text] = MappingProxyType(json.loads(text))
            records.append(StoredRecord(topic, partition, off, key, value, ts, headers))
        return records

    def _check_partition(self, topic: str, partition: int) -> None:
        if not 0 <= partition < self.partitions(topic):
            raise NotFound(f"topic {topic!r} has no partition {partition}")

    def end_offsets(self, topic: str) -> dict[int, int]:
        seqs = self._next_offsets(self._conn())
        return {p: seqs.get(_table(topic, p), 1) for p in range(self.partitions(topic))}

    def begin_offsets(self, topic: str) -> dict[int, int]:
        ends = self.end_offsets(topic)
        conn = self._conn()
        begins: dict[int, int] = {}
        for part, end in ends.items():
            row = conn.execute(f"SELECT min(offset) FROM {_table(topic, part)}").fetchone()
            begins[part] = int(row[0]) if row[0] is not None else end
        return begins

    # -- consumer groups ----------------------------------------------------------

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        for part in offsets:
            self._check_partition(topic, part)
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO consumer_offsets VALUES (?, ?, ?, ?)",
                [(group, topic, part, off) for part, off in offsets.items()],
            )

    def committed(self, group: str, topic: str) -> dict[int, int]:
        rows = self._conn().execute(
            "SELECT part, next_offset FROM consumer_offsets WHERE grp = ? AND topic = ?",
            (group, topic),
        )
        return {int(part): int(off) for part, off in rows}

    def _groups(self, topic: str) -> dict[str, dict[int, int]]:
        groups: dict[str, dict[int, int]] = {}
        for grp, part, off in self._conn().execute(
            "SELECT grp, part, next_offset FROM consumer_offsets WHERE topic = ?", (topic,)
        ):
            groups.setdefault(grp, {})[int(part)] = int(off)
        return groups

    # -- maintenance ----------------------------------------------------------------

    def apply_retention(self, topic: str, older_than_ms: int) -> int:
        deleted = 0
        for part in range(self.partitions(topic)):
            table = _table(topic, part)
            with self._write() as conn:
                row = conn.execute(
                    f"SELECT offset FROM {table} WHERE ts >= ? ORDER BY offset LIMIT 1",
                    (older_than_ms,),
                ).fetchone()
                if row is None:
                    cursor = conn.execute(f"DELETE FROM {table}")
                else:
                    cursor = conn.execute(f"DELETE FROM {table} WHERE offset < ?", (row[0],))
                deleted += cursor.rowcount
        return deleted

    def purge_dedupe(self, older_than_ms: int) -> int:
        with self._dedupe_lock:
            return self._dedupe.forget(older_than_ms)

    def _upgrade_tables(self) -> None:
        """Logs written before dedupe keys lived in the rows get the column (and their old
        dedupe table goes: its keys are not in the new format)."""
        conn = self._conn()
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'p\\_%' ESCAPE '\\'"
        ).fetchall():
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
            if "dedupe" not in columns:
                conn.execute(f"ALTER TABLE {name} ADD COLUMN dedupe INTEGER")
        conn.execute("DROP TABLE IF EXISTS dedupe")

    def prepare_appends(self) -> None:
        with self._dedupe_lock:
            if not self._dedupe_loaded:
                self._load_dedupe()

    def _load_dedupe(self) -> None:
        """Rebuild the in-memory dedupe index from the rows of the window (everything
        committed so far, by any process)."""
        now_ms = int(time.time() * 1000)
        cutoff = now_ms - self.dedupe_window_ms
        conn = self._conn()
        rows: list[tuple[int, int]] = []
        ends: dict[str, int] = {}
        conn.execute("BEGIN")  # one snapshot: the ends are those of the rows read
        try:
            for topic in self.topics():
                for part in range(self.partitions(topic)):
                    table = _table(topic, part)
                    ends[table] = end = self._end_offset(conn, table)
                    rows.extend(
                        conn.execute(
                            f"SELECT ts, dedupe FROM {table}"
                            " WHERE dedupe IS NOT NULL AND ts >= ? AND offset <= ?",
                            (cutoff, end),
                        )
                    )
        finally:
            conn.execute("COMMIT")
        self._dedupe_ends = ends
        rows.sort()
        self._dedupe.load(rows, now_ms)
        self._dedupe_loaded = True

    def stats(self, topic: str) -> TopicStats:
        conn = self._conn()
        ends = self.end_offsets(topic)
        parts = []
        for part, end in ends.items():
            count, low, size = conn.execute(
                f"SELECT count(*), min(offset), coalesce(sum(length(value)), 0)"
                f" FROM {_table(topic, part)}"
            ).fetchone()
            parts.append(
                PartitionStats(part, int(low) if low is not None else end, end, count, size)
            )
        return TopicStats(topic, tuple(parts), self._groups(topic))

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1 FROM topics LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"event log {self.path} is unreadable: {exc}") from exc

    def start_checkpointer(self, interval_seconds: float = 0.5) -> None:
        if self._checkpointer is not None:
            return
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(interval_seconds,),
            name="auie-log-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, interval_seconds: float) -> None:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=1024,  # multi-row INSERTs: ten sizes per partition
            )
            conn.execute("PRAGMA busy_timeout = 1000")
        except sqlite3.Error:
            logger.exception("event log checkpointer: cannot open %s", self.path)
            return
        try:
            while not self._stop_checkpoints.wait(interval_seconds):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked now: the next round retries
                    logger.debug("event log checkpoint skipped: %s", exc)
        finally:
            conn.close()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(timeout=5)
            self._checkpointer = None
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
