"""Erasure: remove a person from every store, physically, and keep them out.

The steps, in order (each reports counts, never identifiers):

1. **resolve** — every identifier of every profile the request's identifiers belong to;
2. **suppress** — keyed hashes of all of them go on the suppression list first, so the
   collector and processor drop new events for them from now on;
3. **catch up** — if a processor is running, wait (``privacy.erasure_wait_seconds``) until
   it has absorbed everything the log held when the erasure started, so nothing of the
   person is still on its way to the profile store or the lake; resolve again;
4. **event log** — every record of every topic naming the person (``decisions`` first, then
   the ``rewards`` of those decisions);
5. **profile store** — identity nodes, edges touching them, merges, dead letters, violation
   counters quoting them; in saved segments, condition values naming them (``[erased]``);
6. **lake rows** — in every table of the workspace, one copy-on-write snapshot without the
   person's rows (:mod:`auie.privacy.lakeops`);
7. **lake history** — older snapshots expired, the files only they used deleted, the
   metadata log cut, orphan files removed;
8. **marts** — the person's rows removed from the marts' Parquet files, the dbt DuckDB file
   deleted and rebuilt from the (erased) lake with a full refresh in a child process;
9. **archives** — export archives of the person deleted;
10. **data keys** — the person's data keys destroyed (crypto-shredding: any copy that
    escaped, e.g. a backup, stays ciphertext);
11. **sqlite** — WAL checkpoints (TRUNCATE), and ``VACUUM`` where identifier bytes remain;
12. **verify** — the profile store and log searched again (anything re-created is deleted
    and counted), manifest column bounds and model files checked for the identifiers.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import time
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select, update

from auie.config import Settings
from auie.errors import NotFound
from auie.eventlog import DEAD_LETTERS_TOPIC, DECISIONS_TOPIC, EVENTS_TOPIC, REWARDS_TOPIC
from auie.privacy import lakeops, logops, profileops
from auie.privacy.context import PrivacyContext, Progress, StepTimer, no_progress
from auie.privacy.fields import PiiRules
from auie.privacy.person import Person, Subject
from auie.privacy.physical import files_containing, make_physical, sqlite_file
from auie.privacy.tables import privacy_requests

logger = logging.getLogger(__name__)

STEPS = (
    "resolve",
    "suppress",
    "catch up",
    "event log",
    "profile store",
    "lake rows",
    "lake history",
    "marts",
    "archives",
    "data keys",
    "sqlite",
    "verify",
)
_PROCESSOR_GROUP = "processor"
MartsRebuild = Callable[[Settings, str], bool]


def wait_for_processor(ctx: PrivacyContext, timeout: float) -> str:
    """Wait until the processor's committed offsets reach the log's current end offsets.
    Returns ``not running``, ``caught up`` or ``timed out``."""
    if not ctx.processor_running():
        return "not running"
    log = ctx.eventlog
    targets: dict[str, dict[int, int]] = {}
    # decisions and rewards too: the processor copies them to the lake
    for topic in (EVENTS_TOPIC, DEAD_LETTERS_TOPIC, DECISIONS_TOPIC, REWARDS_TOPIC):
        try:
            targets[topic] = log.end_offsets(topic)
        except NotFound:
            continue
    deadline = time.monotonic() + timeout
    while True:
        behind = False
        for topic, ends in targets.items():
            committed = log.committed(_PROCESSOR_GROUP, topic)
            begins = log.begin_offsets(topic)
            for part, end in ends.items():
                if max(committed.get(part, begins.get(part, end)), begins.get(part, end)) < end:
                    behind = True
        if not behind:
            return "caught up"
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.2)


def rebuild_marts_in_child(settings: Settings, workspace: str, timeout: float = 3600.0) -> bool:
    """A full-refresh transform of the workspace in a spawned child process (dbt is not
    thread-safe and keeps global state)."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_rebuild_child, args=(settings, workspace), name="auie-privacy-marts"
    )
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(10)
        return False
    return process.exitcode == 0


def _rebuild_child(settings: Settings, workspace: str) -> None:
    logging.basicConfig(level=settings.log_level.upper())
    from auie.runtime import Runtime
    from auie.transform.runner import TransformRunner

    runtime = Runtime(settings)
    try:
        result = TransformRunner(settings, runtime.lake).run(workspace, full_refresh=True)
    finally:
        runtime.close()
    if not result.success:
        raise SystemExit(1)


def _erase_marts(ctx: PrivacyContext, person: Person) -> dict[str, Any]:
    from auie.transform.runner import duckdb_path, marts_dir, workspace_dir, workspace_lock

    settings, ws = ctx.settings, person.workspace
    if not workspace_dir(settings, ws).exists():
        return {"present": False}
    database = duckdb_path(settings, ws)
    had_database = database.exists()
    keys = sorted(person.mart_keys)
    removed = files = 0
    with workspace_lock(settings, ws):
        for path in sorted(marts_dir(settings, ws).glob("*.parquet")):
            data = pq.read_table(path)
            mask = np.zeros(data.num_rows, dtype=bool)
            for name in data.column_names:
                column = data[name]
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    wanted = pa.array(keys, column.type)
                    found = pc.is_in(column, value_set=wanted).fill_null(False)
                    mask |= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
            if not mask.any():
                continue
            temporary = path.with_name(path.name + ".erasing")
            pq.write_table(data.filter(pa.array(~mask)), temporary, compression="zstd")
            temporary.replace(path)
            removed += int(mask.sum())
            files += 1
        # The dbt DuckDB file holds staged events and intermediate models: it goes whole
        # (DuckDB may keep freed blocks' bytes) and is rebuilt from the lake.
        for path in (database, database.with_name(database.name + ".wal")):
            path.unlink(missing_ok=True)
    return {
        "present": True,
        "rows": removed,
        "files": files,
        "duckdbDeleted": had_database,
        "rebuilt": None,
    }


#: What erasure writes in place of a segment condition's value that named the person: a
#: string no identifier is (a junk value), so the condition matches nobody, as it would now.
ERASED_VALUE = "[erased]"


def _erase_segment_values(ctx: PrivacyContext, person: Person) -> int:
    """Saved segments whose conditions name the person by an identifier or a PII value
    (``user_id eq "ada"``, a trait ``email`` in a list...): those values become
    :data:`ERASED_VALUE`, so the segment goes on working for everyone else. How many
    segments changed."""
    from auie.analytics.personal import PersonalTargets
    from auie.analytics.segments import SegmentStore

    emails = {e.lower() for e in person.emails}
    named = person.values | person.pii
    # Only on a condition on an identifier or a PII trait or property does a number name
    # the person (``sessions gt 30`` does not, whoever is 30).
    personal = PersonalTargets(PiiRules.of(ctx.settings.privacy), ()).is_personal_condition

    def names(value: Any, numbers: bool) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 4155550100.0 names the phone number 4155550100
        if isinstance(value, int | float):
            return numbers and str(value) in named  # a numeric id or PII value
        if not isinstance(value, str):
            return False
        text = value.strip()
        return text in named or text.lower() in emails

    def scrub(node: Any) -> Any:
        if isinstance(node, list):
            return [scrub(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: scrub(inner) for key, inner in node.items()}
        value, numbers = node.get("value"), personal(node)
        if names(value, numbers):
            out["value"] = ERASED_VALUE
        elif isinstance(value, list):
            out["value"] = [ERASED_VALUE if names(item, numbers) else item for item in value]
        return out

    store = SegmentStore(ctx.engine)
    changed = 0
    for segment in store.list(person.workspace):
        definition = scrub(segment.definition)
        if definition != segment.definition:
            store.set_definition(person.workspace, segment.id, definition)
            changed += 1
    return changed


def _erase_archives(ctx: PrivacyContext, person: Person, request_id: str) -> int:
    """Delete export archives of requests about the person (matched by keyed hashes)."""
    import json

    digests = set(person.digests(ctx.pseudonyms))
    c = privacy_requests.c
    deleted = 0
    with ctx.engine.begin() as conn:
        rows = conn.execute(
            select(c.id, c.subject, c.result).where(
                c.workspace_id == person.workspace, c.kind == "export"
            )
        ).all()
        for row in rows:
            if not digests & set(json.loads(row.subject or "[]")):
                continue
            path = ctx.archive_path(row.id)
            for candidate in (path, path.with_name(path.name + ".tmp")):
                if candidate.exists():
                    candidate.unlink()
                    deleted += 1
            result = json.loads(row.result or "{}")
            result["archive"] = {"deleted": True, "by": request_id}
            conn.execute(
                update(privacy_requests)
                .where(c.id == row.id)
                .values(result=json.dumps(result, sort_keys=True))
            )
    return deleted


def _model_files_naming(ctx: PrivacyContext, person: Person) -> int:
    """Model files (policy states and vocabularies) whose bytes contain an identifier."""
    root = ctx.settings.data_dir / "lake" / "models" / person.workspace
    needles = person.raw_needles(min_length=4)
    if not root.exists() or not needles:
        return 0
    hits = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        named = bool(files_containing([path], needles))
        if named or (path.suffix == ".npz" and _zip_contains(path, needles)):
            hits += 1
    return hits


def _zip_contains(path: Path, needles: list[bytes]) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                data = archive.read(name).lower()
                if any(n.lower() in data for n in needles):
                    return True
    except zipfile.BadZipFile:
        return False
    return False


class Eraser:
    """Runs the erasure steps (see the module docstring)."""

    def __init__(self, ctx: PrivacyContext, *, rebuild_marts: MartsRebuild | None = None) -> None:
        self.ctx = ctx
        self.rebuild_marts = rebuild_marts if rebuild_marts is not None else rebuild_marts_in_child

    def run(
        self,
        request_id: str,
        workspace: str,
        subject: Subject,
        progress: Progress = no_progress,
    ) -> dict[str, Any]:
        ctx, settings = self.ctx, self.ctx.settings
        started = time.perf_counter()
        total = len(STEPS)
        result: dict[str, Any] = {}
        step = StepTimer(progress, STEPS)

        step("resolve")
        person = ctx.resolve(workspace, subject)

        step("suppress")
        result["suppressed"] = ctx.suppressions.add(workspace, person.nodes, request_id)

        step("catch up")
        result["processor"] = wait_for_processor(ctx, settings.privacy.erasure_wait_seconds)
        again = ctx.resolve(workspace, subject)
        if again.nodes - person.nodes:
            ctx.suppressions.add(workspace, again.nodes, request_id)
        person = _union(person, again)
        result["identifiers"] = len(person.nodes)
        result["profiles"] = len(person.profiles)

        step("event log")
        matches = logops.find(ctx.eventlog_path, person, workspace=workspace)
        result["eventLog"] = logops.delete(ctx.eventlog_path, matches)

        step("profile store")
        rows = profileops.find(ctx.store, person)
        result["profileStore"] = profileops.delete_rows(ctx.store, person, rows)
        result["segments"] = _erase_segment_values(ctx, person)

        with ctx.lake_mutation():
            step("lake rows")
            tables = self._lake_rows(person, result)
            step("lake history")
            result["lakeHistory"] = self._lake_history(person, tables, result["processor"])

        step("marts")
        result["marts"] = _erase_marts(ctx, person)

        step("archives")
        result["archives"] = _erase_archives(ctx, person, request_id)

        step("data keys")
        result["dataKeys"] = ctx.cipher.shred(workspace, person.nodes)

        step("sqlite")
        result["sqlite"] = self._sqlite(person)

        step("verify")
        result["verification"] = self._verify(person)
        step.end()
        physical_seconds = time.perf_counter() - started

        if result["marts"].get("duckdbDeleted"):
            progress("marts rebuild", total - 1, total)
            rebuild_started = time.perf_counter()
            result["marts"]["rebuilt"] = self.rebuild_marts(settings, workspace)
            result["marts"]["rebuildSeconds"] = round(time.perf_counter() - rebuild_started, 3)
        result["seconds"] = {
            "physical": round(physical_seconds, 3),
            "total": round(time.perf_counter() - started, 3),
            "steps": step.seconds,
        }
        progress("done", total, total)
        return result

    def _lake_rows(self, person: Person, result: dict[str, Any]) -> list[str]:
        """Delete the person's rows from every lake table; returns the tables."""
        lake, workspace = self.ctx.lake, person.workspace
        tables = lake.tables(workspace) if workspace in lake.workspaces() else []
        # decisions first: the rewards of the person's decisions are found by eventId
        tables.sort(key=lambda n: (n != "decisions", n))
        result["lake"] = {}
        for name in tables:
            if name == "decisions":
                table = lake.refresh(workspace, name)
                located = lakeops.locate(table, lakeops.person_test(person, name))
                data = lakeops.extract(table, located)
                if "event_id" in data.column_names:
                    person.decision_ids.update(
                        str(v) for v in data["event_id"].to_pylist() if v is not None
                    )
            report, _ = lakeops.delete_rows(
                functools.partial(lake.refresh, workspace, name),
                lakeops.person_test(person, name),
                marker="erasure",
            )
            result["lake"][name] = report.to_dict()
        return tables

    def _lake_history(self, person: Person, tables: list[str], processor: str) -> dict[str, Any]:
        settings, lake = self.ctx.settings, self.ctx.lake
        min_age = (
            timedelta(seconds=settings.privacy.erasure_orphan_min_age_seconds)
            if processor != "not running"
            else timedelta(0)
        )
        return {
            name: lakeops.purge_history(
                lake.refresh(person.workspace, name), orphan_min_age=min_age
            ).to_dict()
            for name in tables
        }

    def _sqlite(self, person: Person) -> list[dict[str, Any]]:
        settings = self.ctx.settings
        needles = person.raw_needles()
        files = [
            settings.eventlog_path,
            sqlite_file(settings.profiles_url),
            sqlite_file(settings.database_url),
            sqlite_file(settings.lake_catalog_url),
        ]
        return [make_physical(f, needles).to_dict() for f in files if f is not None]

    def _verify(self, person: Person) -> dict[str, Any]:
        ctx = self.ctx
        again = profileops.find(ctx.store, person)
        reappeared = sum(again.counts().values())
        if reappeared:
            profileops.delete_rows(ctx.store, person, again)
        log_again = logops.find(ctx.eventlog_path, person, workspace=person.workspace)
        if log_again:
            logops.delete(ctx.eventlog_path, log_again)
        bounds = 0
        lake = ctx.lake
        if person.workspace in lake.workspaces():
            for name in lake.tables(person.workspace):
                table = lake.refresh(person.workspace, name)
                bounds += lakeops.bounds_naming(table, person.values | person.profile_ids)
        return {
            "profileStoreReappeared": reappeared,
            "eventLogReappeared": len(log_again),
            "manifestBoundsNamingThePerson": bounds,
            "modelFilesNamingThePerson": _model_files_naming(ctx, person),
        }


def _union(first: Person, second: Person) -> Person:
    merged = Person(
        first.workspace,
        first.nodes | second.nodes,
        profiles=first.profiles | second.profiles,
        profile_ids=first.profile_ids | second.profile_ids,
        pii=first.pii | second.pii,
        id_traits=first.id_traits,
        hashes=first.hashes | second.hashes,
    )
    merged.decision_ids |= first.decision_ids | second.decision_ids
    return merged
