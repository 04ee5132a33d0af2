"""Closed profiles: profiles merged into another, for closing rows of the lake's snapshots.

Revision ID: p0003
Revises: p0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "p0003"
down_revision = "p0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "closed_profiles",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(40), primary_key=True),
        sa.Column("into_profile", sa.String(40), nullable=False),
        sa.Column("closed_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_closed_profiles_seq", "closed_profiles", ["closed_seq"])


def downgrade() -> None:
    op.drop_index("ix_closed_profiles_seq", "closed_profiles")
    op.drop_table("closed_profiles")
