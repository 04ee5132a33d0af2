"""``auie profiles show``, ``auie plan ...``: profiles and tracking plans."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from auie.cli.common import (
    audit_cli,
    console,
    emit,
    json_option,
    open_runtime,
    read_json_file,
    safe_text,
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
        _print_profile(data)


def _print_profile(data: dict[str, Any]) -> None:
    """The profile as tables: identities, traits, computed traits (event counts apart,
    most frequent first), consent and merges; values as JSON."""

    def table(title: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if not rows:
            return
        shown = Table(title=title, title_justify="left")
        for column in columns:
            shown.add_column(column, overflow="fold")
        for row in rows:
            cells = (v if isinstance(v, str) else json.dumps(v) for v in row)
            shown.add_row(*(Text(safe_text(cell)) for cell in cells))
        console.print(shown)

    console.print(Text(f"Profile {safe_text(data['profileId'])}", style="bold"))
    table("Identities", ("type", "value"), ((i["type"], i["value"]) for i in data["identities"]))
    table("Traits", ("trait", "value"), sorted(data["traits"].items()))
    computed = dict(data["computedTraits"])
    counts = computed.pop("eventCounts", {}) or {}
    table("Computed traits", ("trait", "value"), computed.items())
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    table("Event counts", ("event", "count"), by_count)
    consent = data.get("consent") or {}
    table("Consent", ("purpose", "granted"), sorted((consent.get("current") or {}).items()))
    table(
        "Merges",
        ("timestamp", "kind", "from", "into", "messageId"),
        (
            (m["timestamp"], m["kind"], m["fromProfileId"], m["intoProfileId"], m["messageId"])
            for m in data["merges"]
        ),
    )


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
    ws = workspace_id(runtime, workspace)
    document = read_json_file(str(path), "PATH", dash_is_stdin=False)
    version = runtime.plans.put(ws, document).version
    audit_cli(runtime, "tracking_plan.updated", ws, f"v{version}")
    click.echo(f"tracking plan version {version} stored")


@plan.command("show")
@click.option(
    "--version", "version", type=click.IntRange(1, 2**62), default=None, help="A past version."
)
@workspace_option
@settings_options()
def plan_show(version: int | None, workspace: str | None, settings: Settings) -> None:
    """Print the current (or a past) plan as JSON."""
    runtime = open_runtime(settings)
    ws = workspace_id(runtime, workspace)
    current = runtime.plans.current(ws) if version is None else runtime.plans.version(ws, version)
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
