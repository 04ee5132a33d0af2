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

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from auie.config import Settings
from auie.lake.tables import EVENTS, IDENTITIES
from auie.runtime import Runtime
from bench.ingest import profile
from bench.ingest.server import load_average, pressure
from bench.process.stream import Stream, fill

REPO = Path(__file__).resolve().parents[2]


def prepare(directory: Path, *, seed: int, events: int, people: int) -> dict[str, Any]:
    """A bootstrapped data directory whose event log holds the whole stream."""
    runtime = Runtime(Settings(data_dir=directory))
    try:
        boot = runtime.bootstrap()
        assert boot is not None, f"{directory} is not a fresh data directory"
        started = time.perf_counter()
        size = fill(runtime.eventlog, Stream(seed, events, people), boot.workspace, boot.source)
        return {
            "workspace": boot.workspace,
            "events": events,
            "people": people,
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
    """One measured run (in the child process)."""
    opened = time.perf_counter()
    runtime = Runtime(Settings(data_dir=Path(spec["data_dir"])))
    processor = runtime.processor()
    open_s = time.perf_counter() - opened
    if spec.get("wait"):
        print("ready", flush=True)
        sys.stdin.readline()
    load_from = load_average()
    cpu_from = _cpu()
    started = time.perf_counter()
    events = dead = steps = 0
    flushes = []
    while True:
        report = processor.step()
        steps += 1
        events += report.events
        dead += report.dead_letters
        flushes += report.flushes
        if report.events == 0 and report.dead_letters == 0:
            break
    flushes += processor.flush()
    seconds = time.perf_counter() - started
    cpu_to = _cpu()
    result = {
        "events": events,
        "dead_letters": dead,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "cpu_s": cpu_to[0] - cpu_from[0],
        "main_cpu_s": cpu_to[1] - cpu_from[1],
        "events_per_cpu_s": events / max(1e-9, cpu_to[0] - cpu_from[0]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": steps,
        "lake_commits": len(flushes),
        "commit_s": sum(f.seconds for f in flushes),
        "open_s": open_s,
        "load": load_average(),
        "load_from": load_from,
        "cpu_pressure": pressure()["cpu"],
    }
    workspace = spec["workspace"]
    result["lake_events"] = _lake_rows(runtime, workspace, EVENTS)
    result["lake_identities"] = _lake_rows(runtime, workspace, IDENTITIES)
    result["profiles"] = len(runtime.profile_store.profile_ids(workspace))
    result["identifiers"] = runtime.profile_store.count_nodes(workspace)
    runtime.close()
    return result


def run(
    template: Path, work: Path, workspace: str, *, profile_to: Path | None = None
) -> dict[str, Any]:
    """Copy ``template`` to ``work``, process it in a child process, return its figures.
    With ``profile_to``, py-spy samples the child into that file while it processes."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work)
    output = work.with_suffix(".json")
    spec = {
        "data_dir": str(work),
        "workspace": workspace,
        "output": str(output),
        "wait": profile_to is not None,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.process.throughput", json.dumps(spec)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    spy = None
    try:
        if profile_to is not None:
            assert process.stdout is not None
            assert process.stdin is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("the throughput child did not start")
            spy = profile.start(process.pid, 3600, profile_to)
            time.sleep(1.0)  # let py-spy attach before the clock starts
            process.stdin.write(b"go\n")
            process.stdin.flush()
        if process.wait() != 0:
            raise RuntimeError(f"the throughput child failed (exit {process.returncode})")
    finally:
        if process.poll() is None:
            process.kill()
        if spy is not None:
            spy.wait(timeout=120)
    result: dict[str, Any] = json.loads(output.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = child(spec)
    Path(spec["output"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
