"""Tracking plan and dead letters of the workspace (scope ``admin``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import (
    DeadLetterOut,
    Error,
    PlanOut,
    PlanVersionOut,
    ReplayIn,
    ReplayOut,
    ViolationOut,
)
from auie.api.security import scope
from auie.auth.scopes import ADMIN
from auie.auth.tokens import Principal
from auie.errors import InvalidRequest, NotFound
from auie.process.replay import replay
from auie.runtime import Runtime

router = APIRouter(
    tags=["pipeline"],
    route_class=StrictJSONRoute,
    responses={
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the admin scope"},
    },
)
_admin = Depends(scope(ADMIN))


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get(
    "/v1/tracking-plan",
    response_model=PlanOut,
    operation_id="get_tracking_plan",
    responses={404: {"model": Error}},
)
def get_plan(
    request: Request,
    version: int | None = Query(
        None, ge=1, le=2**31 - 1, description="A past version (default: current)"
    ),
    who: Principal = _admin,
) -> Any:
    """The current tracking plan, or the version asked for."""
    plans = _runtime(request).plans
    if version is not None:
        shown = plans.version(who.workspace_id, version)  # 404 when there is no such version
        return {"version": shown.version, "plan": shown.document}
    current = plans.current(who.workspace_id)
    if current is None:
        raise NotFound("this workspace has no tracking plan yet")
    return {"version": current.version, "plan": current.document}


@router.put(
    "/v1/tracking-plan",
    response_model=PlanOut,
    operation_id="put_tracking_plan",
    responses={400: {"model": Error}},
)
def put_plan(request: Request, body: dict[str, Any] = Body(...), who: Principal = _admin) -> Any:
    """Store a new version of the tracking plan (see docs/process.md for the format)."""
    stored = _runtime(request).plans.put(who.workspace_id, body)
    _runtime(request).audit.record(
        "tracking_plan.updated",
        actor=who.client_id,
        workspace=who.workspace_id,
        target=f"v{stored.version}",
    )
    return {"version": stored.version, "plan": stored.document}


@router.get(
    "/v1/tracking-plan/versions",
    response_model=list[PlanVersionOut],
    operation_id="list_tracking_plan_versions",
)
def plan_versions(request: Request, who: Principal = _admin) -> Any:
    return _runtime(request).plans.versions(who.workspace_id)


@router.get(
    "/v1/tracking-plan/violations",
    response_model=list[ViolationOut],
    operation_id="list_tracking_plan_violations",
)
def plan_violations(request: Request, who: Principal = _admin) -> Any:
    """Violations counted per event and plan version."""
    return _runtime(request).profile_store.violations(who.workspace_id)


@router.get(
    "/v1/dead-letters", response_model=list[DeadLetterOut], operation_id="list_dead_letters"
)
def list_dead_letters(
    request: Request,
    *,
    pending: bool = Query(True, description="Only those not replayed yet"),
    stage: str | None = Query(None, min_length=1, max_length=50, description="Only this stage's"),
    code: str | None = Query(None, min_length=1, max_length=100, description="Only this code"),
    limit: int = Query(100, ge=1, le=10_000),
    who: Principal = _admin,
) -> Any:
    """Events a stage could not handle, oldest first (``stage`` and ``code`` choose the
    letters before ``limit`` counts them, as replay's filters do)."""
    letters = _runtime(request).profile_store.dead_letters(
        who.workspace_id, pending=pending, stage=stage, code=code, limit=limit
    )
    out = []
    for letter in letters:
        try:
            payload = json.loads(letter.payload)
        except json.JSONDecodeError:
            payload = letter.payload
        out.append(
            {
                "id": letter.id,
                "stage": letter.stage,
                "code": letter.code,
                "message": letter.message,
                "payload": payload,
                "source_id": letter.source_id,
                "created_at": letter.created_at,
                "replayed_at": letter.replayed_at,
            }
        )
    return out


@router.post(
    "/v1/dead-letters/replay",
    response_model=ReplayOut,
    operation_id="replay_dead_letters",
    responses={400: {"model": Error}},
)
async def replay_dead_letters(
    request: Request, body: ReplayIn | None = None, who: Principal = _admin
) -> Any:
    """Send pending dead letters back through the processor (no body: every pending one,
    up to the default limit)."""
    runtime = _runtime(request)
    body = body or ReplayIn()
    if body.stage == "":
        raise InvalidRequest("stage must not be empty")

    def run() -> dict[str, Any]:
        report = replay(
            runtime.eventlog,
            runtime.profile_store,
            runtime.plans,
            workspace=who.workspace_id,
            stage=body.stage,
            code=body.code,
            limit=body.limit,
            max_event_bytes=runtime.settings.collect.max_event_bytes,
            data_dir=runtime.settings.data_dir,
        ).to_dict()
        runtime.audit.record(
            "dead_letters.replayed",
            actor=who.client_id,
            workspace=who.workspace_id,
            target=body.stage or "*",
            details={"replayed": report["replayed"]},
        )
        return report

    return await run_in_threadpool(run)
