"""Options every command takes, settings loading, and output helpers (Rich or JSON)."""

from __future__ import annotations

import functools
import getpass
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from auie.config import Settings, load_settings
from auie.errors import AuieError, InvalidRequest, NotFound
from auie.jsontext import loads, utf8_problem
from auie.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True)


def progress_bar(quiet: bool) -> Progress:
    """The CLI's progress display for long work: description, bar, done/total, elapsed time,
    on stderr, gone when finished; ``quiet`` (``--json``) hides it."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )


@contextmanager
def step_bar(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """One progress bar over the steps of a piece of work: ``report(step, done, total)``
    shows the step and how far it is (privacy requests, evaluations)."""
    progress = progress_bar(quiet)
    with progress:
        task = progress.add_task("starting", total=None)

        def report(step: str, done: int, total: int) -> None:
            progress.update(task, description=step, completed=done, total=total)

        yield report


def _parse_set(values: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def settings_options(**flags: str) -> Callable[[F], F]:
    """Adds --data-dir, --config and --set and passes ``settings`` to the command.

    ``flags`` maps the command's own options to setting keys (``port="server.port"``);
    those options are removed from the command's arguments and win over every source.
    """

    def decorate(func: F) -> F:
        @click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Data directory [env AUIE_DATA_DIR; default ./auie-data].",
        )
        @click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="TOML config file [env AUIE_CONFIG; default ./auie.toml if present].",
        )
        @click.option(
            "--set",
            "set_values",
            multiple=True,
            metavar="SECTION.KEY=VALUE",
            help="Override any setting, e.g. --set collect.max_batch_events=5000.",
        )
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            data_dir: Path | None,
            config_file: Path | None,
            set_values: Sequence[str],
            **kwargs: Any,
        ) -> Any:
            overrides = _parse_set(set_values)
            for option, key in flags.items():
                value = kwargs.pop(option)
                if value is not None:
                    overrides[key] = value
            if data_dir is not None:
                overrides["data_dir"] = data_dir
            try:
                settings = load_settings(overrides, config_file=config_file)
            except AuieError as exc:
                fail(exc)
            return func(*args, settings=settings, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(func)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def open_runtime(settings: Settings) -> Runtime:
    """The stores of ``settings``' data directory. One that cannot be created or written is
    an error; one that did not exist is created, with a note on stderr (a mistyped
    ``--data-dir`` would otherwise show an empty installation without a word)."""
    data_dir = settings.data_dir
    new = not data_dir.exists()
    try:
        runtime = Runtime(settings)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InvalidRequest(f"cannot use the data directory {data_dir}: {reason}") from None
    if new:
        err_console.print(
            Text(f"note: created the data directory {safe_text(str(data_dir))}", style="yellow"),
            soft_wrap=True,
        )
    return runtime


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_json_obj(value: Any) -> Any:
    """Dataclasses to camelCase JSON-ready values."""
    plain = _plain(value)
    if isinstance(plain, dict):
        return {_camel(k): v for k, v in plain.items()}
    if isinstance(plain, list):
        return [{_camel(k): v for k, v in p.items()} if isinstance(p, dict) else p for p in plain]
    return plain


def emit(
    value: Any, as_json: bool, columns: Iterable[str] | None = None, title: str | None = None
) -> None:
    """Print one object or a list: JSON with --json, else a Rich table."""
    data = to_json_obj(value)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    cols = list(columns) if columns else (list(rows[0].keys()) if rows else [])
    table = Table(title=title)
    for col in cols:
        # Fold, never truncate: a key or secret is printed once and must be printed whole.
        table.add_column(col, overflow="fold")
    for row in rows:
        # Text, not markup: values such as a client named "[/x]" are printed as they are.
        table.add_row(*(Text("" if row.get(c) is None else _cell(row.get(c))) for c in cols))
    console.print(table)


#: Characters a terminal may act on rather than show: C0 controls but tab and newline, DEL,
#: C1 controls (an ESC sequence can retitle the window, recolour or rewrite the screen,
#: or, in some terminals, write to the clipboard), and bidirectional overrides.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` for a terminal: every character it could act on written as an escape
    (``\\x1b``, ``\\u202e``). Event data, profile values and messages quoting them come
    from anyone who holds a write key (a public one, in a browser), so the CLI prints them
    through this."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return safe_text(" ".join(str(v) for v in value))
    return safe_text(str(value))


def fail(error: AuieError, *, as_json: bool = False) -> NoReturn:
    """Exit with status 2 after the error: one red line on stderr, or with ``as_json`` the
    API's ``{"code", "message"}`` on stdout (where the command's JSON would have gone)."""
    if as_json:
        click.echo(json.dumps({"code": error.code, "message": error.message}))
        raise SystemExit(2)
    # One line (soft wrap) and no markup: messages quote user input such as "[/x]".
    line = Text.assemble(("error", "red"), f" ({error.code}): {safe_text(error.message)}")
    err_console.print(line, soft_wrap=True)
    raise SystemExit(2)


def workspace_id(runtime: Runtime, given: str | None) -> str:
    """The workspace named (id or name), or the only one when there is exactly one."""
    if given:
        return runtime.tenancy.workspace(given).id
    spaces = runtime.tenancy.list_workspaces()
    if len(spaces) == 1:
        return spaces[0].id
    if not spaces:
        raise NotFound("there is no workspace yet (auie serve creates one on its first start)")
    names = ", ".join(space.name for space in spaces[:10])
    raise InvalidRequest(
        f"{len(spaces)} workspaces exist ({names}{', ...' if len(spaces) > 10 else ''});"
        " choose one with --workspace",
        code="workspace_required",
    )


def workspace_option(func: F) -> F:
    return click.option(
        "--workspace",
        "-w",
        default=None,
        help="Workspace id or name [default: the only workspace].",
    )(func)


def audit_cli(
    runtime: Runtime, action: str, workspace: str | None, target: str, **details: Any
) -> None:
    """Record an action done on the command line (actor ``cli``, with the operating-system
    user), as the HTTP API records its own."""
    runtime.audit.record(
        action,
        actor="cli",
        workspace=workspace,
        target=target,
        details={**details, "osUser": _os_user()},
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"


def read_json_file(source: str, option: str, *, dash_is_stdin: bool = True) -> Any:
    """The JSON document in file ``source`` (``-``: stdin, with ``dash_is_stdin``) given to
    ``option``: UTF-8, standard JSON; a missing or unreadable file, a directory, other
    bytes or malformed JSON is a usage error naming the file."""
    stdin = dash_is_stdin and source == "-"
    name = "stdin" if stdin else source
    try:
        data = _read_bytes(None if stdin else Path(source))
    except FileNotFoundError:
        raise click.BadParameter(f"{name}: no such file", param_hint=option) from None
    except IsADirectoryError:
        raise click.BadParameter(f"{name} is a directory, not a file", param_hint=option) from None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {name}: {exc.strerror or exc}", param_hint=option
        ) from None
    return parse_json(data, name, option)


def _read_bytes(path: Path | None) -> bytes:
    """The bytes of ``path``, or of stdin for None."""
    if path is None:
        return sys.stdin.buffer.read()
    return path.read_bytes()


def parse_json(data: bytes | str, name: str, option: str) -> Any:
    """``data`` as the API reads JSON (UTF-8, standard JSON, a leading BOM ignored): a
    usage error naming ``name`` (a file, stdin) and ``option`` if it is not."""
    try:
        return loads(data)  # the API's standard JSON, UTF-8 (a leading BOM ignored)
    except UnicodeDecodeError:
        raw = data if isinstance(data, bytes) else b""
        problem = (utf8_problem(raw) or "body is not UTF-8 text").replace("body", "the file", 1)
        raise click.BadParameter(f"{name}: {problem}", param_hint=option) from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{name} is not JSON: {exc}", param_hint=option) from None
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"{name} is not standard JSON: {exc}", param_hint=option) from None
