"""The Segment HTTP Tracking API: ``/v1/track`` ... ``/v1/batch``, ``/v1/import`` and the
short forms ``/v1/t`` ... ``/v1/b`` that the browser SDK uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from auie.api.schemas import (
    AliasMessage,
    BatchRequest,
    Error,
    GroupMessage,
    IdentifyMessage,
    IngestResponse,
    PageMessage,
    ScreenMessage,
    TrackMessage,
)
from auie.collect.body import check_content_type, decompress
from auie.collect.service import Collector, RequestMeta
from auie.errors import PayloadTooLarge

router = APIRouter(tags=["collect"])
_encoder = msgspec.json.Encoder()

#: (long path, short path, message type or None for batches, request schema)
_ENDPOINTS: tuple[tuple[str, str | None, str | None, type[BaseModel]], ...] = (
    ("track", "t", "track", TrackMessage),
    ("identify", "i", "identify", IdentifyMessage),
    ("page", "p", "page", PageMessage),
    ("screen", "s", "screen", ScreenMessage),
    ("group", "g", "group", GroupMessage),
    ("alias", "a", "alias", AliasMessage),
    ("batch", "b", None, BatchRequest),
    ("import", None, None, BatchRequest),
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": description}
    for status, description in (
        (400, "Malformed request (bad JSON, invalid single event, too many events)"),
        (401, "Missing, unknown or revoked write key"),
        (413, "Body larger than the limit (after decompression)"),
        (415, "Content-Type or Content-Encoding not accepted"),
        (429, "Over the source's rate limit; see Retry-After"),
        (503, "Event log unavailable; retry"),
    )
}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (without reading on) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def ingest(request: Request, message_type: str | None) -> Response:
    """One collect request, start to reply: the routes' handler and the fast path's
    (:class:`auie.api.fastpath.CollectFastPath`)."""
    collector: Collector = request.app.state.collector
    limit = collector.config.max_request_bytes
    check_content_type(request.headers.get("content-type"))
    raw = await read_body(request, limit)
    body = decompress(raw, request.headers.get("content-encoding"), limit)
    meta = RequestMeta(
        authorization=request.headers.get("authorization"),
        peer_ip=request.client.host if request.client else None,
        forwarded_for=request.headers.get("x-forwarded-for"),
    )
    result = await collector.ingest(body, meta, message_type)
    return Response(_encoder.encode(result.to_dict()), media_type="application/json")


def _endpoint(message_type: str | None) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        return await ingest(request, message_type)

    return route


def _openapi(schema: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref}, "text/plain": {"schema": ref}},
        },
        "security": [{"writeKey": []}, {}],
    }


for _long, _short, _type, _schema in _ENDPOINTS:
    _what = f"a {_type} call" if _type else "a batch of calls"
    for _path, _hidden in ((_long, False), (_short, True)):
        if _path is None:
            continue
        router.add_api_route(
            f"/v1/{_path}",
            _endpoint(_type),
            methods=["POST"],
            summary=f"Record {_what}" + (f" (short form of /v1/{_long})" if _hidden else ""),
            operation_id=f"collect_{_path}",
            response_model=IngestResponse,
            responses=_ERRORS,
            openapi_extra=_openapi(_schema),
        )

#: Message type (None: a batch) of every collect path, long and short forms.
COLLECT_ROUTES: dict[str, str | None] = {
    f"/v1/{path}": kind for long, short, kind, _ in _ENDPOINTS for path in (long, short) if path
}

#: Models referenced only from ``openapi_extra``; the app adds them to components.
REQUEST_SCHEMAS: tuple[type[BaseModel], ...] = tuple({s for *_, s in _ENDPOINTS})
