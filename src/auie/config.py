"""One typed settings tree for all of AUIE.

Sources, highest priority first:

1. explicit arguments (CLI flags, ``--set section.key=value``, keyword arguments),
2. environment variables ``AUIE_<SECTION>__<KEY>`` (top-level keys: ``AUIE_<KEY>``),
3. the TOML file (``auie.toml`` in the working directory, or ``--config`` / ``AUIE_CONFIG``),
4. the defaults below.

Unknown keys are an error in every source, so a typo never silently does nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from auie.errors import ConfigError
from auie.profiles.identity import DEFAULT_JUNK

ENV_PREFIX = "AUIE_"
#: Environment variables with the prefix that are not settings keys.
ENV_NOT_SETTINGS = frozenset({"AUIE_CONFIG"})
DEFAULT_CONFIG_FILE = Path("auie.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """The HTTP server of ``auie serve``."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Peers (IPs or CIDR ranges) whose X-Forwarded-For header is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Create a workspace, source, write key and admin client on first start.
    bootstrap: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Largest request body of the API outside the collector (which has its own limits,
    #: ``collect.max_request_bytes``): larger ones get 413 before they are parsed.
    max_body_bytes: int = Field(1024 * 1024, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class CollectConfig(_Section):
    """Limits and behaviour of the Segment-compatible collector."""

    max_event_bytes: int = Field(32 * 1024, gt=0)
    max_request_bytes: int = Field(500 * 1024, gt=0)
    max_batch_events: int = Field(2500, gt=0)
    #: A messageId seen again within this window is acknowledged but stored once.
    dedupe_window_seconds: int = Field(24 * 3600, ge=0)
    #: Sustained events per second per source; 0 disables the limit.
    rate_limit_events_per_second: float = Field(100_000, ge=0)
    #: Events a source may send at once above the sustained rate.
    rate_limit_burst: int = Field(200_000, gt=0)
    #: How long a write key lookup is cached; a revoked key stops working within this time.
    write_key_cache_seconds: float = Field(5.0, ge=0)


class EventLogConfig(_Section):
    """The durable event log between the collector and the processor."""

    type: Literal["sqlite"] = "sqlite"
    #: SQLite file; defaults to ``<data_dir>/log/eventlog.db``.
    path: Path | None = None
    partitions: int = Field(4, ge=1, le=1024)
    retention_hours: float = Field(7 * 24, gt=0)
    #: Most records one group commit writes in one transaction.
    group_commit_max_records: int = Field(5_000, gt=0)
    #: Above this many records waiting to be committed, ingestion answers 503 with
    #: Retry-After instead of queueing more (the server stays responsive under overload).
    max_backlog_records: int = Field(100_000, gt=0)
    #: Where ``auie serve`` commits: ``process``, a child process of its own (the event
    #: loop never waits for the GIL behind SQLite; ADR 13), or ``thread``, a thread of the
    #: server process (one process fewer; what in-process test apps use).
    writer: Literal["process", "thread"] = "process"


#: The database URLs AUIE can use: SQLite and PostgreSQL, with or without a driver name.
_DATABASE_URL = re.compile(r"(sqlite|postgresql)(\+\w+)?://", re.IGNORECASE)


def _database_url(value: SecretStr | None) -> SecretStr | None:
    """Refuse, when the settings load, a URL of a database AUIE cannot use (it would fail
    later, at the first connection, with a driver's traceback)."""
    if value is not None and not _DATABASE_URL.match(value.get_secret_value()):
        raise ValueError("must be a sqlite:// or postgresql:// URL")
    return value


_POSTGRES_URL = re.compile(r"(postgresql|postgres)(\+\w+)?://", re.IGNORECASE)


def _postgres_url(value: SecretStr | None) -> SecretStr | None:
    """The transform's PostgreSQL target: a PostgreSQL URL only."""
    if value is not None and not _POSTGRES_URL.match(value.get_secret_value()):
        raise ValueError("must be a postgresql:// (or postgres://) URL")
    return value


class DatabaseConfig(_Section):
    """The metadata database: workspaces, sources, keys, clients (and later profiles)."""

    #: SQLAlchemy URL; defaults to SQLite at ``<data_dir>/auie.db``.
    url: SecretStr | None = None

    _check_url = field_validator("url")(_database_url)


class AuthConfig(_Section):
    """OAuth2 client credentials and JWT access tokens."""

    token_ttl_seconds: int = Field(900, ge=30, le=24 * 3600)
    issuer: str = "auie"
    audience: str = "auie"
    signing_algorithm: Literal["ES256", "EdDSA", "RS256"] = "ES256"
    #: How often a running server reloads signing keys (picks up a rotation).
    key_refresh_seconds: float = Field(30.0, gt=0)


#: Computed traits every profile has (a declared one may not take their names).
BUILT_IN_TRAITS = ("firstSeen", "lastSeen", "eventCounts", "otherEvents", "sessions", "lastPage")


class ComputedTraitConfig(_Section):
    """A computed trait: ``kind`` of ``property`` over events named ``event`` (all if unset)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    kind: Literal["count", "sum", "min", "max", "first", "last"]
    event: str | None = None
    property: str | None = None

    @model_validator(mode="after")
    def _property_needed(self) -> ComputedTraitConfig:
        if self.name in BUILT_IN_TRAITS:
            raise ValueError(f"computed trait name {self.name!r} is a built-in computed trait")
        if self.kind != "count" and not self.property:
            raise ValueError(f"computed trait {self.name!r} of kind {self.kind} needs a property")
        return self


class ProfilesConfig(_Section):
    """Identity resolution and the profile store."""

    #: SQLAlchemy URL of the profile store; defaults to SQLite at ``<data_dir>/profiles.db``.
    url: SecretStr | None = None
    _check_url = field_validator("url")(_database_url)
    #: Distinct users one profile may hold when joined by a shared identifier (not alias).
    max_user_ids: int = Field(1, ge=1)
    #: Identifier values that never link anything (compared lower-cased).
    junk_values: tuple[str, ...] = DEFAULT_JUNK
    #: Identify traits whose values are identifiers too (``email`` always is).
    id_traits: tuple[str, ...] = ()
    session_gap_minutes: float = Field(30, gt=0)
    #: Session intervals kept per identifier: older sessions are only counted, which
    #: bounds a heavy user's stored state (see docs/profiles.md).
    max_sessions: int = Field(100, ge=1)
    #: Track event names counted by name per identifier: beyond it, the alphabetically
    #: first are kept and the others' events counted as ``otherEvents`` (docs/profiles.md).
    max_event_names: int = Field(500, ge=1)
    #: Traits kept per identifier: beyond it, the most recently written are kept (a
    #: stream of dynamic trait keys would otherwise grow every state it touches); ``email``,
    #: ``id_traits`` and ``privacy.pii_fields`` are always kept.
    max_traits: int = Field(1000, ge=1)
    computed: tuple[ComputedTraitConfig, ...] = ()
    #: Largest identity component re-clustered at once (protects against junk hubs).
    max_component_nodes: int = Field(10_000, ge=10)

    @model_validator(mode="after")
    def _distinct_computed(self) -> ProfilesConfig:
        names = [trait.name for trait in self.computed]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"computed traits declared twice: {', '.join(twice)}")
        return self


class ProcessConfig(_Section):
    """The processor: event log → tracking plan → enrichment → identity → profiles → lake."""

    #: Run the processor inside ``auie serve`` (as a child process).
    enabled: bool = True
    #: That child lowers its CPU priority by this much (``nice``): when the machine is
    #: busy, acknowledging events and answering decisions come before processing them (the
    #: log holds what waits). 0 keeps the server's priority.
    nice: int = Field(5, ge=0, le=19)
    #: The child's CPU scheduling class (Linux). ``idle`` (SCHED_IDLE): it runs only on CPU
    #: time nothing else wants, so a busy server's requests are never queued behind it
    #: (``nice`` alone still gives it a quarter of a contended CPU); ``normal``: the usual
    #: class at ``nice``. A saturated machine lets the backlog grow in the log either way.
    scheduler: Literal["normal", "idle"] = "idle"
    #: Processor processes, members of one group that split the log's partitions
    #: (``process.workers`` beyond the event topic's partitions would idle). 0: one per CPU.
    workers: int = Field(0, ge=0, le=64)
    poll_max_records: int = Field(20_000, gt=0)
    #: Identity nodes (identifier, profile, state) each processor keeps in memory between
    #: batches instead of reading them again from the profile store; 0: none.
    node_cache: int = Field(50_000, ge=0)
    #: Truncate ``context.ip`` before storing: ``none``, or keep a /24 (IPv4) and /48 (IPv6).
    ip_truncation: Literal["none", "network"] = "none"
    #: How often the tracking plan is re-read.
    plan_refresh_seconds: float = Field(5.0, gt=0)


class LakeConfig(_Section):
    """The Iceberg lake."""

    #: SQLAlchemy URL of pyiceberg's SQL catalog; defaults to ``<data_dir>/lake/catalog.db``.
    catalog_url: SecretStr | None = None
    _check_catalog_url = field_validator("catalog_url")(_database_url)
    #: Where data files go; defaults to ``<data_dir>/lake/warehouse``.
    warehouse: str | None = None
    #: A micro-batch is committed when it holds this many records ...
    flush_max_records: int = Field(50_000, gt=0)
    #: ... or its oldest record is this old.
    flush_max_seconds: float = Field(1.0, gt=0)
    #: How often changed profiles are appended to the ``profiles`` snapshot table.
    profile_snapshot_seconds: float = Field(60.0, gt=0)
    #: ``auie serve`` compacts and expires snapshots this often (0: never).
    maintenance_minutes: float = Field(60.0, ge=0)
    #: Snapshots younger than this are kept by ``auie lake expire``.
    snapshot_retention_hours: float = Field(24.0, ge=0)


class AnalyticsConfig(_Section):
    """Queries over the lake and the transformation's marts."""

    engine: Literal["duckdb"] = "duckdb"
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    threads: int = Field(2, ge=1, le=256)
    query_timeout_seconds: float = Field(30.0, gt=0)
    #: Most rows ``POST /v1/sql`` returns.
    sql_row_limit: int = Field(10_000, ge=1)
    #: Most bytes of rows (as JSON) ``POST /v1/sql`` returns; the rows beyond are left out.
    sql_byte_limit: int = Field(20_000_000, ge=1000)
    #: ``auie serve`` rebuilds the marts this often (0: never).
    transform_interval_minutes: float = Field(15.0, ge=0)
    #: PostgreSQL database ``auie transform --target postgres`` loads the lake into and
    #: builds the marts in (schemas ``<workspace>_lake`` and ``<workspace>_marts``).
    postgres_url: SecretStr | None = None
    _check_postgres_url = field_validator("postgres_url")(_postgres_url)


DEFAULT_PII_FIELDS = (
    "email",
    "phone",
    "name",
    "firstName",
    "lastName",
    "first_name",
    "last_name",
    "address",
    "street",
    "birthday",
)
#: Property names Segment's spec reserves for things, not people: ``name`` is a page's name
#: (``page``) and a product's (the e-commerce events). Left out of the default
#: ``privacy.pii_properties``.
SEGMENT_RESERVED_PROPERTIES = frozenset({"name"})
Purpose = Literal["analytics", "personalization", "marketing"]
DEFAULT_CONSENT_CATEGORIES: dict[str, Purpose] = {
    "analytics": "analytics",
    "performance": "analytics",
    "personalization": "personalization",
    "functional": "personalization",
    "advertising": "marketing",
    "marketing": "marketing",
    "targeting": "marketing",
}


class RetentionConfig(_Section):
    """How long each kind of data is kept (days); 0 keeps it forever."""

    events_days: float = Field(400, ge=0)
    dead_letters_days: float = Field(30, ge=0)
    decisions_days: float = Field(400, ge=0)
    audit_days: float = Field(730, ge=0)
    #: Access-export archives (``<data_dir>/privacy/exports``).
    exports_days: float = Field(7, ge=0)


class PrivacyConfig(_Section):
    """Consent, field encryption, pseudonymisation, retention."""

    #: Base64 of 32 random bytes; wins over ``master_key_file``.
    master_key: SecretStr | None = None
    #: Defaults to ``<data_dir>/keys/master.key`` (created on first use, mode 0600).
    master_key_file: Path | None = None
    #: Fields encrypted at rest with the person's data key, matched by name (any case) at
    #: any depth of traits, ``context.traits`` and an event's extra top-level fields.
    pii_fields: tuple[str, ...] = DEFAULT_PII_FIELDS
    #: The same for the top level of an event's ``properties``. Unset: ``pii_fields`` when
    #: that is set; with both unset, the default ``pii_fields`` without the names Segment's
    #: spec reserves there for things (``name``: a page's or a product's name), so product
    #: names stay readable in analytics.
    pii_properties: tuple[str, ...] | None = None
    encrypt_pii: bool = True
    #: Consent-manager category names (``context.consent.categoryPreferences``) → purpose.
    consent_categories: dict[str, Literal["analytics", "personalization", "marketing"]] = Field(
        default_factory=lambda: dict(DEFAULT_CONSENT_CATEGORIES)
    )
    #: Without ``analytics`` consent: ``pseudonymise`` (unlinked hashes for the ids, traits,
    #: PII and page properties, the client's own fields and all but the coarse context
    #: removed; docs/privacy.md) or ``drop`` (the event is not written to the lake at all).
    without_analytics_consent: Literal["pseudonymise", "drop"] = "pseudonymise"
    #: Treat a person who never stated consent as having refused (opt-in regimes).
    require_explicit_consent: bool = False
    #: E-mail addresses, phone and card numbers in free-text properties: mask, flag or keep.
    pii_in_text: Literal["mask", "flag", "keep"] = "mask"
    retention: RetentionConfig = RetentionConfig()
    #: ``auie serve`` applies the retention this often (0: never); the first run comes
    #: one interval after start.
    retention_interval_minutes: float = Field(60, ge=0)
    #: An erasure first waits this long for a running processor to absorb what the log
    #: holds, so nothing of the person is still on its way to the profile store or lake.
    erasure_wait_seconds: float = Field(60, ge=0)
    #: While a processor runs, erasure and retention remove unreferenced lake files only
    #: when older than this (a commit in flight has written files nothing refers to yet);
    #: with no processor running, every unreferenced file goes.
    erasure_orphan_min_age_seconds: float = Field(60, ge=0)

    @property
    def property_pii_fields(self) -> tuple[str, ...]:
        """``pii_properties``, or its default (see there): an operator who chose
        ``pii_fields`` keeps them for properties too, as before the two lists existed."""
        if self.pii_properties is not None:
            return self.pii_properties
        if "pii_fields" in self.model_fields_set:
            return self.pii_fields
        return tuple(f for f in self.pii_fields if f.lower() not in SEGMENT_RESERVED_PROPERTIES)


class Settings(_Section):
    """The whole settings tree."""

    data_dir: Path = Path("auie-data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    server: ServerConfig = ServerConfig()
    collect: CollectConfig = CollectConfig()
    eventlog: EventLogConfig = EventLogConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    profiles: ProfilesConfig = ProfilesConfig()
    process: ProcessConfig = ProcessConfig()
    lake: LakeConfig = LakeConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    @property
    def eventlog_path(self) -> Path:
        return self.eventlog.path or self.data_dir / "log" / "eventlog.db"

    @property
    def profiles_url(self) -> str:
        if self.profiles.url is not None:
            return self.profiles.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'profiles.db').resolve()}"

    @property
    def lake_catalog_url(self) -> str:
        if self.lake.catalog_url is not None:
            return self.lake.catalog_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'lake' / 'catalog.db').resolve()}"

    @property
    def lake_warehouse(self) -> str:
        return self.lake.warehouse or (self.data_dir / "lake" / "warehouse").resolve().as_uri()

    @property
    def master_key_path(self) -> Path:
        return self.privacy.master_key_file or self.data_dir / "keys" / "master.key"

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'auie.db').resolve()}"


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from all sources; raise :class:`ConfigError` on any problem.

    ``overrides`` uses dotted keys (``{"server.port": 9000}``); ``None`` values are ignored
    so unset CLI flags fall through to lower-priority sources.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    path = config_file or (Path(environ["AUIE_CONFIG"]) if "AUIE_CONFIG" in environ else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    path = path or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
    if path is not None:
        _merge(merged, _read_toml(path), source=str(path))
    _merge(merged, _from_env(environ), source="environment")
    _merge(merged, _from_dotted(overrides or {}), source="arguments")
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    dotted: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        dotted[key] = _env_value(raw)
    return _from_dotted(dotted, source="environment variable AUIE_")


def _env_value(raw: str) -> Any:
    """Lists and tables are written as JSON in environment variables."""
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _from_dotted(values: Mapping[str, Any], source: str = "argument") -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in values.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source} {dotted!r} conflicts with another key")
            node = child
        node[leaf] = value
    return tree


def _merge(into: dict[str, Any], new: Mapping[str, Any], *, source: str) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, source=source)
        elif isinstance(value, Mapping):
            into[key] = dict(value)
        else:
            into[key] = value


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r}")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)
