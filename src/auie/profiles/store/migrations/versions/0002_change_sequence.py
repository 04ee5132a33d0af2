"""Change sequence of identity nodes, for exactly-once exports to the lake.

``identity_nodes.moved_seq`` and ``changed_seq`` hold the value of the ``change_sequence``
counter of the write that last moved (or created) and last wrote the node. Existing nodes
get 0: whatever they changed before this version was exported as it happened.

Revision ID: p0002
Revises: p0001
Create Date: 2027-01-12
"""

import sqlalchemy as sa
from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_nodes") as batch:
        batch.add_column(sa.Column("moved_seq", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("changed_seq", sa.BigInteger, nullable=False, server_default="0")
        )
    op.create_index("ix_identity_nodes_changed", "identity_nodes", ["changed_seq"])
    op.create_table(
        "change_sequence",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("change_sequence")
    op.drop_index("ix_identity_nodes_changed", "identity_nodes")
    with op.batch_alter_table("identity_nodes") as batch:
        batch.drop_column("changed_seq")
        batch.drop_column("moved_seq")
