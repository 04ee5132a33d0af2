"""Pydantic models of AUIE's JSON API (camelCase on the wire), used for OpenAPI and replies.

The collector does not validate with these models (it has its own, faster and more
precise rules in :mod:`auie.events.normalize`); they describe the same shapes for the
OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Error(BaseModel):
    """Every error body."""

    code: str = Field(description="Machine-readable error code, e.g. invalid_json")
    message: str = Field(description="What was wrong, for people")


# -- collector -----------------------------------------------------------------------

_Id = str | int | float


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: _Id | None = Field(None, description="userId or anonymousId is required")
    anonymousId: _Id | None = None
    messageId: str | None = Field(None, description="Assigned when missing; deduplicates")
    timestamp: str | None = Field(None, description="ISO-8601; the client's event time")
    originalTimestamp: str | None = None
    sentAt: str | None = Field(None, description="ISO-8601; used for clock-skew correction")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


class TrackMessage(_Message):
    type: Literal["track"] | None = None
    event: str
    properties: dict[str, Any] | None = None


class IdentifyMessage(_Message):
    type: Literal["identify"] | None = None
    traits: dict[str, Any] | None = None


class PageMessage(_Message):
    type: Literal["page"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class ScreenMessage(_Message):
    type: Literal["screen"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class GroupMessage(_Message):
    type: Literal["group"] | None = None
    groupId: _Id
    traits: dict[str, Any] | None = None


class AliasMessage(_Message):
    type: Literal["alias"] | None = None
    previousId: _Id
    userId: _Id


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(
        description="Messages, each with its `type`; invalid ones are rejected one by one"
    )
    context: dict[str, Any] | None = Field(None, description="Merged into every message")
    integrations: dict[str, Any] | None = Field(None, description="Merged into every message")
    sentAt: str | None = None
    writeKey: str | None = Field(None, description="Alternative to Basic auth")


class Rejected(BaseModel):
    index: int = Field(description="Position of the rejected message in the batch")
    code: str
    message: str


class IngestResponse(BaseModel):
    """The 200 reply of every collector endpoint."""

    success: bool = True
    accepted: int = Field(description="Valid events acknowledged (duplicates included)")
    duplicates: int = Field(description="Acknowledged events whose messageId was already stored")
    rejected: list[Rejected] = Field(description="Messages rejected and dead-lettered")


# -- auth ----------------------------------------------------------------------------


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (not a secret)
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    code: str
    message: str
    error: str
    error_description: str


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


# -- admin ---------------------------------------------------------------------------


class WorkspaceOut(ApiModel):
    id: str
    name: str
    created_at: datetime


class SourceIn(ApiModel):
    name: str = Field(min_length=1, max_length=100)
    kind: str = "web"


class SourceOut(ApiModel):
    id: str
    workspace_id: str
    name: str
    kind: str
    created_at: datetime


class WriteKeyOut(ApiModel):
    id: str
    source_id: str
    workspace_id: str
    prefix: str = Field(description="First characters of the key, to recognise it")
    created_at: datetime
    revoked_at: datetime | None


class NewWriteKeyOut(WriteKeyOut):
    key: str = Field(description="The write key; shown only in this reply")


class ClientIn(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1)


class ClientScopesIn(ApiModel):
    scopes: list[str] = Field(min_length=1)


class ClientOut(ApiModel):
    id: str
    workspace_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class NewClientOut(ClientOut):
    secret: str = Field(description="The client secret; shown only in this reply")


class AuditOut(BaseModel):
    seq: int
    workspaceId: str | None
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]


class Status(BaseModel):
    status: str


class ProcessorStatus(BaseModel):
    """``auie serve``'s processor group: members running of all, restarts since start."""

    members: int
    running: int
    restarts: int
    #: Events in the event log not yet processed into the lake.
    lag: int


class ReadyStatus(BaseModel):
    status: str
    #: Absent when this server runs no processor (``process.enabled = false``).
    processor: ProcessorStatus | None = None


# -- profiles ------------------------------------------------------------------------


class Identity(BaseModel):
    type: str
    value: str


class MergeOut(BaseModel):
    fromProfileId: str
    intoProfileId: str
    messageId: str
    timestamp: str
    kind: str


class ConsentHistoryOut(BaseModel):
    timestamp: str
    messageId: str
    purpose: str
    granted: bool
    source: str


class ProfileConsentOut(BaseModel):
    """Current consent per purpose (latest statement by event time) and every statement."""

    current: dict[str, bool]
    history: list[ConsentHistoryOut]


class ProfileOut(BaseModel):
    profileId: str
    identities: list[Identity]
    traits: dict[str, Any]
    computedTraits: dict[str, Any]
    consent: ProfileConsentOut
    merges: list[MergeOut]


class ProfileEventsOut(BaseModel):
    profileId: str
    events: list[dict[str, Any]]


# -- tracking plan and dead letters --------------------------------------------------


class PlanOut(BaseModel):
    version: int
    plan: dict[str, Any]


class PlanVersionOut(BaseModel):
    version: int
    createdAt: datetime


class ViolationOut(ApiModel):
    event_key: str
    plan_version: int
    violations: int
    blocked: int
    last_message: str
    last_seen_at: datetime


class DeadLetterOut(ApiModel):
    id: str
    stage: str
    code: str
    message: str
    payload: Any
    source_id: str | None
    created_at: datetime
    replayed_at: datetime | None


class ReplayIn(ApiModel):
    stage: str | None = Field(None, max_length=50)
    code: str | None = Field(None, max_length=100)
    limit: int = Field(10_000, ge=1, le=100_000, strict=True)  # not true, not "10"


class ReplayFailure(BaseModel):
    id: str
    message: str


class ReplayOut(BaseModel):
    replayed: int
    failed: list[ReplayFailure]
