"""AUIE's one error tree.

Every error AUIE raises on purpose is an :class:`AuieError`. Each class knows its
machine-readable ``code`` and the HTTP status the API answers with; the API turns
any of them into the body ``{"code": ..., "message": ...}``.

::

    AuieError                         500 internal_error
    ├── TerminalError                 retrying the same thing fails the same way
    │   ├── ConfigError               500 config_error
    │   ├── InvalidRequest            400 invalid_request  (many codes: invalid_json, ...)
    │   │   └── InvalidEvent          400 invalid_event    (one event of a batch)
    │   ├── AuthenticationFailed      401 unauthorized
    │   ├── PermissionDenied          403 forbidden
    │   ├── NotFound                  404 not_found
    │   ├── Conflict                  409 conflict
    │   ├── PayloadTooLarge           413 request_too_large
    │   └── UnsupportedMediaType      415 unsupported_media_type
    └── TransientError                retrying later may succeed
        ├── RateLimited               429 rate_limited  (carries retry_after seconds)
        ├── Overloaded                503 overloaded    (carries retry_after seconds)
        └── StorageUnavailable        503 storage_unavailable

``code`` defaults to the class's, and can be narrowed per instance
(``InvalidRequest("...", code="invalid_json")``) so clients can branch on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from auie.jsontext import lone_surrogate


class AuieError(Exception):
    """Root of every error AUIE raises on purpose."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        """The JSON body the API answers with (a lone surrogate quoted from the input is
        shown escaped: it cannot be encoded, and the error must still be sent)."""
        return {"code": self.code, "message": printable(self.message)}


class TerminalError(AuieError):
    """Retrying the same operation will fail the same way."""


class TransientError(AuieError):
    """The operation may succeed if retried later."""

    http_status = 503


class ConfigError(TerminalError):
    """The configuration is invalid (unknown key, wrong type, missing file)."""

    code = "config_error"


class InvalidRequest(TerminalError):
    """The request is malformed or breaks a documented rule."""

    code = "invalid_request"
    http_status = 400


class InvalidEvent(InvalidRequest):
    """One event breaks the Segment spec or a limit; its neighbours may be fine."""

    code = "invalid_event"


class AuthenticationFailed(TerminalError):
    """Missing, unknown, revoked or invalid credentials."""

    code = "unauthorized"
    http_status = 401


class PermissionDenied(TerminalError):
    """Valid credentials that do not allow this operation. ``client`` and ``workspace``
    name whose token it was, when a token was (the API audits the refusal)."""

    code = "forbidden"
    http_status = 403

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        client: str | None = None,
        workspace: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.client = client
        self.workspace = workspace


class NotFound(TerminalError):
    """The addressed thing does not exist (or is not visible to the caller)."""

    code = "not_found"
    http_status = 404


class Conflict(TerminalError):
    """The request conflicts with the current state."""

    code = "conflict"
    http_status = 409


class PayloadTooLarge(TerminalError):
    """The request body is larger than the configured limit."""

    code = "request_too_large"
    http_status = 413


class UnsupportedMediaType(TerminalError):
    """Content-Type or Content-Encoding the endpoint does not accept."""

    code = "unsupported_media_type"
    http_status = 415


class RateLimited(TransientError):
    """The caller is over its rate limit; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class StorageUnavailable(TransientError):
    """A storage backend could not be reached or refused the write."""

    code = "storage_unavailable"
    http_status = 503


class Overloaded(TransientError):
    """The server has more queued than it can commit soon; retry after ``retry_after``."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


def describe_problems(errors: Iterable[Mapping[str, Any]], *, whole: str = "body") -> str:
    """pydantic's validation errors as one line a person reads: ``where: what`` for each,
    joined by ``; `` (``whole`` names the input itself, for errors of no one field)."""
    problems = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or whole
        what = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            what = "unknown field"
        problems.append(f"{where}: {what}")
    return "; ".join(problems) or f"invalid {whole}"


def printable(text: str) -> str:
    """``text`` with any lone surrogate written as ``\\udxxx`` (UTF-8 cannot hold one)."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
