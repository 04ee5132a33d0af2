"""The running parts of one AUIE instance, opened from settings and closed together.

The server, the CLI and ``import auie`` users all get their stores from here, so every
entry point sees the same wiring.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auie import db
from auie.config import Settings

# Each part is imported when it is first opened: a CLI command pays only for the parts it
# uses (pyiceberg, pyarrow, DuckDB and the decision service take seconds to import).
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from auie.analytics.engine import QueryEngine
    from auie.auth.clients import ClientStore
    from auie.auth.tokens import SigningKeyStore, TokenService
    from auie.decide.registry import DecisionStore
    from auie.eventlog import EventLog
    from auie.lake.catalog import Lake
    from auie.privacy.audit import AuditLog
    from auie.privacy.fields import PiiRules
    from auie.privacy.service import Privacy
    from auie.process.plan import PlanStore
    from auie.process.processor import Processor
    from auie.profiles.service import ProfileService
    from auie.profiles.store.base import ProfileStore
    from auie.tenancy import TenancyStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Credentials created on first start, printed once and saved to ``bootstrap.json``."""

    workspace: str
    source: str
    write_key: str
    client_id: str
    client_secret: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "source": self.source,
            "writeKey": self.write_key,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
        }


class Runtime:
    """Lazily opened stores of one data directory; close with :meth:`close`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        private_directory(settings.data_dir)

    @cached_property
    def engine(self) -> Engine:
        return db.open_database(self.settings.database_url)

    @cached_property
    def tenancy(self) -> TenancyStore:
        from auie.tenancy import TenancyStore

        return TenancyStore(self.engine)

    @cached_property
    def clients(self) -> ClientStore:
        from auie.auth.clients import ClientStore

        return ClientStore(self.engine)

    @cached_property
    def signing_keys(self) -> SigningKeyStore:
        from auie.auth.tokens import SigningKeyStore

        return SigningKeyStore(self.engine)

    @cached_property
    def tokens(self) -> TokenService:
        from auie.auth.tokens import TokenService

        return TokenService(self.signing_keys, self.settings.auth)

    @cached_property
    def eventlog(self) -> EventLog:
        from auie.eventlog import open_event_log

        return open_event_log(self.settings)

    @cached_property
    def profile_store(self) -> ProfileStore:
        from auie.profiles.store.sql import SqlProfileStore

        return SqlProfileStore.open(self.settings.profiles_url)

    @cached_property
    def profiles(self) -> ProfileService:
        from auie.profiles.identity import IdentityRules
        from auie.profiles.service import ProfileService
        from auie.profiles.state import ComputedTrait, StateFolder

        config = self.settings.profiles
        rules = IdentityRules(
            max_user_ids=config.max_user_ids,
            junk_values=frozenset(v.strip().lower() for v in config.junk_values),
            id_traits=config.id_traits,
        )
        folder = StateFolder(
            int(config.session_gap_minutes * 60_000),
            [ComputedTrait(c.name, c.kind, c.event, c.property) for c in config.computed],
            consent_categories=self.settings.privacy.consent_categories,
            max_sessions=config.max_sessions,
            max_event_names=config.max_event_names,
            max_traits=config.max_traits,
            # identifier and PII traits: erasure and the access export search by them
            pinned_traits=("email", *config.id_traits, *self.settings.privacy.pii_fields),
        )
        service = ProfileService(self.profile_store, rules, folder, config.max_component_nodes)
        service.decrypt = self._decrypt
        return service

    def _decrypt(self, workspace: str, value: Any) -> Any:
        """Field values as stored, decrypted at any depth (the key manager loads on the first
        ciphertext)."""
        from auie.privacy.crypto import holds_ciphertext

        return (
            self.privacy.cipher.decrypt_all(workspace, value) if holds_ciphertext(value) else value
        )

    @cached_property
    def plans(self) -> PlanStore:
        from auie.process.plan import PlanStore

        return PlanStore(self.engine)

    @cached_property
    def lake(self) -> Lake:
        from auie.lake.catalog import Lake, open_catalog

        return Lake(open_catalog(self.settings))

    @cached_property
    def pii_rules(self) -> PiiRules:
        """Which fields are PII (``privacy.pii_fields``, ``pii_properties``), shared by the
        readers in this process (its name memo with them)."""
        from auie.privacy.fields import PiiRules

        return PiiRules.of(self.settings.privacy)

    @cached_property
    def analytics(self) -> QueryEngine:
        from auie.analytics.duckdb_engine import DuckDBEngine

        config = self.settings.analytics
        return DuckDBEngine(
            self.lake,
            self.settings.lake_warehouse,
            self.settings.data_dir / "analytics",
            memory_limit=config.memory_limit,
            threads=config.threads,
            default_timeout=config.query_timeout_seconds,
            pseudonyms=self.privacy.pseudonyms.pseudonym,
            pii_rules=self.pii_rules,
        )

    @cached_property
    def audit(self) -> AuditLog:
        from auie.privacy.audit import MIGRATIONS as PRIVACY_MIGRATIONS
        from auie.privacy.audit import AuditLog

        db.migrate(self.engine, migrations=PRIVACY_MIGRATIONS)
        return AuditLog(self.engine)

    @cached_property
    def privacy(self) -> Privacy:
        """Pseudonymizer, FieldCipher, suppression list, privacy requests and retention."""
        from auie.privacy.service import Privacy

        return Privacy(self)

    @cached_property
    def decision_store(self) -> DecisionStore:
        from auie.decide.registry import DecisionStore

        return DecisionStore(self.engine, self.settings.data_dir / "lake" / "models")

    def processor(self, member: int = 0, members: int = 1) -> Processor:
        """A processor over this instance's log, profile store and lake: member ``member``
        of a group of ``members`` (see :mod:`auie.process.processor`)."""
        from auie.lake.maintenance import LakeMaintenance
        from auie.lake.writer import LakeWriter
        from auie.process.enrich import Enricher
        from auie.process.lock import SectionLock, others_running
        from auie.process.privacy_gate import PrivacyGate
        from auie.process.processor import Processor, topic_partitions

        config, lake = self.settings.process, self.settings.lake
        group = members > 1
        locks = self.settings.data_dir / "processor.d"
        enricher = Enricher(config.ip_truncation)
        enricher.warm_up()
        writer = LakeWriter(
            self.lake,
            max_records=lake.flush_max_records,
            max_seconds=lake.flush_max_seconds,
            shared=SectionLock(locks / "lake-commit.lock") if group else None,
        )
        processor = Processor(
            self.eventlog,
            self.profile_store,
            self.profiles,
            writer,
            self.plans,
            enricher=enricher,
            gate=PrivacyGate(
                self.settings.privacy,
                suppressions=self.privacy.suppressions,
                cipher=self.privacy.cipher,
                pseudonyms=self.privacy.pseudonyms,
            ),
            poll_max_records=config.poll_max_records,
            plan_refresh_seconds=config.plan_refresh_seconds,
            profile_snapshot_seconds=lake.profile_snapshot_seconds,
            member=member,
            members=members,
            profile_lock=SectionLock(locks / "profiles.lock").held if group else None,
            node_cache=config.node_cache,
        )
        if group:
            partitions = topic_partitions(self.eventlog)
            data_dir = self.settings.data_dir
            processor.others_running = lambda: others_running(data_dir, member, members, partitions)
        if lake.maintenance_minutes > 0 and member == 0:
            processor.maintenance = LakeMaintenance(
                self.lake,
                every_minutes=lake.maintenance_minutes,
                retention_hours=lake.snapshot_retention_hours,
            )
        return processor

    def bootstrap(self) -> Bootstrap | None:
        """On an empty instance, create a default workspace, source, write key and admin
        client, write them to ``<data_dir>/bootstrap.json`` (mode 0600) and return them."""
        from auie.auth.scopes import ALL_SCOPES

        if self.tenancy.list_workspaces():
            return None
        workspace = self.tenancy.create_workspace("default")
        source = self.tenancy.create_source(workspace.id, "default", "web")
        key = self.tenancy.create_write_key(source.id)
        client = self.clients.create(workspace.id, "admin", ALL_SCOPES)
        result = Bootstrap(workspace.id, source.id, key.key, client.client.id, client.secret)
        _write_private_json(self.settings.data_dir / "bootstrap.json", result.to_dict())
        logger.info("bootstrapped workspace %s", workspace.id)
        return result

    def close(self) -> None:
        if "privacy" in self.__dict__:
            self.privacy.close()
        if "eventlog" in self.__dict__:
            self.eventlog.close()
        if "profile_store" in self.__dict__:
            self.profile_store.close()
        if "analytics" in self.__dict__:
            self.analytics.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


def private_directory(path: Path) -> None:
    """Make the data directory readable by AUIE's user only (0700): it holds the signing
    keys' private halves, the master key and every store. A new one is created so; an
    existing one this user owns is tightened, and the change logged."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return
    if os.name != "posix":
        return
    info = path.stat()
    loose = info.st_mode & 0o077
    if not loose:
        return
    mode = info.st_mode & 0o777
    if info.st_uid != os.getuid():
        logger.warning(
            "data directory %s (mode %04o) is readable by other users and is not ours to"
            " change; make it 0700",
            path,
            mode,
        )
        return
    os.chmod(path, mode & ~0o077)
    logger.warning(
        "data directory %s was mode %04o; now %04o (readable by AUIE's user only)",
        path,
        mode,
        mode & ~0o077,
    )


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)
