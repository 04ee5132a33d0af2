"""identity_nodes.consent: each identifier's current consent beside its state, with a
partial index on (workspace, profile) of the nodes that hold a statement. The processor
reads a profile's statements by it, so that a statement made on any of a person's
identifiers (a banner refused before login) governs the events of all of them.

The column is filled from the stored states of the nodes that hold a statement (their
JSON has a top-level ``"k"``), read in pages. The migration runs in one transaction (the
group's processes wait for it on a transaction-scoped lock); on PostgreSQL the added
column locks identity_nodes for reads and writes until it commits: about 20 s per million
nodes, a third of them holding statements, measured on the development machine (SQLite:
about 7 s, the database being locked for writes).

Revision ID: p0005
Revises: p0004
Create Date: 2026-11-28
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "p0005"
down_revision = "p0004"
branch_labels = None
depends_on = None

_BATCH = 200  # states: up to a thousand traits each


def upgrade() -> None:
    with op.batch_alter_table("identity_nodes") as batch:
        batch.add_column(sa.Column("consent", sa.Text(), nullable=True))
    conn = op.get_bind()
    nodes = sa.table(
        "identity_nodes",
        sa.column("workspace_id", sa.String),
        sa.column("node", sa.String),
        sa.column("state", sa.Text),
        sa.column("consent", sa.Text),
    )
    c = nodes.c
    update = (
        sa.update(nodes)
        .where(c.workspace_id == sa.bindparam("ws"), c.node == sa.bindparam("key"))
        .values(consent=sa.bindparam("consent"))
    )
    after = ("", "")
    while True:  # pages by key: memory stays bounded however many nodes hold a statement
        page = conn.execute(
            sa.select(c.workspace_id, c.node, c.state)
            .where(
                sa.tuple_(c.workspace_id, c.node) > sa.tuple_(*after),
                c.state.like('%"k":%'),  # every state with a statement, and a few others
            )
            .order_by(c.workspace_id, c.node)
            .limit(_BATCH)
        ).all()
        if not page:
            break
        found = [
            {"ws": workspace, "key": key, "consent": consent}
            for workspace, key, state in page
            if (consent := _consent(state)) is not None
        ]
        if found:
            conn.execute(update, found)
        after = (page[-1][0], page[-1][1])
    op.create_index(
        "ix_identity_nodes_consent",
        "identity_nodes",
        ["workspace_id", "profile_id"],
        sqlite_where=sa.text("consent IS NOT NULL"),
        postgresql_where=sa.text("consent IS NOT NULL"),
    )


def _consent(state: object) -> str | None:
    """The statements of a stored state's ``"k"`` member ({purpose: [granted, [time,
    messageId]]}), as JSON, read as ``NodeState.from_json`` reads them (any value for
    granted, the first two of the stamp) and without entries it could not read; None if
    it holds none."""
    try:
        data = json.loads(str(state))
    except ValueError:
        return None
    stated = data.get("k") if isinstance(data, dict) else None
    if not isinstance(stated, dict):
        return None
    consent = {
        purpose: [bool(entry[0]), entry[1][:2]]
        for purpose, entry in stated.items()
        if isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[1], list)
        and len(entry[1]) >= 2
    }
    return json.dumps(consent, separators=(",", ":")) if consent else None


def downgrade() -> None:
    op.drop_index("ix_identity_nodes_consent", "identity_nodes")
    with op.batch_alter_table("identity_nodes") as batch:
        batch.drop_column("consent")
