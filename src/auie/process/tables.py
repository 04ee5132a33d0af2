"""Tables of the processor in the metadata database: versioned tracking plans."""

from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text

from auie.db import UtcDateTime, metadata

tracking_plans = Table(
    "tracking_plans",
    metadata,
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("plan", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
