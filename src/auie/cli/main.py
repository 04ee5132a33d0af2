"""The ``auie`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import importlib.machinery
import sys
from typing import Any

import click

import auie
from auie.cli import admin, lake, log, process, profiles, serve, transform
from auie.cli.analytics import analytics
from auie.cli.common import fail
from auie.cli.decide import decisions, evaluate
from auie.cli.demo import demo
from auie.cli.privacy import privacy
from auie.cli.train import train
from auie.errors import AuieError


class AuieGroup(click.Group):
    """Turns AUIE errors into one red line and exit status 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuieError as exc:
            fail(exc)


@click.group(cls=AuieGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(auie.__version__, prog_name="auie")
def cli() -> None:
    """AUIE, the Adaptive User Interaction Engine."""


cli.add_command(serve.serve)
for group in (
    admin.workspaces,
    admin.sources,
    admin.keys,
    admin.clients,
    admin.signing_keys,
    admin.audit,
):
    cli.add_command(group)
cli.add_command(log.log)
cli.add_command(decisions)
cli.add_command(evaluate, name="evaluate")  # = auie decisions evaluate (issue 5's name)
cli.add_command(train)
cli.add_command(demo)
cli.add_command(lake.lake)
for command in (
    process.process,
    process.replay,
    process.deadletters,
    profiles.profiles,
    profiles.plan,
    transform.transform,
):
    cli.add_command(command)
cli.add_command(analytics)
cli.add_command(privacy)


def main() -> None:
    _children_skip_the_cli()
    cli(prog_name="auie")


def _children_skip_the_cli() -> None:
    """Spare the child processes ``auie serve`` starts (log writer, processors, transform
    schedule, erasure) the import of the whole CLI.

    A ``spawn`` child re-imports its parent's ``__main__``, here the ``auie`` console
    script, so before running its target it would load every command module and what they
    import (the web app, DuckDB, dbt's helpers): seconds of CPU per child, at every start
    and restart. Every target lives in a module of its own, so the children do not need
    the script; a ``__main__`` that names a package's ``__main__`` module is one
    :mod:`multiprocessing` leaves alone (``spawn._fixup_main_from_name``).
    """
    script = sys.modules.get("__main__")
    if script is not None and getattr(script, "__spec__", None) is None:
        script.__spec__ = importlib.machinery.ModuleSpec("auie.__main__", None)
