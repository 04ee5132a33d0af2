"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from auie import db
from auie.api.schemas import Error, Status
from auie.collect.writer import LogWriter
from auie.errors import StorageUnavailable
from auie.runtime import Runtime

router = APIRouter(tags=["operate"])


@router.get("/healthz", response_model=Status, operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Status,
    operation_id="readyz",
    responses={503: {"model": Error, "description": "A store is unreachable"}},
)
async def readyz(request: Request) -> dict[str, str]:
    """The metadata database, the event log and the profile store answer."""
    runtime: Runtime = request.app.state.runtime

    writer: LogWriter | None = getattr(request.app.state, "log_writer", None)
    if writer is not None and not writer.alive:
        raise StorageUnavailable("the event log writer is not running")

    def check() -> None:
        db.ping(runtime.engine)
        runtime.eventlog.ping()
        runtime.profile_store.ping()

    await run_in_threadpool(check)
    return {"status": "ready"}


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
