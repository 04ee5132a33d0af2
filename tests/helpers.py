"""Helpers shared by the tests: credentials, a real ``auie serve`` process, log reading."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from click.testing import Result

from auie.config import Settings, load_settings
from auie.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
AUIE = str(REPO / ".venv" / "bin" / "auie") if (REPO / ".venv/bin/auie").exists() else "auie"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # In-process test apps commit in a thread: a writer process per app would cost each a
    # second. Servers started with start_server() use the default, the writer process.
    eventlog = {"writer": "thread", **overrides.pop("eventlog", {})}
    return load_settings({"data_dir": data_dir, "eventlog": eventlog, **overrides}, environ={})


@contextlib.contextmanager
def in_process_app(
    data_dir: Path,
    *,
    fast_paths: bool = True,
    client: tuple[str, int] | None = None,
    **overrides: Any,
) -> Iterator[tuple[Any, Any, Any]]:
    """(TestClient, Runtime, Bootstrap) of an app on a fresh data directory; with
    ``fast_paths=False`` the app without its fast paths (the equivalence tests compare)."""
    from fastapi.testclient import TestClient

    from auie.api.app import create_app
    from auie.runtime import Runtime

    runtime = Runtime(make_settings(data_dir, **overrides))
    boot = runtime.bootstrap()
    assert boot is not None
    peer = {"client": client} if client else {}
    try:
        with TestClient(create_app(runtime, fast_paths=fast_paths), **peer) as test_client:
            yield test_client, runtime, boot
    finally:
        runtime.close()


def basic(user: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_token(client: Any, client_id: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    reply = client.post("/oauth/token", data=form, headers=basic(client_id, secret))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def stored_events(runtime: Runtime, topic: str = "events") -> list[dict[str, Any]]:
    """Every record of a topic, decoded, in partition/offset order."""
    log = runtime.eventlog
    events = []
    for part, start in log.begin_offsets(topic).items():
        for record in log.read(topic, part, start, 1_000_000):
            events.append(json.loads(record.value))
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A real ``auie serve`` process."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.data_dir / "bootstrap.json").read_text())
        return data

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"auie serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"auie serve not ready: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server; its children (log writer, processor) must exit by themselves."""
        pids = child_pids(self.process.pid)
        self.process.kill()
        self.process.wait(10)
        deadline = time.monotonic() + 20
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not is_zombie(pid)]
            time.sleep(0.05)
        assert not pids, f"children {pids} outlived the killed server"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def child_pids(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (the processor supervisor's watcher thread
    starts the restarted ones)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def start_server(data_dir: Path, port: int | None = None, *args: str) -> Server:
    port = port or free_port()
    log_path = data_dir.parent / f"serve-{port}-{time.monotonic_ns()}.log"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [AUIE, "serve", "--data-dir", str(data_dir), "--port", str(port), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir.parent,
        )
    server = Server(data_dir, port, process, log_path)
    try:
        server.wait_ready()
    except Exception:
        server.stop()
        raise
    return server


def route_template(path: str) -> str:
    """A route's path as OpenAPI documents it: ``{id_value:path}`` → ``{id_value}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def assert_usage_error(result: Result, *mentions: str) -> str:
    """Exit 2 through click's usage error: its one ``Error:`` line holds ``mentions``."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for text in mentions:
        assert text in errors[0], errors[0]
    return errors[0]
