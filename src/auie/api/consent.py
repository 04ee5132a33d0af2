"""Consent through the API (scope ``privacy:admin``): state it, and read it back.

``PUT /v1/privacy/consent/{idType}/{idValue}`` appends a consent statement to the event log
(like an event, so it is durable before the reply and the processor folds it into the
profile by event time, exactly as statements that arrive with events); ``GET`` answers the
profile's current consent per purpose and its history.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import Error
from auie.api.security import scope
from auie.auth.scopes import PRIVACY_ADMIN
from auie.auth.tokens import Principal
from auie.collect.service import Collector
from auie.errors import Conflict, InvalidRequest, NotFound
from auie.eventlog import EVENTS_TOPIC, LogRecord
from auie.events import format_time, parse_time
from auie.profiles.identity import ANONYMOUS_ID, MAX_ID_LENGTH, USER_ID
from auie.profiles.service import Profile
from auie.profiles.state import CONSENT_TYPE
from auie.runtime import Runtime

router = APIRouter(
    prefix="/v1/privacy/consent",
    route_class=StrictJSONRoute,
    tags=["privacy"],
    responses={
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the privacy:admin scope"},
    },
)
_admin = Depends(scope(PRIVACY_ADMIN))
_encode = msgspec.json.Encoder().encode
#: How far a statement's timestamp may be ahead of the server's clock (client clock skew):
#: current consent is the latest statement by event time, so a statement dated years ahead
#: would outrank every later one.
MAX_FUTURE = timedelta(minutes=5)


class ConsentIn(BaseModel):
    """Purposes to set; those left out keep their current value. Strict: a purpose is
    JSON ``true``, ``false`` or ``null`` (not ``"yes"``, ``1`` or ``"true"``), as in events,
    where anything else is ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    analytics: bool | None = None
    personalization: bool | None = None
    marketing: bool | None = Field(None, description="CCPA 'do not sell or share' is false")
    timestamp: str | None = Field(None, description="When it was stated (ISO-8601); now")


class ConsentOut(BaseModel):
    profileId: str | None
    current: dict[str, bool]
    history: list[dict[str, Any]]


class ConsentRecorded(BaseModel):
    status: str
    consent: dict[str, bool]
    messageId: str


def _identity(runtime: Runtime, workspace: str, id_type: str, id_value: str) -> tuple[str, str]:
    """The identifier a statement is recorded under: the person's user id when there is
    one, else the anonymous id; other identifiers (e-mail, ...) must name a known profile.

    A statement the processor would drop is refused here instead of acknowledged: a junk
    value (``profiles.junk_values``, empty, over-long) links nobody, and an erased
    identifier's statements are dropped like its events."""
    if id_type in (USER_ID, ANONYMOUS_ID):
        kind, value = id_type, runtime.profiles.rules.clean(id_value)
        if value is None:
            raise InvalidRequest(
                f"{id_type} {id_value[:100]!r} identifies nobody: it is empty, longer than"
                f" {MAX_ID_LENGTH} characters or a junk value (profiles.junk_values)",
                code="invalid_identifier",
            )
    else:
        kind, value = _holder(runtime.profiles.profile(workspace, id_type, id_value), id_type)
    if runtime.privacy.is_suppressed(workspace, kind, value):
        raise Conflict(
            f"{kind} {value!r} was erased: a statement about it would be dropped like its events",
            code="identifier_erased",
        )
    return kind, value


def _holder(profile: Profile, id_type: str) -> tuple[str, str]:
    for wanted in (USER_ID, ANONYMOUS_ID):
        for identity in profile.identities:
            if identity["type"] == wanted:
                return wanted, identity["value"]
    raise NotFound(f"the profile of {id_type} has no user or anonymous id to record consent on")


@router.put(
    "/{id_type}/{id_value:path}",
    response_model=ConsentRecorded,
    operation_id="put_consent",
    responses={
        400: {"model": Error, "description": "A junk identifier or type, no purpose, a bad time"},
        404: {"model": Error, "description": "No profile has this e-mail or other identifier"},
        409: {"model": Error, "description": "The identifier was erased"},
    },
)
async def put_consent(
    id_type: str, id_value: str, body: ConsentIn, request: Request, who: Principal = _admin
) -> Any:
    """Record consent per purpose (durable when the reply is sent)."""
    stated = {k: v for k, v in body.model_dump(exclude={"timestamp"}).items() if v is not None}
    if not stated:
        raise InvalidRequest("state at least one purpose", code="invalid_consent")
    runtime: Runtime = request.app.state.runtime
    kind, value = await run_in_threadpool(_identity, runtime, who.workspace_id, id_type, id_value)
    now = datetime.now(UTC)
    when = parse_time(body.timestamp, "timestamp") if body.timestamp else now
    if when > now + MAX_FUTURE:
        raise InvalidRequest(
            f"timestamp {format_time(when)} is more than {MAX_FUTURE.seconds // 60} minutes"
            f" after the server's time {format_time(now)}; consent cannot be stated in advance",
            code="invalid_timestamp",
        )
    message_id = f"consent-{uuid.uuid4()}"
    event = {
        "type": CONSENT_TYPE,
        "messageId": message_id,
        "userId" if kind == USER_ID else "anonymousId": value,
        "consent": stated,
        "timestamp": format_time(when),
        "receivedAt": format_time(now),
    }
    collector: Collector = request.app.state.collector
    await collector.writer.append(
        [
            LogRecord(
                topic=EVENTS_TOPIC,
                key=value.encode("utf-8", "surrogatepass"),
                value=_encode(event),
                timestamp_ms=int(time.time() * 1000),
                headers={"workspaceId": who.workspace_id, "sourceId": "privacy-api"},
                dedupe_key=f"{who.workspace_id}:{message_id}",
            )
        ]
    )
    await run_in_threadpool(
        runtime.audit.record,
        "consent.recorded",
        actor=who.client_id,
        workspace=who.workspace_id,
        target=message_id,
        details={"purposes": sorted(stated)},
    )
    return {"status": "recorded", "consent": stated, "messageId": message_id}


@router.get(
    "/{id_type}/{id_value:path}",
    response_model=ConsentOut,
    operation_id="get_consent",
    responses={400: {"model": Error}, 404: {"model": Error}},
)
async def get_consent(
    id_type: str, id_value: str, request: Request, who: Principal = _admin
) -> Any:
    """The person's current consent per purpose and every statement, oldest first."""
    runtime: Runtime = request.app.state.runtime
    profile = await run_in_threadpool(runtime.profiles.profile, who.workspace_id, id_type, id_value)
    return {"profileId": profile.profile_id, **profile.consent}
