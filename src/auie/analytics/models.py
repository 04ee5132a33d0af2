"""Requests and replies of the analyses (camelCase on the wire), shared by the API and CLI.

Every analysis takes one of the ``*In`` models, already validated, and returns its ``*Out``
model; the API serves them as they are and the CLI prints them (``--json``) or charts them.
The exact meaning of every field is in docs/analytics.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from auie.lake.tables import EVENTS, TABLES

#: Typed ``events`` columns a filter or breakdown may name as ``field`` (free-form JSON
#: columns and timestamps are left out: use ``property`` for properties).
EVENT_FIELDS: tuple[str, ...] = tuple(
    name
    for name in TABLES[EVENTS].columns
    if name
    not in {
        "timestamp",
        "original_timestamp",
        "sent_at",
        "received_at",
        "properties",
        "traits",
        "context",
        "integrations",
        "extra",
    }
)
#: Numeric ``events`` columns: compared as numbers with a numeric ``value``.
NUMERIC_FIELDS = frozenset({"plan_version", "log_partition", "log_offset"})

Op = Literal["eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "is_set"]
Scalar = str | int | float | bool
_ORDERING = frozenset({"gt", "gte", "lt", "lte"})
# Names become JSON path keys: no quotes, backslashes or control characters.
_NAME = r'^[^"\\\x00-\x1f]{1,200}$'
_MAX_DAYS_RANGE = 3660


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


#: The dates an analysis may name: its buckets, weeks and cohorts must stay inside the
#: years Python's dates can hold.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        moment = None
    if moment is None or not _EARLIEST <= moment <= _LATEST:
        raise ValueError("dates must be from 1900-01-01 to 3000-01-01")
    return moment


def _finite(value: Any) -> Any:
    """A filter value whose number a float holds (an integer literal of 400 digits is
    valid JSON, but no comparison can use it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise ValueError("a number beyond the float range") from None
    return value


# -- filters and breakdowns -------------------------------------------------------------


class Target(Model):
    """What a filter or breakdown looks at: exactly one of these."""

    property: str | None = Field(
        None, pattern=_NAME, description="A key of the event's `properties`"
    )
    trait: str | None = Field(None, pattern=_NAME, description="A trait of the person's profile")
    computed_trait: str | None = Field(
        None,
        pattern=_NAME,
        description="A computed trait of the person's profile; dots go into nested objects "
        "(`eventCounts.Order Completed`)",
    )
    field: str | None = Field(
        None, description="A typed column of the `events` table, e.g. `browser_name`"
    )

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        given = [n for n in ("property", "trait", "computed_trait", "field") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of property, trait, computedTrait, field")
        if self.computed_trait is not None and "" in self.computed_trait.split("."):
            raise ValueError("computedTrait: a dotted path needs a name between its dots")
        if self.field is not None and self.field not in EVENT_FIELDS:
            raise ValueError(f"unknown field {self.field!r}; fields: {', '.join(EVENT_FIELDS)}")
        return self

    def target(self) -> tuple[str, str]:
        """(kind, name) with kind one of property, trait, computedTrait, field."""
        for kind, value in (
            ("property", self.property),
            ("trait", self.trait),
            ("computedTrait", self.computed_trait),
            ("field", self.field),
        ):
            if value is not None:
                return kind, value
        raise AssertionError("validated to have one target")  # pragma: no cover


class Filter(Target):
    """A condition on a property, trait, computed trait or field; see docs/analytics.md."""

    op: Op
    value: Scalar | list[Scalar] | None = Field(
        None,
        description="A string, number or boolean; a list for `in`; for `is_set` true "
        "(default) or false",
    )

    @model_validator(mode="after")
    def _value_fits_op(self) -> Filter:
        value = self.value
        for item in value if isinstance(value, list) else (value,):
            _finite(item)
        if self.op == "in":
            if not isinstance(value, list) or not value or len(value) > 1000:
                raise ValueError("op 'in' needs a list of 1 to 1000 values")
        elif self.op == "is_set":
            if value is not None and not isinstance(value, bool):
                raise ValueError("op 'is_set' takes true, false or no value")
        elif isinstance(value, list) or value is None:
            raise ValueError(f"op {self.op!r} needs one string, number or boolean value")
        elif self.op == "contains" and not isinstance(value, str):
            raise ValueError("op 'contains' needs a string value")
        elif self.op in _ORDERING and isinstance(value, bool):
            raise ValueError(f"op {self.op!r} needs a number or a string")
        return self


class Breakdown(Target):
    """Split results by the values of a property, trait, computed trait or field."""


class _Range(Model):
    from_: datetime = Field(alias="from", description="Start (inclusive), ISO-8601; UTC if naive")
    to: datetime = Field(description="End (exclusive), ISO-8601; UTC if naive")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        numeric = (
            isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
        )
        if isinstance(value, bool | int | float) or numeric:  # read as seconds since 1970
            raise ValueError("an ISO-8601 date or time as text, e.g. 2026-03-01")
        return value

    @field_validator("from_", "to")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        if self.to - self.from_ > timedelta(days=_MAX_DAYS_RANGE):
            raise ValueError(f"the range may span at most {_MAX_DAYS_RANGE} days")
        return self


_EventName = Annotated[str, Field(min_length=1, max_length=200)]


def _unique(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("event names must be unique")
    return names


# -- trends -------------------------------------------------------------------------------


class TrendsIn(_Range):
    events: list[_EventName] = Field(min_length=1, max_length=20)
    measure: Literal["events", "people"] = "events"
    interval: Literal["hour", "day", "week"] = "day"
    filters: list[Filter] = Field(default_factory=list, max_length=20)
    breakdown: Breakdown | None = None
    breakdown_limit: int = Field(
        10, ge=1, le=100, strict=True, description="Top values kept; the rest: other"
    )

    @field_validator("events")
    @classmethod
    def _events_unique(cls, names: list[str]) -> list[str]:
        return _unique(names)


class TrendSeries(Model):
    event: str
    breakdown: str | None = Field(
        None, description="The breakdown value (text form); null: no value or no breakdown"
    )
    other: bool = Field(False, description="The values outside the top breakdownLimit")
    values: list[int] = Field(description="One per bucket")
    total: int = Field(description="Over the whole range (distinct people for `people`)")


class TrendsOut(Model):
    measure: str
    interval: str
    from_: datetime = Field(alias="from")
    to: datetime
    buckets: list[datetime] = Field(description="Start of each bucket, UTC")
    series: list[TrendSeries]


# -- funnels ------------------------------------------------------------------------------


class FunnelStepIn(Model):
    event: _EventName
    filters: list[Filter] = Field(default_factory=list, max_length=20)


class FunnelsIn(_Range):
    steps: list[FunnelStepIn] = Field(min_length=2, max_length=20)
    conversion_window: int = Field(
        86_400,
        ge=1,
        le=366 * 86_400,
        description="Seconds from step 1 to the last step",
        strict=True,
    )
    breakdown: Breakdown | None = Field(None, description="Of the person's step-1 event")
    breakdown_limit: int = Field(10, ge=1, le=100, strict=True)


class FunnelStepOut(Model):
    step: int = Field(description="1-based")
    event: str
    count: int = Field(description="People who reached this step")
    conversion_rate: float | None = Field(description="count / step 1 count")
    conversion_from_previous: float | None = Field(description="count / previous step count")
    median_seconds_to_convert: float | None = Field(
        description="Median time from the previous step, over the people who reached this one"
    )


class FunnelBreakdownOut(Model):
    breakdown: str | None
    other: bool = False
    steps: list[FunnelStepOut]


class FunnelsOut(Model):
    from_: datetime = Field(alias="from")
    to: datetime
    conversion_window: int
    steps: list[FunnelStepOut]
    breakdowns: list[FunnelBreakdownOut] = Field(
        description="Per value of the step-1 event's breakdown; empty without breakdown"
    )


# -- retention ----------------------------------------------------------------------------


class RetentionIn(_Range):
    start_event: _EventName
    return_event: _EventName
    period: Literal["day", "week"] = "day"
    periods: int = Field(8, ge=1, le=100, strict=True, description="Columns, period 0 included")


class RetentionCohort(Model):
    cohort: datetime = Field(description="Start of the cohort's period, UTC")
    size: int
    counts: list[int | None] = Field(
        description="People returning in period k (k = 0: the cohort size); null when the "
        "period starts at or after `to`"
    )
    rates: list[float | None]


class RetentionOut(Model):
    period: str
    periods: int
    from_: datetime = Field(alias="from")
    to: datetime
    cohorts: list[RetentionCohort]


# -- segments -----------------------------------------------------------------------------


class TraitCondition(Filter):
    """A condition on the profile's traits or computed traits."""

    @model_validator(mode="after")
    def _profile_target(self) -> TraitCondition:
        if self.property is not None or self.field is not None:
            raise ValueError("a segment condition is on a trait or a computedTrait")
        return self


class EventFilter(Filter):
    """A condition on the event itself (property or field)."""

    @model_validator(mode="after")
    def _event_target(self) -> EventFilter:
        if self.trait is not None or self.computed_trait is not None:
            raise ValueError("a behaviour filter is on a property or a field")
        return self


class BehaviourCondition(Model):
    """Did ``event`` at least ``atLeast`` times in the last ``inLastDays`` days."""

    event: _EventName
    at_least: int = Field(1, ge=1, le=1_000_000, strict=True)
    in_last_days: int = Field(ge=1, le=_MAX_DAYS_RANGE, strict=True)
    filters: list[EventFilter] = Field(default_factory=list, max_length=20)


class AndNode(Model):
    and_: list[SegmentNode] = Field(alias="and", min_length=1, max_length=50)


class OrNode(Model):
    or_: list[SegmentNode] = Field(alias="or", min_length=1, max_length=50)


def _node_kind(value: Any) -> str:
    if isinstance(value, BaseModel):
        return {AndNode: "and", OrNode: "or", BehaviourCondition: "event"}.get(type(value), "trait")
    if isinstance(value, dict):
        for key in ("and", "or", "event"):
            if key in value:
                return key
    return "trait"


SegmentNode = Annotated[
    Annotated[AndNode, Tag("and")]
    | Annotated[OrNode, Tag("or")]
    | Annotated[BehaviourCondition, Tag("event")]
    | Annotated[TraitCondition, Tag("trait")],
    Discriminator(_node_kind),
]
AndNode.model_rebuild()
OrNode.model_rebuild()


#: ``and``/``or`` nodes nested on one path. Deeper definitions used to be validated and
#: saved, then failed to serialise (pydantic's depth limit): a 500, and every later listing
#: of the workspace's segments with it.
MAX_SEGMENT_DEPTH = 20
MAX_SEGMENT_CONDITIONS = 100


def nesting_depth(definition: Any) -> int:
    """How deep ``and``/``or`` nodes nest in a raw definition (0 for a single condition);
    iterative, and it stops counting past the limit, so any input is cheap."""
    deepest = 0
    stack = [(definition, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        children = node.get("and", node.get("or"))
        if not isinstance(children, list):
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_SEGMENT_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def count_conditions(node: Any) -> int:
    if isinstance(node, AndNode):
        return sum(count_conditions(n) for n in node.and_)
    if isinstance(node, OrNode):
        return sum(count_conditions(n) for n in node.or_)
    return 1


class SegmentIn(Model):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    definition: SegmentNode

    @field_validator("definition", mode="before")
    @classmethod
    def _shallow(cls, value: Any) -> Any:
        if nesting_depth(value) > MAX_SEGMENT_DEPTH:
            raise ValueError(
                f"a segment definition nests and/or at most {MAX_SEGMENT_DEPTH} levels deep"
            )
        return value

    @field_validator("definition")
    @classmethod
    def _small(cls, value: Any) -> Any:
        if count_conditions(value) > MAX_SEGMENT_CONDITIONS:
            raise ValueError(f"a segment has at most {MAX_SEGMENT_CONDITIONS} conditions")
        return value


class SegmentOut(Model):
    id: str
    name: str
    description: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SegmentMember(Model):
    profile_id: str


class SegmentMembersOut(Model):
    segment_id: str
    count: int = Field(description="Members in all")
    members: list[SegmentMember] = Field(description="This page, by profile id")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


# -- SQL ----------------------------------------------------------------------------------


class SqlIn(Model):
    query: str = Field(min_length=1, max_length=100_000)


class SqlOut(Model):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(
        description="More rows existed than the row limit or the byte limit allowed"
    )


class TableColumn(Model):
    name: str
    type: str


class SqlTable(Model):
    name: str
    columns: list[TableColumn]


class SqlTablesOut(Model):
    tables: list[SqlTable]
