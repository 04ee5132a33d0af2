"""Identity changes and profile snapshots: from the profile store to the lake, exactly once.

The profile store numbers every write that changes identity nodes (its change sequence,
:meth:`~auie.profiles.store.base.ProfileStore.change_sequence`) and keeps on each node the
number of the write that last moved it to a profile (or created it) and that last wrote it.
An export reads the nodes changed after the *mark* of its lake table and appends them in one
commit whose ``auie.log-offsets`` record the new mark as the pseudo-topic
:data:`~auie.lake.catalog.PROFILE_CHANGES` (its "next offset"). After a crash the next
export reads again from the mark: whatever the profile store absorbed before the crash
reaches the lake, and nothing twice.

* ``identities`` — one row per identifier that is new or moved to another profile, at
  every lake flush of the processor (before the log's committed offsets move);
* ``profiles`` — one row per changed profile every ``lake.profile_snapshot_seconds`` and
  when the processor stops: identities, traits as stored (values that field encryption
  encrypted stay encrypted), computed traits, first and last seen; and a closing row for
  each profile merged into another since the last snapshot (``merged_into`` names the
  survivor; no identities, traits or computed traits), so the latest row of every profile
  id tells whether it still exists. A profile without ``analytics`` consent is exported
  without its traits, computed traits and first and last seen (what its events tell about
  the person stays out of the lake, as their events do): its identities, so the graph stays
  whole, and ``withheld`` set, so that readers tell withheld traits from none.

Marks are per workspace (one lake namespace each); the sequence is global, so a round reads
from the lowest mark and skips the rows a workspace already holds. Identifiers on the
suppression list (erased people) are never exported.

The members of a processor group share the exports: member ``i`` of ``n`` exports the
identifiers and profiles whose :func:`share_of` is ``i``, and keeps its own mark, as the
pseudo-partition :func:`mark_partition` of the pseudo-topic. Its commits hold the group's
lake commit lock and merge its mark into the table's (:func:`combine_marks`): when the group
size changed since the last export, the marks of the new size start from the lowest mark
recorded, and the old size's marks are dropped, so a change of size re-exports at worst
what one share had not exported yet, and never skips anything. A lone exporter keeps
pseudo-partition 0, as before there were shares.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from auie.lake.catalog import PROFILE_CHANGES, Lake, committed_offsets
from auie.lake.rows import Columns, as_text
from auie.lake.tables import IDENTITIES, PROFILES
from auie.lake.writer import FlushReport, Offsets, append
from auie.profiles.identity import node, split
from auie.profiles.service import ProfileService, StoredProfile
from auie.profiles.store.base import NodeChange, ProfileStore

#: (workspace, node) → keyed hash of the identifier.
Pseudonym = Callable[[str, str], str | None]
#: (workspace, id type, id value) → whether the identifier was erased.
Suppressed = Callable[[str, str, str], bool]
_CHUNK = 10_000
#: Pseudo-partitions of a group of ``n`` exporters start at ``n * _SHARES``.
_SHARES = 1000


def share_of(key: str, shares: int) -> int:
    """Which of ``shares`` exporters exports an identifier or profile id (stable across
    processes and runs, unlike ``hash``)."""
    if shares <= 1:
        return 0
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shares


def mark_partition(index: int, shares: int) -> int:
    """The pseudo-partition of :data:`PROFILE_CHANGES` that holds exporter ``index``'s mark
    in a group of ``shares`` (0 for a lone exporter)."""
    return 0 if shares <= 1 else shares * _SHARES + index


def own_mark(recorded: Offsets, index: int, shares: int) -> int:
    """Exporter ``index``'s mark in a table's recorded offsets: the last change sequence
    value its share of the table holds (the lowest mark recorded if it has none yet)."""
    marks = recorded.get(PROFILE_CHANGES, {})
    found = marks.get(mark_partition(index, shares))
    if found is None:
        found = min(marks.values(), default=1)
    return found - 1


def combine_marks(recorded: Offsets, index: int, shares: int, upto: int) -> Offsets:
    """The offsets a commit of exporter ``index`` up to ``upto`` records, from the table's
    (see the module docstring)."""
    marks = recorded.get(PROFILE_CHANGES, {})
    start = min(marks.values(), default=1)
    kept = {
        mark_partition(j, shares): marks.get(mark_partition(j, shares), start)
        for j in range(shares)
    }
    kept[mark_partition(index, shares)] = upto + 1
    return {**recorded, PROFILE_CHANGES: kept}


class ProfileExports:
    """See the module docstring. Rounds run in the lake writer's thread (one at a time);
    :meth:`touch` and :meth:`due` are called by the processor's thread."""

    def __init__(
        self,
        store: ProfileStore,
        profiles: ProfileService,
        lake: Lake,
        *,
        snapshot_seconds: float,
        pseudonym: Pseudonym | None = None,
        suppressed: Suppressed | None = None,
        allows_analytics: Callable[[dict[str, bool]], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        share: tuple[int, int] = (0, 1),
        commit_lock: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        """``share``: (this member, group size); ``commit_lock``: held around this
        exporter's lake commits (the group's lake commit lock); ``allows_analytics``: whether
        a profile's current consent lets its snapshot hold what it knows of the person
        (None: every profile's does)."""
        self.store = store
        self.profiles = profiles
        self.lake = lake
        self.snapshot_seconds = snapshot_seconds
        self.pseudonym = pseudonym
        self.suppressed = suppressed
        self.allows_analytics = allows_analytics
        self.clock = clock
        self.index, self.shares = share
        if not 0 <= self.index < self.shares:
            raise ValueError(f"share {self.index} of {self.shares}")
        self.commit_lock = commit_lock or contextlib.nullcontext
        #: Per table: the sequence value every workspace's table holds (None: not read yet).
        self._low: dict[str, int | None] = {IDENTITIES: None, PROFILES: None}
        self._marks: dict[tuple[str, str], int] = {}
        #: Since when identity changes may wait for export (at start: a crash may have left
        #: some behind).
        self._dirty_since: float | None = clock()
        self._snapshot_at = clock()
        self._watched_at = float("-inf")

    # -- scheduling --------------------------------------------------------------------------

    def touch(self) -> None:
        """Note that the profile store has just written identity changes."""
        if self._dirty_since is None:
            self._dirty_since = self.clock()

    def watch(self, every_seconds: float = 0.25) -> None:
        """Note identity changes other processes wrote (the other members of a processor
        group), reading the profile store's change sequence at most every ``every_seconds``."""
        now = self.clock()
        if now - self._watched_at < every_seconds:
            return
        self._watched_at = now
        exported = self._low[IDENTITIES]
        if exported is not None and self.store.change_sequence() > exported:
            self.touch()

    def due(self, max_seconds: float) -> bool:
        """Whether a flush should run for the exports alone: identity changes waiting for
        ``max_seconds``, or a profile snapshot due."""
        now = self.clock()
        dirty = self._dirty_since
        return (dirty is not None and now - dirty >= max_seconds) or (
            now - self._snapshot_at >= self.snapshot_seconds
        )

    def run(self, *, snapshot: bool = False) -> list[FlushReport]:
        """Export identity changes, and profiles if a snapshot is due (or ``snapshot``)."""
        snapshot = snapshot or self.clock() - self._snapshot_at >= self.snapshot_seconds
        reports = self.identities(marks=snapshot)
        if snapshot:
            reports += self.snapshot()
        return reports

    # -- marks -------------------------------------------------------------------------------

    def mark(self, workspace: str, table: str) -> int:
        """The last sequence value the workspace's table holds the changes of."""
        key = (workspace, table)
        mark = self._marks.get(key)
        if mark is None:
            offsets = (
                committed_offsets(self.lake.table(workspace, table))
                if self.lake.exists(workspace, table)
                else {}
            )
            mark = self._marks[key] = own_mark(offsets, self.index, self.shares)
        return mark

    def mine(self, key: str) -> bool:
        """Whether an identifier or profile id is in this exporter's share."""
        return self.shares == 1 or share_of(key, self.shares) == self.index

    def _low_mark(self, table: str, upto: int) -> int:
        low = self._low[table]
        if low is None:
            low = min((self.mark(ws, table) for ws in self.store.workspaces()), default=upto)
            self._low[table] = low
        return low

    def _commit(
        self, workspace: str, table: str, rows: list[dict[str, Any]], upto: int
    ) -> FlushReport:
        """Append ``rows`` with the mark ``upto``. A member of a group also commits its
        mark without rows (its share had none) at each profile snapshot round, so that no
        mark lags behind the others by more than a snapshot period: a change of group size
        restarts from the lowest one. (Empty commits at every flush would multiply the
        table's snapshots by the group's size.)"""
        started = time.perf_counter()
        columns = Columns(table)
        for row in rows:
            columns.add(row)
        data = columns.to_arrow()
        if self.shares == 1:
            append(self.lake, workspace, table, data, {PROFILE_CHANGES: {0: upto + 1}})
        else:
            with self.commit_lock():
                self.lake.table(workspace, table)  # created by the first member to export
                append(
                    self.lake,
                    workspace,
                    table,
                    data,
                    {},
                    merge=lambda recorded: combine_marks(recorded, self.index, self.shares, upto),
                )
        self._marks[(workspace, table)] = upto
        return FlushReport(workspace, table, len(rows), time.perf_counter() - started)

    # -- identities ----------------------------------------------------------------------------

    def identities(self, *, marks: bool = True) -> list[FlushReport]:
        """Append the identifiers moved since each workspace's mark to ``identities``.
        ``marks=False``: a member of a group whose share has nothing new commits nothing
        (its mark is brought level with a snapshot round; see :meth:`_commit`)."""
        self._dirty_since = None  # before reading: a write after this touches again
        upto = self.store.change_sequence()
        low = self._low_mark(IDENTITIES, upto)
        if upto <= low:
            return []
        by_workspace: dict[str, list[NodeChange]] = {}
        for change in self.store.moved_nodes(low, upto):
            by_workspace.setdefault(change.workspace_id, []).append(change)
        reports = []
        for workspace, changes in sorted(by_workspace.items()):
            mark = self.mark(workspace, IDENTITIES)
            fresh = [change for change in changes if change.moved_seq > mark]
            rows = [
                self._identity_row(change)
                for change in fresh
                if self.mine(change.node) and not self._erased(workspace, [change.node])
            ]
            if rows or (fresh and marks and self.shares > 1):
                reports.append(self._commit(workspace, IDENTITIES, rows, upto))
        self._low[IDENTITIES] = upto
        return reports

    def _identity_row(self, change: NodeChange) -> dict[str, Any]:
        id_type, value = split(change.node)
        return {
            "id_type": id_type,
            "id_value": value,
            "profile_id": change.profile_id,
            "changed_at": change.updated_at,
            "id_hash": self.pseudonym(change.workspace_id, change.node)
            if self.pseudonym is not None
            else None,
        }

    def _erased(self, workspace: str, nodes: Iterable[str]) -> bool:
        if self.suppressed is None:
            return False
        return any(self.suppressed(workspace, *split(key)) for key in nodes)

    # -- profiles ------------------------------------------------------------------------------

    def snapshot(self) -> list[FlushReport]:
        """Append a row for every profile changed since each workspace's mark to
        ``profiles``."""
        self._snapshot_at = self.clock()
        upto = self.store.change_sequence()
        low = self._low_mark(PROFILES, upto)
        if upto <= low:
            return []
        # Per workspace with changes above its mark: the profiles of this exporter's share
        # (an empty list commits the mark alone: see _commit).
        by_workspace: dict[str, list[str]] = {}
        for (workspace, pid), seq in self.store.changed_profiles(low, upto).items():
            if seq > self.mark(workspace, PROFILES):
                mine = by_workspace.setdefault(workspace, [])
                if self.mine(pid):
                    mine.append(pid)
        closed: dict[str, dict[str, str]] = {}
        for gone in self.store.closed_profiles(low, upto):
            if gone.closed_seq > self.mark(gone.workspace_id, PROFILES):
                by_workspace.setdefault(gone.workspace_id, [])
                if self.mine(gone.profile_id):
                    closed.setdefault(gone.workspace_id, {})[gone.profile_id] = gone.into_profile
        reports = []
        now = datetime.now(UTC)
        for workspace, pids in sorted(by_workspace.items()):
            pids.sort()
            rows = self._closing_rows(workspace, closed.get(workspace, {}), now)
            for start in range(0, len(pids), _CHUNK):
                for profile in self.profiles.stored_profiles(
                    workspace, pids[start : start + _CHUNK]
                ):
                    if not self._erased(
                        workspace, [node(i["type"], i["value"]) for i in profile.identities]
                    ):
                        allowed = self.allows_analytics
                        full = allowed is None or allowed(profile.consent)
                        rows.append(_profile_row(profile, now, full=full))
            if rows or self.shares > 1:
                reports.append(self._commit(workspace, PROFILES, rows, upto))
        self._low[PROFILES] = upto
        return reports

    def _closing_rows(
        self, workspace: str, closed: dict[str, str], now: datetime
    ) -> list[dict[str, Any]]:
        """Rows for the profiles merged into another (those that have identifiers again
        get a snapshot row instead)."""
        alive = self.store.profiles_nodes(workspace, closed).keys() if closed else set()
        return [
            {
                "profile_id": pid,
                "identities": "[]",
                "traits": "{}",
                "computed_traits": "{}",
                "first_seen": None,
                "last_seen": None,
                "snapshot_at": now,
                "merged_into": into,
            }
            for pid, into in sorted(closed.items())
            if pid not in alive
        ]


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _profile_row(profile: StoredProfile, now: datetime, *, full: bool) -> dict[str, Any]:
    """A snapshot row; without ``full``, only the profile's identities."""
    return {
        "profile_id": profile.profile_id,
        "identities": as_text(profile.identities),
        "traits": as_text(profile.traits if full else {}),
        "computed_traits": as_text(profile.computed_traits if full else {}),
        "first_seen": _time(profile.first_seen) if full else None,
        "last_seen": _time(profile.last_seen) if full else None,
        "snapshot_at": now,
        "withheld": not full,
    }
