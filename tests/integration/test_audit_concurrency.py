"""The audit chain stays intact when two processes append at once (the server and a CLI
command), on every backend of the metadata database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

import auie
from auie import db
from auie.privacy.audit import MIGRATIONS, AuditLog
from auie.privacy.tables import audit_log

_APPENDS = 150

# Each child waits for the go file, so both append over the same moments.
_CHILD = """
import sys, time
from pathlib import Path
from auie import db
from auie.privacy.audit import AuditLog
url, name, go, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
log = AuditLog(db.create_db_engine(url))
while not go.exists():
    time.sleep(0.005)
for n in range(count):
    log.record("test.append", actor=name, target=f"{name}-{n}")
"""


def test_two_processes_appending_keep_the_chain(store_url: str, tmp_path: Path) -> None:
    engine = db.create_db_engine(store_url)
    try:
        _append_from_two_processes(engine, store_url, tmp_path)
    finally:
        engine.dispose()


def _append_from_two_processes(engine: Engine, store_url: str, tmp_path: Path) -> None:
    db.migrate(engine, migrations=MIGRATIONS)
    log = AuditLog(engine)
    log.record("test.start", actor="parent")
    go = tmp_path / "go"
    src = str(Path(auie.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, store_url, name, str(go), str(_APPENDS)], env=env
        )
        for name in ("server", "cli")
    ]
    time.sleep(1.5)  # both have imported AUIE and are polling
    go.touch()
    assert [child.wait(timeout=120) for child in children] == [0, 0]

    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(audit_log)).scalar()
        chains = conn.execute(select(func.count(func.distinct(audit_log.c.chain)))).scalar()
    assert rows == chains == 1 + 2 * _APPENDS
    assert log.verify() is None
