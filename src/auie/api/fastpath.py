"""``POST /v1/decide`` without FastAPI's routing and dependency injection.

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

from typing import Any

import msgspec
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auie.api.decide import DecideIn, decide_request
from auie.api.errors import error_response
from auie.auth.scopes import DECIDE
from auie.decide.service import DecideRequest, DecisionService
from auie.errors import AuieError, Overloaded
from auie.metrics import DECIDE_FAST_PATH

PATH = "/v1/decide"
#: Bodies above this go the full way (where the limits and their errors live).
MAX_FAST_BODY = 256 * 1024
_ENCODER = msgspec.json.Encoder()


class DecideFastPath:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
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
            DECIDE_FAST_PATH.labels("delegated").inc()
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        if more:  # more than announced, or a disconnect: the full path decides
            DECIDE_FAST_PATH.labels("delegated").inc()
            await self.app(scope, _replay(body, receive, more=True), send)
            return
        parsed = self._parse(scope, headers, body)
        if parsed is None:
            DECIDE_FAST_PATH.labels("delegated").inc()
            await self.app(scope, _replay(body, receive, more=False), send)
            return
        DECIDE_FAST_PATH.labels("served").inc()
        workspace, request = parsed
        scope["route"] = self._metrics_route(scope)
        service: DecisionService = scope["app"].state.decisions
        try:
            answer = await service.decide(workspace, request)
        except AuieError as exc:
            extra = None
            if isinstance(exc, Overloaded):
                extra = {"Retry-After": str(int(exc.retry_after))}
            reply = error_response(exc.http_status, exc.code, exc.message, extra)
            await reply(scope, receive, send)
            return
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
            return who.workspace_id, decide_request(DecideIn.model_validate_json(body))
        except (AuieError, ValidationError, UnicodeDecodeError):
            return None

    def _metrics_route(self, scope: Scope) -> Any:
        """The app's route of ``POST /v1/decide`` (the metrics label its requests by it)."""
        if self._route is None:
            self._route = next(
                (r for r in scope["app"].routes if getattr(r, "path", None) == PATH), None
            )
        return self._route


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
