"""Throughput: the processor from a full event log to the lake and the profile store.

:func:`prepare` bootstraps a data directory and writes the whole stream
(:mod:`.stream`) into its event log once. Every run copies that directory, so each
starts from the same fresh state, and runs the processor in a child process of its own
(``python -m bench.process.throughput SPEC``): ``Runtime(settings).processor()``, then
``step()`` until the log is drained and ``flush()``, exactly what ``auie process --once``
does. The clock runs from the first ``step()`` to the end of the final flush: by then
every event is in an Iceberg commit and every profile change in the profile store. The
child checks that the lake's ``events`` table holds one row per event, and reports its
CPU (all threads and the main thread alone) and peak RSS.

With ``wait`` in the spec the child says ``ready`` on stdout once its stores are open and
starts on a line from stdin, so a profiler can attach first (:func:`run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from auie import gcpolicy
from auie.config import Settings, load_settings
from auie.lake.tables import EVENTS, IDENTITIES
from auie.process.lock import ProcessorLock, SectionLock
from auie.process.processor import topic_partitions
from auie.runtime import Runtime
from bench.ingest import profile
from bench.ingest.server import load_average, pressure
from bench.process.stream import Stream, fill

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from stores import postgres_database  # noqa: E402


def prepare(
    directory: Path, *, seed: int, events: int, people: int, consent: float = 0.0
) -> dict[str, Any]:
    """A bootstrapped data directory whose event log holds the whole stream (``consent``:
    the share of visitors stating consent with their web events)."""
    runtime = Runtime(Settings(data_dir=directory))
    try:
        boot = runtime.bootstrap()
        assert boot is not None, f"{directory} is not a fresh data directory"
        started = time.perf_counter()
        size = fill(
            runtime.eventlog,
            Stream(seed, events, people, consent=consent),
            boot.workspace,
            boot.source,
        )
        return {
            "workspace": boot.workspace,
            "events": events,
            "people": people,
            "consent_share": consent,
            "event_bytes": size / events,
            "fill_s": time.perf_counter() - started,
        }
    finally:
        runtime.close()


def _lake_rows(runtime: Runtime, workspace: str, table: str) -> int:
    if not runtime.lake.exists(workspace, table):
        return 0
    snapshot = runtime.lake.refresh(workspace, table).current_snapshot()
    summary = snapshot.summary if snapshot is not None else None
    return int(summary["total-records"]) if summary is not None else 0


def _cpu() -> tuple[float, float]:
    return time.process_time(), time.thread_time()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One member's measured run (in a child process of its own): it says ``ready`` on
    stdout once its stores are open and starts on a line from stdin, then drains its
    partitions with :meth:`~auie.process.processor.Processor.drain` (which waits for the
    other members' profile changes before its final flush and export of its share). The
    parent reads the lake and the profile store once every member has exited."""
    opened = time.perf_counter()
    data_dir = Path(spec["data_dir"])
    member, members = spec.get("member", 0), spec.get("members", 1)
    with SectionLock(data_dir / "processor.d" / "open.lock").held():  # as auie serve's
        runtime = Runtime(
            load_settings({**spec.get("settings", {}), "data_dir": str(data_dir)}, environ={})
        )
        partitions = topic_partitions(runtime.eventlog)
    gcpolicy.settle()  # as a processor's own process does
    with ProcessorLock(data_dir, member, members, partitions):
        return _measure(spec, runtime, member, members, opened)


def _measure(
    spec: dict[str, Any], runtime: Runtime, member: int, members: int, opened: float
) -> dict[str, Any]:
    processor = runtime.processor(member, members)
    open_s = time.perf_counter() - opened
    print("ready", flush=True)
    sys.stdin.readline()
    load_from = load_average()
    cpu_from = _cpu()
    started = time.perf_counter()
    report = processor.drain()
    seconds = time.perf_counter() - started
    cpu_to = _cpu()
    result = {
        "member": member,
        "events": report.events,
        "dead_letters": report.dead_letters,
        "seconds": seconds,
        "cpu_s": cpu_to[0] - cpu_from[0],
        "main_cpu_s": cpu_to[1] - cpu_from[1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lake_commits": len(report.flushes),
        "commit_s": sum(f.seconds for f in report.flushes),
        "open_s": open_s,
        "load": load_average(),
        "load_from": load_from,
        "cpu_pressure": pressure()["cpu"],
        "profile_store": runtime.profile_store.engine.dialect.name,  # type: ignore[attr-defined]
        "node_cache": runtime.settings.process.node_cache,
        "node_cache_hits": processor.node_cache.hits if processor.node_cache else 0,
        "node_cache_misses": processor.node_cache.misses if processor.node_cache else 0,
    }
    runtime.close()
    return result


def _checks(work: Path, workspace: str, settings: dict[str, str]) -> dict[str, int]:
    """What the group left in the lake and the profile store (read once every member has
    exited: each exports its share at its own end)."""
    runtime = Runtime(load_settings({**settings, "data_dir": str(work)}, environ={}))
    try:
        return {
            "lake_events": _lake_rows(runtime, workspace, EVENTS),
            "lake_identities": _lake_rows(runtime, workspace, IDENTITIES),
            "profiles": len(runtime.profile_store.profile_ids(workspace)),
            "identifiers": runtime.profile_store.count_nodes(workspace),
        }
    finally:
        runtime.close()


def _combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The group's figures from its members': the longest clock, summed work."""
    lead = next(r for r in results if r["member"] == 0)
    combined = dict(lead)
    combined["seconds"] = max(r["seconds"] for r in results)
    summed = ("events", "dead_letters", "cpu_s", "main_cpu_s", "lake_commits", "commit_s")
    for key in (*summed, "node_cache_hits", "node_cache_misses"):
        combined[key] = sum(r[key] for r in results)
    combined["peak_rss_mib"] = sum(r["peak_rss_mib"] for r in results)
    combined["events_per_s"] = combined["events"] / combined["seconds"]
    combined["events_per_cpu_s"] = combined["events"] / max(1e-9, combined["cpu_s"])
    combined["members"] = len(results)
    combined["member_seconds"] = [round(r["seconds"], 2) for r in results]
    return combined


def run(
    template: Path,
    work: Path,
    workspace: str,
    *,
    members: int = 1,
    profile_to: Path | None = None,
    settings: dict[str, str] | None = None,
    postgres: bool = False,
    code: Path | None = None,
) -> dict[str, Any]:
    """Copy ``template`` to ``work``, process it with a group of ``members`` processor
    processes, return the group's figures. With ``profile_to``, py-spy samples member 0
    into that file while it processes; ``settings`` are dotted settings
    (``{"process.node_cache": "0"}``) over the defaults;
    ``postgres`` puts the profile store in a fresh database of the local PostgreSQL;
    ``code`` is another checkout of the repository whose ``src`` and ``bench`` the
    children run (a baseline), instead of this one."""
    with postgres_database() if postgres else contextlib.nullcontext(None) as url:
        if url is not None:
            settings = {**(settings or {}), "profiles.url": url}
        return _run(
            template,
            work,
            workspace,
            members=members,
            profile_to=profile_to,
            settings=settings or {},
            code=code,
        )


def _environment(code: Path | None) -> dict[str, str] | None:
    """The children's environment: ``code``'s auie ahead of the virtualenv's."""
    return None if code is None else {**os.environ, "PYTHONPATH": str(code / "src")}


def _run(
    template: Path,
    work: Path,
    workspace: str,
    *,
    members: int,
    profile_to: Path | None,
    settings: dict[str, str],
    code: Path | None,
) -> dict[str, Any]:
    env = _environment(code)
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work)
    children = []
    for member in range(members):
        spec = {
            "data_dir": str(work),
            "workspace": workspace,
            "output": str(work.with_suffix(f".{member}.json")),
            "member": member,
            "members": members,
            "settings": settings,
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.process.throughput", json.dumps(spec)],
                cwd=code or REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
    spy = None
    try:
        for process in children:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a throughput child did not start")
        if profile_to is not None:
            spy = profile.start(children[0].pid, 3600, profile_to)
            time.sleep(1.0)  # let py-spy attach before the clock starts
        for process in children:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        for process in children:
            if process.wait() != 0:
                raise RuntimeError(f"a throughput child failed (exit {process.returncode})")
    finally:
        for process in children:
            if process.poll() is None:
                process.kill()
        if spy is not None:
            spy.wait(timeout=120)
    results = [
        json.loads(work.with_suffix(f".{member}.json").read_text()) for member in range(members)
    ]
    checks = _checks(work, workspace, settings)
    shutil.rmtree(work, ignore_errors=True)
    return {**_combine(results), **checks}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = child(spec)
    Path(spec["output"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
