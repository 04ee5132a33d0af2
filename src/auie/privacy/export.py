"""The access export (DSAR): everything AUIE holds about a person, as one zip archive.

One JSON file per store (a list of rows each) and ``manifest.json`` (request id, time,
and for every file its row count, size and SHA-256):

============================  ==================================================================
``profile.json``              the person's profiles as the API shows them (traits decrypted)
``profile_snapshots.json``    the lake's ``profiles`` rows (when the processor writes them)
``identities.json``           identifiers in the profile store (type, value, profile, evidenced)
``identity_links.json``       identity graph edges touching them (with the event that stated each)
``identity_history.json``     the lake's ``identities`` rows (first seen / moved to a profile)
``merges.json``               merge history of the person's profiles
``closed_profiles.json``      their profile ids closed by a merge, or merged into
``traits.json``               every trait per identifier, decrypted, with its time and messageId
``consent.json``              current consent per purpose and every consent statement
``events.json``               every event in the lake of any of their user or anonymous ids
``event_log.json``            records still in the event log (``events`` and ``deadletters``)
``decisions.json``            decisions about them (event log topic and lake table)
``rewards.json``              rewards of those decisions (event log topic and lake table)
``dead_letters.json``         dead letters naming them (profile store and lake)
``plan_violations.json``      tracking-plan violation counters whose message quotes them
``audit.json``                audit entries about the request or their profiles
============================  ==================================================================

The archive is written to ``<data_dir>/privacy/exports/<request id>.zip`` (mode 0600) and
deleted by the retention job after ``privacy.retention.exports_days``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from auie.errors import NotFound
from auie.eventlog import DECISIONS_TOPIC, REWARDS_TOPIC
from auie.events import format_time
from auie.ids import utc_text
from auie.privacy import lakeops, logops, profileops
from auie.privacy.context import PrivacyContext, Progress, StepTimer, no_progress
from auie.privacy.person import Person
from auie.privacy.tables import audit_log
from auie.profiles.identity import split
from auie.profiles.state import NodeState

FORMAT = "auie-export/1"
FILES = (
    "profile.json",
    "identities.json",
    "identity_links.json",
    "identity_history.json",
    "merges.json",
    "closed_profiles.json",
    "traits.json",
    "consent.json",
    "events.json",
    "event_log.json",
    "decisions.json",
    "rewards.json",
    "dead_letters.json",
    "plan_violations.json",
    "audit.json",
)
STEPS = ("profile store", "event log", "lake", "audit", "archive")
_LAKE_FILES = {
    "events": "events.json",
    "identities": "identity_history.json",
    "dead_letters": "dead_letters.json",
    "decisions": "decisions.json",
    "rewards": "rewards.json",
    "profiles": "profile_snapshots.json",
}
#: Lake tables whose rows share a file with rows of another store.
_TAGGED = frozenset({"dead_letters", "decisions", "rewards", "profiles"})
_JSON_COLUMNS = frozenset(
    {
        "properties",
        "traits",
        "context",
        "integrations",
        "extra",
        "plan_violations",
        "payload",
        "identities",
        "computed_traits",
    }
)


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return _scalar(value)


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _parse_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key in _JSON_COLUMNS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(value)
    return out


def _consent(state: NodeState) -> list[dict[str, Any]]:
    """An identifier's consent: its current value per purpose (``kind: current``) and every
    statement it made (``kind: statement``, with its source: ``event`` or ``api``)."""
    found: list[dict[str, Any]] = [
        {
            "kind": "current",
            "purpose": purpose,
            "granted": granted,
            "statedAt": _iso_ms(ms),
            "messageId": message_id,
        }
        for purpose, (granted, (ms, message_id)) in sorted(state.consent.items())
    ]
    for ms, message_id, purpose, granted, source in state.consent_history:
        found.append(
            {
                "kind": "statement",
                "purpose": purpose,
                "granted": granted,
                "statedAt": _iso_ms(ms),
                "messageId": message_id,
                "source": source,
            }
        )
    return found


class Exporter:
    """Builds the archive of one access request."""

    def __init__(self, ctx: PrivacyContext) -> None:
        self.ctx = ctx

    def collect(
        self, request_id: str, person: Person, progress: Progress = no_progress
    ) -> dict[str, list[Any]]:
        """Every file's rows (what the archive holds)."""
        return self._collect(request_id, person, StepTimer(progress, STEPS))

    def _collect(self, request_id: str, person: Person, step: StepTimer) -> dict[str, list[Any]]:
        files: dict[str, list[Any]] = {name: [] for name in FILES}
        step("profile store")
        self._profile_store(person, files)
        step("event log")
        self._event_log(person, files)
        step("lake")
        self._lake(person, files)
        step("audit")
        self._audit(request_id, person, files)
        step.end()
        return files

    def _profile_store(self, person: Person, files: dict[str, list[Any]]) -> None:
        ctx, ws = self.ctx, person.workspace
        rows = profileops.find(ctx.store, person)
        for pid in sorted(person.profiles):
            try:
                profile = ctx.profiles.profile_by_id(ws, pid).to_dict()
            except NotFound:
                continue
            files["profile.json"].append(ctx.decrypt(ws, profile))
        for row in rows.nodes:
            id_type, value = split(row["node"])
            files["identities.json"].append(
                {
                    "type": id_type,
                    "value": value,
                    "profileId": row["profile_id"],
                    "evidenced": bool(row["evidenced"]),
                    "updatedAt": _plain(row["updated_at"]),
                }
            )
            state = _state(row["state"])
            if state is not None:
                self._state_files(ws, {"type": id_type, "value": value}, state, files)
        files["identity_links.json"] = [
            {
                "a": edge["a"],
                "b": edge["b"],
                "kind": edge["kind"],
                "timestamp": _iso_ms(edge["ts_ms"]),
                "messageId": edge["message_id"],
            }
            for edge in rows.edges
        ]
        files["merges.json"] = [
            {
                "profileId": m["profile_id"],
                "seq": m["seq"],
                "fromProfileId": m["from_profile"],
                "intoProfileId": m["into_profile"],
                "messageId": m["message_id"],
                "timestamp": _iso_ms(m["ts_ms"]),
                "kind": m["kind"],
            }
            for m in rows.merges
        ]
        files["closed_profiles.json"] = [
            {"profileId": c["profile_id"], "mergedIntoProfileId": c["into_profile"]}
            for c in rows.closed
        ]
        files["dead_letters.json"] = [
            {"source": "profile_store", **ctx.decrypt(ws, _parse_json_columns(_plain(d)))}
            for d in rows.dead_letters
        ]
        files["plan_violations.json"] = [_plain(v) for v in rows.violations]

    def _state_files(
        self, ws: str, identifier: dict[str, str], state: NodeState, files: dict[str, list[Any]]
    ) -> None:
        for name, (trait, (ts, message_id)) in sorted(state.traits.items()):
            files["traits.json"].append(
                {
                    "identifier": identifier,
                    "trait": name,
                    "value": self.ctx.decrypt(ws, trait),
                    "setAt": _iso_ms(ts),
                    "messageId": message_id,
                }
            )
        for statement in _consent(state):
            files["consent.json"].append({"identifier": identifier, **statement})

    def _event_log(self, person: Person, files: dict[str, list[Any]]) -> None:
        ctx, ws = self.ctx, person.workspace
        targets = {DECISIONS_TOPIC: "decisions.json", REWARDS_TOPIC: "rewards.json"}
        for match in logops.find(ctx.eventlog_path, person, workspace=ws):
            item = ctx.decrypt(ws, _plain(match.to_dict()))
            target = targets.get(match.topic)
            if target is None:
                files["event_log.json"].append(item)
            else:
                files[target].append({"source": "event_log", **item})

    def _lake(self, person: Person, files: dict[str, list[Any]]) -> None:
        ctx, ws = self.ctx, person.workspace
        if ws not in ctx.lake.workspaces():
            return
        # decisions before rewards: rewards are found by the decisions' eventId
        for name in sorted(ctx.lake.tables(ws), key=lambda n: (n != "decisions", n)):
            table = ctx.lake.refresh(ws, name)
            located = lakeops.locate(table, lakeops.person_test(person, name))
            data = lakeops.extract(table, located)
            if name == "decisions" and "event_id" in data.column_names:
                person.decision_ids.update(
                    str(v) for v in data["event_id"].to_pylist() if v is not None
                )
            rows = [ctx.decrypt(ws, _parse_json_columns(_plain(r))) for r in data.to_pylist()]
            if name in _TAGGED:
                rows = [{"source": "lake", **r} for r in rows]
            files.setdefault(_LAKE_FILES.get(name, f"lake_{name}.json"), []).extend(rows)

    def _audit(self, request_id: str, person: Person, files: dict[str, list[Any]]) -> None:
        targets = sorted({request_id} | person.profiles)
        with self.ctx.engine.connect() as conn:
            for row in conn.execute(
                select(audit_log).where(audit_log.c.target.in_(targets)).order_by(audit_log.c.seq)
            ):
                entry = dict(row._mapping)
                entry["details"] = json.loads(entry["details"])
                files["audit.json"].append(_plain(entry))

    def write(
        self, request_id: str, workspace: str, files: dict[str, list[Any]], path: Path
    ) -> dict[str, Any]:
        """Write the archive (mode 0600, atomically); returns the manifest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "requestId": request_id,
            "workspace": workspace,
            "generatedAt": utc_text(datetime.now(UTC)),
            "files": [],
        }
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with (
                os.fdopen(fd, "wb") as handle,
                zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            ):
                for name in sorted(files):
                    body = json.dumps(files[name], indent=1, ensure_ascii=False, default=str)
                    data = body.encode("utf-8")
                    archive.writestr(name, data)
                    manifest["files"].append(
                        {
                            "name": name,
                            "rows": len(files[name]),
                            "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(),
                        }
                    )
                archive.writestr("manifest.json", json.dumps(manifest, indent=1))
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return manifest

    def run(
        self, request_id: str, person: Person, progress: Progress = no_progress
    ) -> dict[str, Any]:
        started = time.perf_counter()
        step = StepTimer(progress, STEPS)
        files = self._collect(request_id, person, step)
        step("archive")
        path = self.ctx.archive_path(request_id)
        manifest = self.write(request_id, person.workspace, files, path)
        step.end()
        progress("done", len(STEPS), len(STEPS))
        return {
            "archive": {"bytes": path.stat().st_size, "files": len(manifest["files"])},
            "rows": {f["name"]: f["rows"] for f in manifest["files"]},
            "seconds": {"total": round(time.perf_counter() - started, 3), "steps": step.seconds},
        }


def _state(text: str | None) -> NodeState | None:
    if text is None:
        return None
    return NodeState.from_json(json.loads(text))
