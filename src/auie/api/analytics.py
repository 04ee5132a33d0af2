"""Analytics (scope ``analytics:read``): trends, funnels, retention, segments and SQL over
the token's workspace only. See docs/analytics.md for every rule. Filters and breakdowns by
personal data need ``pii:read`` too (:mod:`auie.analytics.personal`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from auie.analytics.funnels import funnels
from auie.analytics.models import (
    FunnelsIn,
    FunnelsOut,
    RetentionIn,
    RetentionOut,
    SegmentIn,
    SegmentMembersOut,
    SegmentOut,
    SqlIn,
    SqlOut,
    SqlTable,
    SqlTablesOut,
    TableColumn,
    TrendsIn,
    TrendsOut,
)
from auie.analytics.personal import PersonalTargets, hide_personal
from auie.analytics.persons import Scope
from auie.analytics.retention import retention
from auie.analytics.segments import MAX_PAGE, SegmentStore, members
from auie.analytics.sql import run_sql
from auie.analytics.trends import trends
from auie.api.routing import StrictJSONRoute
from auie.api.schemas import Error
from auie.api.security import scope
from auie.auth.scopes import ANALYTICS_READ, PII_READ
from auie.auth.tokens import Principal
from auie.errors import PermissionDenied
from auie.runtime import Runtime

router = APIRouter(
    tags=["analytics"],
    route_class=StrictJSONRoute,
    responses={
        400: {"model": Error, "description": "Invalid body or parameters"},
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {
            "model": Error,
            "description": "Token lacks the analytics:read scope (insufficient_scope), or"
            " pii:read for a filter or breakdown by personal data (pii_read_required)",
        },
        503: {"model": Error, "description": "The server is shutting down (shutting_down)"},
    },
)
_reader = Depends(scope(ANALYTICS_READ))
_not_found: dict[int | str, dict[str, Any]] = {
    404: {"model": Error, "description": "No such segment in this workspace"}
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _scope(request: Request, who: Principal) -> Scope:
    return Scope.of(_runtime(request), who.workspace_id)


def _segments(request: Request) -> SegmentStore:
    return SegmentStore(_runtime(request).engine)


def _personal(request: Request) -> PersonalTargets:
    runtime = _runtime(request)
    return PersonalTargets(runtime.pii_rules, runtime.profiles.folder.computed)


def _personal_allowed(request: Request, who: Principal, *parts: Any) -> None:
    """Refuse filters and breakdowns by personal data to a token without ``pii:read``
    (:mod:`auie.analytics.personal`)."""
    if PII_READ in who.scopes:
        return
    named = _personal(request).named(*parts)
    if named:
        raise PermissionDenied(
            f"{', '.join(named)}: personal data; filtering or breaking down by it needs the"
            " pii:read scope",
            code="pii_read_required",
            client=who.client_id,
            workspace=who.workspace_id,
        )


# -- analyses ---------------------------------------------------------------------------------


@router.post("/v1/analytics/trends", response_model=TrendsOut, operation_id="analytics_trends")
def post_trends(body: TrendsIn, request: Request, who: Principal = _reader) -> Any:
    """Events or people per hour, day or week, per event name, optionally broken down."""
    _personal_allowed(request, who, body)
    return trends(_scope(request, who), body)


@router.post("/v1/analytics/funnels", response_model=FunnelsOut, operation_id="analytics_funnels")
def post_funnels(body: FunnelsIn, request: Request, who: Principal = _reader) -> Any:
    """People through ordered steps within a conversion window; rates and median times."""
    _personal_allowed(request, who, body)
    return funnels(_scope(request, who), body)


@router.post(
    "/v1/analytics/retention", response_model=RetentionOut, operation_id="analytics_retention"
)
def post_retention(body: RetentionIn, request: Request, who: Principal = _reader) -> Any:
    """Cohorts by first start event, and how many return in each following period."""
    _personal_allowed(request, who, body)
    return retention(_scope(request, who), body)


# -- segments ---------------------------------------------------------------------------------


@router.get(
    "/v1/analytics/segments",
    response_model=list[SegmentOut],
    operation_id="analytics_list_segments",
)
def list_segments(request: Request, who: Principal = _reader) -> Any:
    """The workspace's saved segments, by name (without ``pii:read``, the values of their
    conditions on personal data read ``[needs pii:read]``)."""
    return _shown(request, who, *(s.to_out() for s in _segments(request).list(who.workspace_id)))


def _shown(request: Request, who: Principal, *segments: SegmentOut) -> list[SegmentOut]:
    """``segments`` as ``who`` may see them: with ``pii:read`` whole, else with the values
    of conditions on personal data hidden."""
    if PII_READ in who.scopes:
        return list(segments)
    personal = _personal(request)
    return [
        s.model_copy(update={"definition": hide_personal(s.definition, personal)}) for s in segments
    ]


@router.post(
    "/v1/analytics/segments",
    response_model=SegmentOut,
    status_code=201,
    operation_id="analytics_create_segment",
    responses={409: {"model": Error, "description": "A segment has this name"}},
)
def create_segment(body: SegmentIn, request: Request, who: Principal = _reader) -> Any:
    """Save a segment definition."""
    _personal_allowed(request, who, body)
    return _segments(request).create(who.workspace_id, body).to_out()


@router.get(
    "/v1/analytics/segments/{segment_id}",
    response_model=SegmentOut,
    operation_id="analytics_get_segment",
    responses=_not_found,
)
def get_segment(segment_id: str, request: Request, who: Principal = _reader) -> Any:
    """One saved segment (without ``pii:read``, as the list shows it)."""
    [segment] = _shown(request, who, _segments(request).get(who.workspace_id, segment_id).to_out())
    return segment


@router.put(
    "/v1/analytics/segments/{segment_id}",
    response_model=SegmentOut,
    operation_id="analytics_put_segment",
    responses={**_not_found, 409: {"model": Error, "description": "The name is taken"}},
)
def put_segment(
    segment_id: str, body: SegmentIn, request: Request, who: Principal = _reader
) -> Any:
    """Replace a segment's name, description and definition."""
    _personal_allowed(request, who, body)
    return _segments(request).update(who.workspace_id, segment_id, body).to_out()


@router.delete(
    "/v1/analytics/segments/{segment_id}",
    status_code=204,
    operation_id="analytics_delete_segment",
    responses=_not_found,
)
def delete_segment(segment_id: str, request: Request, who: Principal = _reader) -> Response:
    _segments(request).delete(who.workspace_id, segment_id)
    return Response(status_code=204)


@router.get(
    "/v1/analytics/segments/{segment_id}/members",
    response_model=SegmentMembersOut,
    operation_id="analytics_segment_members",
    responses=_not_found,
)
def segment_members(
    segment_id: str,
    request: Request,
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=1000, description="From `nextCursor`"),
    who: Principal = _reader,
) -> Any:
    """Members now (profile ids, ascending), one page at a time, and their count."""
    segment = _segments(request).get(who.workspace_id, segment_id)
    _personal_allowed(request, who, segment.node())
    return members(_scope(request, who), segment, limit=limit, cursor=cursor)


# -- SQL -----------------------------------------------------------------------------------------


@router.post("/v1/sql", response_model=SqlOut, operation_id="sql_query")
def post_sql(body: SqlIn, request: Request, who: Principal = _reader) -> Any:
    """One read-only SELECT over the workspace's lake tables and marts (docs/analytics.md).
    Identifiers are keyed hashes unless the token also has the ``pii:read`` scope."""
    return run_sql(
        _runtime(request), who.workspace_id, body.query, pseudonymous=PII_READ not in who.scopes
    )


@router.get("/v1/sql/tables", response_model=SqlTablesOut, operation_id="sql_tables")
def sql_tables(request: Request, who: Principal = _reader) -> Any:
    """The tables and marts ``POST /v1/sql`` can read, with their columns."""
    found = _runtime(request).analytics.tables(
        who.workspace_id, pseudonymous=PII_READ not in who.scopes
    )
    return SqlTablesOut(
        tables=[
            SqlTable(name=name, columns=[TableColumn(name=col, type=kind) for col, kind in columns])
            for name, columns in sorted(found.items())
        ]
    )
