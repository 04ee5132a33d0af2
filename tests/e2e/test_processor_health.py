"""A monitor sees the processor group of a real ``auie serve``: members running, restarts
and lag in ``/readyz`` and ``/metrics``, also while a member is dead and being restarted
(events are still accepted meanwhile: readiness is about accepting them)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import basic, child_pids, start_server

pytestmark = pytest.mark.slow


def processor_children(pid: int) -> list[int]:
    """The server's processor processes (with the log writer in a thread, its only
    children started by multiprocessing's spawn)."""
    found = []
    for child in child_pids(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def wait_for(url: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(f"{url}/readyz", timeout=5)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        if check(body["processor"]):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_readyz_and_metrics_show_the_processor_group(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", None, "--set", "eventlog.writer=thread", "--set", "process.workers=1"
    )
    try:
        url, key = server.url, server.credentials["writeKey"]
        batch = [{"type": "track", "userId": f"u-{i}", "event": "Seen"} for i in range(20)]
        sent = httpx.post(f"{url}/v1/batch", json={"batch": batch}, headers=basic(key))
        assert sent.status_code == 200, sent.text
        body = wait_for(url, lambda p: p["lag"] == 0 and p["running"] == 1)
        assert body == {
            "status": "ready",
            "processor": {"members": 1, "running": 1, "restarts": 0, "lag": 0},
        }

        [child] = processor_children(server.process.pid)
        os.kill(child, signal.SIGKILL)
        # Dead, then restarted (after 1 s): the restart is counted, events wait meanwhile.
        sent = httpx.post(f"{url}/v1/batch", json={"batch": batch[:5]}, headers=basic(key))
        assert sent.status_code == 200, sent.text
        wait_for(url, lambda p: p["restarts"] == 1)
        assert metric(url, "auie_processor_restarts_total") == 1
        wait_for(url, lambda p: p["running"] == 1 and p["lag"] == 0)
        assert metric(url, "auie_processor_running") == 1
        assert metric(url, "auie_processor_lag_events") == 0
        assert processor_children(server.process.pid) != [child]
    finally:
        server.stop()
