"""The lake's tables: Iceberg schemas, partition specs and their Arrow twins.

Column names are the Segment field names in snake_case. Free-form parts (properties,
traits, context, integrations, unknown top-level fields) are JSON strings, so a new
property never needs a schema change. Schema evolution of the typed columns is additive
(new optional columns); see docs/lake.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
IDENTITIES = "identities"
PROFILES = "profiles"
DECISIONS = "decisions"
REWARDS = "rewards"

#: Typed event columns: (name, Iceberg type, required).
_EVENT_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("message_id", StringType(), True),
    ("type", StringType(), True),
    ("event", StringType(), False),
    ("name", StringType(), False),
    ("category", StringType(), False),
    ("user_id", StringType(), False),
    ("anonymous_id", StringType(), False),
    ("group_id", StringType(), False),
    ("previous_id", StringType(), False),
    ("source_id", StringType(), False),
    ("timestamp", TimestamptzType(), True),
    ("original_timestamp", TimestamptzType(), False),
    ("sent_at", TimestamptzType(), False),
    ("received_at", TimestamptzType(), True),
    ("properties", StringType(), False),
    ("traits", StringType(), False),
    ("context", StringType(), False),
    ("integrations", StringType(), False),
    ("extra", StringType(), False),
    ("context_ip", StringType(), False),
    ("context_user_agent", StringType(), False),
    ("context_locale", StringType(), False),
    ("context_timezone", StringType(), False),
    ("context_library_name", StringType(), False),
    ("context_library_version", StringType(), False),
    ("context_page_url", StringType(), False),
    ("context_page_path", StringType(), False),
    ("context_page_referrer", StringType(), False),
    ("context_page_title", StringType(), False),
    ("context_app_name", StringType(), False),
    ("context_app_version", StringType(), False),
    ("context_os_name", StringType(), False),
    ("browser_name", StringType(), False),
    ("browser_version", StringType(), False),
    ("os_name", StringType(), False),
    ("os_version", StringType(), False),
    ("device_type", StringType(), False),
    ("device_brand", StringType(), False),
    ("device_model", StringType(), False),
    ("page_host", StringType(), False),
    ("page_path", StringType(), False),
    ("utm_source", StringType(), False),
    ("utm_medium", StringType(), False),
    ("utm_campaign", StringType(), False),
    ("utm_term", StringType(), False),
    ("utm_content", StringType(), False),
    ("plan_version", IntegerType(), False),
    ("plan_violations", StringType(), False),
    ("log_partition", IntegerType(), False),
    ("log_offset", LongType(), False),
    # Added later (schema evolution appends optional columns; see docs/lake.md):
    #: Keyed hashes of the ids: what SQL without the ``pii:read`` scope sees.
    ("user_hash", StringType(), False),
    ("anonymous_hash", StringType(), False),
    #: Kinds of PII found in free-text properties (``privacy.pii_in_text = "flag"``).
    ("pii_flags", StringType(), False),
)

_DEAD_LETTER_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("id", StringType(), True),
    ("stage", StringType(), True),
    ("code", StringType(), True),
    ("message", StringType(), True),
    ("payload", StringType(), True),
    ("source_id", StringType(), False),
    ("received_at", TimestamptzType(), True),
    ("log_partition", IntegerType(), False),
    ("log_offset", LongType(), False),
)

_IDENTITY_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("id_type", StringType(), True),
    ("id_value", StringType(), True),
    ("profile_id", StringType(), True),
    ("changed_at", TimestamptzType(), True),
    ("id_hash", StringType(), False),
)

_PROFILE_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("profile_id", StringType(), True),
    ("identities", StringType(), True),
    ("traits", StringType(), True),
    ("computed_traits", StringType(), True),
    ("first_seen", TimestamptzType(), False),
    ("last_seen", TimestamptzType(), False),
    ("snapshot_at", TimestamptzType(), True),
    # Added later (schema evolution appends optional columns; see docs/lake.md):
    #: Set on a profile's closing row: the profile it was merged into (it has no
    #: identities, traits or computed traits of its own any more).
    ("merged_into", StringType(), False),
    #: True on the snapshot of a profile without ``analytics`` consent: it holds the
    #: profile's identities only (``{}`` traits and computed traits are withheld, not empty).
    ("withheld", BooleanType(), False),
)


_DECISION_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("event_id", StringType(), True),
    ("decision_point", StringType(), True),
    ("user_id", StringType(), False),
    ("anonymous_id", StringType(), False),
    ("profile_id", StringType(), False),
    ("context", StringType(), False),
    ("actions", StringType(), True),
    ("excluded_actions", StringType(), False),
    ("probabilities", StringType(), True),
    ("chosen_action", StringType(), True),
    ("chosen_probability", DoubleType(), True),
    ("policy_version", StringType(), False),
    ("arm", StringType(), False),
    ("learn", BooleanType(), False),
    ("deferred", BooleanType(), False),
    ("timestamp", TimestamptzType(), True),
    ("log_partition", IntegerType(), False),
    ("log_offset", LongType(), False),
    # Added later (schema evolution appends optional columns; see docs/lake.md): keyed
    # hashes of the ids, as in ``events`` (the ids themselves are these hashes for a person
    # without ``analytics`` consent).
    ("user_hash", StringType(), False),
    ("anonymous_hash", StringType(), False),
)

_REWARD_COLUMNS: tuple[tuple[str, object, bool], ...] = (
    ("event_id", StringType(), True),
    ("decision_point", StringType(), True),
    ("value", DoubleType(), True),
    ("timestamp", TimestamptzType(), True),
    ("log_partition", IntegerType(), False),
    ("log_offset", LongType(), False),
)


@dataclass(frozen=True, slots=True)
class TableDef:
    name: str
    schema: Schema
    spec: PartitionSpec
    arrow: pa.Schema

    @property
    def columns(self) -> list[str]:
        return [field.name for field in self.schema.fields]


def _define(name: str, columns: tuple[tuple[str, object, bool], ...], day_column: str) -> TableDef:
    fields = [
        NestedField(i, col, kind, required=req)  # type: ignore[arg-type]
        for i, (col, kind, req) in enumerate(columns, start=1)
    ]
    schema = Schema(*fields)
    source = next(f.field_id for f in fields if f.name == day_column)
    spec = PartitionSpec(
        PartitionField(
            source_id=source, field_id=1000, transform=DayTransform(), name=f"{day_column}_day"
        )
    )
    return TableDef(name, schema, spec, schema.as_arrow())


TABLES: dict[str, TableDef] = {
    EVENTS: _define(EVENTS, _EVENT_COLUMNS, "timestamp"),
    DEAD_LETTERS: _define(DEAD_LETTERS, _DEAD_LETTER_COLUMNS, "received_at"),
    IDENTITIES: _define(IDENTITIES, _IDENTITY_COLUMNS, "changed_at"),
    PROFILES: _define(PROFILES, _PROFILE_COLUMNS, "snapshot_at"),
    DECISIONS: _define(DECISIONS, _DECISION_COLUMNS, "timestamp"),
    REWARDS: _define(REWARDS, _REWARD_COLUMNS, "timestamp"),
}
