"""Profiles (scope ``profiles:read``): one per person, and the person's recent events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from auie.api.routing import StrictJSONRoute
from auie.api.schemas import Error, ProfileEventsOut, ProfileOut
from auie.api.security import scope
from auie.auth.scopes import PROFILES_READ
from auie.auth.tokens import Principal
from auie.lake.query import person_events
from auie.lake.tables import EVENTS
from auie.profiles.identity import node
from auie.runtime import Runtime

router = APIRouter(
    prefix="/v1/profiles",
    route_class=StrictJSONRoute,
    tags=["profiles"],
    responses={
        400: {"model": Error, "description": "No identifier can be of this type"},
        401: {"model": Error, "description": "Missing or invalid token"},
        403: {"model": Error, "description": "Token lacks the profiles:read scope"},
        404: {"model": Error, "description": "No profile has this identifier"},
    },
)
_reader = Depends(scope(PROFILES_READ))


# The events route comes first: an identifier may hold "/" ({id_value:path}), and
# ".../events" is this route's, so an identifier ending in "/events" reads as its events.
@router.get(
    "/{id_type}/{id_value:path}/events",
    response_model=ProfileEventsOut,
    operation_id="get_profile_events",
)
async def get_profile_events(
    id_type: str,
    id_value: str,
    request: Request,
    limit: int = Query(50, ge=1, le=1000),
    who: Principal = _reader,
) -> Any:
    """The person's most recent events in the lake, newest first (field-encrypted values
    decrypted, as the profile shows them)."""
    runtime: Runtime = request.app.state.runtime
    workspace = who.workspace_id

    def read() -> dict[str, Any]:
        profile = runtime.profiles.profile(workspace, id_type, id_value)
        users = [i["value"] for i in profile.identities if i["type"] == "user_id"]
        anonymous = [i["value"] for i in profile.identities if i["type"] == "anonymous_id"]
        if not runtime.lake.exists(workspace, EVENTS):
            return {"profileId": profile.profile_id, "events": []}
        table = runtime.lake.refresh(workspace, EVENTS)
        own = {node(i["type"], i["value"]) for i in profile.identities}
        owner = runtime.profiles.rules.owner
        events = person_events(
            table, users, anonymous, limit, lambda user, anon: owner(user, anon) in own
        )
        return {
            "profileId": profile.profile_id,
            "events": runtime.privacy.cipher.decrypt_all(workspace, events),
        }

    return await run_in_threadpool(read)


@router.get("/{id_type}/{id_value:path}", response_model=ProfileOut, operation_id="get_profile")
async def get_profile(
    id_type: str, id_value: str, request: Request, who: Principal = _reader
) -> Any:
    """The profile of an identifier (``user_id``, ``anonymous_id``, ``email``, ...)."""
    runtime: Runtime = request.app.state.runtime
    profile = await run_in_threadpool(runtime.profiles.profile, who.workspace_id, id_type, id_value)
    return profile.to_dict()
