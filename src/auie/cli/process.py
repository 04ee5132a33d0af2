"""``auie process``, ``auie replay``, ``auie deadletters``: the processing pipeline."""

from __future__ import annotations

import json
import signal
import threading
import time
from types import FrameType

import click
from rich.live import Live
from rich.table import Table

from auie.cli.common import (
    audit_cli,
    configure_logging,
    console,
    emit,
    fail,
    json_option,
    open_runtime,
    safe_text,
    settings_options,
    workspace_id,
    workspace_option,
)
from auie.config import Settings
from auie.errors import Conflict
from auie.eventlog import EVENTS_TOPIC
from auie.process import GROUP
from auie.process.lock import ProcessorLock, processor_running
from auie.process.processor import topic_partitions
from auie.process.replay import replay as replay_letters
from auie.process.supervisor import ProcessorSupervisor, group_size
from auie.runtime import Runtime


def _status(processed: int, dead: int, flushed: int, lag: int, rate: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row("processed", f"{processed:,}", "dead letters", f"{dead:,}")
    table.add_row("in the lake", f"{flushed:,}", "lag", f"{lag:,}")
    table.add_row("rate", f"{rate:,.0f} events/s", "", "")
    return table


def _group_status(members: int, processed: int, dead: int, lag: int, rate: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row("processors", f"{members}", "lag", f"{lag:,}")
    table.add_row("processed", f"{processed:,}", "dead letters", f"{dead:,}")
    table.add_row("rate", f"{rate:,.0f} events/s", "", "")
    return table


@click.command()
@click.option("--once", is_flag=True, help="Process what the log holds, flush, and exit.")
@click.option(
    "--workers",
    type=click.IntRange(min=0, max=64),
    default=None,
    help="Processor processes sharing the log's partitions [process.workers; 0: one per CPU].",
)
@settings_options()
def process(once: bool, workers: int | None, settings: Settings) -> None:
    """Run the processor on its own (auie serve runs it already unless process.enabled=false)."""
    configure_logging(settings.log_level)
    if workers is not None:
        settings = settings.model_copy(
            update={"process": settings.process.model_copy(update={"workers": workers})}
        )
    members = group_size(settings)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if processor_running(settings.data_dir):  # it would wait for its locks, then fail
        fail(
            Conflict(
                f"a processor is running on {settings.data_dir} (auie serve runs one unless"
                " process.enabled=false); stop it first",
                code="processor_running",
            )
        )
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runtime = open_runtime(settings)
    try:
        if members == 1:
            with _all_partitions(runtime):
                _process(once, runtime, stop)
        else:
            _process_group(once, settings, runtime, members, stop)
    finally:
        runtime.close()


def _all_partitions(runtime: Runtime) -> ProcessorLock:
    partitions = topic_partitions(runtime.eventlog)
    return ProcessorLock(runtime.settings.data_dir, 0, 1, partitions)


def _process_group(
    once: bool, settings: Settings, runtime: Runtime, members: int, stop: threading.Event
) -> None:
    """Run the group's members as child processes until ``stop`` (or, with ``once``, until
    each has drained its partitions), then export the profile store's last changes."""
    supervisor = ProcessorSupervisor(settings, members, once=once, serving=False)
    supervisor.start()
    started = time.monotonic()
    first_lag = _lag(runtime)
    # The members' dead letters: what the profile store gained since the start.
    first_dead = runtime.profile_store.count_dead_letters()

    def status() -> Table:
        lag = _lag(runtime)
        processed = max(0, first_lag - lag)
        dead = runtime.profile_store.count_dead_letters() - first_dead
        rate = processed / max(1e-9, time.monotonic() - started)
        return _group_status(members, processed, dead, lag, rate)

    with Live(status(), console=console, refresh_per_second=4) as live:
        while not stop.wait(0.5):
            live.update(status())
            if once and not any(supervisor.running()):
                break
            if any(supervisor.failed()):
                break
        supervisor.stop()
        codes = supervisor.join()
        live.update(status())
    failed = [f"processor {m} exited with {c}" for m, c in enumerate(codes) if c]
    if failed:
        raise click.ClickException("; ".join(failed))


def _lag(runtime: Runtime) -> int:
    """Events the group has not committed yet (cheaper than the log's stats)."""
    log = runtime.eventlog
    begins = log.begin_offsets(EVENTS_TOPIC)
    done = log.committed(GROUP, EVENTS_TOPIC)
    ends = log.end_offsets(EVENTS_TOPIC)
    return sum(max(0, end - done.get(p, begins.get(p, 0))) for p, end in ends.items())


def _process(once: bool, runtime: Runtime, stop: threading.Event) -> None:
    processor = runtime.processor()
    processed = dead = flushed = 0
    started = time.monotonic()
    with Live(
        _status(0, 0, 0, 0, 0), console=console, refresh_per_second=4, transient=False
    ) as live:
        while not stop.is_set():
            report = processor.step()
            processed += report.events
            dead += report.dead_letters
            flushed += sum(f.rows for f in report.flushes)
            lag = runtime.eventlog.stats(EVENTS_TOPIC).lag(GROUP) if report.flushes else -1
            rate = processed / max(1e-9, time.monotonic() - started)
            if lag >= 0 or report.events:
                live.update(_status(processed, dead, flushed, max(lag, 0), rate))
            if report.idle:
                if once:
                    break
                stop.wait(0.05)
        flushed += sum(f.rows for f in processor.flush())
        live.update(
            _status(processed, dead, flushed, 0, processed / max(1e-9, time.monotonic() - started))
        )


@click.command()
@workspace_option
@click.option("--stage", default=None, help="Only dead letters of this stage (plan, collect...).")
@click.option("--code", default=None, help="Only dead letters with this code.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=10_000, show_default=True)
@json_option
@settings_options()
def replay(
    workspace: str | None,
    stage: str | None,
    code: str | None,
    limit: int,
    as_json: bool,
    settings: Settings,
) -> None:
    """Send pending dead letters back through the processor (after fixing the cause)."""
    runtime = open_runtime(settings)
    ws = workspace_id(runtime, workspace)
    report = replay_letters(
        runtime.eventlog,
        runtime.profile_store,
        runtime.plans,
        workspace=ws,
        stage=stage,
        code=code,
        limit=limit,
        max_event_bytes=settings.collect.max_event_bytes,
        data_dir=settings.data_dir,
    )
    audit_cli(runtime, "dead_letters.replayed", ws, stage or "*", replayed=len(report.replayed))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    click.echo(f"replayed {len(report.replayed)} dead letter(s)")
    for letter_id, message in report.failed:
        click.echo(f"  still failing {letter_id}: {safe_text(message)}")


@click.group()
def deadletters() -> None:
    """Events a stage could not handle, with the stage and the reason."""


@deadletters.command("list")
@workspace_option
@click.option("--all", "show_all", is_flag=True, help="Include replayed ones.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@settings_options()
def deadletters_list(
    workspace: str | None, show_all: bool, limit: int, as_json: bool, settings: Settings
) -> None:
    """List dead letters, oldest first."""
    runtime = open_runtime(settings)
    ws = workspace_id(runtime, workspace)
    letters = runtime.profile_store.dead_letters(ws, pending=not show_all, limit=limit)
    emit(letters, as_json, ("id", "stage", "code", "message", "createdAt", "replayedAt"))
