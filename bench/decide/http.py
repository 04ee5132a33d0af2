"""``POST /v1/decide`` latency at a fixed rate against a real ``auie serve``.

The server is started with the tests' ``start_server`` (tests/helpers.py) on a fresh data
directory and a free loopback port; a token with scopes ``decide admin`` comes from the
bootstrap client (client credentials). The decision point ``bench`` is configured with the
default policy and the synthetic stream's 10 actions, and ``reward.waitSeconds = 2``: every
decision closes 2 s later with the default reward and is learned, so the server learns at
the request rate while it serves (a decision point that never learns would be flattering).
Every decision is appended durably to the event log before the reply, as in production.

The load comes from :mod:`bench.decide.loadgen` in a separate process (open loop).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from helpers import basic, start_server  # noqa: E402

POINT = "bench"


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def _writer_cpu_seconds(url: str) -> float:
    """CPU so far of the server's log writer process (``/metrics``; 0 with a thread writer)."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("auie_log_writer_cpu_seconds "):
            return float(line.split()[1])
    return 0.0


def _by_second(latencies: np.ndarray, sent_at: np.ndarray, duration: float) -> list[float]:
    """p99 of the requests scheduled in each second of the window (where the tail sits in
    time: a steady tail and a few stalls look alike in one overall p99)."""
    seconds = np.floor(sent_at).astype(np.int64)
    out = []
    for second in range(int(duration)):
        chosen = latencies[seconds == second]
        out.append(round(float(np.percentile(chosen, 99)), 2) if len(chosen) else float("inf"))
    return out


def _token(url: str, credentials: dict[str, str]) -> str:
    reply = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "decide admin"},
        headers=basic(credentials["clientId"], credentials["clientSecret"]),
        timeout=30,
    )
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def measure(*, rate: float, duration: float, warmup: float, users: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="auie-bench-decide-"))
    server = start_server(root / "data")
    try:
        token = _token(server.url, server.credentials)
        config = {
            "actions": [{"id": f"a{i}"} for i in range(10)],
            "reward": {"waitSeconds": 2},
        }
        reply = httpx.put(
            f"{server.url}/v1/decision-points/{POINT}",
            json=config,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        reply.raise_for_status()
        output = root / "loadgen.json"
        spec = {
            "port": server.port,
            "token": token,
            "rate": rate,
            "warmup": warmup,
            "duration": duration,
            "users": users,
            "point": POINT,
            "seed": 1,
            "start_at": time.time() + 1.5,
            "output": str(output),
        }
        cpu_before = _cpu_seconds(server.process.pid) + _writer_cpu_seconds(server.url)
        load_before = _load()
        subprocess.run(
            [sys.executable, "-m", "bench.decide.loadgen"],
            input=json.dumps(spec).encode(),
            check=True,
            cwd=REPO,
        )
        load_after = _load()
        # The server process and its log writer process (ADR 13), not the processor.
        cpu = _cpu_seconds(server.process.pid) + _writer_cpu_seconds(server.url) - cpu_before
        result = json.loads(output.read_text())
        report = httpx.get(
            f"{server.url}/v1/decision-points/{POINT}/report",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
    finally:
        server.stop()
    answered = np.asarray(result.pop("latencies_ms"), dtype=np.float64)
    sent_at = np.asarray(result.pop("sent_at_s"), dtype=np.float64)
    # Requests scheduled in the window but never answered (cancelled 30 s after the last
    # send) count as infinitely late, so a saturated server cannot look better than it is.
    unanswered = max(0, round(rate * duration) - len(answered) - int(result["errors"]))
    latencies = np.concatenate([answered, np.full(unanswered, np.inf)])

    def pct(q: float) -> float | None:
        return float(np.percentile(latencies, q, method="higher")) if len(latencies) else None

    summary = {
        "rate": rate,
        "duration_s": duration,
        "measured": len(answered),
        "unanswered": unanswered,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": float(latencies.max()) if len(latencies) else None,
        "max_answered_ms": float(answered.max()) if len(answered) else None,
        "server_cpu_share": cpu / (duration + warmup + 1.5),
        "server_cpu_ms_per_request": 1000 * cpu / max(1, result["requests_total"]),
        "load_1m": (load_before + load_after) / 2,
        "p99_ms_by_second": _by_second(answered, sent_at, duration),
        "decisions_learned": (report.get("arms", {}).get("main", {}) or {}).get("rewarded"),
        **result,
    }
    print(
        f"  http /v1/decide at {rate:,.0f}/s for {duration:.0f}s: "
        f"p50 {summary['p50_ms']:.2f} ms p99 {summary['p99_ms']:.2f} ms  "
        f"unanswered {unanswered}  errors {summary['errors']}  load {summary['load_1m']:.2f}",
        flush=True,
    )
    return summary
