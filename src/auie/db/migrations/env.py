"""Alembic environment: runs on the connection AUIE hands over (see auie.db.migrate)."""

from alembic import context

import auie.tables  # noqa: F401  (registers every domain's tables on the metadata)
from auie.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
