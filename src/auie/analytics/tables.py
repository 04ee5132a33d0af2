"""Tables of the analytics in the metadata database: saved segments."""

from sqlalchemy import Column, ForeignKey, String, Table, Text, UniqueConstraint

from auie.db import UtcDateTime, metadata

segments = Table(
    "segments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    #: The definition as JSON (auie.analytics.models.SegmentNode, camelCase keys).
    Column("definition", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)
