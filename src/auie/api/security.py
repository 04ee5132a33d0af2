"""Bearer-token dependencies: ``Depends(scope("admin"))`` gives the verified principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auie.auth.tokens import Principal, TokenService
from auie.errors import AuthenticationFailed

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /oauth/token")


async def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """The verified principal of the request's bearer token (async: a verified token is
    cached, so checking it again costs a dictionary lookup, not a thread hand-off)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer access token is required", code="missing_token")
    tokens: TokenService = request.app.state.runtime.tokens
    return tokens.verify(credentials.credentials)


def scope(name: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that requires a token carrying ``name``."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        who.require(name)
        return who

    check.__name__ = f"require_{name.replace(':', '_')}"
    return check
