"""``auie privacy export|erase|requests|retention|suppressions``: privacy requests run in
this process (with a progress bar), retention, the suppression list."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from auie.cli.common import (
    console,
    emit,
    err_console,
    fail,
    json_option,
    open_runtime,
    safe_text,
    settings_options,
    step_bar,
    workspace_id,
    workspace_option,
)
from auie.config import Settings
from auie.errors import Conflict
from auie.privacy.person import Subject
from auie.privacy.requests import DONE, PrivacyRequest

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def privacy() -> None:
    """Privacy requests (access export, erasure), retention and the suppression list."""


def _subject_options(func: F) -> F:
    func = click.option(
        "--id",
        "other_ids",
        multiple=True,
        metavar="TYPE=VALUE",
        help="Any identifier, e.g. --id phone=+4930123 (repeatable).",
    )(func)
    func = click.option("--email", default=None, help="The person's e-mail address.")(func)
    func = click.option("--anonymous-id", default=None, help="An anonymousId of the person.")(func)
    return click.option("--user-id", default=None, help="The person's userId.")(func)


def _subject(
    user_id: str | None, anonymous_id: str | None, email: str | None, other_ids: Sequence[str]
) -> Subject:
    pairs: list[tuple[str, str | None]] = [
        ("user_id", user_id),
        ("anonymous_id", anonymous_id),
        ("email", email),
    ]
    for item in other_ids:
        id_type, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not TYPE=VALUE", param_hint="--id")
        pairs.append((id_type, value))
    return Subject.of(pairs)


def _run(
    settings: Settings, workspace: str | None, kind: str, subject: Subject, quiet: bool
) -> tuple[PrivacyRequest, Path | None]:
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        requests = runtime.privacy.requests
        item = requests.submit(ws, kind, subject, actor="cli")
        with step_bar(quiet) as report:
            item = requests.run(item.id, actor="cli", progress=report)
        archive = runtime.privacy.context.archive_path(item.id) if kind == "export" else None
        return item, archive
    finally:
        runtime.close()


def _check_out(out: Path, force: bool) -> None:
    """Refuse an ``--out`` the archive could not be written to, or would replace unasked."""
    folder = out.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder {str(folder)!r} does not exist", param_hint="--out")
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"the folder {str(folder)!r} is not writable", param_hint="--out")
    if out.is_dir():
        raise click.BadParameter(f"{str(out)!r} is a folder", param_hint="--out")
    if out.exists() and not force:
        raise click.BadParameter(
            f"{str(out)!r} exists; pass --force to replace it", param_hint="--out"
        )


def _write_archive(archive: Path, out: Path, force: bool) -> None:
    """Copy the archive to ``out`` whole, mode 0600 from its first byte: into a new file
    beside it, renamed over ``out`` (only with ``force`` if ``out`` appeared meanwhile)."""
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as target, archive.open("rb") as source:
            shutil.copyfileobj(source, target)
        if force:
            os.replace(partial, out)
        else:
            os.link(partial, out)  # fails if a file took the name since the check
            partial.unlink()
    except FileExistsError:
        partial.unlink(missing_ok=True)
        fail(Conflict(f"{out} appeared while the export ran; pass --force to replace it"))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _finish(item: PrivacyRequest, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(item.to_dict(), default=str))
    else:
        console.print(f"request {item.id}: {item.status}")
        if item.error:
            err_console.print(safe_text(item.error), markup=False, highlight=False)
    if item.status != DONE:
        raise SystemExit(1)


@privacy.command("export")
@_subject_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the zip archive (mode 0600); its folder must exist.",
)
@click.option("--force", is_flag=True, help="Replace the file at --out if there is one.")
@workspace_option
@json_option
@settings_options()
def export(
    user_id: str | None,
    anonymous_id: str | None,
    email: str | None,
    other_ids: Sequence[str],
    out: Path,
    force: bool,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Export everything held about a person (DSAR) to a zip archive."""
    subject = _subject(user_id, anonymous_id, email, other_ids)
    _check_out(out, force)  # before the request runs: a failure later would leave it done
    item, archive = _run(settings, workspace, "export", subject, as_json)
    if item.status == DONE and archive is not None:
        _write_archive(archive, out, force)
        if not as_json:
            rows = item.result.get("rows", {})
            console.print(f"wrote {out}: {sum(rows.values())} rows in {len(rows)} files")
    _finish(item, as_json)


@privacy.command("erase")
@_subject_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@workspace_option
@json_option
@settings_options()
def erase(
    user_id: str | None,
    anonymous_id: str | None,
    email: str | None,
    other_ids: Sequence[str],
    yes: bool,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Erase a person from every store, physically, and suppress their identifiers."""
    subject = _subject(user_id, anonymous_id, email, other_ids)
    if not yes and not click.confirm(
        f"Erase everything about {len(subject.identifiers)} identifier(s) and every profile "
        "they belong to? This cannot be undone.",
        err=True,
    ):
        raise SystemExit(1)
    item, _archive = _run(settings, workspace, "erasure", subject, as_json)
    if not as_json and item.status == DONE:
        result = item.result
        console.print(
            f"erased {result.get('identifiers', 0)} identifier(s) of "
            f"{result.get('profiles', 0)} profile(s) in {result.get('seconds', {}).get('total')}s"
        )
    _finish(item, as_json)


@privacy.command("requests")
@workspace_option
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@settings_options()
def requests_list(workspace: str | None, limit: int, as_json: bool, settings: Settings) -> None:
    """Privacy requests of the workspace, newest first."""
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        items = [r.to_dict() for r in runtime.privacy.requests.recent(ws, limit=limit)]
    finally:
        runtime.close()
    emit(items, as_json, ("requestId", "kind", "status", "createdAt", "finishedAt", "error"))


@privacy.command("retention")
@json_option
@settings_options()
def retention(as_json: bool, settings: Settings) -> None:
    """Delete data older than privacy.retention.* now (physically)."""
    runtime = open_runtime(settings)
    try:
        with step_bar(as_json) as report:
            result = runtime.privacy.run_retention(actor="cli", progress=report)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(result, default=str))
        return
    lake_rows = sum(v["rows"] for v in result["lake"].values())
    console.print(
        f"deleted {lake_rows} lake row(s), {result['deadLetters']} dead letter(s), "
        f"{result['audit']} audit entr(ies), {result['archives']} archive(s) "
        f"in {result['seconds']}s"
    )


@privacy.command("suppressions")
@workspace_option
@json_option
@settings_options()
def suppressions(workspace: str | None, as_json: bool, settings: Settings) -> None:
    """How many identifiers are suppressed, and how many events were dropped for them."""
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        stats = runtime.privacy.suppressions.stats(ws)
    finally:
        runtime.close()
    emit(stats, as_json)
