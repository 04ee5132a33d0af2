"""The ASGI application: one router per domain, one error mapping, metrics middleware."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import auie
from auie.analytics.segments import segments_of
from auie.analytics.user_features import features_of
from auie.api import (
    admin,
    analytics,
    collect,
    consent,
    decide,
    errors,
    health,
    oauth,
    pipeline,
    privacy,
    profiles,
)
from auie.api.fastpath import CollectFastPath, DecideFastPath
from auie.api.web import install as install_dashboard
from auie.collect.service import Collector, WriteKeyCache
from auie.collect.writer import GroupCommitWriter
from auie.collect.writer_process import ProcessLogWriter
from auie.decide.context import PersonContext
from auie.decide.service import DecisionService
from auie.eventlog import DEAD_LETTERS_TOPIC, EVENTS_TOPIC
from auie.metrics import HTTP_REQUESTS, HTTP_SECONDS
from auie.runtime import Runtime

logger = logging.getLogger(__name__)
_MAINTENANCE_SECONDS = 600.0
_DECISION_TICK_SECONDS = 0.2
#: Decisions closed (learned from) between two turns of the event loop: an update is
#: about 50 µs, so the loop is never held for much more than half a millisecond (50 at
#: a time put a 10-ms tail on /v1/decide at 1,000/s; benchmarks.md).
_TICK_SLICE = 10
_SNAPSHOT_SECONDS = 60.0
_REFRESH_SECONDS = 1.0


class MetricsMiddleware:
    """Counts requests by route template and status (pure ASGI: cheap on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            HTTP_SECONDS.labels(template).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with 413 ``request_too_large``, from
    the ``Content-Length`` before anything is read, else as the body streams in; so a
    caller without a token cannot make the server parse megabytes of JSON (FastAPI reads
    the body before it checks the token). Paths in ``exempt`` (the collector, whose limits
    are its own) pass untouched."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        limit, received = self.limit, 0
        too_large = HTTPException(413, f"request body larger than {limit} bytes")

        async def limited() -> Message:
            nonlocal received
            if received == 0:
                length = Headers(scope=scope).get("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
            return message

        await self.app(scope, limited, send)


class AuieAPI(FastAPI):
    """The FastAPI application, with ``POST /v1/decide`` and the collect routes answered
    by :mod:`auie.api.fastpath` before Starlette's and FastAPI's middleware layers (a fifth
    of a decision's CPU, half of a single event's); everything else, and every decide
    request the fast path does not take, goes through the full stack."""

    def __init__(self, *args: Any, fast_paths: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_decide = DecideFastPath(self._full) if fast_paths else None
        self.fast_collect = CollectFastPath() if fast_paths else None

    async def _full(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_collect is not None and CollectFastPath.handles(scope):
            scope["app"] = self
            await self.fast_collect(scope, receive, send)
        elif self.fast_decide is not None and DecideFastPath.handles(scope):
            scope["app"] = self
            await self.fast_decide(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def _maintenance(runtime: Runtime) -> None:
    """Log retention and dedupe-window purge, every few minutes."""
    settings = runtime.settings
    while True:
        await asyncio.sleep(_MAINTENANCE_SECONDS)
        now_ms = int(time.time() * 1000)
        try:
            log = runtime.eventlog
            cutoff = now_ms - int(settings.eventlog.retention_hours * 3600 * 1000)
            for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC):
                await asyncio.to_thread(log.apply_retention, topic, cutoff)
            window_ms = settings.collect.dedupe_window_seconds * 1000
            await asyncio.to_thread(log.purge_dedupe, now_ms - window_ms)
        except Exception:
            logger.exception("event log maintenance failed; will retry")


async def _close_decisions(service: DecisionService) -> None:
    """Learn from decisions whose reward wait is over; snapshot policies now and then;
    reload decision points whose active version another process changed (auie train)."""
    last_snapshot = last_refresh = time.monotonic()
    while True:
        await asyncio.sleep(_DECISION_TICK_SECONDS)
        try:
            # In slices, yielding between them: a second of decisions closing at once would
            # otherwise hold the event loop for tens of milliseconds.
            while service.tick(limit=_TICK_SLICE) == _TICK_SLICE:
                await asyncio.sleep(0)
            for workspace, name in service.take_due_snapshots():
                await asyncio.to_thread(service.snapshot, workspace, name)
            if time.monotonic() - last_snapshot > _SNAPSHOT_SECONDS:
                await asyncio.to_thread(service.snapshot_all)
                last_snapshot = time.monotonic()
            if time.monotonic() - last_refresh > _REFRESH_SECONDS:
                await asyncio.to_thread(service.refresh)
                last_refresh = time.monotonic()
        except Exception:
            logger.exception("closing decisions failed; will retry")


async def _start_writer(runtime: Runtime) -> GroupCommitWriter | ProcessLogWriter:
    """The log's group-commit writer (``eventlog.writer``), started."""
    config = runtime.settings.eventlog
    limits = {
        "max_records": config.group_commit_max_records,
        "max_backlog": config.max_backlog_records,
    }
    if config.writer == "process":
        runtime.eventlog  # noqa: B018  (topics exist before the child opens the log)
        child = ProcessLogWriter(runtime.settings, **limits)
        child.start()  # its own log, dedupe index and WAL checkpointer
        await child.connect()
        return child
    writer = GroupCommitWriter(runtime.eventlog, **limits)
    writer.start()
    runtime.eventlog.start_checkpointer(0.5)  # WAL checkpoints off the commit path
    return writer


def create_app(runtime: Runtime, *, fast_paths: bool = True) -> AuieAPI:
    """The AUIE API over an opened :class:`Runtime` (``fast_paths=False``: without
    :class:`AuieAPI`'s fast path, for the tests that compare both)."""
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = app.state.log_writer = await _start_writer(runtime)
        app.state.collector = Collector(
            settings.collect,
            WriteKeyCache(runtime.tenancy, settings.collect.write_key_cache_seconds),
            writer,
            settings.server.trusted_proxies,
        )
        runtime.tokens  # noqa: B018  (load signing keys before the first request)
        person = PersonContext(
            runtime.profiles,
            pii_rules=runtime.pii_rules,
            segments_of=functools.partial(segments_of, runtime),
            features_of=functools.partial(features_of, runtime),
        )
        require = settings.privacy.require_explicit_consent
        app.state.decisions = DecisionService(
            runtime.decision_store,
            person,
            writer.append,
            consent=lambda ws, user, anon: person.allows(ws, user, anon, require_explicit=require),
            erased=runtime.privacy.is_erased,
        )
        tasks = [
            asyncio.create_task(_maintenance(runtime)),
            asyncio.create_task(_close_decisions(app.state.decisions)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            app.state.decisions.snapshot_all()
            writer.stop()

    app = AuieAPI(
        fast_paths=fast_paths,
        title="AUIE",
        version=auie.__version__,
        description=(
            "Adaptive User Interaction Engine: Segment-compatible collection, identity, "
            "lakehouse analytics, decisions and privacy. Errors are "
            '`{"code", "message"}`; JSON fields are camelCase.'
        ),
        lifespan=lifespan,
        # Prometheus at /metrics is AUIE's telemetry; FastAPI's OpenTelemetry hooks would cost
        # every request time for providers nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    errors.install(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=runtime.settings.server.max_body_bytes,
        exempt=frozenset(route.path for route in collect.router.routes),  # type: ignore[attr-defined]
    )
    for module in (
        health,
        collect,
        oauth,
        admin,
        profiles,
        pipeline,
        decide,
        analytics,
        privacy,
        consent,
    ):
        app.include_router(module.router)
    install_dashboard(app)  # the dashboard at / (not part of the API or its OpenAPI document)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in collect.REQUEST_SCHEMAS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    components.setdefault("securitySchemes", {}).update(
        {
            "writeKey": {
                "type": "http",
                "scheme": "basic",
                "description": "The source's write key as user name, empty password",
            },
            "clientBasic": {
                "type": "http",
                "scheme": "basic",
                "description": "OAuth2 client id and secret",
            },
        }
    )
    errors.document(schema)
    app.openapi_schema = schema
    return schema
