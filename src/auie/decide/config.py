"""A decision point's configuration (camelCase in JSON, like the rest of the API)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

#: LinUCB's exploration weight: the one default of ``{"type": "linucb"}`` (the policy's) and
#: of a new decision point's policy (docs/decide.md's policy table).
DEFAULT_ALPHA = 0.3

DEFAULT_POLICY: dict[str, Any] = {"type": "linucb", "alpha": DEFAULT_ALPHA}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ActionSpec(_Model):
    id: str = Field(min_length=1, max_length=200)
    features: dict[str, Any] = Field(default_factory=dict)


#: Rewards (reported, or the default) are within ±this: larger ones overflow the models'
#: sums and would break every later decision of the point.
MAX_REWARD = 1e6


#: How long a deferred decision may wait for its activation before it is dropped.
DEFERRED_TTL_SECONDS = 24 * 3600.0


class RewardSpec(_Model):
    #: Rewards arriving within this time of the (activated) decision count.
    wait_seconds: float = Field(600.0, ge=0, le=7 * 24 * 3600)
    #: ``earliest``: the first reward counts (learned at once); ``sum``: all within the wait.
    aggregation: Literal["earliest", "sum"] = "earliest"
    #: Learned when no reward arrives in time.
    default: float = Field(0.0, ge=-MAX_REWARD, le=MAX_REWARD)


class JoinSpec(_Model):
    """What of the person AUIE adds to the context (under ``user.*``)."""

    traits: bool | list[str] = True
    computed_traits: bool | list[str] = True
    segments: bool = True
    user_features: bool = True


class FeatureSpec(_Model):
    context_dim: int = Field(64, ge=4, le=1024)
    #: Shared action-feature block (0: per-action models only; None: 32 when actions have
    #: features, else 0).
    action_dim: int | None = Field(None, ge=0, le=256)
    interactions: bool = True
    hashed_fraction: float = Field(0.25, ge=0, le=1)


class ArmSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    policy: dict[str, Any]
    share: float = Field(gt=0)


class ExperimentSpec(_Model):
    """Sticky A/B/n: a person always lands in the same arm (hash of the person)."""

    arms: list[ArmSpec] = Field(min_length=1)
    #: Share of people served the baseline and not learned from.
    holdout: float = Field(0.0, ge=0, lt=1)


class DecisionPointConfig(_Model):
    actions: list[ActionSpec] = Field(default_factory=list)
    baseline: str | None = None
    policy: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_POLICY))
    exploration_floor: float = Field(0.001, ge=0, le=0.5)
    reward: RewardSpec = Field(default_factory=RewardSpec)
    mode: Literal["online", "apprentice", "frozen"] = "online"
    join: JoinSpec = Field(default_factory=JoinSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    experiment: ExperimentSpec | None = None
    #: A new registry version every this many online updates ...
    snapshot_every: int = Field(1000, ge=1)
    #: ... but at most one per this many seconds (a busy point would otherwise write a
    #: version every second); the minute's snapshot and shutdown save the rest.
    snapshot_min_seconds: float = Field(10.0, ge=0)
    #: Online versions kept per arm; older ones are deleted (never the served version, nor
    #: versions trained offline or promoted).
    snapshot_keep: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DecisionPointConfig:
        ids = [a.id for a in self.actions]
        if len(ids) != len(set(ids)):
            raise ValueError("action ids must be unique")
        if self.baseline is not None and ids and self.baseline not in ids:
            raise ValueError(f"baseline {self.baseline!r} is not an action")
        if "type" not in self.policy:
            raise ValueError("policy needs a type")
        return self

    @property
    def action_dim(self) -> int:
        if self.features.action_dim is not None:
            return self.features.action_dim
        return 32 if any(a.features for a in self.actions) else 0
