"""Retention: data older than ``privacy.retention.*`` is deleted, physically.

=========================  ===========================  =========================================
setting (days; 0 = keep)   what                         by
=========================  ===========================  =========================================
``events_days``            lake ``events``              ``timestamp``
``dead_letters_days``      lake ``dead_letters``,       ``received_at``; ``created_at``
                           profile-store dead letters
``decisions_days``         lake ``decisions``,          their time column
                           ``rewards`` (if present)
``audit_days``             audit entries                ``at`` (the log stays verifiable)
``exports_days``           export archives              when the archive was written
=========================  ===========================  =========================================

Lake deletes are the erasure's (:mod:`auie.privacy.lakeops`): files entirely past the
cutoff are dropped, the file holding the cutoff is rewritten, older snapshots are expired
and files only they used are deleted. SQLite files are checkpointed afterwards.
``auie privacy retention`` runs it once; ``auie serve`` every
``privacy.retention_interval_minutes``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete

from auie.privacy import lakeops
from auie.privacy.context import PrivacyContext, Progress, no_progress
from auie.privacy.physical import checkpoint, sqlite_file
from auie.profiles.store.tables import dead_letters

logger = logging.getLogger(__name__)

#: Candidate time columns of tables other engineers may add (decisions, rewards).
_TIME_COLUMNS = ("timestamp", "decided_at", "rewarded_at", "created_at", "at", "received_at")


class Retention:
    """See the module docstring."""

    def __init__(self, ctx: PrivacyContext) -> None:
        self.ctx = ctx

    def _lake_rules(self) -> list[tuple[str, str | None, float]]:
        days = self.ctx.settings.privacy.retention
        return [
            ("events", "timestamp", days.events_days),
            ("dead_letters", "received_at", days.dead_letters_days),
            ("decisions", None, days.decisions_days),
            ("rewards", None, days.decisions_days),
        ]

    def run(
        self, *, now: datetime | None = None, progress: Progress = no_progress
    ) -> dict[str, Any]:
        ctx = self.ctx
        now = now or datetime.now(UTC)
        days = ctx.settings.privacy.retention
        started = time.perf_counter()
        result: dict[str, Any] = {"lake": {}, "lakeHistory": {}}
        lake = ctx.lake
        rules = [rule for rule in self._lake_rules() if rule[2] > 0]
        work = [(ws, rule) for ws in lake.workspaces() for rule in rules]
        total = len(work) + 4
        min_age = (
            timedelta(seconds=ctx.settings.privacy.erasure_orphan_min_age_seconds)
            if ctx.processor_running()
            else timedelta(0)
        )
        for done, (ws, (name, named_column, keep_days)) in enumerate(work):
            progress(f"lake {ws}.{name}", done, total)
            if not lake.exists(ws, name):
                continue
            column = named_column or _time_column(lake.refresh(ws, name))
            if column is None:
                continue
            cutoff = now - timedelta(days=keep_days)
            with ctx.lake_mutation():
                report, _ = lakeops.delete_rows(
                    functools.partial(lake.refresh, ws, name),
                    lakeops.older_than_test(column, cutoff),
                    marker="retention",
                )
                if report.rows:
                    result["lake"][f"{ws}.{name}"] = report.to_dict()
                    purge = lakeops.purge_history(lake.refresh(ws, name), orphan_min_age=min_age)
                    result["lakeHistory"][f"{ws}.{name}"] = purge.to_dict()

        progress("dead letters", len(work), total)
        result["deadLetters"] = 0
        if days.dead_letters_days > 0:
            cutoff = now - timedelta(days=days.dead_letters_days)
            with ctx.store.engine.begin() as conn:
                result["deadLetters"] = conn.execute(
                    delete(dead_letters).where(dead_letters.c.created_at < cutoff)
                ).rowcount

        progress("audit", len(work) + 1, total)
        result["audit"] = 0
        if days.audit_days > 0:
            result["audit"] = ctx.audit.prune(now - timedelta(days=days.audit_days))

        progress("archives", len(work) + 2, total)
        result["archives"] = self._archives(now, days.exports_days)

        progress("sqlite", len(work) + 3, total)
        settings = ctx.settings
        for path in (sqlite_file(settings.profiles_url), sqlite_file(settings.database_url)):
            if path is not None:
                checkpoint(path)
        result["seconds"] = round(time.perf_counter() - started, 3)
        progress("done", total, total)
        return result

    def _archives(self, now: datetime, keep_days: float) -> int:
        directory = self.ctx.exports_dir
        if keep_days <= 0 or not directory.exists():
            return 0
        cutoff = (now - timedelta(days=keep_days)).timestamp()
        deleted = 0
        for path in directory.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted


def _time_column(table: Any) -> str | None:
    names = {f.name for f in table.schema().fields}
    return next((c for c in _TIME_COLUMNS if c in names), None)


class RetentionScheduler:
    """Runs the retention every ``privacy.retention_interval_minutes`` in a thread of
    ``auie serve``; the first run comes one interval after start."""

    def __init__(self, run: Any, interval_minutes: float) -> None:
        self.run = run
        self.interval = interval_minutes * 60
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="auie-retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run()
            except Exception:
                logger.exception("retention failed; next try in %gs", self.interval)
            self.runs += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
