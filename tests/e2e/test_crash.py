"""``kill -9`` a loaded ``auie serve``, restart it on the same data, and count every event.

Concurrent clients send batches with unique messageIds and note which ones were answered
200. The server is killed mid-load at a few different moments. After a restart on the
same data directory:

* every acknowledged batch is in the log, completely, exactly once;
* every other batch is there completely or not at all (one batch, one transaction);
* after the clients resend every unacknowledged batch (and some acknowledged ones), each
  messageId is in the log exactly once, and the replies say which were duplicates.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from auie.config import Settings
from auie.eventlog import EVENTS_TOPIC
from auie.eventlog.sqlite import SQLiteEventLog
from auie.process.supervisor import group_size
from helpers import AUIE, Server, child_pids, is_zombie, start_server

pytestmark = pytest.mark.slow

WORKERS = 6
BATCH_SIZE = 20


def batch(batch_id: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "userId": f"user-{(batch_id * BATCH_SIZE + i) % 17}",
            "event": "Load Tested",
            "messageId": message_id(batch_id, i),
            "properties": {"batch": batch_id, "i": i, "pad": "x" * 100},
        }
        for i in range(BATCH_SIZE)
    ]


def message_id(batch_id: int, i: int) -> str:
    return f"crash-{batch_id}-{i}"


def batch_of(message: str) -> int:
    return int(message.split("-")[1])


@dataclass
class Load:
    """What the clients sent and what the server acknowledged."""

    attempted: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    anomalies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    flowing: threading.Event = field(default_factory=threading.Event)


def client_loop(url: str, key: str, ids: Iterable[int], load: Load, stop: threading.Event) -> None:
    """Send batches until the server stops answering (or ``stop``)."""
    with httpx.Client(base_url=url, auth=(key, ""), timeout=10) as client:
        for batch_id in ids:
            if stop.is_set():
                return
            with load.lock:
                load.attempted.add(batch_id)
            try:
                reply = client.post("/v1/batch", json={"batch": batch(batch_id)})
            except httpx.TransportError:
                return  # killed: this batch may or may not have been committed
            body = reply.json()
            with load.lock:
                if reply.status_code == 200 and body["accepted"] == BATCH_SIZE:
                    load.acked.add(batch_id)
                    load.flowing.set()
                    if body["duplicates"] or body["rejected"]:
                        load.anomalies.append(f"batch {batch_id}: {body}")
                else:
                    load.anomalies.append(f"batch {batch_id}: {reply.status_code} {body}")


def slow_client(
    url: str,
    key: str,
    batch_id: int,
    load: Load,
    *,
    halfway: threading.Event,
    stop: threading.Event,
) -> None:
    """Send one batch whose body stops half-way (``halfway`` is set) until ``stop`` (set
    once the server is dead)."""
    body = json.dumps({"batch": batch(batch_id)}).encode()

    def chunks() -> Iterable[bytes]:
        yield body[: len(body) // 2]
        halfway.set()
        stop.wait(15)  # the server is killed meanwhile
        yield body[len(body) // 2 :]

    with load.lock:
        load.attempted.add(batch_id)
    with httpx.Client(base_url=url, auth=(key, ""), timeout=30) as client:
        try:
            reply = client.post(
                "/v1/batch", content=chunks(), headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError:
            return  # cut off, as intended
    with load.lock:
        load.anomalies.append(f"slow batch {batch_id} was answered: {reply.status_code}")


def run_load_and_kill(server: Server, delay: float) -> Load:
    """Load the server from several clients; ``delay`` seconds into it, ``kill -9`` it."""
    load = Load()
    stop = threading.Event()
    counter = itertools.count()
    lock = threading.Lock()

    def next_ids() -> Iterable[int]:
        while True:
            with lock:
                yield next(counter)

    threads = [
        threading.Thread(
            target=client_loop,
            args=(server.url, server.credentials["writeKey"], next_ids(), load, stop),
        )
        for _ in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    # Time the kill from the first acknowledgement, not from the threads' start: a busy
    # machine can take longer than the shortest delay just to get the first request out.
    assert load.flowing.wait(30), f"no batch was acknowledged: {load.anomalies}"
    time.sleep(delay)
    # One more client is half-way through sending its batch when the server dies, so at
    # least one request is surely cut off (the fast clients' requests may all have been
    # answered at the instant of the kill).
    with lock:
        slow_id = next(counter)
    halfway = threading.Event()
    slow = threading.Thread(
        target=slow_client,
        args=(server.url, server.credentials["writeKey"], slow_id, load),
        kwargs={"halfway": halfway, "stop": stop},
    )
    slow.start()
    assert halfway.wait(10), "the slow client could not start its request"
    before = server.log_path.stat().st_size
    server.kill()  # SIGKILL: no shutdown hooks, no final commit
    with server.log_path.open("rb") as log:  # the children exit quietly
        log.seek(before)
        after = log.read().decode(errors="replace")
    assert "Traceback" not in after, after
    stop.set()
    threads.append(slow)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return load


def resend(server: Server, batch_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Send the given batches again, concurrently; batch id → reply body."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for batch_id in batch_ids:
        todo.put(batch_id)
    replies: dict[int, dict[str, Any]] = {}
    failures: list[str] = []

    def work() -> None:
        with httpx.Client(
            base_url=server.url, auth=(server.credentials["writeKey"], ""), timeout=30
        ) as client:
            while True:
                try:
                    batch_id = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    reply = client.post("/v1/batch", json={"batch": batch(batch_id)})
                except httpx.HTTPError as exc:
                    failures.append(f"batch {batch_id}: {exc!r}")
                    continue
                if reply.status_code != 200:
                    failures.append(f"batch {batch_id}: {reply.status_code} {reply.text}")
                    continue
                replies[batch_id] = reply.json()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    return replies


def tail_message_ids(data_dir: Path) -> Counter[str]:
    """messageId → how often it is in the events topic, read with ``auie log tail``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
    done = subprocess.run(
        [AUIE, "log", "tail", "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir.parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Counter(json.loads(line)["messageId"] for line in done.stdout.splitlines() if line)


def read_message_ids(data_dir: Path) -> Counter[str]:
    """The same, read straight from the SQLite event log file."""
    log = SQLiteEventLog(data_dir / "log" / "eventlog.db")
    try:
        ids: Counter[str] = Counter()
        for part in range(log.partitions(EVENTS_TOPIC)):
            for record in log.read(EVENTS_TOPIC, part, 0, 10_000_000):
                ids[json.loads(record.value)["messageId"]] += 1
        return ids
    finally:
        log.close()


def whole_batches(ids: Counter[str]) -> dict[int, int]:
    """batch id → how many of its events are stored, checking nothing unknown is there."""
    per_batch: Counter[int] = Counter()
    for message in ids:
        assert message.startswith("crash-"), message
        per_batch[batch_of(message)] += 1
    return dict(per_batch)


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_acknowledged_events_survive_kill_9_and_resends_are_deduplicated(
    server: Server, delay: float
) -> None:
    data_dir = server.data_dir
    load = run_load_and_kill(server, delay)
    assert load.anomalies == []
    assert load.acked, "the server was killed before it acknowledged anything"
    assert load.attempted - load.acked, "no request was cut off by the kill"

    restarted = start_server(data_dir)
    try:
        # Everything acknowledged is there, once; nothing is there in part.
        ids = tail_message_ids(data_dir)
        assert [m for m, n in ids.items() if n > 1] == []
        stored = whole_batches(ids)
        assert set(stored) <= load.attempted
        assert {b: n for b, n in stored.items() if n != BATCH_SIZE} == {}
        assert load.acked <= set(stored)
        unacked = sorted(load.attempted - load.acked)
        committed_unacked = {b for b in unacked if b in stored}

        # Clients retry what was not acknowledged, and some of what was.
        again = sorted(load.acked)[::4]
        replies = resend(restarted, unacked + again)
        for batch_id, reply in replies.items():
            assert reply["accepted"] == BATCH_SIZE
            assert reply["rejected"] == []
            stored_before = batch_id in load.acked or batch_id in committed_unacked
            assert reply["duplicates"] == (BATCH_SIZE if stored_before else 0), batch_id
        assert len(replies) == len(unacked) + len(again)
    finally:
        restarted.stop()

    final = read_message_ids(data_dir)
    expected = {message_id(b, i) for b in load.attempted for i in range(BATCH_SIZE)}
    assert set(final) == expected
    assert [m for m, n in final.items() if n != 1] == []


def role(of: int) -> str:
    """``processor`` for a process holding the processor lock, else ``other``."""
    try:
        open_files = {
            os.path.basename(os.readlink(f"/proc/{of}/fd/{fd}"))
            for fd in os.listdir(f"/proc/{of}/fd")
            if os.path.islink(f"/proc/{of}/fd/{fd}")
        }
    except OSError:  # it exited meanwhile
        return "gone"
    return "processor" if "processor.lock" in open_files else "other"


def processors(server: Server) -> list[int]:
    return [c for c in child_pids(server.process.pid) if role(c) == "processor"]


def test_a_killed_processor_is_restarted_and_the_group_processes_everything(
    server: Server,
) -> None:
    members = group_size(Settings())
    deadline = time.monotonic() + 60
    while len(processors(server)) < members:
        assert time.monotonic() < deadline, f"{processors(server)} of {members} processors"
        time.sleep(0.2)
    victim = processors(server)[0]
    os.kill(victim, signal.SIGKILL)

    key = server.credentials["writeKey"]
    with httpx.Client(base_url=server.url, auth=(key, ""), timeout=30) as client:
        for batch_id in range(50):  # 17 people: every partition gets events
            assert client.post("/v1/batch", json={"batch": batch(batch_id)}).status_code == 200
    log = SQLiteEventLog(server.data_dir / "log" / "eventlog.db")
    try:
        deadline = time.monotonic() + 90
        while True:
            alive = processors(server)
            done = log.committed("processor", EVENTS_TOPIC) == log.end_offsets(EVENTS_TOPIC)
            if done and len(alive) == members and victim not in alive:
                break
            assert time.monotonic() < deadline, (alive, log.committed("processor", EVENTS_TOPIC))
            time.sleep(0.2)
    finally:
        log.close()
    assert "restarting" in server.log_path.read_text()


def test_the_processor_child_yields_the_cpu_to_the_server_and_its_log_writer(
    server: Server,
) -> None:
    # process.nice (default 5) and process.scheduler (default idle): under load,
    # acknowledging events comes before processing.
    pid = server.process.pid

    def nice(of: int) -> int:
        return int(Path(f"/proc/{of}/stat").read_text().rsplit(")", 1)[1].split()[16])

    members = group_size(Settings())
    # (at idle priority a member starts late on a saturated machine: as long as in the others)
    deadline = time.monotonic() + 90
    while len(processors(server)) < members:  # a member still starting is no one yet
        assert time.monotonic() < deadline, f"{processors(server)} of {members} processors"
        time.sleep(0.2)
    niceness = {c: (role(c), nice(c)) for c in child_pids(pid)}
    assert {n for r, n in niceness.values() if r == "processor"} == {nice(pid) + 5}, niceness
    assert {n for r, n in niceness.values() if r == "other"} == {nice(pid)}, niceness
    policies = {c: (role(c), os.sched_getscheduler(c)) for c in child_pids(pid)}
    assert {p for r, p in policies.values() if r == "processor"} == {os.SCHED_IDLE}, policies
    assert {p for r, p in policies.values() if r == "other"} == {os.SCHED_OTHER}, policies


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_the_server_and_its_children_cleanly(server: Server, presses: int) -> None:
    # Pressed twice, uvicorn exits without waiting for the application's shutdown: AUIE's
    # own shutdown still runs, and nothing is reported as an error.
    deadline = time.monotonic() + 60
    while len(processors(server)) < group_size(Settings()):
        assert time.monotonic() < deadline, "the processors did not start"
        time.sleep(0.2)
    kids = child_pids(server.process.pid)
    for _ in range(presses):
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.05)
    assert server.process.wait(60) == 0, server.log_path.read_text()[-2000:]
    log = server.log_path.read_text()
    assert "Aborted" not in log
    assert "Traceback" not in log, log[-2000:]
    assert " ERROR " not in log, log[-2000:]
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{k}").exists() for k in kids):
        assert time.monotonic() < deadline, f"children {kids} outlived the server"
        time.sleep(0.1)


def test_processors_die_with_a_killed_server_even_without_cpu(server: Server) -> None:
    # A processor notices on its own that the server is gone, but only when it runs: at
    # idle priority on a busy machine that can take long, while it holds its partition
    # locks. The kernel kills it with the server instead (PR_SET_PDEATHSIG). Stopped
    # processors (SIGSTOP) cannot notice anything: they must die all the same.
    deadline = time.monotonic() + 60
    while len(processors(server)) < group_size(Settings()):
        assert time.monotonic() < deadline, "the processors did not start"
        time.sleep(0.2)
    # A processor the watcher thread restarted dies with it too.
    os.kill(processors(server)[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(processors(server)) < group_size(Settings()):
        assert time.monotonic() < deadline, "the killed processor was not restarted"
        time.sleep(0.2)
    stopped = processors(server)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{p}").exists() and not is_zombie(p) for p in stopped):
        assert time.monotonic() < deadline, f"processors {stopped} outlived the killed server"
        time.sleep(0.05)


def test_a_port_that_is_taken_ends_serve_before_it_creates_or_prints_anything(
    tmp_path: Path,
) -> None:
    """``auie serve`` on a taken port used to bootstrap the data directory, print the first
    start's credentials and "AUIE listening on ...", and only then fail in uvicorn (exit
    3). It now binds first: exit status 2, nothing created."""
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [AUIE, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "listening" not in result.stdout
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()
