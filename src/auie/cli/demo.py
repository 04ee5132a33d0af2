"""``auie demo``: watch adaptive decisions beat a static baseline on a simulated population."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from auie.cli.common import console
from auie.decide.demo import POINT, DemoClient, baseline_value, best_possible, run


@click.command()
@click.option(
    "--url", default="http://127.0.0.1:8080", show_default=True, help="A running auie serve."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("auie-data"),
    show_default=True,
    help="Where bootstrap.json holds the credentials to use.",
)
@click.option("--people", type=int, default=400, show_default=True)
@click.option("--rounds", type=int, default=4000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
def demo(url: str, data_dir: Path, people: int, rounds: int, seed: int, as_json: bool) -> None:
    """Simulate people with hidden preferences; compare the adaptive arm with the baseline."""
    try:
        credentials = json.loads((data_dir / "bootstrap.json").read_text())
    except OSError as exc:
        raise click.UsageError(f"cannot read {data_dir / 'bootstrap.json'}: {exc}") from None
    client = DemoClient(
        url, credentials["clientId"], credentials["clientSecret"], credentials["writeKey"]
    )
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(
        "[progress.description]{task.description}", *columns, console=console, disable=as_json
    ) as bar:
        task = bar.add_task("decisions", total=rounds)
        report = run(
            client,
            people=people,
            rounds=rounds,
            seed=seed,
            progress=lambda done: bar.update(task, completed=done),
        )
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table(title=f"{POINT}: click-through by arm")
    for column in ("arm", "decisions", "mean reward", "95% interval"):
        table.add_column(column, justify="right")
    for arm, stats in report["arms"].items():
        interval = stats["ci95"]
        table.add_row(
            arm,
            str(stats["rewarded"]),
            "-" if stats["meanReward"] is None else f"{stats['meanReward']:.3f}",
            "-" if interval is None else f"{interval[0]:.3f} to {interval[1]:.3f}",
        )
    console.print(table)
    console.print(
        f"best possible {best_possible(people, seed):.3f}, "
        f"static baseline {baseline_value(people, seed):.3f} (expected click-through). "
        f"Open {url}/ and the Decisions page to see reward over time."
    )
