"""What privacy requests work with: the stores of one data directory and the crypto."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from auie.config import Settings
from auie.eventlog import EventLog
from auie.filelock import exclusive
from auie.lake.catalog import Lake
from auie.privacy.audit import AuditLog
from auie.privacy.crypto import FieldCipher, Pseudonymizer
from auie.privacy.person import Person, Subject, resolve_person
from auie.privacy.suppression import SuppressionList
from auie.process.lock import processor_running
from auie.profiles.service import ProfileService
from auie.profiles.store.sql import SqlProfileStore

#: ``progress(step, done, total)``: called as a request moves through its steps.
Progress = Callable[[str, int, int], None]


def no_progress(_step: str, _done: int, _total: int) -> None:
    return None


class StepTimer:
    """Reports each step's start to ``progress`` and times it (``seconds``)."""

    def __init__(self, progress: Progress, steps: Sequence[str]) -> None:
        self.progress = progress
        self.steps = tuple(steps)
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._since = 0.0

    def __call__(self, name: str) -> None:
        self.end()
        self._name, self._since = name, time.perf_counter()
        self.progress(name, self.steps.index(name), len(self.steps))

    def end(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._since, 3)
            self._name = None


@dataclass
class PrivacyContext:
    settings: Settings
    engine: Engine
    store: SqlProfileStore
    profiles: ProfileService
    eventlog: EventLog
    lake: Lake
    audit: AuditLog
    pseudonyms: Pseudonymizer
    cipher: FieldCipher
    suppressions: SuppressionList

    @property
    def exports_dir(self) -> Path:
        return self.settings.data_dir / "privacy" / "exports"

    def archive_path(self, request_id: str) -> Path:
        return self.exports_dir / f"{request_id}.zip"

    @property
    def eventlog_path(self) -> Path:
        return self.settings.eventlog_path

    def resolve(self, workspace: str, subject: Subject) -> Person:
        person = resolve_person(
            workspace,
            subject,
            self.store,
            cipher=self.cipher,
            pii_fields=self.settings.privacy.pii_fields,
            id_traits=self.settings.profiles.id_traits,
        )
        person.hashes = person.hash_forms(self.pseudonyms)
        return person

    def decrypt(self, workspace: str, value: Any) -> Any:
        """``value`` with every ``enc:v1:`` string in it decrypted (erased keys give
        ``[erased]``)."""
        return self.cipher.decrypt_all(workspace, value)

    @contextlib.contextmanager
    def lake_mutation(self) -> Iterator[None]:
        """Serializes erasures' and retention's lake deletes and purges, across threads and
        processes (a purge removes files another purge's commit in flight has written)."""
        path = self.settings.data_dir / "privacy" / "lake.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path):
            yield

    def processor_running(self) -> bool:
        """Whether a processor holds this data directory's lock (it may be committing)."""
        return processor_running(self.settings.data_dir)
