"""Alembic environment of the profile store (see auie.profiles.store.sql.migrate)."""

from alembic import context

from auie.profiles.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table="alembic_version_profiles",
)
with context.begin_transaction():
    context.run_migrations()
