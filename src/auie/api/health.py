"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from auie import db
from auie.api.schemas import Error, ReadyStatus, Status
from auie.collect.writer import LogWriter
from auie.errors import StorageUnavailable
from auie.eventlog import EVENTS_TOPIC, EventLog
from auie.metrics import PROCESSOR_LAG, PROCESSOR_RUNNING
from auie.process import GROUP
from auie.runtime import Runtime

if TYPE_CHECKING:
    from auie.process.supervisor import ProcessorSupervisor


def processor_lag(log: EventLog) -> int:
    """Events of the ``events`` topic the processor group has not committed past."""
    committed = log.committed(GROUP, EVENTS_TOPIC)
    begin = log.begin_offsets(EVENTS_TOPIC)
    return sum(
        max(0, end - max(committed.get(part, 0), begin.get(part, 0)))
        for part, end in log.end_offsets(EVENTS_TOPIC).items()
    )


router = APIRouter(tags=["operate"])


@router.get("/healthz", response_model=Status, operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyStatus,
    response_model_exclude_none=True,
    operation_id="readyz",
    responses={503: {"model": Error, "description": "A store is unreachable"}},
)
async def readyz(request: Request) -> dict[str, Any]:
    """The metadata database, the event log and the profile store answer. The processor
    group's state is reported, not judged: while it restarts, events are still accepted
    durably and wait in the log (``processor.running`` below ``members``, ``restarts``
    and ``lag`` growing tell a monitor)."""
    runtime: Runtime = request.app.state.runtime

    writer: LogWriter | None = getattr(request.app.state, "log_writer", None)
    if writer is not None and not writer.alive:
        raise StorageUnavailable("the event log writer is not running")

    def check() -> None:
        db.ping(runtime.engine)
        runtime.eventlog.ping()
        runtime.profile_store.ping()

    await run_in_threadpool(check)
    result: dict[str, Any] = {"status": "ready"}
    processor = await run_in_threadpool(_processor_status, request)
    if processor is not None:
        result["processor"] = processor
    return result


def _processor_status(request: Request) -> dict[str, int] | None:
    """The supervised processor group's state (None without one), and its metrics set."""
    supervisor: ProcessorSupervisor | None = getattr(request.app.state, "processor", None)
    if supervisor is None:
        return None
    runtime: Runtime = request.app.state.runtime
    running = sum(supervisor.running())
    lag = processor_lag(runtime.eventlog)
    PROCESSOR_RUNNING.set(running)
    PROCESSOR_LAG.set(lag)
    return {
        "members": supervisor.members,
        "running": running,
        "restarts": supervisor.restarts,
        "lag": lag,
    }


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    await run_in_threadpool(_processor_status, request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
