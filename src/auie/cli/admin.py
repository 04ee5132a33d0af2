"""``auie workspaces|sources|keys|clients|signing-keys``: tenancy and credentials.

Every change is recorded in the audit log with the action name the HTTP admin API uses
(``client.scopes_changed``...), actor ``cli`` and the operating-system user in the details.
"""

from __future__ import annotations

import json
from datetime import timedelta

import click

from auie.auth.scopes import ALL_SCOPES, parse_scopes
from auie.cli.common import audit_cli, emit, json_option, open_runtime, settings_options
from auie.config import Settings
from auie.errors import NotFound
from auie.ids import utcnow


@click.group()
def workspaces() -> None:
    """Workspaces: every stored record belongs to one."""


@workspaces.command("create")
@click.argument("name")
@json_option
@settings_options()
def workspaces_create(name: str, as_json: bool, settings: Settings) -> None:
    """Create a workspace."""
    runtime = open_runtime(settings)
    created = runtime.tenancy.create_workspace(name)
    audit_cli(runtime, "workspace.created", created.id, created.id)
    emit(created, as_json)


@workspaces.command("list")
@json_option
@settings_options()
def workspaces_list(as_json: bool, settings: Settings) -> None:
    """List workspaces."""
    emit(open_runtime(settings).tenancy.list_workspaces(), as_json, ("id", "name", "createdAt"))


@click.group()
def sources() -> None:
    """Sources of a workspace (web, ios, backend...)."""


@sources.command("create")
@click.argument("name")
@click.option("--workspace", "-w", required=True, help="Workspace id or name.")
@click.option("--kind", default="web", show_default=True, help="web, ios, android, server...")
@json_option
@settings_options()
def sources_create(name: str, workspace: str, kind: str, as_json: bool, settings: Settings) -> None:
    """Create a source in a workspace."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace)
    source = runtime.tenancy.create_source(ws.id, name, kind)
    audit_cli(runtime, "source.created", ws.id, source.id)
    emit(source, as_json)


@sources.command("list")
@click.option("--workspace", "-w", required=True, help="Workspace id or name.")
@json_option
@settings_options()
def sources_list(workspace: str, as_json: bool, settings: Settings) -> None:
    """List the sources of a workspace."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace)
    emit(runtime.tenancy.list_sources(ws.id), as_json, ("id", "name", "kind", "createdAt"))


@click.group()
def keys() -> None:
    """Write keys of sources (ingest only; stored hashed)."""


@keys.command("create")
@click.option("--source", "-s", "source_id", required=True, help="Source id.")
@json_option
@settings_options()
def keys_create(source_id: str, as_json: bool, settings: Settings) -> None:
    """Create a write key; the key is printed only now."""
    runtime = open_runtime(settings)
    new = runtime.tenancy.create_write_key(source_id)
    audit_cli(runtime, "write_key.created", new.info.workspace_id, new.info.id, source=source_id)
    emit({**_dict(new.info), "key": new.key}, as_json)


@keys.command("revoke")
@click.argument("key_id")
@settings_options()
def keys_revoke(key_id: str, settings: Settings) -> None:
    """Revoke a write key (running servers stop accepting it within seconds)."""
    runtime = open_runtime(settings)
    workspace = runtime.tenancy.revoke_write_key(key_id)
    audit_cli(runtime, "write_key.revoked", workspace, key_id)
    click.echo(f"revoked {key_id}")


@keys.command("list")
@click.option("--workspace", "-w", required=True, help="Workspace id or name.")
@click.option("--source", "-s", "source_id", default=None, help="Only this source's keys.")
@json_option
@settings_options()
def keys_list(workspace: str, source_id: str | None, as_json: bool, settings: Settings) -> None:
    """List write keys (ids and prefixes, never the keys)."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace)
    if source_id is not None:
        runtime.tenancy.source(source_id, ws.id)  # not_found for another workspace's, too
    emit(
        runtime.tenancy.list_write_keys(ws.id, source_id),
        as_json,
        ("id", "sourceId", "prefix", "createdAt", "revokedAt"),
    )


@click.group()
def clients() -> None:
    """OAuth2 clients (client credentials) and their scopes."""


@clients.command("create")
@click.option("--workspace", "-w", required=True, help="Workspace id or name.")
@click.option("--name", default="client", show_default=True)
@click.option(
    "--scopes",
    required=True,
    help=f"Space- or comma-separated, from: {' '.join(ALL_SCOPES)}.",
)
@json_option
@settings_options()
def clients_create(
    workspace: str, name: str, scopes: str, as_json: bool, settings: Settings
) -> None:
    """Create a client; the secret is printed only now."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace)
    new = runtime.clients.create(ws.id, name, scopes.replace(",", " ").split())
    audit_cli(runtime, "client.created", ws.id, new.client.id, scopes=sorted(new.client.scopes))
    emit({**_dict(new.client), "secret": new.secret}, as_json)


@clients.command("list")
@click.option("--workspace", "-w", required=True, help="Workspace id or name.")
@json_option
@settings_options()
def clients_list(workspace: str, as_json: bool, settings: Settings) -> None:
    """List clients of a workspace."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace)
    emit(runtime.clients.list(ws.id), as_json, ("id", "name", "scopes", "createdAt", "revokedAt"))


@clients.command("scopes")
@click.argument("client_id")
@click.option(
    "--add", "add", multiple=True, help="Scopes to grant (repeatable; space- or comma-separated)."
)
@click.option("--remove", "remove", multiple=True, help="Scopes to take away (repeatable).")
@json_option
@settings_options()
def clients_scopes(
    client_id: str, add: tuple[str, ...], remove: tuple[str, ...], as_json: bool, settings: Settings
) -> None:
    """Grant or take away scopes of an active client (issued tokens keep theirs)."""
    added, removed = _scopes(add), _scopes(remove)
    if not added and not removed:
        raise click.UsageError("name scopes to --add or --remove")
    if added & removed:
        raise click.UsageError(f"both added and removed: {', '.join(sorted(added & removed))}")
    parse_scopes(added | removed)  # an unknown scope is an error, on either side
    runtime = open_runtime(settings)
    current = runtime.clients.get(client_id)
    if current.revoked_at is not None:  # as set_scopes says, even when nothing would change
        raise NotFound(f"active client {client_id!r} does not exist")
    wanted = (set(current.scopes) | added) - removed
    if wanted == set(current.scopes):  # nothing changes: nothing to record
        emit(_dict(current), as_json)
        return
    client = runtime.clients.set_scopes(client_id, wanted)
    audit_cli(
        runtime,
        "client.scopes_changed",
        client.workspace_id,
        client_id,
        scopes=sorted(client.scopes),
    )
    emit(_dict(client), as_json)


def _scopes(values: tuple[str, ...]) -> set[str]:
    return {scope for value in values for scope in value.replace(",", " ").split()}


@clients.command("revoke")
@click.argument("client_id")
@settings_options()
def clients_revoke(client_id: str, settings: Settings) -> None:
    """Revoke a client: it gets no new tokens (issued ones expire within their TTL)."""
    runtime = open_runtime(settings)
    workspace = runtime.clients.get(client_id).workspace_id
    runtime.clients.revoke(client_id)
    audit_cli(runtime, "client.revoked", workspace, client_id)
    click.echo(f"revoked {client_id}")


@click.group("signing-keys")
def signing_keys() -> None:
    """Keys that sign access tokens; rotate without downtime."""


@signing_keys.command("list")
@json_option
@settings_options()
def signing_keys_list(as_json: bool, settings: Settings) -> None:
    """List signing keys (public parts)."""
    rows = [
        {
            "kid": k.kid,
            "algorithm": k.algorithm,
            "createdAt": k.created_at,
            "retiredAt": k.retired_at,
        }
        for k in open_runtime(settings).signing_keys.load()
    ]
    emit(rows, as_json, ("kid", "algorithm", "createdAt", "retiredAt"))


@signing_keys.command("rotate")
@settings_options()
def signing_keys_rotate(settings: Settings) -> None:
    """Start signing with a new key; the old one keeps verifying until pruned."""
    runtime = open_runtime(settings)
    kid = runtime.signing_keys.create(settings.auth.signing_algorithm)
    audit_cli(runtime, "signing_key.rotated", None, kid, algorithm=settings.auth.signing_algorithm)
    click.echo(
        f"now signing with {kid}; running servers pick it up within "
        f"{settings.auth.key_refresh_seconds:g}s"
    )


@signing_keys.command("prune")
@settings_options()
def signing_keys_prune(settings: Settings) -> None:
    """Remove keys retired longer ago than a token lifetime (their tokens have expired)."""
    cutoff = utcnow() - timedelta(seconds=settings.auth.token_ttl_seconds + 60)
    runtime = open_runtime(settings)
    removed = runtime.signing_keys.prune(cutoff)
    audit_cli(runtime, "signing_key.pruned", None, "signing_keys", removed=removed)
    click.echo(f"removed {len(removed)} key(s): {' '.join(removed) or '-'}")


def _dict(value: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(value)  # type: ignore[call-overload, no-any-return]


@click.group()
def audit() -> None:
    """The append-only audit log (privacy requests, admin actions, tokens, failed auth)."""


@audit.command("list")
@click.option("--workspace", "-w", default=None, help="Only this workspace (id or name).")
@click.option("--action", default=None, help="Only this action, e.g. auth.failed.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
@settings_options()
def audit_list(
    workspace: str | None, action: str | None, limit: int, as_json: bool, settings: Settings
) -> None:
    """Audit entries, oldest first."""
    runtime = open_runtime(settings)
    ws = runtime.tenancy.workspace(workspace).id if workspace else None
    rows = [e.to_dict() for e in runtime.audit.entries(ws, action=action, limit=limit)]
    emit(rows, as_json, ("seq", "at", "actor", "action", "target", "outcome"))


@audit.command("verify")
@json_option
@settings_options()
def audit_verify(as_json: bool, settings: Settings) -> None:
    """Check the hash chain: exit 1 and name the first altered entry if any."""
    broken = open_runtime(settings).audit.verify()
    if as_json:
        click.echo(json.dumps({"intact": broken is None, "alteredAt": broken}))
    elif broken is not None:
        click.echo(f"audit log altered at entry {broken}")
    else:
        click.echo("audit log intact")
    if broken is not None:
        raise SystemExit(1)
