"""The durable event log between collector and processor (see :mod:`auie.eventlog.base`)."""

from __future__ import annotations

from auie.config import Settings
from auie.eventlog.base import (
    DEAD_LETTERS_TOPIC,
    DECISIONS_TOPIC,
    EVENTS_TOPIC,
    REWARDS_TOPIC,
    AppendOutcome,
    EventLog,
    LogCapabilities,
    LogRecord,
    StoredRecord,
    TopicStats,
    partition_for,
)

__all__ = [
    "DEAD_LETTERS_TOPIC",
    "DECISIONS_TOPIC",
    "EVENTS_TOPIC",
    "REWARDS_TOPIC",
    "AppendOutcome",
    "EventLog",
    "LogCapabilities",
    "LogRecord",
    "StoredRecord",
    "TopicStats",
    "open_event_log",
    "partition_for",
]


def open_event_log(settings: Settings) -> EventLog:
    """Open the configured backend and make sure AUIE's own topics exist."""
    config = settings.eventlog
    if config.type == "sqlite":
        from auie.eventlog.sqlite import SQLiteEventLog

        log: EventLog = SQLiteEventLog(
            settings.eventlog_path,
            dedupe_window_ms=settings.collect.dedupe_window_seconds * 1000,
        )
    else:  # pragma: no cover - the Literal type makes this unreachable today
        raise NotImplementedError(config.type)
    log.ensure_topic(EVENTS_TOPIC, config.partitions)
    log.ensure_topic(DEAD_LETTERS_TOPIC, 1)
    log.ensure_topic(DECISIONS_TOPIC, config.partitions)
    log.ensure_topic(REWARDS_TOPIC, config.partitions)
    return log
