"""Decision points and the model registry.

A decision point's configuration lives in the metadata database. Policy snapshots are
versioned: each is a ``.npz`` file (the policy's whole state) and a ``.json`` file (the
featurizer's vocabulary) under ``<data_dir>/lake/models/<workspace>/<decision point>/``,
with one row per version in ``policy_versions``. The decision point's ``active_version``
is what a restarted server resumes from; rolling back points it at an older version, and
``auie train`` promotes a version it saved. A running server notices such changes made by
another process (:meth:`DecisionStore.active_versions`), and its own snapshots only take
over when the active version is still the one it serves (``if_active``), so a periodic
snapshot never undoes a promotion.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, delete, func, insert, select, update

from auie import db
from auie.decide.config import DecisionPointConfig
from auie.decide.policies import saved_config
from auie.decide.tables import decision_points, policy_versions
from auie.errors import Conflict, InvalidRequest, NotFound
from auie.ids import utcnow

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(
            "decision point names are 1-200 letters, digits, '.', '_' or '-'",
            code="invalid_decision_point",
        )
    return name


class ActiveVersionChanged(Conflict):
    """Another process activated a version since the caller loaded its own."""

    code = "active_version_changed"


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    workspace_id: str
    name: str
    config: DecisionPointConfig
    active_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    decision_point: str
    arm: str
    version: int
    kind: str
    updates: int
    source: str
    note: str
    created_at: datetime


class DecisionStore:
    """See the module docstring."""

    def __init__(self, engine: Engine, root: Path) -> None:
        db.migrate(engine, migrations=MIGRATIONS)
        self.engine = engine
        self.root = root

    # -- decision points ------------------------------------------------------------------

    def get(self, workspace: str, name: str) -> DecisionPoint | None:
        c = decision_points.c
        query = select(decision_points).where(c.workspace_id == workspace, c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _point(row)

    def require(self, workspace: str, name: str) -> DecisionPoint:
        point = self.get(workspace, name)
        if point is None:
            raise NotFound(f"decision point {name!r} does not exist")
        return point

    def points(self, workspace: str) -> list[DecisionPoint]:
        c = decision_points.c
        query = select(decision_points).where(c.workspace_id == workspace).order_by(c.name)
        with self.engine.connect() as conn:
            return [_point(row) for row in conn.execute(query)]

    def put(self, workspace: str, name: str, config: DecisionPointConfig) -> DecisionPoint:
        """Create or replace a decision point's configuration."""
        check_name(name)
        now = utcnow()
        text = config.model_dump_json(by_alias=True)
        c = decision_points.c
        with self.engine.begin() as conn:
            found = conn.execute(
                select(c.name).where(c.workspace_id == workspace, c.name == name)
            ).first()
            if found is None:
                conn.execute(
                    insert(decision_points).values(
                        workspace_id=workspace,
                        name=name,
                        config=text,
                        active_version=None,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    update(decision_points)
                    .where(c.workspace_id == workspace, c.name == name)
                    .values(config=text, updated_at=now)
                )
        return self.require(workspace, name)

    def activate(self, workspace: str, name: str, version: int) -> None:
        """Serve ``version`` (rollback or promotion). The configured ``policy`` and
        ``explorationFloor`` become that version's own, in the same transaction, so the
        configuration never names a policy other than the one served."""
        point = self.require(workspace, name)
        if point.config.experiment is not None:
            # Each arm serves its own newest version and arm snapshots do not move the
            # active version: activating one would change the reported version only.
            raise Conflict(
                f"decision point {name!r} runs an experiment: its arms serve their own "
                "newest versions and cannot be rolled back; remove the experiment first",
                code="experiment_running",
            )
        found = [v for v in self.versions(workspace, name) if v.version == version]
        if not found:
            raise NotFound(f"decision point {name!r} has no version {version}")
        values: dict[str, Any] = {"active_version": version, "updated_at": utcnow()}
        if not found[0].arm:  # the main arm's policy is the configured one
            saved = self.load(workspace, name, arm="", version=version)
            if saved is not None:
                policy, floor = saved_config(saved[1])
                config = point.config.model_dump(by_alias=True)
                config.update(policy=policy, explorationFloor=floor)
                values["config"] = DecisionPointConfig.model_validate(config).model_dump_json(
                    by_alias=True
                )
        c = decision_points.c
        with self.engine.begin() as conn:
            conn.execute(
                update(decision_points)
                .where(c.workspace_id == workspace, c.name == name)
                .values(**values)
            )

    def active_versions(self, workspaces: set[str]) -> dict[tuple[str, str], int | None]:
        """(workspace, decision point) → active version, for every point of ``workspaces``."""
        c = decision_points.c
        query = select(c.workspace_id, c.name, c.active_version).where(
            c.workspace_id.in_(sorted(workspaces))
        )
        with self.engine.connect() as conn:
            return {(row[0], row[1]): row[2] for row in conn.execute(query)}

    # -- versions ---------------------------------------------------------------------------

    def _dir(self, workspace: str, name: str) -> Path:
        return self.root / workspace / name

    def save(
        self,
        workspace: str,
        name: str,
        *,
        arm: str,
        blob: bytes,
        featurizer: dict[str, Any],
        kind: str,
        updates: int,
        source: str = "online",
        note: str = "",
        activate: bool = True,
        if_active: int | Literal["any"] | None = "any",
        config: DecisionPointConfig | None = None,
    ) -> int:
        """Store a snapshot as the next version; returns its number.

        A main-arm snapshot (``arm`` "") with ``activate`` becomes the active version; with
        ``if_active`` only if the active version is still that one (None: none yet), else
        nothing is stored and :class:`ActiveVersionChanged` is raised. ``config`` replaces
        the decision point's configuration in the same transaction (a promotion)."""
        c = policy_versions.c
        directory = self._dir(workspace, name)
        directory.mkdir(parents=True, exist_ok=True)
        with self.engine.begin() as conn:
            latest = conn.execute(
                select(func.max(c.version)).where(
                    c.workspace_id == workspace, c.decision_point == name
                )
            ).scalar()
            version = int(latest or 0) + 1
            if activate and not arm:
                point = decision_points.c
                where = [point.workspace_id == workspace, point.name == name]
                if if_active != "any":
                    where.append(
                        point.active_version.is_(None)
                        if if_active is None
                        else point.active_version == if_active
                    )
                changed = conn.execute(
                    update(decision_points).where(*where).values(active_version=version)
                )
                if if_active != "any" and changed.rowcount == 0:
                    raise ActiveVersionChanged(
                        f"decision point {name!r}: the active version is no longer {if_active}"
                    )
            if config is not None:
                point = decision_points.c
                conn.execute(
                    update(decision_points)
                    .where(point.workspace_id == workspace, point.name == name)
                    .values(config=config.model_dump_json(by_alias=True), updated_at=utcnow())
                )
            stem = f"{arm or 'main'}-v{version:06d}"
            _write_atomic(directory / f"{stem}.npz", blob)
            _write_atomic(directory / f"{stem}.json", json.dumps(featurizer).encode())
            conn.execute(
                insert(policy_versions).values(
                    workspace_id=workspace,
                    decision_point=name,
                    arm=arm,
                    version=version,
                    kind=kind,
                    updates=updates,
                    path=f"{workspace}/{name}/{stem}",
                    source=source,
                    note=note,
                    created_at=utcnow(),
                )
            )
        return version

    def prune(self, workspace: str, name: str, *, arm: str, keep: int) -> int:
        """Delete the arm's online versions but the ``keep`` newest (never the active
        version, nor a version trained offline); returns how many were deleted."""
        c = policy_versions.c
        point = decision_points.c
        active = (
            select(point.active_version)
            .where(point.workspace_id == workspace, point.name == name)
            .scalar_subquery()
        )
        mine = [c.workspace_id == workspace, c.decision_point == name, c.arm == arm]
        with self.engine.begin() as conn:
            newest = select(c.version).where(*mine, c.source == "online")
            newest = newest.order_by(c.version.desc()).limit(keep)
            old = conn.execute(
                select(c.version, c.path).where(
                    *mine,
                    c.source == "online",
                    c.version.not_in(newest.scalar_subquery()),
                    func.coalesce(active, -1) != c.version,
                )
            ).all()
            if old:
                conn.execute(
                    delete(policy_versions).where(*mine, c.version.in_([v for v, _ in old]))
                )
            rows = conn.execute(select(c.version).where(*mine)).all()
            stored = {int(row.version) for row in rows}
        for _, path in old:  # after the commit: a crash leaves files, never rows without them
            for suffix in (".npz", ".json"):
                (self.root / f"{path}{suffix}").unlink(missing_ok=True)
        self._sweep(self._dir(workspace, name), arm, stored)
        return len(old)

    @staticmethod
    def _sweep(directory: Path, arm: str, stored: set[int]) -> None:
        """Delete the arm's files that no version row names, below its newest row: what a
        prune that crashed between its commit and its unlinks left. (Files of a version
        being saved are newer than every row until its row commits: they stay.)"""
        if not stored or not directory.is_dir():
            return
        newest = max(stored)
        prefix = f"{arm or 'main'}-v"
        for path in directory.iterdir():
            stem, suffix = path.stem, path.suffix
            number = stem.removeprefix(prefix)
            if (
                suffix in (".npz", ".json")
                and stem.startswith(prefix)
                and number.isdigit()
                and int(number) < newest
                and int(number) not in stored
            ):
                path.unlink(missing_ok=True)

    def versions(self, workspace: str, name: str) -> list[PolicyVersion]:
        c = policy_versions.c
        query = (
            select(
                c.decision_point,
                c.arm,
                c.version,
                c.kind,
                c.updates,
                c.source,
                c.note,
                c.created_at,
            )
            .where(c.workspace_id == workspace, c.decision_point == name)
            .order_by(c.version)
        )
        with self.engine.connect() as conn:
            return [PolicyVersion(**row._mapping) for row in conn.execute(query)]

    def load(
        self, workspace: str, name: str, *, arm: str, version: int | None = None
    ) -> tuple[int, bytes, dict[str, Any]] | None:
        """(version, policy blob, featurizer state) of a version (latest of the arm if
        None), or None when the arm has no version."""
        c = policy_versions.c
        query = select(c.version, c.path).where(
            c.workspace_id == workspace, c.decision_point == name, c.arm == arm
        )
        query = query.where(c.version == version) if version is not None else query
        query = query.order_by(c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        base = self.root / row.path
        blob = base.with_suffix(".npz").read_bytes()
        featurizer = json.loads(base.with_suffix(".json").read_text())
        return int(row.version), blob, featurizer


def _point(row: Any) -> DecisionPoint:
    return DecisionPoint(
        workspace_id=row.workspace_id,
        name=row.name,
        config=DecisionPointConfig.model_validate_json(row.config),
        active_version=row.active_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
