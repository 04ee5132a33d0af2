"""Alembic environment of the decision service's tables (own version table)."""

from alembic import context

from auie.decide.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table="alembic_version_decide",
)
with context.begin_transaction():
    context.run_migrations()
