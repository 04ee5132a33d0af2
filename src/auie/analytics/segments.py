"""Segments: saved, named definitions of groups of people, per workspace.

A definition is a tree (:data:`~auie.analytics.models.SegmentNode`): ``{"and": [...]}``,
``{"or": [...]}``, conditions on traits or computed traits (``{"trait": "plan", "op": "eq",
"value": "pro"}``, ``{"computedTrait": "eventCounts.Order Completed", "op": "gte", "value":
2}``), and behaviour (``{"event": "Order Completed", "atLeast": 2, "inLastDays": 30,
"filters": [...]}``: at least ``atLeast`` of those events, passing the filters, with a
timestamp in ``[now - inLastDays days, now]``).

Members are evaluated when asked, over the lake: the people are the current profiles of the
``identities`` table, their traits those of :mod:`auie.analytics.persons`, their events
attributed by its person rule. :func:`segments_of` answers the other question, for the
decision service: which saved segments does one profile belong to right now; it reads the
profile's traits from the profile store (current, and whole for a person without
``analytics`` consent, whose lake snapshot withholds them: a decision is governed by
``personalization`` consent), its behaviour from the lake like the member lists.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from auie.analytics.models import (
    AndNode,
    BehaviourCondition,
    OrNode,
    SegmentIn,
    SegmentMember,
    SegmentMembersOut,
    SegmentNode,
    SegmentOut,
    TraitCondition,
)
from auie.analytics.persons import IDS_CTE, Scope, Sql, conditions, events_cte
from auie.analytics.tables import segments
from auie.errors import Conflict, InvalidRequest, NotFound
from auie.ids import new_id, utcnow

if TYPE_CHECKING:
    from auie.runtime import Runtime

logger = logging.getLogger(__name__)
_node = TypeAdapter(SegmentNode)
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    workspace_id: str
    name: str
    description: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def node(self) -> Any:
        """The parsed definition."""
        return _node.validate_python(self.definition)

    def to_out(self) -> SegmentOut:
        return SegmentOut(
            id=self.id,
            name=self.name,
            description=self.description,
            definition=self.definition,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def dump_definition(node: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = _node.dump_python(node, mode="json", by_alias=True, exclude_none=True)
    return dumped


def _unknown(segment_id: str) -> NotFound:
    shown = segment_id if len(segment_id) <= 100 else segment_id[:100] + "..."
    return NotFound(f"segment {shown!r} does not exist", code="unknown_segment")


class SegmentStore:
    """Saved segments in the metadata database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _segment(row: Any) -> Segment:
        values = dict(row._mapping)
        values["definition"] = json.loads(values["definition"])
        return Segment(**values)

    def list(self, workspace: str) -> list[Segment]:
        query = (
            select(segments).where(segments.c.workspace_id == workspace).order_by(segments.c.name)
        )
        with self.engine.connect() as conn:
            return [self._segment(row) for row in conn.execute(query)]

    def get(self, workspace: str, segment_id: str) -> Segment:
        query = select(segments).where(
            segments.c.workspace_id == workspace, segments.c.id == segment_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise _unknown(segment_id)
        return self._segment(row)

    def create(self, workspace: str, spec: SegmentIn) -> Segment:
        now = utcnow()
        segment = Segment(
            new_id("seg"),
            workspace,
            spec.name,
            spec.description,
            dump_definition(spec.definition),
            now,
            now,
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(segments).values(
                        id=segment.id,
                        workspace_id=workspace,
                        name=segment.name,
                        description=segment.description,
                        definition=json.dumps(segment.definition),
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise Conflict(f"a segment named {spec.name!r} already exists") from None
        return segment

    def update(self, workspace: str, segment_id: str, spec: SegmentIn) -> Segment:
        definition = dump_definition(spec.definition)
        try:
            with self.engine.begin() as conn:
                changed = conn.execute(
                    update(segments)
                    .where(segments.c.workspace_id == workspace, segments.c.id == segment_id)
                    .values(
                        name=spec.name,
                        description=spec.description,
                        definition=json.dumps(definition),
                        updated_at=utcnow(),
                    )
                ).rowcount
        except IntegrityError:
            raise Conflict(f"a segment named {spec.name!r} already exists") from None
        if not changed:
            raise _unknown(segment_id)
        return self.get(workspace, segment_id)

    def set_definition(self, workspace: str, segment_id: str, definition: dict[str, Any]) -> None:
        """Replace a definition as it is (erasure's: values naming an erased person)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(segments)
                .where(segments.c.workspace_id == workspace, segments.c.id == segment_id)
                .values(definition=json.dumps(definition), updated_at=utcnow())
            )

    def delete(self, workspace: str, segment_id: str) -> None:
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(segments).where(
                    segments.c.workspace_id == workspace, segments.c.id == segment_id
                )
            ).rowcount
        if not gone:
            raise _unknown(segment_id)


# -- evaluation ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Compiled:
    q: Sql
    now: datetime
    behaviours: list[BehaviourCondition]
    traits: bool = False

    def expression(self, node: Any) -> str:
        if isinstance(node, AndNode):
            return "(" + " AND ".join(self.expression(n) for n in node.and_) + ")"
        if isinstance(node, OrNode):
            return "(" + " OR ".join(self.expression(n) for n in node.or_) + ")"
        if isinstance(node, BehaviourCondition):
            self.behaviours.append(node)
            index = len(self.behaviours) - 1
            return f"(coalesce(b{index}.n, 0) >= {self.q.bind(node.at_least)})"
        assert isinstance(node, TraitCondition)
        self.traits = True
        return conditions(self.q, [node], traits="pt")

    def ctes(self, person: str | None) -> list[str]:
        """``ev`` and one ``b<i>(person_id, n)`` per behaviour (only ``person``'s if given)."""
        if not self.behaviours:
            return [IDS_CTE]
        q = self.q
        earliest = min(self.now - timedelta(days=b.in_last_days) for b in self.behaviours)
        found = [
            events_cte(
                q,
                start=earliest,
                end=None,
                names={b.event for b in self.behaviours},
                targets=[f for b in self.behaviours for f in b.filters],
            )
        ]
        only = f" AND ev.person_id = {q.bind(person)}" if person is not None else ""
        for index, behaviour in enumerate(self.behaviours):
            since = self.now - timedelta(days=behaviour.in_last_days)
            found.append(
                f"b{index} AS (SELECT ev.person_id, count(*) AS n FROM ev"
                f" WHERE ev.event_name = {q.bind(behaviour.event)}"
                f" AND ev.timestamp >= {q.bind(since)} AND ev.timestamp <= {q.bind(self.now)}"
                f" AND {conditions(q, behaviour.filters)}{only} GROUP BY ev.person_id)"
            )
        return found

    def joins(self, people: str) -> str:
        joins = [
            f"LEFT JOIN b{i} ON b{i}.person_id = {people}.person_id"
            for i in range(len(self.behaviours))
        ]
        if self.traits:
            joins.insert(0, f"LEFT JOIN person_traits pt ON pt.profile_id = {people}.person_id")
        return " ".join(joins)


def evaluation_time() -> datetime:
    """The "now" behaviour windows end at (a function, so tests can stop the clock)."""
    return utcnow()


def _encode_cursor(profile_id: str) -> str:
    return base64.urlsafe_b64encode(profile_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded:
        raise InvalidRequest("cursor is not one this API returned", code="invalid_cursor")
    return decoded


def members(
    scope: Scope,
    segment: Segment,
    *,
    limit: int = 100,
    cursor: str | None = None,
    now: datetime | None = None,
) -> SegmentMembersOut:
    """One page of a segment's members (by profile id) and how many there are."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}", code="invalid_limit")
    after = _decode_cursor(cursor) if cursor else ""
    compiled = _Compiled(Sql(), now or evaluation_time(), [])
    q = compiled.q
    expression = compiled.expression(segment.node())
    ctes = compiled.ctes(None)
    if compiled.traits:
        ctes.append(scope.traits_cte(q))
    ctes.append("people AS (SELECT DISTINCT profile_id AS person_id FROM _ids)")
    ctes.append(
        "members AS (SELECT people.person_id FROM people"
        f" {compiled.joins('people')} WHERE {expression})"
    )
    sql = (
        f"WITH {', '.join(ctes)} SELECT t.total, page.person_id"
        " FROM (SELECT count(*) AS total FROM members) t LEFT JOIN (SELECT person_id FROM"
        f" members WHERE person_id > {q.bind(after)} ORDER BY person_id"
        f" LIMIT {q.bind(limit + 1)}) page ON true ORDER BY page.person_id"
    )
    rows = scope.query(sql, q.params).rows
    total = int(rows[0][0]) if rows else 0
    ids = [row[1] for row in rows if row[1] is not None]
    more = len(ids) > limit
    ids = ids[:limit]
    return SegmentMembersOut(
        segment_id=segment.id,
        count=total,
        members=[SegmentMember(profile_id=pid) for pid in ids],
        next_cursor=_encode_cursor(ids[-1]) if more else None,
    )


def evaluate_for(
    scope: Scope, saved: list[Segment], profile_id: str, *, now: datetime | None = None
) -> list[str]:
    """Ids of the ``saved`` segments ``profile_id`` belongs to (traits from the profile
    store, see the module's docstring)."""
    compiled = _Compiled(Sql(), now or evaluation_time(), [])
    q = compiled.q
    expressions: list[tuple[str, str]] = []
    for segment in saved:
        try:
            node = segment.node()
        except ValidationError:
            logger.warning("segment %s has an invalid definition; skipped", segment.id)
            continue
        expressions.append((segment.id, compiled.expression(node)))
    if not expressions:
        return []
    ctes = compiled.ctes(profile_id)
    if compiled.traits:
        ctes.append(scope.store_traits_cte(q, profile_id))
    ctes.append(f"people AS (SELECT {q.bind(profile_id)}::VARCHAR AS person_id)")
    columns = ", ".join(expr for _id, expr in expressions)
    sql = f"WITH {', '.join(ctes)} SELECT {columns} FROM people {compiled.joins('people')}"
    row = scope.query(sql, q.params).rows[0]
    return [
        segment_id for (segment_id, _expr), inside in zip(expressions, row, strict=True) if inside
    ]


def segments_of(
    runtime: Runtime, workspace: str, profile_id: str, *, now: datetime | None = None
) -> list[str]:
    """The ids of the workspace's saved segments that ``profile_id`` belongs to now, in
    segment-name order; the decision service calls this to target and featurise."""
    saved = SegmentStore(runtime.engine).list(workspace)
    if not saved:
        return []
    return evaluate_for(Scope.of(runtime, workspace), saved, profile_id, now=now)
