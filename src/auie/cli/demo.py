"""``auie demo``: watch adaptive decisions beat a static baseline on a simulated population."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx
from rich.table import Table

from auie.cli.common import console, fail, progress_bar, read_json_file, settings_options
from auie.config import Settings
from auie.decide.demo import POINT, DemoClient, baseline_value, best_possible, run
from auie.errors import AuieError

#: Most simulated people: each is identified through the API before the first decision.
MAX_PEOPLE = 100_000
#: Most decisions: each is two requests (decide, reward) to the server.
MAX_ROUNDS = 10_000_000
#: What ``bootstrap.json`` must hold for the demo: its client's credentials and write key.
_CREDENTIALS = ("clientId", "clientSecret", "writeKey")


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--url``: an http(s) URL with a host (and a port in range, if any)."""
    try:
        url = httpx.URL(value)
        port = url.port
    except httpx.InvalidURL as exc:
        raise click.BadParameter(f"{value!r} is not a URL: {exc}") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL with a host")
    if port is not None and not 1 <= port <= 65_535:
        raise click.BadParameter(f"{value!r}: port {port} is not 1 to 65535")
    return value


def _credentials(path: Path) -> dict[str, str]:
    """The client id, secret and write key ``auie serve`` saved on its first start."""
    if not path.exists():
        raise click.UsageError(
            f"{path} does not exist (auie serve writes it on its first start;"
            " choose the data directory with --data-dir or AUIE_DATA_DIR)"
        )
    found = read_json_file(str(path), "--data-dir", dash_is_stdin=False)
    if not isinstance(found, dict):
        raise click.UsageError(f"{path} is not a JSON object")
    for key in _CREDENTIALS:
        if not isinstance(found.get(key), str) or not found[key]:
            raise click.UsageError(f"{path} has no {key} (a non-empty string)")
    return {key: found[key] for key in _CREDENTIALS}


def _server_error(url: str, exc: httpx.HTTPError) -> AuieError:
    """The server's failure as one line: unreachable, or the status and the API's message."""
    if isinstance(exc, httpx.HTTPStatusError):
        reply = exc.response
        code, message = "server_error", reply.reason_phrase
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            code = str(body.get("code") or code)
            message = body["message"]
        where = f"{exc.request.method} {exc.request.url.path}"
        return AuieError(
            f"{url}: {where} answered {reply.status_code}: {message}".replace("\n", " "),
            code=code,
        )
    detail = str(exc).replace("\n", " ") or type(exc).__name__
    return AuieError(f"cannot reach auie serve at {url}: {detail}", code="server_unreachable")


@click.command()
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    callback=_url,
    help="A running auie serve.",
)
@click.option(
    "--people",
    type=click.IntRange(1, MAX_PEOPLE),
    default=400,
    show_default=True,
    help="Simulated people.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, MAX_ROUNDS),
    default=4000,
    show_default=True,
    help="Decisions to make.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@settings_options()
def demo(url: str, people: int, rounds: int, seed: int, as_json: bool, settings: Settings) -> None:
    """Simulate people with hidden preferences; compare the adaptive arm with the baseline.

    The credentials are those of <data dir>/bootstrap.json."""
    credentials = _credentials(settings.data_dir / "bootstrap.json")
    try:
        client = DemoClient(
            url, credentials["clientId"], credentials["clientSecret"], credentials["writeKey"]
        )
    except httpx.HTTPError as exc:
        fail(_server_error(url, exc), as_json=as_json)
    except (KeyError, ValueError):  # a 2xx reply that is no token: not an auie serve
        fail(
            AuieError(
                f"{url}/oauth/token gave no access token: is it auie serve?", code="not_auie"
            ),
            as_json=as_json,
        )
    try:
        with progress_bar(as_json) as bar:
            task = bar.add_task("decisions", total=rounds)
            report: dict[str, Any] = run(
                client,
                people=people,
                rounds=rounds,
                seed=seed,
                progress=lambda done: bar.update(task, completed=done),
            )
    except httpx.HTTPError as exc:
        fail(_server_error(url, exc), as_json=as_json)
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
