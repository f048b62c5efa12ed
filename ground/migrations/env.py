"""Alembic's environment: migrate the connection `ground.db.migrate` hands over, inside its
transaction (a failed migration leaves the database as it was)."""

from __future__ import annotations

from alembic import context

from ground.db import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters a table by copying it; batch mode does that
)
with context.begin_transaction():
    context.run_migrations()
