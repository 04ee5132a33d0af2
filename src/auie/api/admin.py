"""Workspace administration over HTTP (scope ``admin``), always within the token's workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import (
    AuditOut,
    ClientIn,
    ClientOut,
    ClientScopesIn,
    Error,
    NewClientOut,
    NewWriteKeyOut,
    SourceIn,
    SourceOut,
    WorkspaceOut,
    WriteKeyOut,
)
from auie.api.security import scope
from auie.auth.clients import Client
from auie.auth.scopes import ADMIN, format_scopes, parse_scopes
from auie.auth.tokens import Principal
from auie.errors import Conflict
from auie.runtime import Runtime

router = APIRouter(
    prefix="/v1/admin",
    route_class=StrictJSONRoute,
    tags=["admin"],
    responses={
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the admin scope"},
    },
)
_admin = Depends(scope(ADMIN))


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _audit(request: Request, who: Principal, action: str, target: str, **details: Any) -> None:
    _runtime(request).audit.record(
        action, actor=who.client_id, workspace=who.workspace_id, target=target, details=details
    )


def _client_out(client: Client) -> dict[str, Any]:
    return {
        "id": client.id,
        "workspace_id": client.workspace_id,
        "name": client.name,
        "scopes": format_scopes(client.scopes).split(),
        "created_at": client.created_at,
        "revoked_at": client.revoked_at,
    }


@router.get("/workspace", response_model=WorkspaceOut, operation_id="admin_workspace")
def workspace(request: Request, who: Principal = _admin) -> Any:
    """The token's workspace."""
    return _runtime(request).tenancy.workspace(who.workspace_id)


@router.get("/sources", response_model=list[SourceOut], operation_id="admin_list_sources")
def list_sources(request: Request, who: Principal = _admin) -> Any:
    return _runtime(request).tenancy.list_sources(who.workspace_id)


@router.post(
    "/sources",
    response_model=SourceOut,
    status_code=201,
    operation_id="admin_create_source",
    responses={400: {"model": Error}},
)
def create_source(body: SourceIn, request: Request, who: Principal = _admin) -> Any:
    source = _runtime(request).tenancy.create_source(who.workspace_id, body.name, body.kind)
    _audit(request, who, "source.created", source.id)
    return source


@router.get(
    "/keys",
    response_model=list[WriteKeyOut],
    operation_id="admin_list_keys",
    responses={404: {"model": Error, "description": "No such source in this workspace"}},
)
def list_keys(
    request: Request,
    source_id: str | None = Query(None, alias="sourceId", description="Only this source's"),
    source_id_snake: str | None = Query(None, alias="source_id", include_in_schema=False),
    who: Principal = _admin,
) -> Any:
    """Write keys of the workspace (never the keys themselves), optionally of one source
    (``?sourceId=``, camelCase like the JSON; ``?source_id=`` as before). A source that is
    not the workspace's is 404, as everywhere in this API, not an empty list."""
    tenancy = _runtime(request).tenancy
    wanted = source_id if source_id is not None else source_id_snake
    if wanted is not None:
        tenancy.source(wanted, who.workspace_id)  # NotFound for another workspace's too
    return tenancy.list_write_keys(who.workspace_id, wanted)


@router.post(
    "/sources/{source_id}/keys",
    response_model=NewWriteKeyOut,
    status_code=201,
    operation_id="admin_create_key",
    responses={404: {"model": Error}},
)
def create_key(source_id: str, request: Request, who: Principal = _admin) -> Any:
    """A new write key for a source; the key is shown only in this reply."""
    new = _runtime(request).tenancy.create_write_key(source_id, who.workspace_id)
    info = new.info
    _audit(request, who, "write_key.created", info.id, source=source_id)
    return {
        "id": info.id,
        "source_id": info.source_id,
        "workspace_id": info.workspace_id,
        "prefix": info.prefix,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
        "key": new.key,
    }


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    operation_id="admin_revoke_key",
    responses={404: {"model": Error}},
)
def revoke_key(key_id: str, request: Request, who: Principal = _admin) -> Response:
    _runtime(request).tenancy.revoke_write_key(key_id, who.workspace_id)
    _audit(request, who, "write_key.revoked", key_id)
    return Response(status_code=204)


@router.get("/clients", response_model=list[ClientOut], operation_id="admin_list_clients")
def list_clients(request: Request, who: Principal = _admin) -> Any:
    return [_client_out(c) for c in _runtime(request).clients.list(who.workspace_id)]


@router.post(
    "/clients",
    response_model=NewClientOut,
    status_code=201,
    operation_id="admin_create_client",
    responses={400: {"model": Error}},
)
def create_client(body: ClientIn, request: Request, who: Principal = _admin) -> Any:
    """A new OAuth2 client of the workspace; the secret is shown only in this reply."""
    new = _runtime(request).clients.create(who.workspace_id, body.name, body.scopes)
    _audit(request, who, "client.created", new.client.id, scopes=sorted(new.client.scopes))
    return {**_client_out(new.client), "secret": new.secret}


@router.patch(
    "/clients/{client_id}",
    response_model=ClientOut,
    operation_id="admin_set_client_scopes",
    responses={400: {"model": Error}, 404: {"model": Error}, 409: {"model": Error}},
)
def set_client_scopes(
    client_id: str, body: ClientScopesIn, request: Request, who: Principal = _admin
) -> Any:
    """Replace an active client's scopes. Tokens it already holds keep their scopes until
    they expire (``auth.token_ttl_seconds``). A client may not take ``admin`` from itself
    (409): the workspace could be left with no client to manage it over the API."""
    if client_id == who.client_id and ADMIN not in parse_scopes(body.scopes):
        raise Conflict(
            "a client may not remove its own admin scope; change it with another admin"
            " client or `auie clients scopes`",
            code="own_admin_scope",
        )
    client = _runtime(request).clients.set_scopes(client_id, body.scopes, who.workspace_id)
    _audit(request, who, "client.scopes_changed", client_id, scopes=sorted(client.scopes))
    return _client_out(client)


@router.delete(
    "/clients/{client_id}",
    status_code=204,
    operation_id="admin_revoke_client",
    responses={404: {"model": Error}, 409: {"model": Error}},
)
def revoke_client(client_id: str, request: Request, who: Principal = _admin) -> Response:
    """Revoke a client (not the caller's own: 409, as for its own admin scope)."""
    if client_id == who.client_id:
        raise Conflict(
            "a client may not revoke itself; revoke it with another admin client or"
            " `auie clients revoke`",
            code="own_client",
        )
    _runtime(request).clients.revoke(client_id, who.workspace_id)
    _audit(request, who, "client.revoked", client_id)
    return Response(status_code=204)


@router.get("/audit", response_model=list[AuditOut], operation_id="admin_audit")
def audit_entries(
    request: Request,
    action: str | None = None,
    after: int = Query(
        0, ge=0, le=2**63 - 1, description="Only entries after this sequence number"
    ),
    limit: int = Query(100, ge=1, le=10_000),
    who: Principal = _admin,
) -> Any:
    """The workspace's audit log, oldest first (page with ``after``)."""
    entries = _runtime(request).audit.entries(
        who.workspace_id, action=action, limit=limit, after_seq=after
    )
    return [e.to_dict() for e in entries]
