"""The decision API (scope ``decide``; configuration changes need ``admin``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import Error
from auie.api.security import scope
from auie.auth.scopes import ADMIN, DECIDE
from auie.auth.tokens import Principal
from auie.decide.config import MAX_REWARD, DecisionPointConfig
from auie.decide.evaluation import EvaluationOptions, evaluate_decision_point, parse_candidates
from auie.decide.registry import check_name
from auie.decide.service import DecideRequest, DecisionService
from auie.errors import InvalidRequest, describe_problems
from auie.ids import utc_text
from auie.runtime import Runtime

router = APIRouter(
    tags=["decide"],
    route_class=StrictJSONRoute,
    responses={
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the scope"},
    },
)
_decider = Depends(scope(DECIDE))
_admin = Depends(scope(ADMIN))


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ActionIn(_Camel):
    id: str = Field(min_length=1, max_length=200)
    features: dict[str, Any] = Field(default_factory=dict)


class DecideIn(_Camel):
    decision_point: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(None, max_length=512)
    anonymous_id: str | None = Field(None, max_length=512)
    context: dict[str, Any] = Field(default_factory=dict)
    actions: list[ActionIn] = Field(min_length=1, max_length=1000)
    excluded_actions: list[str] = Field(default_factory=list)
    event_id: str | None = Field(None, min_length=1, max_length=200)
    defer_activation: bool = False
    slots: int = Field(1, ge=1, le=100)


class ActionBody(msgspec.Struct, forbid_unknown_fields=True):
    """One action, as :class:`ActionIn` (same limits)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    features: dict[str, Any] = {}


class DecideBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """``POST /v1/decide``'s body as :class:`DecideIn` (same fields and
    limits) but strict: camelCase names only, no type coercion. A body this refuses is
    not necessarily wrong; it goes to the route, whose model decides."""

    decision_point: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    actions: Annotated[list[ActionBody], msgspec.Meta(min_length=1, max_length=1000)]
    user_id: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    anonymous_id: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    context: dict[str, Any] = {}
    excluded_actions: list[str] = []
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    defer_activation: bool = False
    slots: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


DECIDE_BODY = msgspec.json.Decoder(DecideBody)


class RankedAction(BaseModel):
    id: str
    probability: float


class DecideOut(BaseModel):
    eventId: str
    actionId: str
    ranking: list[RankedAction]
    policyVersion: str
    slots: list[str] | None = None


class RewardIn(_Camel):
    #: strict: a JSON number, not "1" or true (as consent purposes are JSON booleans)
    value: float = Field(allow_inf_nan=False, ge=-MAX_REWARD, le=MAX_REWARD, strict=True)


class EventStatus(BaseModel):
    eventId: str
    status: str


class RollbackIn(_Camel):
    version: int = Field(ge=1)


class DecisionPointOut(BaseModel):
    name: str
    config: dict[str, Any]
    activeVersion: int | None


class VersionOut(BaseModel):
    arm: str
    version: int
    kind: str
    updates: int
    source: str
    note: str
    createdAt: str


def _service(request: Request) -> DecisionService:
    service: DecisionService = request.app.state.decisions
    return service


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post(
    "/v1/decide",
    response_model=DecideOut,
    response_model_exclude_none=True,
    operation_id="decide",
    responses={400: {"model": Error}, 409: {"model": Error}},
)
async def decide(body: DecideIn, request: Request, who: Principal = _decider) -> Any:
    """Rank the actions for this person and moment; the first is the one to show."""
    return await _service(request).decide(who.workspace_id, decide_request(body))


def decide_request(body: DecideIn | DecideBody) -> DecideRequest:
    """The service's request for a body the model accepted, after the checks the model
    cannot make (an identity, a valid decision point name); also used by the fast path."""
    if not body.user_id and not body.anonymous_id:
        raise InvalidRequest("userId or anonymousId is required", code="missing_identity")
    check_name(body.decision_point)
    return DecideRequest(
        decision_point=body.decision_point,
        actions=[{"id": a.id, "features": a.features} for a in body.actions],
        user_id=body.user_id,
        anonymous_id=body.anonymous_id,
        context=body.context,
        excluded=body.excluded_actions,
        event_id=body.event_id,
        defer_activation=body.defer_activation,
        slots=body.slots,
    )


@router.post(
    "/v1/decisions/{event_id}/reward",
    response_model=EventStatus,
    operation_id="reward",
    responses={404: {"model": Error}},
)
async def reward(event_id: str, body: RewardIn, request: Request, who: Principal = _decider) -> Any:
    """Report the outcome of a decision."""
    return await _service(request).reward(who.workspace_id, event_id, body.value)


@router.post(
    "/v1/decisions/{event_id}/activate",
    response_model=EventStatus,
    operation_id="activate",
    responses={404: {"model": Error}},
)
async def activate(event_id: str, request: Request, who: Principal = _decider) -> Any:
    """Mark a deferred decision as shown: its reward wait starts now."""
    return await _service(request).activate(who.workspace_id, event_id)


def _point_out(runtime: Runtime, workspace: str, name: str) -> dict[str, Any]:
    point = runtime.decision_store.require(workspace, name)
    return {
        "name": point.name,
        "config": point.config.model_dump(by_alias=True),
        "activeVersion": point.active_version,
    }


@router.get(
    "/v1/decision-points",
    response_model=list[DecisionPointOut],
    operation_id="list_decision_points",
)
def list_points(request: Request, who: Principal = _decider) -> Any:
    return [
        {
            "name": p.name,
            "config": p.config.model_dump(by_alias=True),
            "activeVersion": p.active_version,
        }
        for p in _runtime(request).decision_store.points(who.workspace_id)
    ]


@router.get(
    "/v1/decision-points/{name}",
    response_model=DecisionPointOut,
    operation_id="get_decision_point",
    responses={404: {"model": Error}},
)
def get_point(name: str, request: Request, who: Principal = _decider) -> Any:
    return _point_out(_runtime(request), who.workspace_id, name)


@router.put(
    "/v1/decision-points/{name}",
    response_model=DecisionPointOut,
    operation_id="put_decision_point",
    responses={400: {"model": Error}},
)
async def put_point(
    name: str, request: Request, body: dict[str, Any] = Body(...), who: Principal = _admin
) -> Any:
    """Create or replace a decision point's configuration (see docs/decide.md)."""
    check_name(name)
    try:
        config = DecisionPointConfig.model_validate(body)
    except ValidationError as exc:
        message = describe_problems(exc.errors(), whole="config")
        raise InvalidRequest(message[:1000], code="invalid_config") from None
    _service(request).configure(who.workspace_id, name, config)
    runtime = _runtime(request)
    await run_in_threadpool(
        runtime.audit.record,
        "decision_point.configured",
        actor=who.client_id,
        workspace=who.workspace_id,
        target=name,
        details={"policy": config.policy.get("type"), "mode": config.mode},
    )
    return await run_in_threadpool(_point_out, runtime, who.workspace_id, name)


@router.get(
    "/v1/decision-points/{name}/versions",
    response_model=list[VersionOut],
    operation_id="list_policy_versions",
    responses={404: {"model": Error}},
)
def versions(name: str, request: Request, who: Principal = _decider) -> Any:
    runtime = _runtime(request)
    runtime.decision_store.require(who.workspace_id, name)
    return [
        {
            "arm": v.arm or "main",
            "version": v.version,
            "kind": v.kind,
            "updates": v.updates,
            "source": v.source,
            "note": v.note,
            "createdAt": utc_text(v.created_at),
        }
        for v in runtime.decision_store.versions(who.workspace_id, name)
    ]


@router.post(
    "/v1/decision-points/{name}/rollback",
    response_model=DecisionPointOut,
    operation_id="rollback_policy",
    responses={404: {"model": Error}, 409: {"model": Error}},
)
def rollback(name: str, body: RollbackIn, request: Request, who: Principal = _admin) -> Any:
    """Serve an earlier policy version."""
    runtime = _runtime(request)
    before = runtime.decision_store.require(who.workspace_id, name).active_version
    _service(request).rollback(who.workspace_id, name, body.version)
    runtime.audit.record(
        "decision_point.rolled_back",
        actor=who.client_id,
        workspace=who.workspace_id,
        target=name,
        details={"from": before, "to": body.version},
    )
    return _point_out(runtime, who.workspace_id, name)


@router.get(
    "/v1/decision-points/{name}/report",
    operation_id="decision_point_report",
    responses={404: {"model": Error}},
)
def report(name: str, request: Request, who: Principal = _decider) -> dict[str, Any]:
    """Per-arm reward with 95% intervals since this server started, apprentice agreement."""
    _runtime(request).decision_store.require(who.workspace_id, name)
    return _service(request).report(who.workspace_id, name)


# -- off-policy evaluation ------------------------------------------------------------------


class CandidateIn(_Camel):
    name: str | None = Field(None, min_length=1, max_length=100)
    policy: dict[str, Any]


class EvaluateIn(_Camel):
    decision_point: str = Field(min_length=1, max_length=200)
    #: Policy configurations (named or not) and/or "current" (always evaluated).
    candidates: list[CandidateIn | dict[str, Any] | str] = Field(
        default_factory=list, max_length=20
    )
    bootstrap_rounds: int = Field(1000, ge=0, le=100_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    clip: float | None = Field(None, gt=0)
    folds: int = Field(3, ge=1, le=20)
    limit: int = Field(50_000, ge=1, le=1_000_000)
    #: Progressive validation (learn along the log); false judges fresh policies frozen.
    learn: bool = True
    importance_top: int = Field(10, ge=0, le=100)


@router.post(
    "/v1/decisions/evaluate",
    operation_id="evaluate_policies",
    responses={400: {"model": Error}, 404: {"model": Error}},
)
async def evaluate_policies(
    body: EvaluateIn, request: Request, who: Principal = _decider
) -> dict[str, Any]:
    """Off-policy evaluation of candidate policies on the decision point's decision log:
    IPS, SNIPS, DM and DR with bootstrap intervals, ESS, and each candidate's difference
    from the current policy (see docs/decide.md, "Evaluation")."""
    check_name(body.decision_point)
    candidates = parse_candidates(
        [
            c.model_dump(exclude_none=True) if isinstance(c, CandidateIn) else c
            for c in body.candidates
        ]
    )
    runtime = _runtime(request)
    options = EvaluationOptions(
        bootstrap_rounds=body.bootstrap_rounds,
        confidence=body.confidence,
        seed=body.seed,
        clip=body.clip,
        folds=body.folds,
        limit=body.limit,
        learn=body.learn,
        importance_top=body.importance_top,
    )
    return await run_in_threadpool(
        evaluate_decision_point,
        runtime.decision_store,
        runtime.eventlog,
        who.workspace_id,
        body.decision_point,
        candidates,
        options=options,
        lake=runtime.lake,
    )
