"""The privacy domain of one instance, wired from settings (``Runtime.privacy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auie.privacy.context import PrivacyContext, Progress, no_progress
from auie.privacy.crypto import FieldCipher, LocalKms, Pseudonymizer, load_master_key
from auie.privacy.requests import PrivacyRequests, RequestWorker
from auie.privacy.retention import Retention, RetentionScheduler
from auie.privacy.suppression import SuppressionList
from auie.profiles.store.sql import SqlProfileStore

if TYPE_CHECKING:
    from auie.runtime import Runtime


class Privacy:
    """Pseudonyms, field encryption, the suppression list, requests and retention."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        audit = runtime.audit  # brings the privacy tables to the latest revision
        secret = settings.privacy.master_key
        master = load_master_key(
            secret.get_secret_value() if secret is not None else None, settings.master_key_path
        )
        self.kms = LocalKms(master)
        self.pseudonyms = Pseudonymizer(self.kms.derive("pseudonyms"))
        self.cipher = FieldCipher(runtime.engine, self.kms, self.pseudonyms)
        self.suppressions = SuppressionList(runtime.engine, self.pseudonyms)
        store = runtime.profile_store
        if not isinstance(store, SqlProfileStore):  # pragma: no cover - the only backend
            raise TypeError("privacy requests need the SQL profile store")
        self.context = PrivacyContext(
            settings=settings,
            engine=runtime.engine,
            store=store,
            profiles=runtime.profiles,
            eventlog=runtime.eventlog,
            lake=runtime.lake,
            audit=audit,
            pseudonyms=self.pseudonyms,
            cipher=self.cipher,
            suppressions=self.suppressions,
        )
        self.requests = PrivacyRequests(self.context)
        self.worker = RequestWorker(self.requests)
        self.scheduler = RetentionScheduler(
            self.run_retention, settings.privacy.retention_interval_minutes
        )

    def is_suppressed(self, workspace: str, identifier_type: str, value: str) -> bool:
        """Whether an identifier was erased (its events are dropped); answered from memory."""
        return self.suppressions.is_suppressed(workspace, identifier_type, value)

    def is_erased(self, workspace: str, user_id: str | None, anonymous_id: str | None) -> bool:
        """Whether a person named by a user id and/or an anonymous id was erased (either
        identifier is suppressed), as the decision service asks."""
        return bool(user_id and self.is_suppressed(workspace, "user_id", user_id)) or bool(
            anonymous_id and self.is_suppressed(workspace, "anonymous_id", anonymous_id)
        )

    def run_retention(
        self, *, actor: str = "system", progress: Progress = no_progress
    ) -> dict[str, Any]:
        """Apply ``privacy.retention`` once (audited)."""
        result = Retention(self.context).run(progress=progress)
        self.context.audit.record(
            "privacy.retention",
            actor=actor,
            target="retention",
            details={
                "lakeRows": {k: v["rows"] for k, v in result["lake"].items()},
                "deadLetters": result["deadLetters"],
                "audit": result["audit"],
                "archives": result["archives"],
                "seconds": result["seconds"],
            },
        )
        return result

    def close(self) -> None:
        self.scheduler.stop()
        self.worker.stop()
        self.suppressions.flush()
