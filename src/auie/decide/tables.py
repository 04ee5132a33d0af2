"""Tables of the decision service, in the metadata database (own Alembic history)."""

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

from auie.db import UtcDateTime

metadata = MetaData()

decision_points = Table(
    "decision_points",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("config", Text, nullable=False),
    #: The policy version serving (None: fresh).
    Column("active_version", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("decision_point", String(200), primary_key=True),
    Column("arm", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("updates", BigInteger, nullable=False),
    #: Model file, relative to the registry root.
    Column("path", Text, nullable=False),
    Column("source", String(40), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
