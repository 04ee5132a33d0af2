"""Privacy requests (scope ``privacy:admin``): access export and erasure, as tracked jobs.

``POST /v1/privacy/export`` and ``POST /v1/privacy/erase`` name the person and answer
``202 {"requestId"}`` at once; a background worker runs the request and
``GET /v1/privacy/requests/{id}`` tells how far it is. The export's archive is
``GET /v1/privacy/requests/{id}/archive``.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import Error
from auie.api.security import scope
from auie.auth.scopes import PRIVACY_ADMIN
from auie.auth.tokens import Principal
from auie.errors import InvalidRequest
from auie.privacy.person import Subject
from auie.privacy.requests import PrivacyRequest
from auie.privacy.service import Privacy
from auie.runtime import Runtime

router = APIRouter(
    prefix="/v1/privacy",
    route_class=StrictJSONRoute,
    tags=["privacy"],
    responses={
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the privacy:admin scope"},
    },
)
_admin = Depends(scope(PRIVACY_ADMIN))
_hooks_lock = threading.Lock()


class SubjectIn(BaseModel):
    """The person: one of ``userId``, ``anonymousId``, ``email``, or ``idType`` with
    ``idValue`` (several may be given; all their profiles are covered)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    user_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None
    id_type: str | None = Field(None, description="e.g. user_id, anonymous_id, email, phone")
    id_value: str | None = None

    def subject(self) -> Subject:
        if (self.id_type is None) != (self.id_value is None):
            raise InvalidRequest("idType and idValue go together", code="invalid_subject")
        return Subject.of(
            [
                ("user_id", self.user_id),
                ("anonymous_id", self.anonymous_id),
                ("email", self.email),
                (self.id_type or "", self.id_value),
            ]
        )


class RequestIdOut(BaseModel):
    requestId: str
    status: str


class RequestOut(BaseModel):
    requestId: str
    kind: str
    status: str = Field(description="pending, running, done or failed")
    createdAt: str
    finishedAt: str | None
    result: dict[str, Any] = Field(description="Counts per store, durations (no identifiers)")
    error: str | None
    progress: dict[str, Any] | None = None


def _privacy(request: Request) -> Privacy:
    runtime: Runtime = request.app.state.runtime
    privacy = runtime.privacy
    decisions = getattr(request.app.state, "decisions", None)
    with _hooks_lock:
        if decisions is not None and not getattr(request.app.state, "privacy_hooks", False):
            request.app.state.privacy_hooks = True
            privacy.requests.on_erased.append(lambda _ws, _request: _forget(decisions))
    return privacy


def _forget(decisions: Any) -> None:
    """Drop the decision service's cached person contexts (they may hold erased traits)."""
    cache = getattr(getattr(decisions, "person", None), "_cache", None)
    if isinstance(cache, dict):
        cache.clear()


def _out(item: PrivacyRequest) -> dict[str, Any]:
    return item.to_dict()


async def _submit(request: Request, body: SubjectIn, who: Principal, kind: str) -> Any:
    subject = body.subject()
    privacy = _privacy(request)
    item = await run_in_threadpool(
        privacy.worker.submit, who.workspace_id, kind, subject, actor=who.client_id
    )
    return {"requestId": item.id, "status": item.status}


@router.post(
    "/export",
    status_code=202,
    response_model=RequestIdOut,
    operation_id="privacy_export",
    responses={400: {"model": Error}},
)
async def export(body: SubjectIn, request: Request, who: Principal = _admin) -> Any:
    """Start an access export (DSAR) of everything held about the person."""
    return await _submit(request, body, who, "export")


@router.post(
    "/erase",
    status_code=202,
    response_model=RequestIdOut,
    operation_id="privacy_erase",
    responses={400: {"model": Error}},
)
async def erase(body: SubjectIn, request: Request, who: Principal = _admin) -> Any:
    """Start the erasure of the person from every store (physically), and suppress them."""
    return await _submit(request, body, who, "erasure")


@router.get("/requests", response_model=list[RequestOut], operation_id="privacy_requests")
async def list_requests(
    request: Request, limit: int = Query(100, ge=1, le=1000), who: Principal = _admin
) -> Any:
    """The workspace's privacy requests, newest first."""
    privacy = _privacy(request)
    items = await run_in_threadpool(privacy.requests.recent, who.workspace_id, limit=limit)
    return [_out(i) for i in items]


@router.get(
    "/requests/{request_id}",
    response_model=RequestOut,
    operation_id="privacy_request",
    responses={404: {"model": Error}},
)
async def get_request(request_id: str, request: Request, who: Principal = _admin) -> Any:
    """A request's status and, when done, its counts."""
    privacy = _privacy(request)
    privacy.worker.ensure_started()
    return _out(await run_in_threadpool(privacy.requests.get, who.workspace_id, request_id))


@router.get(
    "/requests/{request_id}/archive",
    response_class=FileResponse,
    operation_id="privacy_archive",
    responses={
        200: {"content": {"application/zip": {}}, "description": "The export archive"},
        404: {"model": Error},
        409: {"model": Error, "description": "The export is not done yet"},
    },
)
async def get_archive(request_id: str, request: Request, who: Principal = _admin) -> Any:
    """The zip archive of a finished export (one JSON file per store + manifest.json)."""
    privacy = _privacy(request)
    path = await run_in_threadpool(privacy.requests.archive, who.workspace_id, request_id)
    privacy.context.audit.record(
        "privacy.export.downloaded",
        actor=who.client_id,
        workspace=who.workspace_id,
        target=request_id,
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"auie-export-{request_id}.zip",
        headers={"Cache-Control": "no-store"},
    )
