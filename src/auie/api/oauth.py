"""OAuth2 client credentials (``POST /oauth/token``) and the public keys (JWKS)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from auie.api.collect import read_body
from auie.api.schemas import Jwks, OAuthError, TokenResponse
from auie.errors import AuthenticationFailed, InvalidRequest, UnsupportedMediaType
from auie.runtime import Runtime

router = APIRouter(tags=["auth"])
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 16 * 1024


def _basic_client(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed(
            "client authentication must use HTTP Basic", code="invalid_client"
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("malformed Basic credentials", code="invalid_client") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise AuthenticationFailed("malformed Basic credentials", code="invalid_client")
    # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def _form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("body is not a valid form", code="invalid_request") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise InvalidRequest(f"parameter(s) repeated: {', '.join(repeated)}")
    return {name: values[0] for name, values in fields.items()}


@router.post(
    "/oauth/token",
    summary="Issue an access token (OAuth2 client credentials)",
    operation_id="oauth_token",
    response_model=TokenResponse,
    responses={400: {"model": OAuthError}, 401: {"model": OAuthError}, 415: {"model": OAuthError}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string", "description": "Space-separated"},
                        },
                    }
                }
            },
        },
        "security": [{"clientBasic": []}, {}],
    },
)
async def token(request: Request) -> JSONResponse:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _FORM:
        raise UnsupportedMediaType(f"send the token request as {_FORM}")
    form = _form(await read_body(request, _MAX_FORM_BYTES))
    if form.get("grant_type") != "client_credentials":
        raise InvalidRequest("grant_type must be client_credentials", code="unsupported_grant_type")
    credentials = _basic_client(request.headers.get("authorization"))
    if credentials is not None and ("client_id" in form or "client_secret" in form):
        # RFC 6749 2.3: one authentication method per request; which would we believe?
        raise InvalidRequest(
            "authenticate the client with HTTP Basic or with client_id/client_secret form"
            " fields, not both",
            code="invalid_request",
        )
    if credentials is None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or secret is None:
            raise AuthenticationFailed("client credentials are required", code="invalid_client")
        credentials = (client_id, secret)
    runtime: Runtime = request.app.state.runtime

    def issue() -> dict[str, Any]:
        client = runtime.clients.authenticate(*credentials)
        issued = runtime.tokens.issue(client, form.get("scope"))
        runtime.audit.record(
            "token.issued",
            actor=client.id,
            workspace=client.workspace_id,
            target=client.id,
            details={"scope": issued.scope},
        )
        return issued.to_dict()

    body = await run_in_threadpool(issue)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify AUIE's access tokens",
    operation_id="jwks",
    response_model=Jwks,
)
async def jwks(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    return await run_in_threadpool(runtime.tokens.jwks)
