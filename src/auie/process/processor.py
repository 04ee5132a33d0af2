"""The processor: a consumer of the event log (group ``processor``) that runs every event
through the stages, in order:

    tracking-plan check → enrichment → identity resolution → profile update → lake write

An event a stage cannot handle goes to the dead-letter store with the stage and reason.
The decision service's ``decisions`` and ``rewards`` topics go to the lake tables of the
same names (no stage but the privacy stage's suppression list applies to them).

Exactly once, without distributed transactions: each sink keeps its own record of the log
offsets it has absorbed, written atomically with its data. The profile store writes the
batch's changes and offsets in one transaction; each lake commit records the offsets in
its snapshot summary; the log's committed offsets move only after a lake flush. After a
crash the processor re-reads from the log's committed offsets and every sink skips what
it already holds.

The lake commit of a micro-batch runs in a background thread while the next batches are
processed (:meth:`~auie.lake.writer.LakeWriter.begin_flush`). It records the offsets
consumed when its rows were taken, and the log's committed offsets move to exactly those
once it has succeeded; lake maintenance runs only between commits.

Rows of the lake's ``identities`` and ``profiles`` tables are not computed here but exported
from the profile store, by its own change sequence (:mod:`auie.process.exports`), in the lake
commit's thread after the tables of the micro-batch.

Several processors can share the work as the members of one group (``process.workers``):
member ``i`` of ``n`` consumes the partitions ``p`` with ``p % n == i`` of every topic
(:func:`auie.process.lock.owns`). The log is partitioned by person, and a profile's state is
kept per identifier, so decoding, the tracking plan, enrichment, the privacy stage, state
folding and lake rows need nothing from the other members, apart from the consent a lake
row obeys: the profile's, read after the batch's profile write, so a statement another
member stored by then counts (a group may pseudonymise an event a lone processor would
not, or the other way round, when a statement and a login race). What does is identity
resolution, whose edges join identifiers of different partitions: a member resolves a batch
and writes it to the profile store inside ``profile_lock``, reading the identity graph once
it holds the lock, so the graph changes one batch at a time as with one processor. Lake
commits merge each member's offsets into the table's (:class:`~auie.lake.writer.LakeWriter`
``shared``); each member exports its share of the profile store's changes
(:class:`~auie.process.exports.ProfileExports` ``share``); member 0 alone runs lake
maintenance.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from auie.eventlog import (
    DEAD_LETTERS_TOPIC,
    DECISIONS_TOPIC,
    EVENTS_TOPIC,
    REWARDS_TOPIC,
    EventLog,
    StoredRecord,
)
from auie.lake.rows import as_text, decision_row, reward_row
from auie.lake.tables import DEAD_LETTERS, DECISIONS, EVENTS, REWARDS
from auie.lake.writer import FlushReport, LakeWriter, PendingFlush
from auie.process import GROUP
from auie.process.enrich import Enricher
from auie.process.exports import ProfileExports
from auie.process.lock import owns
from auie.process.plan import PlanStore, TrackingPlan, Verdict
from auie.process.privacy_gate import PrivacyGate
from auie.profiles.identity import EventIdentity, event_identity
from auie.profiles.nodecache import NodeCache
from auie.profiles.service import ProfileService
from auie.profiles.state import CONSENT_TYPE
from auie.profiles.store.base import (
    DeadLetter,
    ProfileStore,
    ProfileWrite,
    StoredNode,
    Violation,
)

logger = logging.getLogger(__name__)

#: Name under which the profile store records the offsets it has applied.
PROFILES_CONSUMER = "profiles"
#: Topics the profile store absorbs (it records their offsets).
PROFILE_TOPICS = (EVENTS_TOPIC, DEAD_LETTERS_TOPIC)
#: Topics that only go to the lake: topic → table.
LAKE_TOPICS = {DECISIONS_TOPIC: DECISIONS, REWARDS_TOPIC: REWARDS}
TOPICS = (*PROFILE_TOPICS, *LAKE_TOPICS)


def topic_partitions(log: EventLog) -> int:
    """Partitions of the processor's widest topic: the range a member's locks cover."""
    return max(log.partitions(topic) for topic in TOPICS)


_decode = msgspec.json.Decoder()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is processed.

    A batch allocates and drops hundreds of thousands of small objects (decoded events,
    identities, states, rows); nearly all are freed by reference counting when the batch
    ends. With the collector on, those allocations trigger a collection every few hundred
    objects, and a full one, which walks every object of the process (imported libraries
    included), every few thousand events: a third of the processor's CPU. Paused, it runs
    between batches instead, on what survived them; and the first batch moves what the
    process holds by then (modules, engines, catalogs) out of its reach for good
    (:func:`gc.freeze`), so the collections between batches walk only newer objects. The
    child process of a group member also makes the collector run seldom, as the server
    does (:func:`auie.gcpolicy.settle`, in :func:`auie.process.supervisor.run_child`): the
    lake commit's thread, which runs while the collector is on, builds a tuple per row. (A
    lone processor in the ``auie process`` command's own process keeps the defaults.)
    """
    if not gc.isenabled():
        yield
        return
    _freeze_start_up()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_start_up_frozen: list[bool] = []


def _freeze_start_up() -> None:
    """Once per process: collect, then freeze the survivors (see :func:`collector_paused`)."""
    if not _start_up_frozen:
        _start_up_frozen.append(True)
        gc.collect()
        gc.freeze()


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """Dead letters of log records get ids from their position: writing twice is a no-op."""
    return f"dl-{topic}-{partition}-{offset}"


@dataclass(slots=True)
class StepReport:
    events: int = 0
    dead_letters: int = 0
    #: Records of the ``decisions`` and ``rewards`` topics.
    decisions: int = 0
    flushes: list[FlushReport] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        """Nothing was read from the log."""
        return not (self.events or self.dead_letters or self.decisions)


class _Accepted(msgspec.Struct, gc=False):
    """An event past the stages before identity resolution (a Struct: built per event; it
    is in no reference cycle, so the collector need not track it)."""

    record: StoredRecord
    workspace: str
    event: dict[str, Any]
    enrichment: dict[str, Any]
    ts: int
    plan: TrackingPlan | None
    verdict: Verdict | None
    fresh: bool
    identity: EventIdentity | None = None
    columns: dict[str, Any] = {}
    #: The profile resolution put the event in.
    profile_id: str | None = None
    #: The profile's current consent, when any of its identifiers holds a statement.
    consent: dict[str, bool] | None = None


class StopFlag(Protocol):
    """What :meth:`Processor.run` needs of a stop signal (threading or multiprocessing)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class Maintenance(Protocol):
    """What the processor needs of lake maintenance
    (:class:`~auie.lake.maintenance.LakeMaintenance`)."""

    def due(self) -> bool: ...

    def __call__(self) -> object: ...


class StageError(Exception):
    def __init__(self, stage: str, code: str, message: str) -> None:
        super().__init__(message)
        self.stage, self.code, self.message = stage, code, message


class Processor:
    """See the module docstring. Not thread-safe: one processor per event log group."""

    def __init__(
        self,
        log: EventLog,
        store: ProfileStore,
        profiles: ProfileService,
        writer: LakeWriter,
        plans: PlanStore,
        *,
        enricher: Enricher,
        gate: PrivacyGate | None = None,
        poll_max_records: int = 5000,
        plan_refresh_seconds: float = 5.0,
        profile_snapshot_seconds: float = 60.0,
        member: int = 0,
        members: int = 1,
        profile_lock: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
        node_cache: int = 0,
    ) -> None:
        self.log = log
        self.store = store
        self.profiles = profiles
        self.writer = writer
        self.plans = plans
        self.enricher = enricher
        self.gate = gate
        self.poll_max_records = poll_max_records
        self.plan_refresh_seconds = plan_refresh_seconds
        self._plans: dict[str, tuple[TrackingPlan | None, float]] = {}
        if not 0 <= member < members:
            raise ValueError(f"member {member} of a group of {members}")
        self.member, self.members = member, members
        #: Held while a batch is resolved and written (a group of more than one member).
        self.profile_lock = profile_lock or contextlib.nullcontext
        #: Identity nodes as last read or written (``node_cache`` of them at most; 0: none).
        self.node_cache = NodeCache(store, node_cache) if node_cache > 0 else None
        #: Whether other members of the group still run (:meth:`drain` stops waiting for
        #: them when they have exited); set by the runtime.
        self.others_running: Callable[[], bool] = lambda: members > 1
        self.positions = {topic: self._start(topic) for topic in TOPICS}
        self.applied = {topic: store.offsets(PROFILES_CONSUMER, topic) for topic in PROFILE_TOPICS}
        self.on_flush: Callable[[list[FlushReport]], None] | None = None
        #: Lake maintenance, run after steps when due, never while a lake commit is in
        #: flight, under the group's lake commit lock.
        self.maintenance: Maintenance | None = None
        #: The lake commit running in the background, if any.
        self._flushing: PendingFlush | None = None
        #: Identity changes and profile snapshots, from the profile store to the lake (each
        #: member of a group exports its share of them).
        self.exports = ProfileExports(
            store,
            profiles,
            writer.lake,
            snapshot_seconds=profile_snapshot_seconds,
            pseudonym=gate.pseudonyms.pseudonym if gate is not None else None,
            suppressed=gate.suppressions.is_suppressed if gate is not None else None,
            allows_analytics=gate.allows_analytics if gate is not None else None,
            share=(member, members),
            commit_lock=writer.commit_lock,
        )

    def _start(self, topic: str) -> dict[int, int]:
        begins = self.log.begin_offsets(topic)
        committed = self.log.committed(GROUP, topic)
        return {
            p: max(committed.get(p, b), b)
            for p, b in begins.items()
            if owns(self.member, self.members, p)
        }

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: StopFlag, idle_sleep: float = 0.05) -> None:
        """Process until ``stop`` is set, then flush what is buffered."""
        while not stop.is_set():
            report = self.step()
            if report.idle:
                stop.wait(idle_sleep)
        self.flush()

    def drain(self, stop: StopFlag | None = None) -> StepReport:
        """Process what the log holds now, then flush (``auie process --once``); the totals.

        In a group, each member first waits for the others' profile store to absorb their
        partitions up to the same point (or for them to exit), so that its final export of
        its share holds their last profile changes too. No member waits for another's
        final flush (the one that runs them waits for them all to exit)."""
        ends = {topic: self._to_absorb(topic) for topic in PROFILE_TOPICS}
        total = StepReport()
        while stop is None or not stop.is_set():
            report = self.step()
            total.events += report.events
            total.dead_letters += report.dead_letters
            total.decisions += report.decisions
            total.flushes += report.flushes
            if report.idle:
                break
        while self.members > 1 and not self._absorbed(ends) and self.others_running():
            if self._pause(stop):
                break
            self.exports.watch()
            total.flushes += self._commit_lake()
        total.flushes += self.flush()
        return total

    @staticmethod
    def _pause(stop: StopFlag | None) -> bool:
        """Wait a tenth of a second; whether ``stop`` was set."""
        if stop is None:
            time.sleep(0.1)
            return False
        return stop.wait(0.1)

    def _to_absorb(self, topic: str) -> dict[int, int]:
        """The other members' partitions of ``topic`` that hold records now, and their end
        offsets (a partition with none from where the log begins has no offset in the
        profile store)."""
        begins = self.log.begin_offsets(topic)
        return {
            p: end
            for p, end in self.log.end_offsets(topic).items()
            if end > begins.get(p, 0) and not owns(self.member, self.members, p)
        }

    def _absorbed(self, ends: Mapping[str, Mapping[int, int]]) -> bool:
        """Whether the profile store has absorbed the partitions of ``ends`` up to them."""
        for topic, parts in ends.items():
            done = self.store.offsets(PROFILES_CONSUMER, topic)
            if any(done.get(p, 0) < end for p, end in parts.items()):
                return False
        return True

    def step(self) -> StepReport:
        """Poll once, process what came, flush the lake when a micro-batch is due."""
        report = StepReport()
        with collector_paused():
            # The batch (records, decoded events, ...) is freed inside: the collector,
            # resumed, walks only what outlives it.
            self._poll_and_apply(report)
        report.flushes = self._commit_lake()
        return report

    def _poll_and_apply(self, report: StepReport) -> None:
        events = self._poll(EVENTS_TOPIC, self.poll_max_records)
        dead = self._poll(DEAD_LETTERS_TOPIC, max(1, self.poll_max_records // 10))
        lake_only = [r for t in LAKE_TOPICS for r in self._poll(t, self.poll_max_records)]
        if events or dead or lake_only:
            self._apply(events, dead, lake_only, report)

    def _commit_lake(self) -> list[FlushReport]:
        """Finish the background lake commit if it is done (or the buffers have grown to
        twice their limit meanwhile), then start the next one if a micro-batch is due."""
        reports: list[FlushReport] = []
        flushing = self._flushing
        if flushing is not None and (
            flushing.done() or self.writer.pending >= 2 * self.writer.max_records
        ):
            reports = self._end_flush(flushing)
        if self._flushing is None:
            maintenance = self.maintenance
            if maintenance is not None and maintenance.due():  # not the lock at every step
                with self.writer.commit_lock():
                    maintenance()
            exports = self.exports
            if self.members > 1:
                exports.watch()  # the other members' writes
            if self.writer.due() or exports.due(self.writer.max_seconds):
                self._flushing = self.writer.begin_flush(self.positions, after=exports.run)
        return reports

    def _end_flush(self, flushing: PendingFlush) -> list[FlushReport]:
        self._flushing = None
        reports = self.writer.end_flush(flushing)
        self._commit_log(flushing.offsets)
        if reports and self.on_flush is not None:
            self.on_flush(reports)
        return reports

    def _commit_log(self, positions: Mapping[str, Mapping[int, int]]) -> None:
        """Move the log group's committed offsets (only ever to offsets the lake holds)."""
        for topic in TOPICS:
            if positions[topic] != self.log.committed(GROUP, topic):
                self.log.commit(GROUP, topic, positions[topic])

    def _apply(
        self,
        events: list[StoredRecord],
        dead: list[StoredRecord],
        lake_only: list[StoredRecord],
        report: StepReport,
    ) -> None:
        """Run one polled batch through the stages; write the profile store's changes and
        the offsets they cover in one transaction."""
        change = ProfileWrite()
        accepted = self._check(events, change)
        report.events = len(events)
        report.dead_letters = self._collector_dead_letters(dead, change)
        lake_rows = self._lake_records(lake_only, change)
        report.decisions = len(lake_only)
        self._advance(events, change, EVENTS_TOPIC)
        self._advance(dead, change, DEAD_LETTERS_TOPIC)
        for record in lake_only:
            positions = self.positions[record.topic]
            positions[record.partition] = max(positions[record.partition], record.offset + 1)
        with self.profile_lock():
            resolved = self._write_profiles(accepted, change)
        bound = [item for item in resolved if self._lake_bound(item)]
        if self.gate is not None:  # after the write: the batch's own statements count
            owners = [(item.workspace, self._primary(item)) for item in bound]
            consents = self._consents(owners)
            for item, owner in zip(bound, owners, strict=True):
                item.consent = consents.get(owner)
        for item in bound:
            self._lake_event(item)
        self._add_lake_rows(lake_rows)  # after the batch's consent statements are stored
        if change.nodes or change.reassign or change.closed:
            self.exports.touch()
        for topic, offsets in change.offsets.items():
            self.applied[topic[1]].update(offsets)

    def flush(self) -> list[FlushReport]:
        """Commit buffered lake rows (after a background commit in progress), then move the
        log group's committed offsets."""
        earlier = self._end_flush(self._flushing) if self._flushing is not None else []
        exports = self.exports
        with collector_paused():  # the final profile snapshot allocates per profile
            reports = self.writer.flush(self.positions, after=lambda: exports.run(snapshot=True))
        self._commit_log(self.positions)
        if reports and self.on_flush is not None:
            self.on_flush(reports)
        return earlier + reports

    def _poll(self, topic: str, budget: int) -> list[StoredRecord]:
        records: list[StoredRecord] = []
        positions = self.positions[topic]
        share = max(1, budget // max(1, len(positions)))
        for partition, offset in positions.items():
            records.extend(self.log.read(topic, partition, offset, share))
        return records

    def _advance(self, records: list[StoredRecord], change: ProfileWrite, topic: str) -> None:
        positions = self.positions[topic]
        applied = self.applied[topic]
        moved: dict[int, int] = {}
        for record in records:
            positions[record.partition] = max(positions[record.partition], record.offset + 1)
            if record.offset + 1 > applied.get(record.partition, 0):
                moved[record.partition] = max(moved.get(record.partition, 0), record.offset + 1)
        if moved:
            change.offsets[(PROFILES_CONSUMER, topic)] = moved

    # -- stages ---------------------------------------------------------------------------

    def _check(self, records: list[StoredRecord], change: ProfileWrite) -> list[_Accepted]:
        """The stages before identity resolution: decode, tracking plan, enrichment, privacy."""
        accepted: list[_Accepted] = []
        for record in records:
            fresh = record.offset >= self.applied[EVENTS_TOPIC].get(record.partition, 0)
            try:
                accepted.append(self._check_and_enrich(record, fresh, change))
            except StageError as exc:
                self._dead_letter(record, exc, change, fresh)
        return self._privacy(accepted)

    def _write_profiles(self, accepted: list[_Accepted], change: ProfileWrite) -> list[_Accepted]:
        """Resolve the batch and write ``change`` (inside the group's identity section)."""
        cache = self.node_cache
        if cache is not None:
            cache.check()
        resolved = self._resolve(accepted, change)
        (self.store if cache is None else cache).write(change)
        return resolved

    def _resolve(self, accepted: list[_Accepted], change: ProfileWrite) -> list[_Accepted]:
        """Identity resolution and profile updates into ``change``; returns the events that
        have a profile (the others become dead letters)."""
        fresh_items = [a for a in accepted if a.fresh]
        resolution = self.profiles.resolve(fresh_items, self.node_cache)
        for item, pid in zip(fresh_items, resolution.profile_ids, strict=True):
            item.profile_id = pid
        self._replayed_profiles([a for a in accepted if not a.fresh])
        change.edges, change.nodes = resolution.write.edges, resolution.write.nodes
        change.reassign, change.merges = resolution.write.reassign, resolution.write.merges
        change.closed = resolution.write.closed
        resolved = []
        for item in accepted:
            if item.profile_id is None:
                error = StageError(
                    "identity", "no_identity", "userId and anonymousId are missing or junk values"
                )
                self._dead_letter(item.record, error, change, item.fresh)
                continue
            resolved.append(item)
        return resolved

    def _check_and_enrich(
        self, record: StoredRecord, fresh: bool, change: ProfileWrite
    ) -> _Accepted:
        workspace = record.headers.get("workspaceId", "")
        try:
            event = _decode.decode(record.value)
            ts = int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise StageError("decode", "undecodable", f"log record is not an event: {exc}") from exc
        plan = self._plan(workspace)
        verdict = plan.check(event) if plan is not None else None
        if verdict is not None and plan is not None and fresh:
            change.violations.append(
                Violation(
                    workspace,
                    verdict.key,
                    plan.version,
                    verdict.blocked,
                    "; ".join(verdict.problems),
                )
            )
        if verdict is not None and verdict.blocked:
            raise StageError("plan", "plan_violation", "; ".join(verdict.problems))
        try:
            enrichment = self.enricher(event)
        except Exception as exc:  # a parser bug must not stop the pipeline
            raise StageError("enrich", "enrichment_failed", repr(exc)) from exc
        return _Accepted(record, workspace, event, enrichment, ts, plan, verdict, fresh)

    def _privacy(self, accepted: list[_Accepted]) -> list[_Accepted]:
        """The privacy stage (:mod:`auie.process.privacy_gate`): drop suppressed events,
        keep each event's identity as sent, then mask and encrypt its PII."""
        gate = self.gate
        if gate is None:
            return accepted
        kept = [a for a in accepted if not gate.suppressed(a.workspace, a.event)]
        needing: dict[str, set[str]] = {}
        keyed: list[bool] = []
        for item in kept:
            item.identity = event_identity(item.event, item.ts, self.profiles.rules)
            primary = item.identity.primary
            needs = primary is not None and gate.needs_key(item.event)
            keyed.append(needs)
            if needs and primary is not None:
                needing.setdefault(item.workspace, set()).add(primary)
        for workspace, nodes in needing.items():
            gate.prepare_keys(workspace, nodes)
        for item, needs in zip(kept, keyed, strict=True):
            assert item.identity is not None
            primary = item.identity.primary
            item.columns = gate.protect(item.workspace, item.event, primary, has_pii_fields=needs)
        return kept

    def _primary(self, item: _Accepted) -> str | None:
        """The identifier an event belongs to (its user id, else its anonymous id)."""
        identity = item.identity or event_identity(item.event, item.ts, self.profiles.rules)
        return identity.primary

    def _replayed_profiles(self, items: list[_Accepted]) -> None:
        """Set the profile id of events the profile store already absorbed (read again
        after a crash)."""
        owners = [(item.workspace, self._primary(item)) for item in items]
        known = self._stored_nodes(owners)
        for item, owner in zip(items, owners, strict=True):
            node = known.get(owner)
            item.profile_id = node.profile_id if node is not None else None

    def _consents(
        self, owners: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], dict[str, bool]]:
        """The current consent of the profile each (workspace, identifier) belongs to now,
        where one of its identifiers holds a statement: read by the identifier, not by a
        profile id the batch resolved (another member of the group may have merged that
        profile into another since), one read per workspace."""
        wanted: dict[str, set[str]] = {}
        for workspace, key in owners:
            if key is not None:
                wanted.setdefault(workspace, set()).add(key)
        return {
            (workspace, key): current
            for workspace, keys in wanted.items()
            for key, current in self.profiles.consents(workspace, keys).items()
        }

    def _stored_nodes(
        self, owners: Sequence[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], StoredNode]:
        """The stored nodes of these (workspace, identifier) pairs, one read per workspace."""
        wanted: dict[str, set[str]] = {}
        for workspace, owner in owners:
            if owner:
                wanted.setdefault(workspace, set()).add(owner)
        return {
            (workspace, owner): node
            for workspace, nodes in wanted.items()
            for owner, node in self.store.nodes(workspace, nodes).items()
        }

    def _lake_bound(self, item: _Accepted) -> bool:
        """Whether the event becomes a lake row (a consent statement does not, nor one the
        lake holds already)."""
        return (
            item.event.get("type") != CONSENT_TYPE
            and bool(item.workspace)
            and self.writer.accepts(
                item.workspace, EVENTS, EVENTS_TOPIC, item.record.partition, item.record.offset
            )
        )

    def _lake_event(self, item: _Accepted) -> None:
        """Buffer the lake row of an event :meth:`_lake_bound` accepts."""
        record = item.record
        event: Mapping[str, Any] | None = item.event
        enrichment: Mapping[str, Any] = item.enrichment
        if self.gate is not None:
            allowed = self.gate.allows_analytics(item.consent)
            event = self.gate.lake_event(item.workspace, item.event, item.columns, allowed)
            enrichment = self.gate.lake_enrichment(enrichment, allowed)
        if event is None:
            return
        verdict = item.verdict
        flagged = verdict.problems if verdict is not None and verdict.mode == "flag" else None
        self.writer.add_event(
            item.workspace,
            event,
            enrichment=enrichment,
            source_id=record.headers.get("sourceId"),
            plan_version=item.plan.version if item.plan is not None else None,
            violations=flagged,
            partition=record.partition,
            offset=record.offset,
            extra=item.columns,
        )

    def _lake_records(
        self, records: list[StoredRecord], change: ProfileWrite
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Rows of the ``decisions`` and ``rewards`` tables (records the lake does not hold
        yet) as (workspace, table, row); a record that is not a decision or reward becomes
        a dead letter."""
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for record in records:
            workspace = record.headers.get("workspaceId", "")
            table = LAKE_TOPICS[record.topic]
            try:
                value = _decode.decode(record.value)
                make = decision_row if table == DECISIONS else reward_row
                row = make(value, record.partition, record.offset, record.timestamp_ms)
            except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                error = StageError("decode", "undecodable", f"not a {table[:-1]} record: {exc!r}")
                self._dead_letter(record, error, change, True)  # stored once: id by position
                continue
            if (
                workspace
                and self.writer.accepts(
                    workspace, table, record.topic, record.partition, record.offset
                )
                and not (self.gate is not None and self.gate.suppressed(workspace, value))
            ):
                rows.append((workspace, table, row))
        return rows

    def _add_lake_rows(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Buffer the rows of :meth:`_lake_records`; with the privacy stage, a decision is
        pseudonymised as the person's ``analytics`` consent says
        (:meth:`~auie.process.privacy_gate.PrivacyGate.lake_decision`)."""
        gate = self.gate
        decisions = [(ws, row) for ws, table, row in rows if table == DECISIONS]
        allowed = self._analytics_allowed(decisions) if gate is not None and decisions else {}
        for workspace, table, row in rows:
            if gate is not None and table == DECISIONS:
                gate.lake_decision(workspace, row, allowed[id(row)])  # in place
            self.writer.add(workspace, table, row)

    def _analytics_allowed(self, decisions: list[tuple[str, dict[str, Any]]]) -> dict[int, bool]:
        """Whether each decision's person allows ``analytics``, by ``id`` of its row: the
        current consent of the profile its identifier (its user id, else its anonymous id)
        belongs to now, as for that person's events."""
        assert self.gate is not None
        owner = self.profiles.rules.owner
        owners = [(ws, owner(row.get("user_id"), row.get("anonymous_id"))) for ws, row in decisions]
        consents = self._consents(owners)
        return {
            id(row): self.gate.allows_analytics(consents.get(key))
            for (_, row), key in zip(decisions, owners, strict=True)
        }

    def _plan(self, workspace: str) -> TrackingPlan | None:
        cached = self._plans.get(workspace)
        now = time.monotonic()
        if cached is None or now - cached[1] > self.plan_refresh_seconds:
            cached = self._plans[workspace] = (self.plans.current(workspace), now)
        return cached[0]

    # -- dead letters ---------------------------------------------------------------------

    def _dead_letter(
        self, record: StoredRecord, error: StageError, change: ProfileWrite, fresh: bool
    ) -> None:
        workspace = record.headers.get("workspaceId", "")
        letter = DeadLetter(
            id=dead_letter_id(record.topic, record.partition, record.offset),
            workspace_id=workspace,
            stage=error.stage,
            code=error.code,
            message=error.message[:4000],
            payload=record.value.decode("utf-8", "replace"),
            source_id=record.headers.get("sourceId"),
            log_partition=record.partition,
            log_offset=record.offset,
            created_at=datetime.now(UTC),
        )
        self._keep(letter, record, change, fresh)

    def _collector_dead_letters(self, records: list[StoredRecord], change: ProfileWrite) -> int:
        for record in records:
            fresh = record.offset >= self.applied[DEAD_LETTERS_TOPIC].get(record.partition, 0)
            try:
                value: Mapping[str, Any] = _decode.decode(record.value)
            except msgspec.DecodeError:
                value = {"payload": record.value.decode("utf-8", "replace")}
            letter = DeadLetter(
                id=dead_letter_id(record.topic, record.partition, record.offset),
                workspace_id=record.headers.get("workspaceId", ""),
                stage=str(value.get("stage", "collect")),
                code=str(value.get("code", "rejected")),
                message=str(value.get("message", ""))[:4000],
                payload=as_text(value.get("payload")) or "null",
                source_id=record.headers.get("sourceId"),
                log_partition=record.partition,
                log_offset=record.offset,
                created_at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            )
            self._keep(letter, record, change, fresh)
        return len(records)

    def _keep(
        self, letter: DeadLetter, record: StoredRecord, change: ProfileWrite, fresh: bool
    ) -> None:
        if fresh:
            change.dead_letters.append(letter)
        if letter.workspace_id and self.writer.accepts(
            letter.workspace_id, DEAD_LETTERS, record.topic, record.partition, record.offset
        ):
            self.writer.add(
                letter.workspace_id,
                DEAD_LETTERS,
                {
                    "id": letter.id,
                    "stage": letter.stage,
                    "code": letter.code,
                    "message": letter.message,
                    "payload": letter.payload,
                    "source_id": letter.source_id,
                    "received_at": letter.created_at,
                    "log_partition": letter.log_partition,
                    "log_offset": letter.log_offset,
                },
            )
