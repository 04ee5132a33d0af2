"""Node rows are written through the DB-API driver (compiled once, parameters converted by
hand); the database must hold exactly what SQLAlchemy's own insert stores, on every
backend: same text for timestamps on SQLite, same booleans, same state JSON meaning."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from auie.profiles.state import NodeState
from auie.profiles.store import sql
from auie.profiles.store.base import NodeRow, ProfileWrite
from auie.profiles.store.sql import SqlProfileStore
from auie.profiles.store.tables import identity_nodes

MOMENT = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


def raw(store: SqlProfileStore, node: str) -> tuple[object, ...]:
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id_type, id_value, profile_id, evidenced, state, updated_at"
                " FROM identity_nodes WHERE node = :node"
            ),
            {"node": node},
        ).one()
    return tuple(row)


@pytest.mark.parametrize("evidenced", [True, False])
def test_driver_rows_equal_sqlalchemy_rows(
    profile_store: SqlProfileStore, monkeypatch: pytest.MonkeyPatch, evidenced: bool
) -> None:
    monkeypatch.setattr(sql, "utcnow", lambda: MOMENT)
    state = NodeState(
        traits={"name": ("Zoë 😀", (5, "m-1")), "n": (12.5, (6, "m-2"))},
        first_seen=5,
        last_seen=6,
        counts={"page": 2},
        sessions=[[5, 6]],
    )
    profile_store.write(
        ProfileWrite(nodes=[NodeRow("ws", "email:a:b@x.io", "p_1", evidenced, state)])
    )
    with profile_store.engine.begin() as conn:
        conn.execute(
            insert(identity_nodes),
            {
                "workspace_id": "ws",
                "node": "email:core",
                "id_type": "email",
                "id_value": "a:b@x.io",
                "profile_id": "p_1",
                "evidenced": evidenced,
                "state": json.dumps(state.to_json(), separators=(",", ":")),
                "updated_at": MOMENT,
            },
        )
    driver, core = raw(profile_store, "email:a:b@x.io"), raw(profile_store, "email:core")
    assert driver[:4] == core[:4]
    assert json.loads(str(driver[4])) == json.loads(str(core[4]))
    assert driver[5] == core[5]
    found = profile_store.nodes("ws", ["email:a:b@x.io"])["email:a:b@x.io"]
    assert found.state == state
    assert found.evidenced is evidenced
