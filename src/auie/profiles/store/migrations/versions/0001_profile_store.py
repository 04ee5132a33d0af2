"""Identity graph, node states, merges, consumer offsets, dead letters, plan violations.

Revision ID: p0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "p0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "identity_nodes",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(600), primary_key=True),
        sa.Column("id_type", sa.String(40), nullable=False),
        sa.Column("id_value", sa.String(520), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("evidenced", sa.Boolean, nullable=False),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_identity_nodes_profile", "identity_nodes", ["workspace_id", "profile_id"])
    op.create_table(
        "identity_edges",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("a", sa.String(600), primary_key=True),
        sa.Column("b", sa.String(600), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(520), nullable=False),
    )
    op.create_index("ix_identity_edges_b", "identity_edges", ["workspace_id", "b"])
    op.create_table(
        "profile_merges",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("from_profile", sa.String(40), nullable=False),
        sa.Column("into_profile", sa.String(40), nullable=False),
        sa.Column("message_id", sa.String(520), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("source_id", sa.String(64), nullable=True),
        sa.Column("log_partition", sa.Integer, nullable=True),
        sa.Column("log_offset", sa.BigInteger, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("replayed_at", _TS, nullable=True),
    )
    op.create_index("ix_dead_letters_workspace_id", "dead_letters", ["workspace_id"])
    op.create_table(
        "plan_violations",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("event_key", sa.String(1100), primary_key=True),
        sa.Column("plan_version", sa.Integer, primary_key=True),
        sa.Column("violations", sa.BigInteger, nullable=False),
        sa.Column("blocked", sa.BigInteger, nullable=False),
        sa.Column("last_message", sa.Text, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "plan_violations",
        "dead_letters",
        "consumer_offsets",
        "profile_merges",
        "identity_edges",
        "identity_nodes",
    ):
        op.drop_table(table)
