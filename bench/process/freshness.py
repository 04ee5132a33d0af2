"""Freshness: how long after the collector's 200 an event can be queried in the lake.

A real ``auie serve`` (:class:`bench.ingest.server.AuieServer`: fresh data directory,
free port, rate limiting off, the processor in its child process as in production) is
fed a steady rate by :mod:`.feeder` in a separate process. The feeder streams the
acknowledgement time of one sampled event per request; this process polls the
workspace's ``events`` table with a pyiceberg scan filtered on the sampled messageIds
still outstanding (reloading the table from the catalog each time, as a new reader
would) and notes, for each, the start of the first poll that returned it. The latency
of a sample is that moment minus its acknowledgement, so it is an upper bound, coarse
by one poll (interval and poll duration are reported).
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.expressions import In

from auie.config import Settings
from auie.lake.catalog import open_catalog
from bench.ingest.server import AuieServer, load_average, pressure

REPO = Path(__file__).resolve().parents[2]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Acks:
    """Acknowledged samples streamed by the feeder: messageId → unix time of the 200."""

    def __init__(self, stream: Any) -> None:
        self.acked: dict[str, float] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            kind, message_id, moment = raw.decode().split()
            if kind == "ack":
                with self.lock:
                    self.acked[message_id] = float(moment)

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return dict(self.acked)


class LakePoller:
    """Scans the ``events`` table for outstanding sample ids; records when each shows up."""

    def __init__(self, server: AuieServer) -> None:
        self.data = server.data_dir.resolve()
        self.catalog: SqlCatalog | None = None
        self.identifier = (server.workspace, "events")
        self.visible: dict[str, float] = {}
        self.polls = 0
        self.poll_seconds = 0.0

    def poll(self, outstanding: set[str]) -> None:
        if not outstanding:
            return
        if self.catalog is None:
            if not (self.data / "lake" / "catalog.db").exists():
                return  # the processor has not opened the lake yet
            self.catalog = open_catalog(Settings(data_dir=self.data))
        started = time.time()
        clock = time.perf_counter()
        try:
            table = self.catalog.load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            return
        found = table.scan(
            row_filter=In("message_id", outstanding), selected_fields=("message_id",)
        ).to_arrow()
        for message_id in found.column("message_id").to_pylist():
            self.visible.setdefault(message_id, started)
        self.polls += 1
        self.poll_seconds += time.perf_counter() - clock


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def measure(
    *,
    rate: float,
    seconds: float,
    warmup: float,
    interval: float,
    drain: float,
    workers: int = 0,
    keep: bool = False,
) -> dict[str, Any]:
    """One freshness run against its own ``auie serve`` (its processor group of
    ``workers``; 0: the default, one per CPU)."""
    server = AuieServer({"process.workers": workers}, keep=keep)
    try:
        server.start()
        return _measure(
            server, rate=rate, seconds=seconds, warmup=warmup, interval=interval, drain=drain
        )
    finally:
        server.cleanup()


def _prime(server: AuieServer, interval: float, timeout: float = 120.0) -> float:
    """Send one event and wait until the lake returns it: the processor child is up and
    the tables exist before the clock starts. Returns the seconds that took."""
    message_id = f"prime-{random.randrange(36**8):08x}"
    body = json.dumps({"userId": "bench-prime", "event": "Bench Primed", "messageId": message_id})
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/track",
        data=body.encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode(),
        },
    )
    started = time.time()
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200
    poller = LakePoller(server)
    while message_id not in poller.visible:
        if time.time() - started > timeout:
            raise RuntimeError(f"the priming event did not reach the lake in {timeout:g} s")
        poller.poll({message_id})
        time.sleep(interval)
    return time.time() - started


def _measure(
    server: AuieServer, *, rate: float, seconds: float, warmup: float, interval: float, drain: float
) -> dict[str, Any]:
    primed = _prime(server, interval)
    start_at = time.time() + 1.0
    window = (start_at + warmup, start_at + warmup + seconds)
    spec = {
        "port": server.port,
        "write_key": server.write_key,
        "rate": rate,
        "events_per_request": 100,
        "seconds": warmup + seconds,
        "start_at": start_at,
        "seed": random.SystemRandom().randrange(10**9),
        "tag": f"fr{random.randrange(36**4):04x}",
        "output": str(server.root / "feeder.json"),
    }
    feeder = subprocess.Popen(
        [sys.executable, "-m", "bench.process.feeder"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert feeder.stdin is not None
    assert feeder.stdout is not None
    feeder.stdin.write(json.dumps(spec).encode())
    feeder.stdin.close()
    acks = Acks(feeder.stdout)
    poller = LakePoller(server)
    cpu: dict[str, Any] = {}
    deadline = window[1] + drain
    while time.time() < deadline:
        now = time.time()
        if "from" not in cpu and now >= window[0]:
            cpu["from"] = _sample_cpu(server)
        if "to" not in cpu and now >= window[1]:
            cpu["to"] = _sample_cpu(server)
            cpu["load"] = load_average()
            cpu["pressure"] = pressure()
        acked = acks.snapshot()
        outstanding = {m for m, t in acked.items() if window[0] <= t < window[1]}
        outstanding -= poller.visible.keys()
        if feeder.poll() is not None and now >= window[1] and not outstanding:
            break
        poller.poll(outstanding)
        time.sleep(interval)
    if feeder.wait(timeout=60) != 0:
        raise RuntimeError(f"feeder failed (exit {feeder.returncode})")
    acks.thread.join(timeout=5)
    result = _result(spec, window, acks.snapshot(), poller, cpu, seconds=seconds)
    result["prime_s"] = primed
    return result


def _sample_cpu(server: AuieServer) -> dict[str, float]:
    children = _children(server.pid)
    return {
        "time": time.time(),
        "server": _cpu_of(server.pid),
        "processor": sum(_cpu_of(pid) for pid in children),
    }


def _result(
    spec: dict[str, Any],
    window: tuple[float, float],
    acked: dict[str, float],
    poller: LakePoller,
    cpu: dict[str, Any],
    *,
    seconds: float,
) -> dict[str, Any]:
    fed = json.loads(Path(spec["output"]).read_text())
    sampled = {m: t for m, t in acked.items() if window[0] <= t < window[1]}
    latencies = [poller.visible[m] - t for m, t in sampled.items() if m in poller.visible]
    unseen = len(sampled) - len(latencies)
    # an event never seen counts as slower than any seen one
    ranked = latencies + [float("inf")] * unseen
    span = cpu.get("to", {}).get("time", 0.0) - cpu.get("from", {}).get("time", 0.0)

    def share(key: str) -> float:
        if span <= 0:
            return float("nan")
        return (cpu["to"][key] - cpu["from"][key]) / span

    return {
        "rate": spec["rate"],
        "accepted_per_s": fed["accepted"] / (spec["seconds"]),
        "samples": len(sampled),
        "unseen": unseen,
        "p50_s": _percentile(ranked, 0.50),
        "p90_s": _percentile(ranked, 0.90),
        "p99_s": _percentile(ranked, 0.99),
        "max_s": max(ranked) if ranked else float("nan"),
        "min_s": min(latencies) if latencies else float("nan"),
        "polls": poller.polls,
        "mean_poll_s": poller.poll_seconds / max(1, poller.polls),
        "server_cpu": share("server"),
        "processor_cpu": share("processor"),
        "load": cpu.get("load", load_average()),
        "cpu_pressure": cpu.get("pressure", pressure())["cpu"],
        "feeder": fed,
        "window_s": seconds,
    }
