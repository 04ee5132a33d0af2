"""Alembic environment of the privacy tables (own version table)."""

from alembic import context

from auie.privacy.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table="alembic_version_privacy",
)
with context.begin_transaction():
    context.run_migrations()
