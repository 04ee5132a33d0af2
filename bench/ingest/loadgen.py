"""The load generator: one process, uvloop, raw keep-alive HTTP/1.1 over asyncio streams.

Run as ``python -m bench.ingest.loadgen`` with a JSON spec on stdin; writes a JSON result
to the spec's ``output`` file. The orchestrator (:mod:`bench.ingest.main`) starts one or
more of these next to the ``auie serve`` process, so the load never shares an interpreter
with the server.

Requests are pre-built templates (see :mod:`bench.ingest.payloads`), made unique per
request by a ``bytes.join``. Every response is read whole; its status must be 200 and its
JSON reply is decoded to count accepted, duplicate and rejected events.

Two modes:

* ``closed``: ``clients`` connections, each sending its next request as soon as the
  previous reply is in. Measures capacity (requests and events per second).
* ``open``: requests are *scheduled* at a fixed rate whatever the server does, on a pool
  of connections that grows when all are busy; latency runs from the scheduled time, so a
  stalled server is charged for every request that had to wait (no coordinated omission).

Timeline: all processes start sending at the same wall-clock ``start_at``; the first
``warmup`` seconds are not measured, the next ``duration`` seconds are.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench.ingest.payloads import batch_template, http_template, render, single_template

_MAX_ERROR_SAMPLES = 5
_DRAIN_SECONDS = 30.0


class Reply(msgspec.Struct):
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Any] = msgspec.field(default_factory=list)


_decode_reply = msgspec.json.Decoder(Reply).decode


class ProtocolError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, data: bytes, stats: Stats) -> tuple[int, bytes]:
        """Send ``data``; the response status and body. Reconnects (once) if the server had
        closed the idle connection before this request reached it."""
        for attempt in (0, 1):
            if self.writer is None:
                try:
                    await self.connect()
                except OSError as exc:
                    raise ProtocolError(f"cannot connect: {exc!r}") from None
            assert self.reader is not None
            assert self.writer is not None
            self.writer.write(data)
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, OSError) as exc:
                self.close()
                partial = getattr(exc, "partial", b"")
                if attempt == 0 and not partial:
                    stats.reconnects += 1
                    continue
                raise ProtocolError(f"connection lost: {exc!r}") from None
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                self.close()
                raise ProtocolError(f"no Content-Length in {head[:200]!r}")
            end = lower.index(b"\r\n", at + 2)
            body = await self.reader.readexactly(int(lower[at + 17 : end]))
            if b"\r\nconnection: close" in lower:
                self.close()
            return status, body
        raise AssertionError("unreachable")


@dataclass
class Stats:
    measure_from: float
    measure_to: float
    latencies: list[float] = field(default_factory=list)
    requests_in_window: int = 0
    accepted_in_window: int = 0
    requests_total: int = 0
    accepted_total: int = 0
    duplicates_total: int = 0
    rejected_total: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    reconnects: int = 0
    unfinished: int = 0

    def record(self, mark: float, latency: float, status: int, body: bytes) -> None:
        """``mark`` decides the window: completion time (closed) or scheduled time (open)."""
        self.requests_total += 1
        if status != 200:
            self._error(f"HTTP {status}: {body[:200]!r}")
            return
        try:
            reply = _decode_reply(body)
        except msgspec.DecodeError:
            self._error(f"bad reply body {body[:200]!r}")
            return
        self.accepted_total += reply.accepted
        self.duplicates_total += reply.duplicates
        self.rejected_total += len(reply.rejected)
        if self.measure_from <= mark < self.measure_to:
            self.requests_in_window += 1
            self.accepted_in_window += reply.accepted
            self.latencies.append(latency)

    def _error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(text)


def _templates(spec: dict[str, Any]) -> list[list[bytes]]:
    rng = random.Random(spec["seed"])
    tag = spec["tag"]
    templates = []
    for _ in range(spec.get("templates", 32)):
        if spec["kind"] == "batch":
            body = batch_template(rng, tag, spec.get("events_per_request", 100))
        else:
            body = single_template(rng, tag)
        templates.append(http_template(spec["path"], body, spec["port"], spec["write_key"]))
    return templates


async def _closed(spec: dict[str, Any], templates: list[list[bytes]], stats: Stats) -> None:
    counter = itertools.count(spec.get("seq_start", 0))
    connections = [Connection(spec["port"]) for _ in range(spec["clients"])]
    await asyncio.gather(*(c.connect() for c in connections))
    await _sleep_until(spec["t0"])
    end = stats.measure_to
    clock = time.perf_counter

    async def client(conn: Connection) -> None:
        while clock() < end:
            seq = next(counter)
            data = render(templates[seq % len(templates)], seq)
            started = clock()
            try:
                status, body = await conn.request(data, stats)
            except ProtocolError as exc:
                stats.requests_total += 1
                stats._error(str(exc))
                continue
            done = clock()
            stats.record(done, done - started, status, body)
        conn.close()

    await asyncio.gather(*(client(c) for c in connections))


class Pool:
    """Connections for the open loop: FIFO reuse (keeps every one warm), grows on demand."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[Connection]] = collections.deque()
        self.size = 0
        self.peak = 0

    async def prime(self, count: int) -> None:
        fresh = [Connection(self.port) for _ in range(count)]
        await asyncio.gather(*(c.connect() for c in fresh))
        self.idle.extend(fresh)
        self.size = self.peak = count

    async def acquire(self) -> Connection:
        if self.idle:
            return self.idle.popleft()
        if self.size < self.limit:
            self.size += 1
            self.peak = max(self.peak, self.size)
            return Connection(self.port)  # connects on first request (counted in latency)
        waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn: Connection) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


async def _open(spec: dict[str, Any], templates: list[list[bytes]], stats: Stats) -> dict[str, Any]:
    rate = float(spec["rate"])
    pool = Pool(spec["port"], spec.get("max_connections", 256))
    await pool.prime(spec.get("connections", 8))
    counter = itertools.count(spec.get("seq_start", 0))
    clock = time.perf_counter
    t0 = spec["t0"] + spec.get("phase", 0.0) / rate
    end = stats.measure_to
    tasks: set[asyncio.Task[None]] = set()
    max_late = 0.0

    async def one(intended: float) -> None:
        conn = await pool.acquire()
        seq = next(counter)
        data = render(templates[seq % len(templates)], seq)
        try:
            status, body = await conn.request(data, stats)
        except ProtocolError as exc:
            stats.requests_total += 1
            stats._error(str(exc))
            conn.close()
            pool.release(conn)
            return
        done = clock()
        pool.release(conn)
        stats.record(intended, done - intended, status, body)

    await _sleep_until(t0)
    for k in itertools.count():
        intended = t0 + k / rate
        if intended >= end:
            break
        now = clock()
        if intended > now:
            await asyncio.sleep(intended - now)
        else:
            max_late = max(max_late, now - intended)
        task = asyncio.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=_DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        stats.unfinished = len(pending)
    pool.close()
    return {"peak_connections": pool.peak, "max_schedule_lag_ms": round(max_late * 1000, 3)}


async def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    templates = _templates(spec)
    # all processes share the wall-clock start; the rest of the timeline is perf_counter
    t0 = time.perf_counter() + max(0.0, spec["start_at"] - time.time())
    spec["t0"] = t0
    measure_from = t0 + spec["warmup"]
    stats = Stats(measure_from, measure_from + spec["duration"])
    cpu: dict[str, float] = {}

    async def sample_cpu() -> None:
        await _sleep_until(stats.measure_from)
        cpu["from"] = _cpu()
        await _sleep_until(stats.measure_to)
        cpu["to"] = _cpu()

    sampler = asyncio.create_task(sample_cpu())
    extra: dict[str, Any] = {}
    if spec["mode"] == "closed":
        await _closed(spec, templates, stats)
    else:
        extra = await _open(spec, templates, stats)
    await sampler
    sample = render(templates[0], 0)
    body_bytes = len(sample) - sample.index(b"\r\n\r\n") - 4
    return {
        "latencies_ms": [round(x * 1000, 3) for x in stats.latencies],
        "requests_in_window": stats.requests_in_window,
        "accepted_in_window": stats.accepted_in_window,
        "requests_total": stats.requests_total,
        "accepted_total": stats.accepted_total,
        "duplicates_total": stats.duplicates_total,
        "rejected_total": stats.rejected_total,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "reconnects": stats.reconnects,
        "unfinished": stats.unfinished,
        "window_s": spec["duration"],
        "cpu_s": cpu.get("to", 0.0) - cpu.get("from", 0.0),
        "request_body_bytes": body_bytes,
        **extra,
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(_run(spec))
    else:
        result = uvloop.run(_run(spec))
    Path(spec["output"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
