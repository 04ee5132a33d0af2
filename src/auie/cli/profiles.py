"""``auie profiles show``, ``auie plan ...``: profiles and tracking plans."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.pretty import Pretty

from auie.cli.common import (
    console,
    emit,
    json_option,
    open_runtime,
    settings_options,
    workspace_id,
    workspace_option,
)
from auie.config import Settings


@click.group()
def profiles() -> None:
    """One profile per person: identities, traits, computed traits, merges."""


@profiles.command("show")
@click.argument("id_type")
@click.argument("id_value")
@workspace_option
@json_option
@settings_options()
def profiles_show(
    id_type: str, id_value: str, workspace: str | None, as_json: bool, settings: Settings
) -> None:
    """Show the profile of an identifier, e.g. `auie profiles show user_id u123`."""
    runtime = open_runtime(settings)
    profile = runtime.profiles.profile(workspace_id(runtime, workspace), id_type, id_value)
    data = profile.to_dict()
    if as_json:
        click.echo(json.dumps(data))
    else:
        console.print(Pretty(data, expand_all=True))


@click.group()
def plan() -> None:
    """The workspace's tracking plan (JSON Schema per event; allow, flag or block)."""


@plan.command("set")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@workspace_option
@settings_options()
def plan_set(path: Path, workspace: str | None, settings: Settings) -> None:
    """Store a new version of the plan from a JSON file."""
    runtime = open_runtime(settings)
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{path} is not JSON: {exc}") from None
    version = runtime.plans.put(workspace_id(runtime, workspace), document).version
    click.echo(f"tracking plan version {version} stored")


@plan.command("show")
@click.option("--version", "version", type=int, default=None, help="A past version.")
@workspace_option
@settings_options()
def plan_show(version: int | None, workspace: str | None, settings: Settings) -> None:
    """Print the current (or a past) plan as JSON."""
    runtime = open_runtime(settings)
    ws = workspace_id(runtime, workspace)
    current = runtime.plans.version(ws, version) if version else runtime.plans.current(ws)
    if current is None:
        click.echo("{}")
        return
    click.echo(json.dumps({"version": current.version, "plan": current.document}, indent=2))


@plan.command("violations")
@workspace_option
@json_option
@settings_options()
def plan_violations(workspace: str | None, as_json: bool, settings: Settings) -> None:
    """Violations counted per event and plan version."""
    runtime = open_runtime(settings)
    rows = runtime.profile_store.violations(workspace_id(runtime, workspace))
    emit(rows, as_json, ("eventKey", "planVersion", "violations", "blocked", "lastMessage"))
