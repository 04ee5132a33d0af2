"""identity_nodes.consent: each identifier's current consent beside its state, with a
partial index on (workspace, profile) of the nodes that hold a statement. The processor
reads a profile's statements by it, so that a statement made on any of a person's
identifiers (a banner refused before login) governs the events of all of them.

The column is filled from the stored states of the nodes that hold a statement (their
JSON has a top-level ``"k"``), in batches; on PostgreSQL writes to identity_nodes wait for
the migration (it runs in one transaction).

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

_BATCH = 1000


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
    """The ``"k"`` member of a stored state (None if it has none or it is empty)."""
    try:
        data = json.loads(str(state))
    except ValueError:
        return None
    consent = data.get("k") if isinstance(data, dict) else None
    if not isinstance(consent, dict) or not consent:
        return None
    return json.dumps(consent, separators=(",", ":"))


def downgrade() -> None:
    op.drop_index("ix_identity_nodes_consent", "identity_nodes")
    with op.batch_alter_table("identity_nodes") as batch:
        batch.drop_column("consent")
