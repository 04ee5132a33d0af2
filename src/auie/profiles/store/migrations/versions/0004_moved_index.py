"""An index on identity_nodes.moved_seq: the lake's identities export reads the nodes moved
since its mark by it, instead of every node written since then. It is built once, at the
first start after the upgrade; on PostgreSQL writes to identity_nodes wait for it (a plain
CREATE INDEX, inside the migration's transaction).

Revision ID: p0004
Revises: p0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "p0004"
down_revision = "p0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_identity_nodes_moved", "identity_nodes", ["moved_seq"])


def downgrade() -> None:
    op.drop_index("ix_identity_nodes_moved", "identity_nodes")
