"""Every HTTP error body is ``{"code": ..., "message": ...}``; this module makes it so."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from auie.api.collect import COLLECT_ROUTES
from auie.api.schemas import Error
from auie.errors import (
    AuieError,
    AuthenticationFailed,
    Overloaded,
    PermissionDenied,
    RateLimited,
    describe_problems,
)
from auie.metrics import REQUESTS_REJECTED

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


async def auie_error(request: Request, exc: Exception) -> JSONResponse:
    """The response to an :class:`AuieError` (also used by the collect fast path)."""
    assert isinstance(exc, AuieError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited | Overloaded):
        headers["Retry-After"] = str(int(exc.retry_after))
    path = request.url.path
    if isinstance(exc, AuthenticationFailed) and (
        path.startswith("/v1/") or path == _OAUTH_ENDPOINT
    ):
        headers["WWW-Authenticate"] = _challenge(path)
    if exc.http_status >= 500:
        logger.warning("%s %s failed: %s", request.method, path, exc.message)
    if path in _COLLECT_PATHS and exc.http_status != 500:
        REQUESTS_REJECTED.labels(exc.code).inc()
    if isinstance(exc, AuthenticationFailed):
        await _audit_failure(request, exc)
    elif isinstance(exc, PermissionDenied) and exc.client is not None:
        await _audit_denial(request, exc)
    body = exc.to_dict()
    if path == _OAUTH_ENDPOINT:
        # RFC 6749 names the fields error / error_description; we send both spellings.
        body = {**body, "error": exc.code, "error_description": exc.message}
    return JSONResponse(body, status_code=exc.http_status, headers=headers or None)


_AUDIT_FAILURE_EVERY_SECONDS = 60.0


async def _audit_failure(request: Request, exc: AuthenticationFailed) -> None:
    """Failed authentication goes to the audit log, at most once a minute per peer and kind
    (a scanner hammering the collector must not flood it)."""
    peer = request.client.host if request.client else "unknown"
    kind = "collect" if request.url.path in _COLLECT_PATHS else _route_template(request)
    await _audit_refusal(
        request,
        (peer, kind, exc.code),
        "auth.failed",
        actor="anonymous",
        workspace=None,
        target=kind,
        details={"code": exc.code, "peer": peer},
    )


async def _audit_denial(request: Request, exc: PermissionDenied) -> None:
    """A valid token refused for its scopes goes to the audit log of its workspace as
    ``auth.denied`` (at most once a minute per client, route and code)."""
    target = _route_template(request)
    await _audit_refusal(
        request,
        (f"client:{exc.client}", target, exc.code),
        "auth.denied",
        actor=exc.client or "anonymous",
        workspace=exc.workspace,
        target=target,
        details={"code": exc.code, "message": exc.message},
    )


async def _audit_refusal(
    request: Request,
    key: tuple[str, str, str],
    action: str,
    *,
    actor: str,
    workspace: str | None,
    target: str,
    details: dict[str, Any],
) -> None:
    """Record a refused request (outcome ``denied``) unless one with the same ``key`` was
    recorded in the last minute; never fails the request it audits."""
    now = time.monotonic()
    recent: dict[tuple[str, str, str], float] | None = getattr(
        request.app.state, "recent_auth_failures", None
    )
    if recent is None:
        recent = request.app.state.recent_auth_failures = {}
    if now - recent.get(key, -_AUDIT_FAILURE_EVERY_SECONDS) < _AUDIT_FAILURE_EVERY_SECONDS:
        return
    if len(recent) > 10_000:
        recent.clear()
    recent[key] = now
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return
    try:
        await run_in_threadpool(
            runtime.audit.record,
            action,
            actor=actor,
            workspace=workspace,
            target=target,
            outcome="denied",
            details=details,
        )
    except Exception:  # auditing must never turn a 401 or 403 into a 500
        logger.exception("could not write the audit log")


def _route_template(request: Request) -> str:
    """The matched route as declared (``/v1/profiles/{id_type}/{id_value}``), never the
    concrete path: its parameters may be personal data (an e-mail), which the audit log
    must not hold."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template:
        return template[:80]
    return _OAUTH_ENDPOINT if request.url.path == _OAUTH_ENDPOINT else "(no route)"


def _challenge(path: str) -> str:
    # Write keys and OAuth2 client credentials use Basic; everything else takes a bearer token.
    basic = path in _COLLECT_PATHS or path == _OAUTH_ENDPOINT
    return 'Basic realm="auie"' if basic else 'Bearer realm="auie"'


_OAUTH_ENDPOINT = "/oauth/token"
#: Exact paths (not prefixes: "/v1/a" is a prefix of "/v1/admin/...").
_COLLECT_PATHS = frozenset(COLLECT_ROUTES)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    content_type = request.headers.get("content-type", "")
    if (
        errors
        and isinstance(errors[0].get("input"), bytes)  # a body FastAPI did not read as JSON
        and "json" not in content_type.lower()
    ):
        return error_response(
            415,
            "unsupported_media_type",
            f"the body must be JSON (Content-Type: application/json), not {content_type!r}",
        )
    problems = []
    for error in errors:
        if error.get("type") == "json_invalid":  # loc is ("body", character position)
            position = next((p for p in error.get("loc", ()) if isinstance(p, int)), None)
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            at = f" at character {position}" if position is not None else ""
            problems.append(f"body is not valid JSON: {reason}{at}")
            continue
        problems.append(describe_problems([error]))
    return error_response(400, "invalid_request", "; ".join(problems) or "invalid request")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """The response to any other exception: logged, and a 500 that says nothing more."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has details")


def document(schema: dict[str, Any]) -> None:
    """Describe validation errors in an OpenAPI document as they are sent: ``400`` with an
    ``Error`` body (FastAPI documents them as ``422`` ``HTTPValidationError``, which
    :func:`_validation_error` never sends); and on operations with a body, ``413`` (the
    body limit) and ``415`` (a body not sent as JSON)."""
    error = {"$ref": "#/components/schemas/Error"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault(
                    "400",
                    {
                        "description": "Invalid request (unreadable body, failed validation)",
                        "content": {"application/json": {"schema": error}},
                    },
                )
            if "requestBody" in operation and "413" not in responses:  # not the collector's
                for status, description in (
                    ("413", "Body larger than server.max_body_bytes"),
                    ("415", "Body not sent as application/json"),
                ):
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": error}},
                        },
                    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", Error.model_json_schema())
    if "HTTPValidationError" not in str(schema.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AuieError, auie_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected_error)
