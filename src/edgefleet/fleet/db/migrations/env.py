"""Alembic environment: migrates the connection that ``db.engine.migrate`` passes in.

This module is only ever run by Alembic through ``edgefleet.fleet.db.engine.migrate``; there is
no ``alembic.ini`` and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from edgefleet.fleet.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
