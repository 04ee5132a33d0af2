"""A real ``auie serve`` process on a fresh data directory and a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auie_command() -> list[str]:
    """The ``auie`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("auie")
    if script.exists():
        return [str(script)]
    found = shutil.which("auie")
    if found is None:
        raise SystemExit("cannot find the `auie` command; run scripts/setup first")
    return [found]


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def log_files_mib(db: Path) -> float:
    files = [db, db.with_name(db.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


def pressure() -> dict[str, float]:
    """Linux pressure stall: % of the last 10 s some task waited for CPU / for I/O
    (a direct measure of how noisy the machine was); -1 where unavailable."""
    values = {}
    for kind in ("cpu", "io"):
        try:
            first = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
            values[kind] = float(first.split()[1].partition("=")[2])
        except (OSError, IndexError, ValueError):
            values[kind] = -1.0
    return values


class AuieServer:
    """``auie serve --data-dir <tmp> --port <free>`` with rate limiting off."""

    def __init__(self, settings: dict[str, object] | None = None, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="auie-bench-"))
        self.data_dir = self.root / "data"
        self.port = free_port()
        self.keep = keep
        self.settings = {"collect.rate_limit_events_per_second": 0, **(settings or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "serve.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        command = [
            *auie_command(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]
        for key, value in self.settings.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        # no AUIE_* variables and no ./auie.toml from the caller may change the setup
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"auie serve exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"auie serve not ready after {timeout}s:\n{self.log_path.read_text()}")

    @property
    def write_key(self) -> str:
        data = json.loads((self.data_dir / "bootstrap.json").read_text())
        return str(data["writeKey"])

    @property
    def workspace(self) -> str:
        data = json.loads((self.data_dir / "bootstrap.json").read_text())
        return str(data["workspace"])

    def _status(self) -> dict[str, int]:
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
        return values

    def peak_rss_mib(self) -> float:
        """VmHWM: the server's peak resident memory since it started."""
        return self._status()["VmHWM"] / 1024

    def rss_mib(self) -> float:
        return self._status()["VmRSS"] / 1024

    def cpu_seconds(self) -> tuple[float, float]:
        """User + system CPU of the server process (all its threads), and of its main
        thread alone (the event loop: HTTP, JSON, normalisation)."""
        return _cpu(Path(f"/proc/{self.pid}/stat")), _cpu(
            Path(f"/proc/{self.pid}/task/{self.pid}/stat")
        )

    def log_mib(self) -> float:
        """Size of the event log file and its WAL."""
        return log_files_mib(self.data_dir / "log" / "eventlog.db")

    def commit_metrics(self) -> dict[str, float]:
        """The group-commit counters from ``/metrics``: commits, their records and time
        (NaN when the server does not answer in time)."""
        wanted = {
            "auie_log_append_seconds_sum": "commit_seconds",
            "auie_log_append_seconds_count": "commits",
            "auie_log_commit_records_sum": "committed_records",
            "auie_log_writer_cpu_seconds": "writer_cpu_seconds",
        }
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                text = reply.read().decode()
        except (OSError, urllib.error.URLError):  # an overloaded server may not answer
            return dict.fromkeys(wanted.values(), float("nan"))
        values = dict.fromkeys(wanted.values(), 0.0)
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                values[wanted[name]] = float(value)
        return values

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_records(self) -> int:
        """Events stored in the log (after :meth:`stop`): the durability cross-check."""
        from auie.eventlog import EVENTS_TOPIC
        from auie.eventlog.sqlite import SQLiteEventLog

        log = SQLiteEventLog(self.data_dir / "log" / "eventlog.db")
        try:
            return log.stats(EVENTS_TOPIC).records
        finally:
            log.close()

    def cleanup(self) -> None:
        self.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
