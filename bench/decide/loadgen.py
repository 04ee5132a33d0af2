"""Open-loop load on ``POST /v1/decide``, in its own process.

Run as ``python -m bench.decide.loadgen`` with a JSON spec on stdin; writes a JSON result to
the spec's ``output`` file. Requests are *scheduled* at a fixed rate whatever the server
does, on a pool of keep-alive connections that grows when all are busy (the ingest
benchmark's :class:`~bench.ingest.loadgen.Pool`), and latency runs from the scheduled send
time, so a stalled server is charged for every request that had to wait (no coordinated
omission).

Bodies are pre-built: 20 Gaussian context features and 10 feature-less actions (the
synthetic stream's shape), a ``userId`` among ``users`` people.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.ingest.loadgen import Pool, ProtocolError, Stats

_DRAIN_SECONDS = 30.0


def bodies(count: int, users: int, point: str, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    actions = [{"id": f"a{i}"} for i in range(10)]
    out = []
    for _ in range(count):
        body = {
            "decisionPoint": point,
            "userId": f"user-{rng.randrange(users)}",
            "context": {f"f{j}": round(rng.gauss(0, 1), 6) for j in range(20)},
            "actions": actions,
        }
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def request(body: bytes, port: int, token: str) -> bytes:
    head = (
        f"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    port, rate = int(spec["port"]), float(spec["rate"])
    requests = [
        request(b, port, spec["token"])
        for b in bodies(spec.get("bodies", 2000), spec["users"], spec["point"], spec["seed"])
    ]
    clock = time.perf_counter
    t0 = clock() + max(0.0, spec["start_at"] - time.time())
    stats = Stats(t0 + spec["warmup"], t0 + spec["warmup"] + spec["duration"])
    pool = Pool(port, spec.get("max_connections", 256))
    await pool.prime(spec.get("connections", 16))
    tasks: set[asyncio.Task[None]] = set()
    max_late = 0.0
    statuses: dict[int, int] = {}
    sent_at: list[float] = []  # each measured request's scheduled time, from the window's start

    async def one(intended: float, data: bytes) -> None:
        conn = await pool.acquire()
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
        stats.requests_total += 1
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200 or b'"actionId"' not in body:
            stats._error(f"HTTP {status}: {body[:200]!r}")
        elif stats.measure_from <= intended < stats.measure_to:
            stats.requests_in_window += 1
            stats.latencies.append(done - intended)
            sent_at.append(intended - stats.measure_from)

    delay = t0 - clock()
    if delay > 0:
        await asyncio.sleep(delay)
    for k in itertools.count():
        intended = t0 + k / rate
        if intended >= stats.measure_to:
            break
        now = clock()
        if intended > now:
            await asyncio.sleep(intended - now)
        else:
            max_late = max(max_late, now - intended)
        task = asyncio.create_task(one(intended, requests[k % len(requests)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=_DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        stats.unfinished = len(pending)
    pool.close()
    return {
        "latencies_ms": [round(x * 1000, 4) for x in stats.latencies],
        "sent_at_s": [round(x, 4) for x in sent_at],
        "requests_in_window": stats.requests_in_window,
        "requests_total": stats.requests_total,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "unfinished": stats.unfinished,
        "peak_connections": pool.peak,
        "max_schedule_lag_ms": round(max_late * 1000, 3),
        "request_bytes": len(requests[0]),
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
