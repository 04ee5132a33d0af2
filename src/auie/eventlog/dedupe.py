"""The recent dedupe keys of a log writer, in memory, rebuilt from the log itself.

A B-tree of random keys on the commit path dirties one page per key: it cost the SQLite log
two thirds of its throughput. Instead, each record stores its 63-bit dedupe key in its own
row (an append, no index), and the writer keeps the keys of the dedupe window in memory: a
set of the last few seconds' keys, and sorted numpy arrays (8 bytes a key) of older ones —
a small LSM: every ``seal_ms`` the set becomes a sorted chunk, and the chunks of one
``epoch_ms`` are merged into one, so a lookup searches at most a few dozen arrays. On
start-up the index is rebuilt from the rows of the window, so "stored once" survives
crashes exactly as committed data does.

A key is remembered at least for the window, and at most one epoch (1/24 of the window)
longer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_MASK = (1 << 63) - 1
_MAX_CHUNKS_PER_EPOCH = 8

Keys = npt.NDArray[np.int64]


def dedupe_digest(key: str) -> int:
    """A non-negative 63-bit integer for a dedupe key (fits SQLite's INTEGER)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _MASK


@dataclass(slots=True)
class _Chunk:
    epoch: int
    newest_ms: int
    keys: Keys


class DedupeIndex:
    """Keys seen within the window; see the module docstring."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = max(1, window_ms)
        self.seal_ms = max(1, min(60_000, self.window_ms // 64))
        self.epoch_ms = max(self.seal_ms, self.window_ms // 24)
        self._current: set[int] = set()
        self._current_newest = 0
        self._sealed_at = 0
        self._chunks: list[_Chunk] = []

    def __len__(self) -> int:
        return len(self._current) + sum(len(c.keys) for c in self._chunks)

    # -- maintenance -------------------------------------------------------------------------

    def _seal(self, now_ms: int) -> None:
        if now_ms - self._sealed_at < self.seal_ms:
            return
        self._sealed_at = now_ms
        if self._current:
            keys = np.fromiter(self._current, dtype=np.int64, count=len(self._current))
            keys.sort()
            self._chunks.append(
                _Chunk(self._current_newest // self.epoch_ms, self._current_newest, keys)
            )
            self._current = set()
        self._compact()
        self.forget(now_ms - self.window_ms)

    def _compact(self) -> None:
        """Merge the chunks of each epoch once it is over (and within one that has many)."""
        newest_epoch = max((c.epoch for c in self._chunks), default=0)
        by_epoch: dict[int, list[_Chunk]] = {}
        for chunk in self._chunks:
            by_epoch.setdefault(chunk.epoch, []).append(chunk)
        merged: list[_Chunk] = []
        for epoch in sorted(by_epoch):
            chunks = by_epoch[epoch]
            if len(chunks) > 1 and (epoch < newest_epoch or len(chunks) > _MAX_CHUNKS_PER_EPOCH):
                keys = np.unique(np.concatenate([c.keys for c in chunks]))
                chunks = [_Chunk(epoch, max(c.newest_ms for c in chunks), keys)]
            merged.extend(chunks)
        self._chunks = merged

    def forget(self, older_than_ms: int) -> int:
        """Drop keys last seen before ``older_than_ms`` (whole chunks); returns how many."""
        dropped = sum(len(c.keys) for c in self._chunks if c.newest_ms < older_than_ms)
        self._chunks = [c for c in self._chunks if c.newest_ms >= older_than_ms]
        if self._current and self._current_newest < older_than_ms:
            dropped += len(self._current)
            self._current = set()
        return dropped

    # -- lookups --------------------------------------------------------------------------

    def seen(self, keys: Sequence[int], now_ms: int) -> list[bool]:
        """Which keys are already known (within the window)."""
        self._seal(now_ms)
        if not keys:
            return []
        current = self._current
        found = np.fromiter((k in current for k in keys), dtype=bool, count=len(keys))
        if self._chunks:
            wanted = np.fromiter(keys, dtype=np.int64, count=len(keys))
            for chunk in self._chunks:
                positions = np.searchsorted(chunk.keys, wanted)
                positions[positions == len(chunk.keys)] = 0
                found |= chunk.keys[positions] == wanted
        return found.tolist()  # type: ignore[no-any-return]

    def add(self, keys: Iterable[int], now_ms: int) -> None:
        self._current.update(keys)
        self._current_newest = max(self._current_newest, now_ms)

    def load(self, rows: Iterable[tuple[int, int]], now_ms: int) -> None:
        """Rebuild from (received time ms, key) rows of the log."""
        cutoff = now_ms - self.window_ms
        by_epoch: dict[int, tuple[list[int], int]] = {}
        for ts, key in rows:
            if ts >= cutoff:
                keys, newest = by_epoch.get(ts // self.epoch_ms, ([], 0))
                keys.append(key)
                by_epoch[ts // self.epoch_ms] = (keys, max(newest, ts))
        for epoch in sorted(by_epoch):
            keys, newest = by_epoch[epoch]
            self._chunks.append(_Chunk(epoch, newest, np.unique(np.array(keys, dtype=np.int64))))
        self._sealed_at = now_ms
