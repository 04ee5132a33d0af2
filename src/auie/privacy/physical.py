"""Making deletes physical in SQLite files, and checking stored bytes for leftovers.

A ``DELETE`` in SQLite with ``secure_delete`` on overwrites the deleted cells with zeros,
but the write-ahead log still holds the pages as they were before, until a checkpoint
copies the new pages into the database file and the log is truncated. :func:`make_physical`
therefore runs ``PRAGMA wal_checkpoint(TRUNCATE)`` (retried while readers hold old
snapshots), searches the database file for the identifiers that must be gone and, only if
any is still there (a fragment left by a write made with ``secure_delete`` off, say), runs
``VACUUM`` — which rebuilds the file from the live rows — and checkpoints again.
"""

from __future__ import annotations

import logging
import mmap
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_CHECKPOINT_ATTEMPTS = 40


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` SQLAlchemy URL (None for other databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if path in ("", ":memory:") else Path(path)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def checkpoint(path: Path, attempts: int = _CHECKPOINT_ATTEMPTS) -> bool:
    """Copy the WAL into the database file and truncate it; False if readers kept it busy."""
    if not path.exists():
        return True
    conn = _connect(path)
    try:
        for attempt in range(attempts):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return True
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        return False
    finally:
        conn.close()


def vacuum(path: Path) -> None:
    """Rebuild the database file from its live rows (free pages and fragments go)."""
    conn = _connect(path)
    try:
        conn.execute("VACUUM")
    finally:
        conn.close()


def files_containing(paths: Iterable[Path], needles: Sequence[bytes]) -> list[Path]:
    """The files whose bytes contain any needle (exact bytes: pass every case variant you
    need; plain substrings, so a longer value containing an identifier counts too)."""
    wanted = sorted({n for n in needles if n})
    if not wanted:
        return []
    hits: list[Path] = []
    for path in paths:
        try:
            if _contains(path, wanted):
                hits.append(path)
        except FileNotFoundError:
            continue
    return hits


def _contains(path: Path, needles: Sequence[bytes]) -> bool:
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return any(view.find(needle) >= 0 for needle in needles)


@dataclass(slots=True)
class PhysicalReport:
    """What was done to one SQLite file."""

    file: str
    checkpointed: bool = False
    vacuumed: bool = False
    #: Needles still found after everything (substrings of other records' values).
    residue: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "checkpointed": self.checkpointed,
            "vacuumed": self.vacuumed,
            "residue": self.residue,
            "seconds": round(self.seconds, 3),
        }


def make_physical(
    path: Path, needles: Sequence[bytes] = (), *, always_vacuum: bool = False
) -> PhysicalReport:
    """Checkpoint, check for leftovers, vacuum if there are any (see the module)."""
    started = time.perf_counter()
    report = PhysicalReport(path.name)
    if not path.exists():
        return report
    report.checkpointed = checkpoint(path)
    files = [path, path.with_name(path.name + "-wal")]
    dirty = always_vacuum or bool(files_containing(files, needles))
    if dirty:
        vacuum(path)
        report.vacuumed = True
        report.checkpointed = checkpoint(path)
        report.residue = bool(files_containing(files, needles))
    if not report.checkpointed:
        logger.warning("the WAL of %s stayed busy; it is truncated at the next checkpoint", path)
    report.seconds = time.perf_counter() - started
    return report
