"""Privacy requests as tracked jobs: ``pending`` → ``running`` → ``done`` | ``failed``.

A request (``export`` or ``erasure``) is recorded in ``privacy_requests`` with its subject
as **keyed hashes only**; the identifiers themselves stay in the memory of the process
that runs it. The API hands requests to a :class:`RequestWorker` (one background thread
of ``auie serve``, one request at a time); the CLI runs them in its own process, with a
progress bar. A request left ``pending`` or ``running`` by a process that died is resumed
by the next worker: its identifiers are found again by hashing the profile store's
identifiers; if none matches, it fails ("submit it again").

Every request is audited when it is submitted and when it ends (request id, kind,
outcome, counts per store, duration — never identifiers).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import insert, select, update

from auie.errors import Conflict, InvalidRequest, NotFound
from auie.ids import new_id, utc_text, utcnow
from auie.privacy.context import PrivacyContext, Progress, no_progress
from auie.privacy.erasure import Eraser, MartsRebuild
from auie.privacy.export import Exporter
from auie.privacy.person import Subject, find_nodes_by_digest
from auie.privacy.tables import privacy_requests
from auie.profiles.identity import split

logger = logging.getLogger(__name__)

Kind = Literal["export", "erasure"]
KINDS: tuple[Kind, ...] = ("export", "erasure")
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    id: str
    workspace_id: str
    kind: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any]
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requestId": self.id,
            "kind": self.kind,
            "status": self.status,
            "createdAt": utc_text(self.created_at),
            "finishedAt": utc_text(self.finished_at) if self.finished_at else None,
            "result": {k: v for k, v in self.result.items() if k not in ("runner", "progress")},
            "error": self.error,
        }
        if "progress" in self.result:
            data["progress"] = self.result["progress"]
        return data


def _request(row: Any) -> PrivacyRequest:
    return PrivacyRequest(
        row.id,
        row.workspace_id,
        row.kind,
        row.status,
        row.created_at,
        row.finished_at,
        json.loads(row.result or "{}"),
        row.error,
    )


def _alive(runner: Any) -> bool:
    """Whether the process recorded as running a request still lives (on this host)."""
    if not isinstance(runner, dict) or runner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(runner.get("pid", 0)), 0)
    except (OSError, ValueError):
        return False
    return int(runner.get("pid", 0)) > 0


class PrivacyRequests:
    """Submit, run and read privacy requests."""

    def __init__(self, ctx: PrivacyContext, *, rebuild_marts: MartsRebuild | None = None) -> None:
        self.ctx = ctx
        self.rebuild_marts = rebuild_marts
        #: Identifiers of requests this process will run (never written anywhere).
        self._subjects: dict[str, Subject] = {}
        self._lock = threading.Lock()
        #: Called with (workspace, request) after an erasure is done (drop caches).
        self.on_erased: list[Callable[[str, PrivacyRequest], None]] = []

    # -- records -------------------------------------------------------------------------

    def submit(self, workspace: str, kind: str, subject: Subject, *, actor: str) -> PrivacyRequest:
        if kind not in KINDS:
            raise InvalidRequest(f"unknown privacy request kind {kind!r}")
        junk = {v.strip().lower() for v in self.ctx.settings.profiles.junk_values}
        for id_type, value in subject.identifiers:
            if value.lower() in junk:
                raise InvalidRequest(
                    f"{id_type} {value!r} is a junk value (profiles.junk_values): it"
                    " identifies nobody, and a request for it would cover everybody",
                    code="invalid_subject",
                )
        request_id = new_id("pr")
        hashes = sorted({self.ctx.pseudonyms.digest(workspace, n) for n in subject.nodes})
        now = utcnow()
        with self.ctx.engine.begin() as conn:
            conn.execute(
                insert(privacy_requests).values(
                    id=request_id,
                    workspace_id=workspace,
                    kind=kind,
                    status=PENDING,
                    subject=json.dumps(hashes),
                    created_at=now,
                    finished_at=None,
                    result="{}",
                    error=None,
                )
            )
        with self._lock:
            self._subjects[request_id] = subject
        self.ctx.audit.record(
            f"privacy.{kind}.requested",
            actor=actor,
            workspace=workspace,
            target=request_id,
            details={"identifiers": len(subject.identifiers)},
        )
        return self.get(workspace, request_id)

    def get(self, workspace: str | None, request_id: str) -> PrivacyRequest:
        c = privacy_requests.c
        query = select(privacy_requests).where(c.id == request_id)
        if workspace is not None:
            query = query.where(c.workspace_id == workspace)
        with self.ctx.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"privacy request {request_id!r} does not exist")
        return _request(row)

    def recent(self, workspace: str, *, limit: int = 100) -> list[PrivacyRequest]:
        c = privacy_requests.c
        query = (
            select(privacy_requests)
            .where(c.workspace_id == workspace)
            .order_by(c.created_at.desc(), c.id)
            .limit(limit)
        )
        with self.ctx.engine.connect() as conn:
            return [_request(row) for row in conn.execute(query)]

    def archive(self, workspace: str, request_id: str) -> Path:
        """The archive of a finished export request."""
        request = self.get(workspace, request_id)
        if request.kind != "export":
            raise InvalidRequest("only export requests have an archive", code="not_an_export")
        if request.status != DONE:
            raise Conflict(
                f"the export is {request.status}; its archive is not ready",
                code="request_not_done",
            )
        path = self.ctx.archive_path(request_id)
        if not path.exists():
            raise NotFound(
                "the archive is gone (expired by retention, or the person was erased)",
                code="archive_gone",
            )
        return path

    def _set(self, request_id: str, **values: Any) -> None:
        if "result" in values:
            values["result"] = json.dumps(values["result"], sort_keys=True, default=str)
        with self.ctx.engine.begin() as conn:
            conn.execute(
                update(privacy_requests).where(privacy_requests.c.id == request_id).values(**values)
            )

    # -- running -------------------------------------------------------------------------

    def has_subject(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._subjects

    def run(
        self, request_id: str, *, actor: str = "system", progress: Progress = no_progress
    ) -> PrivacyRequest:
        """Run a pending request in this thread; never raises for a failed request."""
        request = self.get(None, request_id)
        if request.status in (DONE, FAILED):
            return request
        with self._lock:
            subject = self._subjects.get(request_id)
        if subject is None:
            raise Conflict(
                "this process does not hold the request's identifiers", code="subject_unknown"
            )
        runner = {"pid": os.getpid(), "host": socket.gethostname()}
        self._set(request_id, status=RUNNING, result={"runner": runner})
        started = time.perf_counter()
        last_write = [0.0]

        def report(step: str, done: int, total: int) -> None:
            progress(step, done, total)
            now = time.monotonic()
            if now - last_write[0] > 0.5 or done >= total:
                last_write[0] = now
                self._set(
                    request_id,
                    result={
                        "runner": runner,
                        "progress": {"step": step, "done": done, "total": total},
                    },
                )

        try:
            if request.kind == "export":
                person = self.ctx.resolve(request.workspace_id, subject)
                outcome = Exporter(self.ctx).run(request_id, person, report)
            else:
                eraser = Eraser(self.ctx, rebuild_marts=self.rebuild_marts)
                outcome = eraser.run(request_id, request.workspace_id, subject, report)
        except Exception as exc:
            logger.exception("privacy request %s failed", request_id)
            self._set(
                request_id,
                status=FAILED,
                finished_at=utcnow(),
                result={},
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            self.ctx.audit.record(
                f"privacy.{request.kind}",
                actor=actor,
                workspace=request.workspace_id,
                target=request_id,
                outcome="failed",
                details={"error": type(exc).__name__},
            )
        else:
            seconds = round(time.perf_counter() - started, 3)
            outcome.setdefault("seconds", {"total": seconds})
            self._set(request_id, status=DONE, finished_at=utcnow(), result=outcome, error=None)
            self.ctx.audit.record(
                f"privacy.{request.kind}",
                actor=actor,
                workspace=request.workspace_id,
                target=request_id,
                details=_audit_details(outcome),
            )
        finally:
            with self._lock:
                self._subjects.pop(request_id, None)
        final = self.get(None, request_id)
        if final.kind == "erasure" and final.status == DONE:
            for hook in self.on_erased:
                try:
                    hook(final.workspace_id, final)
                except Exception:
                    logger.exception("an erasure hook failed")
        return final

    def orphans(self) -> list[PrivacyRequest]:
        """Requests left pending or running by a process that is gone."""
        c = privacy_requests.c
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(privacy_requests).where(c.status.in_((PENDING, RUNNING)))
            ).all()
        found = []
        for row in rows:
            request = _request(row)
            if self.has_subject(request.id) or _alive(request.result.get("runner")):
                continue
            found.append(request)
        return found

    def recover(self, request: PrivacyRequest) -> bool:
        """Find a lost request's identifiers again from its keyed hashes; False (and the
        request failed) if none of them is in the profile store."""
        c = privacy_requests.c
        with self.ctx.engine.connect() as conn:
            raw = conn.execute(select(c.subject).where(c.id == request.id)).scalar()
        digests = set(json.loads(raw or "[]"))
        nodes = find_nodes_by_digest(
            self.ctx.store, request.workspace_id, digests, self.ctx.pseudonyms
        )
        if not nodes:
            self._set(
                request.id,
                status=FAILED,
                finished_at=utcnow(),
                error="the process running it stopped and its identifiers are not in the "
                "profile store; submit the request again",
            )
            return False
        with self._lock:
            self._subjects[request.id] = Subject(tuple(split(n) for n in sorted(nodes)))
        self._set(request.id, status=PENDING, result={})
        return True


def _audit_details(outcome: dict[str, Any]) -> dict[str, Any]:
    """Counts per store and durations (the outcome never holds identifiers)."""
    keep = (
        "identifiers",
        "profiles",
        "suppressed",
        "processor",
        "eventLog",
        "profileStore",
        "archives",
        "dataKeys",
        "seconds",
        "rows",
        "verification",
    )
    details = {k: outcome[k] for k in keep if k in outcome}
    if "lake" in outcome:
        details["lakeRows"] = {k: v.get("rows", 0) for k, v in outcome["lake"].items()}
    if "marts" in outcome:
        details["martRows"] = outcome["marts"].get("rows", 0)
    return details


class RequestWorker:
    """The background thread that runs the API's requests one at a time."""

    def __init__(self, requests: PrivacyRequests) -> None:
        self.requests = requests
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="auie-privacy", daemon=True)
            self._thread.start()
            for request in self.requests.orphans():
                try:
                    if self.requests.recover(request):
                        self._queue.put((request.id, "system"))
                except Exception:
                    logger.exception("could not resume privacy request %s", request.id)

    def submit(self, workspace: str, kind: str, subject: Subject, *, actor: str) -> PrivacyRequest:
        request = self.requests.submit(workspace, kind, subject, actor=actor)
        self.ensure_started()
        self._queue.put((request.id, actor))
        return request

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                request_id, actor = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.requests.run(request_id, actor=actor)
            except Exception:
                logger.exception("privacy request %s could not run", request_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
