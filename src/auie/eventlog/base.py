"""The event log interface, shaped like Kafka.

A log holds *topics*; a topic has a fixed number of *partitions*; each partition is an
append-only sequence of records addressed by *offsets* that only grow (they may have
gaps, as in Kafka after compaction or deletion). A record's partition is chosen from
its key, so all records of one person land, in order, in one partition. Consumers
belong to *groups*; a group's committed offset for a partition is the next offset it
will read, exactly Kafka's meaning.

Backends declare what they can do in :class:`LogCapabilities` instead of being asked
``isinstance``: the embedded SQLite log, for example, deduplicates ``dedupe_key`` inside
the same transaction as the append, so a retry after a crash can never store twice.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

EVENTS_TOPIC = "events"
DEAD_LETTERS_TOPIC = "deadletters"
DECISIONS_TOPIC = "decisions"
REWARDS_TOPIC = "rewards"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record to append. ``value`` is the payload (JSON bytes for AUIE's own topics)."""

    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Records with a dedupe key seen within the dedupe window are not stored again.
    dedupe_key: str | None = None


class StoredRecord(msgspec.Struct, frozen=True, gc=False):
    """A record read back from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp_ms: int
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """Where a record went; ``offset`` is None when it was a duplicate and not stored."""

    partition: int
    offset: int | None

    @property
    def duplicate(self) -> bool:
        return self.offset is None


@dataclass(frozen=True, slots=True)
class LogCapabilities:
    """What a backend guarantees, declared as data."""

    #: Records of one partition are read in append order.
    ordered_per_partition: bool = True
    #: A list of records is appended all-or-nothing.
    atomic_append: bool = True
    #: ``dedupe_key`` is checked in the same transaction as the append.
    transactional_dedupe: bool = False
    #: Records can be deleted by predicate (needed for erasure).
    supports_delete: bool = False


@dataclass(frozen=True, slots=True)
class PartitionStats:
    partition: int
    begin_offset: int
    end_offset: int
    records: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TopicStats:
    topic: str
    partitions: tuple[PartitionStats, ...]
    committed: Mapping[str, Mapping[int, int]]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    def lag(self, group: str) -> int:
        """Records the group has not yet committed past."""
        offsets = self.committed.get(group, {})
        lag = 0
        for part in self.partitions:
            position = max(offsets.get(part.partition, part.begin_offset), part.begin_offset)
            lag += max(0, part.end_offset - position)
        return lag


def partition_for(key: bytes, partitions: int) -> int:
    """Stable partition choice for a key (CRC-32, so every backend agrees)."""
    return zlib.crc32(key) % partitions


class EventLog(ABC):
    """A durable, partitioned, append-only log with consumer groups."""

    capabilities: LogCapabilities = LogCapabilities()

    @abstractmethod
    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create the topic if it does not exist (partition count is fixed afterwards)."""

    @abstractmethod
    def partitions(self, topic: str) -> int:
        """Number of partitions of an existing topic."""

    @abstractmethod
    def append(self, records: Sequence[LogRecord]) -> list[AppendOutcome]:
        """Durably append records, all or nothing; outcomes are in input order.

        Returns only after the records are on disk.
        """

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[StoredRecord]:
        """Records of one partition with offset >= ``offset``, in order."""

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """For each partition, the offset the next appended record will get at least."""

    @abstractmethod
    def begin_offsets(self, topic: str) -> dict[int, int]:
        """For each partition, the lowest offset still held."""

    @abstractmethod
    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Record, durably, that ``group`` will next read each partition at these offsets."""

    @abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets (partitions never committed are absent)."""

    @abstractmethod
    def apply_retention(self, topic: str, older_than_ms: int) -> int:
        """Delete records older than the given time; returns how many were deleted."""

    @abstractmethod
    def stats(self, topic: str) -> TopicStats:
        """Offsets, sizes and committed offsets of every group."""

    @abstractmethod
    def purge_dedupe(self, older_than_ms: int) -> int:
        """Forget dedupe keys first seen before the given time."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`~auie.errors.StorageUnavailable` if the log cannot be used."""

    def prepare_appends(self) -> None:  # noqa: B027 (optional)
        """Load now what appends need (e.g. the dedupe index) instead of at the first
        append; processes that only read never load it. Optional."""

    def refresh_dedupe(self) -> None:  # noqa: B027 (optional)
        """Learn the dedupe keys other processes appended since this writer loaded its
        index, before an append that must not repeat theirs (a replay after one that
        crashed in another process). Optional: backends whose dedupe is not per writer do
        nothing."""

    def start_checkpointer(self, interval_seconds: float) -> None:  # noqa: B027 (optional)
        """Move the backend's housekeeping of written data (e.g. SQLite's WAL checkpoints)
        off the append path, every ``interval_seconds``; stopped by :meth:`close`. Optional:
        backends without such work do nothing."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""
