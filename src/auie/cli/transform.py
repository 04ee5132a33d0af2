"""``auie transform``: build the marts with dbt (DuckDB file and Parquet, or PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auie.cli.common import configure_logging, console, open_runtime, settings_options
from auie.config import Settings
from auie.errors import InvalidRequest
from auie.runtime import Runtime
from auie.transform.runner import NodeResult, Target, TransformResult, TransformRunner


class _RichProgress:
    """A Rich progress bar fed by dbt's events: nodes done of all, failures so far."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.failed = 0
        self.label = ""

    def start(self, workspace: str, target: str) -> None:
        self.failed = 0
        self.label = f"{workspace} → {target}"
        self.task = self.progress.add_task(f"{self.label}: sources", total=None)

    def total(self, nodes: int) -> None:
        self.progress.update(self.task, total=nodes, description=f"{self.label}: dbt build")

    def node(self, result: NodeResult) -> None:
        if result.failed:
            self.failed += 1
            what = result.message or result.status
            self.progress.console.print(
                f"[red]✗[/red] {result.resource_type} {result.name}: {what}",
                markup=True,
                highlight=False,
            )
        failures = f" [red]({self.failed} failed)[/red]" if self.failed else ""
        self.progress.update(
            self.task, advance=1, description=f"{self.label}: {result.name}{failures}"
        )

    def finish(self, result: TransformResult) -> None:
        status = "[green]done[/green]" if result.success else "[red]failed[/red]"
        self.progress.update(self.task, description=f"{self.label}: {status}")


def _summary(result: TransformResult) -> str:
    models = result.count("model")
    tests = result.count("test")
    passed = result.count("test", "pass")
    head = "ok" if result.success else "FAILED"
    line = (
        f"{result.workspace} ({result.target}): {head} in {result.seconds:.1f}s —"
        f" {models} models, {passed}/{tests} tests passed"
    )
    if result.exported:
        line += f", {len(result.exported)} marts exported"
    if result.error:
        line += f"\n  {result.error}"
    return line


@click.command()
@click.option(
    "--workspace", "-w", default=None, help="Workspace id or name [default: every workspace]."
)
@click.option(
    "--target",
    type=click.Choice(["duckdb", "postgres"]),
    default="duckdb",
    show_default=True,
    help="duckdb: the workspace's DuckDB file and Parquet marts; postgres: analytics.postgres_url.",
)
@click.option(
    "--select", "-s", multiple=True, help="dbt node selection (repeatable), e.g. -s sessions+."
)
@click.option("--full-refresh", is_flag=True, help="Rebuild the incremental models from scratch.")
@click.option(
    "--vars",
    "dbt_vars",
    default=None,
    metavar="JSON",
    help='dbt vars, e.g. \'{"as_of": "2026-03-01T00:00:00Z"}\'.',
)
@click.option("--json", "as_json", is_flag=True, help="Print the run results as JSON.")
@settings_options()
def transform(
    workspace: str | None,
    target: Target,
    select: tuple[str, ...],
    full_refresh: bool,
    dbt_vars: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Build the marts with dbt: sessions, active users, event counts, user features."""
    configure_logging("warning" if as_json else settings.log_level)
    variables = _parse_vars(dbt_vars)
    runtime = open_runtime(settings)
    try:
        workspaces = _workspaces(runtime, workspace)
        runner = TransformRunner(settings, runtime.lake)
        options: dict[str, Any] = {
            "target": target,
            "select": select,
            "full_refresh": full_refresh,
            "variables": variables,
        }
        if as_json:
            results = [runner.run(ws, **options) for ws in workspaces]
            _check_selected(select, results)
            click.echo(json.dumps([r.to_dict() for r in results]))
        else:
            results = _run_with_progress(runner, workspaces, options)
            _check_selected(select, results)
    finally:
        runtime.close()
    if any(not r.success for r in results):
        raise SystemExit(1)


def _check_selected(select: tuple[str, ...], results: list[TransformResult]) -> None:
    """A ``--select`` that matches no model or test is a mistake (a misspelt name), not a
    successful run of nothing."""
    if select and results and all(r.success and not r.nodes for r in results):
        raise InvalidRequest(
            f"no model or test matches --select {' '.join(select)}"
            " (dbt node selection: a model name, tag:..., path:..., with + for neighbours)",
            code="nothing_selected",
        )


def _parse_vars(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        variables = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--vars is not JSON: {exc}") from None
    if not isinstance(variables, dict):
        raise InvalidRequest("--vars must be a JSON object")
    return variables


def _workspaces(runtime: Runtime, given: str | None) -> list[str]:
    """The workspace given (id or name), else every workspace that has a lake."""
    if given:
        return [runtime.tenancy.workspace(given).id]
    known = {w.id for w in runtime.tenancy.list_workspaces()}
    return [w for w in runtime.lake.workspaces() if w in known]


def _run_with_progress(
    runner: TransformRunner, workspaces: list[str], options: dict[str, Any]
) -> list[TransformResult]:
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        display = _RichProgress(progress)
        for ws in workspaces:
            result = runner.run(ws, progress=display, **options)
            display.finish(result)
            results.append(result)
    for result in results:
        console.print(_summary(result), highlight=False, markup=False)
    if not workspaces:
        console.print("no workspace has a lake yet: nothing to transform")
    return results
