"""The freshness benchmark's load: a steady rate of ``/v1/batch`` requests, in its own
process, with every acknowledgement of a sampled event streamed to the orchestrator.

Run as ``python -m bench.process.feeder`` with a JSON spec on stdin. It reuses the ingest
benchmark's pieces (:mod:`bench.ingest.payloads` templates, :mod:`bench.ingest.loadgen`
connections): an open loop that schedules ``rate`` requests per second whatever the
server does. The first event of every request is the sample: when the collector's 200
for that request is read, the line ``ack <messageId> <unix time>`` goes to stdout at
once. The orchestrator polls the lake for those ids (:mod:`.freshness`). At the end the
feeder writes its totals (requests, accepted events, errors, request latencies) to the
spec's ``output`` file.
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
from bench.ingest.payloads import SEQ_DIGITS, batch_template, http_template, render


def sample_id(tag: str, seq: int) -> str:
    """The messageId of the first event of request ``seq`` (see batch_template)."""
    return f"{tag}-{seq:0{SEQ_DIGITS}d}-000"


async def _feed(spec: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(spec["seed"])
    tag, size = spec["tag"], spec["events_per_request"]
    templates = [
        http_template("/v1/batch", batch_template(rng, tag, size), spec["port"], spec["write_key"])
        for _ in range(spec.get("templates", 32))
    ]
    rate = spec["rate"] / size
    stats = Stats(0.0, float("inf"))
    pool = Pool(spec["port"], 64)
    await pool.prime(4)
    clock = time.perf_counter
    t0 = clock() + max(0.0, spec["start_at"] - time.time())
    end = t0 + spec["seconds"]
    tasks: set[asyncio.Task[None]] = set()
    counter = itertools.count(1)
    out = sys.stdout

    async def one(intended: float, seq: int) -> None:
        conn = await pool.acquire()
        try:
            status, body = await conn.request(render(templates[seq % len(templates)], seq), stats)
        except ProtocolError as exc:
            stats.requests_total += 1
            stats._error(str(exc))
            conn.close()
            pool.release(conn)
            return
        done = clock()
        acked = time.time()
        pool.release(conn)
        stats.record(intended, done - intended, status, body)
        if status == 200:
            out.write(f"ack {sample_id(tag, seq)} {acked:.6f}\n")
            out.flush()

    for k in itertools.count():
        intended = t0 + k / rate
        if intended >= end:
            break
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(intended, next(counter)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=30)
        for task in pending:
            task.cancel()
        stats.unfinished = len(pending)
    pool.close()
    latencies = sorted(stats.latencies)
    return {
        "requests": stats.requests_total,
        "accepted": stats.accepted_total,
        "duplicates": stats.duplicates_total,
        "rejected": stats.rejected_total,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "unfinished": stats.unfinished,
        "request_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "request_max_ms": 1000 * latencies[-1] if latencies else None,
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(_feed(spec))
    else:
        result = uvloop.run(_feed(spec))
    Path(spec["output"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
