"""The ``auie`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from typing import Any

import click

import auie
from auie.cli.common import fail
from auie.errors import AuieError

#: Every command: name → (module, attribute, summary). A command's module is imported only
#: when the command runs (most import pyiceberg, pyarrow or DuckDB: seconds), so
#: ``auie --help`` lists the summaries from here; tests/cli check them against the commands.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("auie.cli.serve", "serve", "Run the API, the collector and every background job."),
    "workspaces": (
        "auie.cli.admin",
        "workspaces",
        "Workspaces: every stored record belongs to one.",
    ),
    "sources": ("auie.cli.admin", "sources", "Sources of a workspace (web, ios, backend...)."),
    "keys": ("auie.cli.admin", "keys", "Write keys of sources (ingest only; stored hashed)."),
    "clients": (
        "auie.cli.admin",
        "clients",
        "OAuth2 clients (client credentials) and their scopes.",
    ),
    "signing-keys": (
        "auie.cli.admin",
        "signing_keys",
        "Keys that sign access tokens; rotate without downtime.",
    ),
    "audit": (
        "auie.cli.admin",
        "audit",
        "The append-only audit log (privacy requests, admin actions, tokens, failed auth).",
    ),
    "log": ("auie.cli.log", "log", "The durable event log between collector and processor."),
    "decisions": ("auie.cli.decide", "decisions", "The decision service's logged decisions."),
    # = auie decisions evaluate (issue 5's name)
    "evaluate": (
        "auie.cli.decide",
        "evaluate",
        "Estimate what candidate policies would have earned on DECISION_POINT's logged"
        " decisions (IPS, SNIPS, DM, DR with bootstrap intervals), compared with the current"
        " one.",
    ),
    "train": (
        "auie.cli.train",
        "train",
        "Fit candidate policies on DECISION_POINT's logged decisions, judge them off-policy on"
        " the latest ones, and promote the best only if it beats the current policy with"
        " confidence (its DR lower bound above the current DR, and DR − current above 0).",
    ),
    "demo": (
        "auie.cli.demo",
        "demo",
        "Simulate people with hidden preferences; compare the adaptive arm with the baseline.",
    ),
    "lake": (
        "auie.cli.lake",
        "lake",
        "The Iceberg lake: compact small files, expire snapshots, inspect tables.",
    ),
    "process": (
        "auie.cli.process",
        "process",
        "Run the processor on its own (auie serve runs it already unless process.enabled=false).",
    ),
    "replay": (
        "auie.cli.process",
        "replay",
        "Send pending dead letters back through the processor (after fixing the cause).",
    ),
    "deadletters": (
        "auie.cli.process",
        "deadletters",
        "Events a stage could not handle, with the stage and the reason.",
    ),
    "profiles": (
        "auie.cli.profiles",
        "profiles",
        "One profile per person: identities, traits, computed traits, merges.",
    ),
    "plan": (
        "auie.cli.profiles",
        "plan",
        "The workspace's tracking plan (JSON Schema per event; allow, flag or block).",
    ),
    "transform": (
        "auie.cli.transform",
        "transform",
        "Build the marts with dbt: sessions, active users, event counts, user features.",
    ),
    "analytics": (
        "auie.cli.analytics",
        "analytics",
        "Trends, funnels, retention, segments and SQL over the lake.",
    ),
    "privacy": (
        "auie.cli.privacy",
        "privacy",
        "Privacy requests (access export, erasure), retention and the suppression list.",
    ),
}


class AuieGroup(click.Group):
    """Loads each command when it is used (see :data:`COMMANDS`); turns AUIE errors into one
    red line and exit status 2 instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute, _ = found
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``auie --help``, from the summaries (no command is loaded)."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, _, summary) in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in ctx.args  # the command's output is for a machine: so is its error
        try:
            return super().invoke(ctx)
        except AuieError as exc:
            fail(exc, as_json=as_json)


@click.group(cls=AuieGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(auie.__version__, prog_name="auie")
def cli() -> None:
    """AUIE, the Adaptive User Interaction Engine."""


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
