"""``auie replay``: send dead letters back through the processor.

Each pending dead letter is appended to the ``events`` topic again (collector rejects are
normalised again first and held to the collector's event size limit), with the dedupe key
``replay:<dead letter id>`` so a replay interrupted and run again appends it only once, and
marked replayed. A dead letter never reached the profile store or the lake, so replaying it
duplicates nothing. Those that still fail normalisation or the size limit, or that the
workspace's current tracking plan still blocks, stay pending and are reported (and are not
counted as violations again).

``limit`` counts the letters replayed: those that still fail are stepped over (at most
:data:`MAX_STILL_FAILING` a run), so old letters that can never pass do not hold back newer
ones that can.

Replays take turns: an exclusive ``flock`` on ``<data_dir>/replay.lock`` is held from
reading the pending letters to marking them replayed, so a replay from the CLI and one from
the API at the same moment cannot both append the same letters. The log's dedupe index is
per writing process, so before appending, a replay has its log writer learn the keys other
processes appended since it loaded its index (:meth:`EventLog.refresh_dedupe`): a letter
appended by a run that stopped before marking it (a crash, in this process or another) is
marked now, not appended again, and not counted in ``replayed``, which counts the letters
this run appended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from auie.errors import InvalidEvent
from auie.eventlog import EVENTS_TOPIC, EventLog, LogRecord
from auie.events import Normalizer, check_size
from auie.filelock import exclusive
from auie.process.plan import PlanStore, TrackingPlan
from auie.profiles.store.base import DeadLetter, ProfileStore

_encode = msgspec.json.Encoder().encode
#: Letters that still fail a run steps over (and reports) on its way to ``limit`` replayed
#: ones; beyond it the run stops, so its reply and its time stay bounded.
MAX_STILL_FAILING = 10_000


@dataclass(slots=True)
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": len(self.replayed),
            "failed": [{"id": i, "message": m} for i, m in self.failed],
        }


def _event(letter: DeadLetter, max_event_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The event a letter holds and its encoding; a collector reject is normalised and
    size-checked again, as the collector does."""
    payload = json.loads(letter.payload)
    if letter.stage != "collect":
        if not isinstance(payload, dict):
            raise InvalidEvent("payload is not an event", code="invalid_item")
        return payload, _encode(payload)
    normalizer = Normalizer(received_at=letter.created_at, peer_ip=None)
    event = normalizer.normalize(payload)
    value = _encode(event)
    check_size(value, max_event_bytes)
    return event, value


def _check_plan(plan: TrackingPlan | None, event: Mapping[str, Any]) -> None:
    """Refuse an event the current plan still blocks: sent back, it would only become a
    new dead letter (and count as a violation again)."""
    verdict = plan.check(event) if plan is not None else None
    if plan is not None and verdict is not None and verdict.blocked:
        raise InvalidEvent(
            f"still blocked by tracking plan version {plan.version}: "
            + "; ".join(verdict.problems),
            code="plan_violation",
        )


def _record(letter: DeadLetter, event: Mapping[str, Any], value: bytes, now_ms: int) -> LogRecord:
    person = event.get("userId") or event.get("anonymousId") or ""
    headers = {"workspaceId": letter.workspace_id, "replayOf": letter.id}
    if letter.source_id:
        headers["sourceId"] = letter.source_id
    return LogRecord(
        topic=EVENTS_TOPIC,
        key=str(person).encode(),
        value=value,
        timestamp_ms=now_ms,
        headers=headers,
        dedupe_key=f"replay:{letter.id}",
    )


def replay(
    log: EventLog,
    store: ProfileStore,
    plans: PlanStore,
    *,
    workspace: str | None = None,
    stage: str | None = None,
    code: str | None = None,
    limit: int = 10_000,
    max_event_bytes: int,
    data_dir: Path,
) -> ReplayReport:
    """Replay pending dead letters matching the filters; see the module docstring.
    ``max_event_bytes`` is the collector's limit (``collect.max_event_bytes``); ``data_dir``
    holds the lock replays take turns on."""
    with exclusive(data_dir / "replay.lock"):
        return _replay(
            log,
            store,
            plans,
            workspace=workspace,
            stage=stage,
            code=code,
            limit=limit,
            max_event_bytes=max_event_bytes,
        )


def _replay(
    log: EventLog,
    store: ProfileStore,
    plans: PlanStore,
    *,
    workspace: str | None,
    stage: str | None,
    code: str | None,
    limit: int,
    max_event_bytes: int,
) -> ReplayReport:
    report = ReplayReport()
    current: dict[str, TrackingPlan | None] = {}
    records = []
    sent: list[str] = []
    now_ms = int(time.time() * 1000)
    after = None
    while len(sent) < limit and len(report.failed) < MAX_STILL_FAILING:
        wanted = min(limit - len(sent), MAX_STILL_FAILING - len(report.failed))
        letters = store.dead_letters(
            workspace, pending=True, stage=stage, code=code, limit=wanted, after=after
        )
        if not letters:
            break
        after = (letters[-1].created_at, letters[-1].id)
        for letter in letters:
            ws = letter.workspace_id
            try:
                event, value = _event(letter, max_event_bytes)
                if ws not in current:
                    current[ws] = plans.current(ws)
                _check_plan(current[ws], event)
            except (InvalidEvent, ValueError) as exc:
                report.failed.append((letter.id, str(exc)))
                continue
            records.append(_record(letter, event, value, now_ms))
            sent.append(letter.id)
    if records:
        log.refresh_dedupe()  # what a replay in another process appended before it stopped
        outcomes = log.append(records)
        store.mark_replayed(sent, datetime.now(UTC))
        report.replayed = [
            letter_id
            for letter_id, outcome in zip(sent, outcomes, strict=True)
            if outcome.offset is not None
        ]
    return report
