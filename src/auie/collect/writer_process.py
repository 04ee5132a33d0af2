"""Group commit in a child process: the log's write path off the server's interpreter.

:class:`~auie.collect.writer.GroupCommitWriter` commits in a thread of the server
process, which shares one GIL with the event loop. Python's sqlite3 gives the GIL up
around every SQLite step and must take it back; while the loop is busy that can wait a
whole switch interval (5 ms), several times per commit, and every waiting request pays
it. :class:`ProcessLogWriter` has the same interface and the same guarantee (a request's
records are committed before its ``append`` returns) but commits in a child process that
owns its own :class:`~auie.eventlog.sqlite.SQLiteEventLog` (with its dedupe index and WAL
checkpointer): the server's event loop only writes frames to a socket and reads the
replies, with no thread and no GIL hand-over.

Protocol, over a Unix socket pair, every frame a 4-byte big-endian length and a msgpack
body: the server sends ``[id, [[topic, key, value, timestamp_ms, headers, dedupe_key],
...]]``; the child reads every frame that has arrived, appends all their records in one
transaction, and answers each with ``[id, [[partition, offset or None], ...], None,
stats]`` or ``[id, None, error message, None]`` (``stats``: the commit's seconds and
records and the child's CPU seconds so far, on its first reply only, for the server's
metrics). ``[0, None]`` asks it to finish and exit. The child exits by itself when the
server's end of the socket closes (the server died), after finishing the commit in
progress: records of an unanswered request may be stored, never lost once answered, and a
client retrying them is deduplicated by ``messageId``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import socket
import struct
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec

from auie.config import Settings
from auie.errors import StorageUnavailable
from auie.eventlog import AppendOutcome, EventLog, LogRecord
from auie.metrics import LOG_APPEND_SECONDS, LOG_COMMIT_RECORDS, LOG_WRITER_CPU

logger = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")
_READY = b"ready"
_START_TIMEOUT_SECONDS = 60.0
_STOP_TIMEOUT_SECONDS = 30.0
_RESTART_DELAY_SECONDS = 1.0
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


class ProcessLogWriter:
    """See the module docstring. Use: ``start()``, ``await connect()`` in the event loop
    that will call :meth:`append`, then ``stop()``."""

    def __init__(
        self, settings: Settings, *, max_records: int = 5_000, max_backlog: int = 100_000
    ) -> None:
        self.settings = settings
        self.max_records = max_records
        self.max_backlog = max_backlog
        #: Records handed over and not committed yet (read by the collector's back-pressure).
        self.backlog = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[list[AppendOutcome]], int]] = {}
        self._process: BaseProcess | None = None
        self._socket: socket.socket | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._restart_lock: asyncio.Lock | None = None
        self._next_restart = 0.0

    def start(self) -> None:
        """Start the child and wait until its log is open (dedupe index rebuilt)."""
        if self._process is not None:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_child,
            args=(theirs, self.settings, self.max_records),
            name="auie-log-writer",
            daemon=True,
        )
        self._process.start()
        theirs.close()
        mine.settimeout(_START_TIMEOUT_SECONDS)
        try:
            ready = mine.recv(len(_READY))
        except TimeoutError:
            ready = b""
        if ready != _READY:
            self._process.kill()
            mine.close()
            self._process = None
            raise StorageUnavailable("the event log writer process did not start")
        mine.setblocking(False)
        self._socket = mine

    async def connect(self) -> None:
        """Attach the socket to the running event loop (once, before the first append)."""
        if self._socket is None:
            raise RuntimeError("ProcessLogWriter.start() was not called")
        if self._stream is None:
            reader, self._stream = await asyncio.open_unix_connection(sock=self._socket)
            self._reader = asyncio.create_task(self._read_replies(reader))
            self._restart_lock = asyncio.Lock()

    async def _ensure_running(self) -> None:
        """Restart a child that died (at most once a second); until then, refuse."""
        if self._reader is not None and not self._reader.done():
            return
        if self._restart_lock is None:
            raise StorageUnavailable("the event log writer is not running")
        async with self._restart_lock:
            if self._reader is not None and not self._reader.done():
                return
            if time.monotonic() < self._next_restart:
                raise StorageUnavailable("the event log writer is restarting; retry shortly")
            self._next_restart = time.monotonic() + _RESTART_DELAY_SECONDS
            logger.warning("restarting the event log writer process")
            self._discard()
            await asyncio.to_thread(self.start)
            await self.connect()

    def _discard(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.join()
        sock, self._socket = self._socket, None
        self._close_socket(sock)

    @property
    def overloaded(self) -> bool:
        """More records wait for their commit than ``max_backlog``."""
        return self.backlog > self.max_backlog

    @property
    def alive(self) -> bool:
        """The child runs and its replies are being read."""
        reading = self._reader is None or not self._reader.done()
        return self._process is not None and self._process.is_alive() and reading

    async def append(self, records: Sequence[LogRecord]) -> list[AppendOutcome]:
        """Append durably (shared commit); returns when the records are on disk."""
        if not records:
            return []
        await self._ensure_running()
        assert self._stream is not None
        request = next(self._ids)
        future: asyncio.Future[list[AppendOutcome]] = asyncio.get_running_loop().create_future()
        body = _encode(
            [
                request,
                [
                    [r.topic, r.key, r.value, r.timestamp_ms, r.headers, r.dedupe_key]
                    for r in records
                ],
            ]
        )
        self._pending[request] = (future, len(records))
        self.backlog += len(records)
        self._stream.write(_frame(body))
        return await future

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                request, outcomes, error, stats = _decode(await reader.readexactly(size))
                if stats is not None:
                    LOG_APPEND_SECONDS.observe(stats[0])
                    LOG_COMMIT_RECORDS.observe(stats[1])
                    LOG_WRITER_CPU.set(stats[2])
                future, count = self._pending.pop(request)
                self.backlog -= count
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(StorageUnavailable(f"event log write failed: {error}"))
                else:
                    future.set_result([AppendOutcome(p, o) for p, o in outcomes])
        except (asyncio.IncompleteReadError, ConnectionError):
            logger.error("the event log writer process stopped")
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        for future, count in self._pending.values():
            self.backlog -= count
            if not future.done():
                future.set_exception(StorageUnavailable("the event log writer stopped"))
        self._pending.clear()

    def stop(self) -> None:
        """Let the child commit what it has, then stop it (call it from the event loop
        that :meth:`connect` used, as the server's shutdown does)."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._reader is not None:
            self._reader.cancel()
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setblocking(True)
                sock.sendall(_frame(_encode([0, None])))
        process.join(_STOP_TIMEOUT_SECONDS)
        if process.is_alive():
            logger.warning("the event log writer did not stop in time; killing it")
            process.kill()
            process.join()
        self._close_socket(sock)
        self._fail_pending()

    def _close_socket(self, sock: socket.socket | None) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()  # the transport owns the socket
        elif sock is not None:
            sock.close()


# -- the child ---------------------------------------------------------------------------


def _child(sock: socket.socket, settings: Settings, max_records: int) -> None:
    """Entry point of the writer process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when it stops
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[log-writer]: %(message)s",
    )
    from auie import gcpolicy
    from auie.eventlog import open_event_log

    log = open_event_log(settings)
    log.prepare_appends()  # the dedupe index, before the server is told it may send
    log.start_checkpointer(0.5)  # WAL checkpoints off the commit path
    gcpolicy.settle()
    sock.sendall(_READY)
    try:
        _serve(sock, log, max_records)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server was killed: what was committed stays, nobody waits for replies
    finally:
        log.close()
        sock.close()


def _serve(sock: socket.socket, log: EventLog, max_records: int) -> None:
    buffer = bytearray()
    while True:
        if not _complete_frame(buffer):
            chunk = sock.recv(1 << 20)
            if not chunk:
                return  # the server is gone
            buffer += chunk
        # Whatever else has arrived joins this commit (group commit).
        with contextlib.suppress(BlockingIOError):
            while len(buffer) < 64 << 20:
                more = sock.recv(1 << 20, socket.MSG_DONTWAIT)
                if not more:
                    break
                buffer += more
        requests, stop = _take_frames(buffer, max_records)
        if requests:
            sock.sendall(b"".join(_commit(log, requests)))
        if stop:
            return


def _complete_frame(buffer: bytearray) -> bool:
    if len(buffer) < _HEADER.size:
        return False
    (size,) = _HEADER.unpack_from(buffer)
    return len(buffer) >= _HEADER.size + int(size)


def _take_frames(buffer: bytearray, max_records: int) -> tuple[list[tuple[int, list[Any]]], bool]:
    """Complete frames from the start of ``buffer`` (removed from it) up to about
    ``max_records`` records; True when the server asked to stop."""
    requests: list[tuple[int, list[Any]]] = []
    start = count = 0
    while count < max_records and len(buffer) - start >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, start)
        end = start + _HEADER.size + size
        if len(buffer) < end:
            break
        request, records = _decode(bytes(buffer[start + _HEADER.size : end]))
        start = end
        if request == 0:
            del buffer[:start]
            return requests, True
        requests.append((request, records))
        count += len(records)
    del buffer[:start]
    return requests, False


def _commit(log: EventLog, requests: list[tuple[int, list[Any]]]) -> list[bytes]:
    """Append every request's records in one transaction; one reply frame per request (the
    first also carries the commit's duration and size, for the server's metrics)."""
    shared: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    records = []
    for _, batch in requests:
        for topic, key, value, ts, headers, dedupe in batch:
            # Equal headers become one object: the log serialises each distinct one once.
            same = shared.setdefault(tuple(headers.items()), headers)
            records.append(LogRecord(topic, key, value, ts, same, dedupe))
    started = time.perf_counter()
    try:
        outcomes = log.append(records)
    except Exception as exc:
        logger.exception("event log append of %d records failed", len(records))
        return [_frame(_encode([request, None, str(exc), None])) for request, _ in requests]
    stats: list[float] | None = [time.perf_counter() - started, len(records), time.process_time()]
    replies = []
    start = 0
    for request, batch in requests:
        end = start + len(batch)
        placed = [[o.partition, o.offset] for o in outcomes[start:end]]
        replies.append(_frame(_encode([request, placed, None, stats])))
        stats = None
        start = end
    return replies
