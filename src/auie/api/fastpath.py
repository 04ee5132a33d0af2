"""``POST /v1/decide`` and the collect routes without FastAPI's routing and layers.

A decision is the one request AUIE serves at a fixed high rate with a latency budget
(p99 under 10 ms at 1,000/s), and most of its CPU went to the framework: matching the
route among ~80, resolving the bearer and scope dependencies, validating and serialising
through several layers. This ASGI middleware answers the well-formed case directly: a
bearer token with the ``decide`` scope (the same cached verification), a JSON body the
route's own model (:class:`auie.api.decide.DecideIn`) accepts, a valid decision point
name; then the same :meth:`DecisionService.decide` call and the same response shape.

Anything else — no or bad token, wrong scope, a body the model refuses, an oversized or
streamed body — is handed to the full application with the body replayed, so every error
is produced, audited and documented by exactly one code path. Errors the decision service
raises are answered like the application's error handler does (``{"code", "message"}``).
The OpenAPI document keeps describing the route, which stays registered.
"""

from __future__ import annotations

import time

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auie.api.collect import COLLECT_ROUTES, ingest
from auie.api.decide import DECIDE_BODY, decide_request
from auie.api.errors import auie_error, error_response, unexpected_error
from auie.auth.scopes import DECIDE
from auie.decide.service import DecideRequest, DecisionService
from auie.errors import AuieError, Overloaded
from auie.metrics import DECIDE_FAST_PATH, HTTP_REQUESTS, HTTP_SECONDS

PATH = "/v1/decide"
#: Bodies above this go the full way (where the limits and their errors live).
MAX_FAST_BODY = 256 * 1024
_ENCODER = msgspec.json.Encoder()
_SERVED = DECIDE_FAST_PATH.labels("served")
_DELEGATED = DECIDE_FAST_PATH.labels("delegated")
_SECONDS = HTTP_SECONDS.labels(PATH)


class DecideFastPath:
    """See the module docstring. ``app`` is the full application, for everything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def handles(scope: Scope) -> bool:
        return bool(scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.handles(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if (
            length is None
            or not length.isdigit()
            or int(length) > MAX_FAST_BODY
            or not headers.get(b"content-type", b"").startswith(b"application/json")
            or b"content-encoding" in headers
        ):
            _DELEGATED.inc()
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body, more = await _read(receive)
        if more:  # more than announced, or a disconnect: the full path decides
            _DELEGATED.inc()
            await self.app(scope, _replay(body, receive, more=True), send)
            return
        parsed = self._parse(scope, headers, body)
        if parsed is None:
            _DELEGATED.inc()
            await self.app(scope, _replay(body, receive, more=False), send)
            return
        _SERVED.inc()
        status = 500
        try:
            status = await self._answer(scope, receive, send, *parsed)
        finally:
            HTTP_REQUESTS.labels("POST", PATH, str(status)).inc()
            _SECONDS.observe(time.perf_counter() - started)

    @staticmethod
    async def _answer(
        scope: Scope, receive: Receive, send: Send, workspace: str, request: DecideRequest
    ) -> int:
        """Decide and reply; the status sent."""
        service: DecisionService = scope["app"].state.decisions
        try:
            answer = await service.decide(workspace, request)
        except AuieError as exc:
            extra = None
            if isinstance(exc, Overloaded):
                extra = {"Retry-After": str(int(exc.retry_after))}
            reply = error_response(exc.http_status, exc.code, exc.message, extra)
        except Exception as exc:
            reply = await unexpected_error(Request(scope, receive), exc)
        else:
            payload = _ENCODER.encode({k: v for k, v in answer.items() if v is not None})
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return 200
        await reply(scope, receive, send)
        return reply.status_code

    @staticmethod
    def _parse(
        scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[str, DecideRequest] | None:
        """The workspace and request when every check the route makes passes, else None."""
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return None
        try:
            who = scope["app"].state.runtime.tokens.verify(token.decode("latin-1").strip())
            if DECIDE not in who.scopes:
                return None
            return who.workspace_id, decide_request(DECIDE_BODY.decode(body))
        except (AuieError, msgspec.DecodeError, UnicodeDecodeError):
            return None


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The body up to :data:`MAX_FAST_BODY`; ``True`` when more was sent than that."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # disconnected
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FAST_BODY:
            return b"".join(chunks), True
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, *, more: bool) -> Receive:
    """A receive that first gives back what was read, then the rest of the stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


class CollectFastPath:
    """The Segment collect routes (``/v1/track`` ... ``/v1/b``) as plain ASGI.

    The routes' handler (:func:`auie.api.collect.ingest`) never needed FastAPI: it reads
    the raw body and hands it to the collector. Through the framework's middleware layers
    and routing among ~80 routes, that plumbing cost about half of a single-event
    request's CPU. This class calls the same handler directly and renders errors with the
    application's own handlers (:func:`auie.api.errors.auie_error`: ``WWW-Authenticate``,
    ``Retry-After``, the audit of failed write keys, the rejection counter), so both ways
    answer alike; ``tests/api/test_collect_fastpath.py`` holds them to it. The FastAPI
    routes stay registered: they describe the API in the OpenAPI document and serve apps
    built with ``fast_paths=False``.
    """

    @staticmethod
    def handles(scope: Scope) -> bool:
        return bool(
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in COLLECT_ROUTES
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path = scope["path"]
        try:
            response = await ingest(Request(scope, receive), COLLECT_ROUTES[path])
        except ClientDisconnect:
            return  # nobody to answer; nothing was stored
        except AuieError as exc:
            response = await auie_error(Request(scope, receive), exc)
        except Exception as exc:
            response = await unexpected_error(Request(scope, receive), exc)
        try:
            await response(scope, receive, send)
        finally:
            HTTP_REQUESTS.labels("POST", path, str(response.status_code)).inc()
            HTTP_SECONDS.labels(path).observe(time.perf_counter() - started)
