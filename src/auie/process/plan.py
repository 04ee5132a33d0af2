"""Tracking plans: per workspace, a JSON Schema per event, and what to do on a violation.

A plan is a JSON document, versioned (every change is a new version)::

    {
      "unplanned": "allow",                      # track events the plan does not name
      "events": {
        "Order Completed": {"mode": "block", "schema": {...}}   # schema of `properties`
      },
      "identify": {"mode": "flag", "schema": {...}},            # schema of `traits`
      "page": {...}, "screen": {...}, "group": {...}
    }

Modes: ``allow`` keeps the event and counts the violation; ``flag`` also writes the
violations into the event's ``plan_violations`` column; ``block`` sends the event to the
dead-letter store (``auie replay`` brings it back after the plan is fixed). Schemas are
checked with jsonschema-rs (compiled once per version), ``format`` included (``email``,
``date-time``, ``uri``...; formats it does not know pass). A ``$ref`` may point inside the
schema only (``#/$defs/...``): the server fetches no URL and reads no file for a plan.

A stored version always loads: a rule that no longer compiles (a plan stored before a rule
was tightened) checks every event it names as one violation saying so, in its own mode, so
``block`` dead-letters them for a replay after the fix rather than stopping the processor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema_rs
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from auie.errors import Conflict, InvalidRequest, NotFound
from auie.ids import utcnow
from auie.process.tables import tracking_plans

Mode = Literal["allow", "flag", "block"]
_MODES = ("allow", "flag", "block")
_TYPE_KEYS = ("identify", "page", "screen", "group")
_MAX_PLAN_BYTES = 1_000_000
#: Versions tried when concurrent writers take the same number (each retry reads anew).
_PUT_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking one event: no violations means ``problems`` is empty."""

    key: str
    mode: Mode
    problems: tuple[str, ...]

    @property
    def blocked(self) -> bool:
        return bool(self.problems) and self.mode == "block"


@dataclass(frozen=True, slots=True)
class _Rule:
    mode: Mode
    validator: Any


class TrackingPlan:
    """A compiled plan version (``stored``: read back from the store, see the module)."""

    def __init__(self, version: int, document: Mapping[str, Any], *, stored: bool = False) -> None:
        if not isinstance(document, dict):  # a plan file may hold any JSON value
            raise InvalidRequest("tracking plan must be a JSON object", code="invalid_plan")
        self.version = version
        self.document = document
        self._stored = stored
        self.unplanned: Mode = _mode(document.get("unplanned", "allow"), "unplanned")
        events = _mapping(document.get("events", {}), "events")
        if any(not name.strip() for name in events):
            raise InvalidRequest(
                "tracking plan events: an event name is empty", code="invalid_plan"
            )
        self.events = {
            str(name): self._rule(spec, f"events.{name}") for name, spec in events.items()
        }
        self.types = {key: self._rule(document[key], key) for key in _TYPE_KEYS if key in document}
        unknown = set(document) - {"unplanned", "events", *_TYPE_KEYS}
        if unknown:
            raise InvalidRequest(
                f"unknown tracking plan key(s): {', '.join(sorted(unknown))}",
                code="invalid_plan",
            )

    def _rule(self, spec: Any, where: str) -> _Rule:
        try:
            return _rule(spec, where)
        except InvalidRequest as exc:
            if not self._stored or exc.code != "invalid_plan" or not isinstance(spec, dict):
                raise
            mode = spec.get("mode", "allow")
            return _Rule(mode if mode in _MODES else "block", _Unusable(exc.message))

    def check(self, event: Mapping[str, Any]) -> Verdict | None:
        """The verdict for one normalised event, or None when the plan has nothing to say."""
        kind = event.get("type")
        if kind == "track":
            key = str(event.get("event"))
            rule = self.events.get(key)
            if rule is None:
                if self.unplanned == "allow":
                    return None
                return Verdict(key, self.unplanned, ("event is not in the tracking plan",))
            payload = event.get("properties") or {}
        elif kind in self.types:
            key = str(kind)
            rule = self.types[key]
            payload = event.get("traits" if kind in ("identify", "group") else "properties") or {}
        else:
            return None
        problems = tuple(
            f"{'/'.join(str(p) for p in error.instance_path) or '(root)'}: {error.message}"
            for error in rule.validator.iter_errors(payload)
        )
        return Verdict(key, rule.mode, problems[:20]) if problems else None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"tracking plan {where} must be an object", code="invalid_plan")
    return value


def _mode(value: Any, where: str) -> Mode:
    if value not in _MODES:
        raise InvalidRequest(
            f"tracking plan {where}: mode must be allow, flag or block", code="invalid_plan"
        )
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Problem:
    instance_path: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class _Unusable:
    """The validator of a stored rule that no longer compiles: every event fails it."""

    reason: str

    def iter_errors(self, _payload: Any) -> list[_Problem]:
        return [_Problem((), f"this version's rule no longer compiles ({self.reason})")]


def _no_documents(uri: str) -> Any:
    """jsonschema-rs's retriever for ``$ref`` to another document: refused (no fetch)."""
    raise _OtherDocument(uri)


class _OtherDocument(ValueError):
    pass


def _rule(spec: Any, where: str) -> _Rule:
    spec = _mapping(spec, where)
    unknown = set(spec) - {"mode", "schema"}
    if unknown:  # a typo ("shema") would otherwise silently check nothing
        raise InvalidRequest(
            f"tracking plan {where}: unknown key(s) {', '.join(sorted(unknown))} "
            "(a rule has mode and schema)",
            code="invalid_plan",
        )
    schema = spec.get("schema", {})
    try:
        validator = jsonschema_rs.validator_for(
            dict(_mapping(schema, f"{where}.schema")),
            validate_formats=True,
            retriever=_no_documents,
        )
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        message = str(exc).splitlines()[0]
        if "is not present in a registry" in message:  # a $ref to another document
            uri = message.split("'")[1] if message.count("'") >= 2 else "another document"
            raise InvalidRequest(
                f"tracking plan {where}.schema refers to {uri[:200]!r}: a $ref may only point"
                ' inside the schema ("#/$defs/..."); the server fetches no URL or file',
                code="invalid_plan",
            ) from None
        raise InvalidRequest(
            f"tracking plan {where}.schema is not a valid JSON Schema: {message}",
            code="invalid_plan",
        ) from None
    return _Rule(_mode(spec.get("mode", "allow"), f"{where}.mode"), validator)


class PlanStore:
    """Versioned plans in the metadata database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, workspace: str, document: Mapping[str, Any]) -> TrackingPlan:
        """Validate and store a new version; returns it."""
        text = json.dumps(document, sort_keys=True)
        if len(text) > _MAX_PLAN_BYTES:
            raise InvalidRequest("tracking plan is larger than 1 MB", code="invalid_plan")
        plan = TrackingPlan(0, document)  # compiled (refused if invalid) before any write
        c = tracking_plans.c
        for attempt in range(_PUT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    latest = conn.execute(
                        select(func.max(c.version)).where(c.workspace_id == workspace)
                    ).scalar()
                    version = int(latest or 0) + 1
                    conn.execute(
                        insert(tracking_plans).values(
                            workspace_id=workspace, version=version, plan=text, created_at=utcnow()
                        )
                    )
                plan.version = version
                return plan
            except IntegrityError:  # another writer took this version number: the next one
                if attempt == _PUT_ATTEMPTS - 1:
                    raise Conflict(
                        "the tracking plan changed too often meanwhile; send it again",
                        code="plan_conflict",
                    ) from None
        raise AssertionError("unreachable")

    def current(self, workspace: str) -> TrackingPlan | None:
        c = tracking_plans.c
        query = (
            select(c.version, c.plan)
            .where(c.workspace_id == workspace)
            .order_by(c.version.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else TrackingPlan(int(row[0]), json.loads(row[1]), stored=True)

    def version(self, workspace: str, version: int) -> TrackingPlan:
        c = tracking_plans.c
        query = select(c.plan).where(c.workspace_id == workspace, c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"tracking plan version {version} does not exist")
        return TrackingPlan(version, json.loads(row[0]), stored=True)

    def versions(self, workspace: str) -> list[dict[str, Any]]:
        c = tracking_plans.c
        query = (
            select(c.version, c.created_at).where(c.workspace_id == workspace).order_by(c.version)
        )
        with self.engine.connect() as conn:
            return [{"version": v, "createdAt": t} for v, t in conn.execute(query)]
