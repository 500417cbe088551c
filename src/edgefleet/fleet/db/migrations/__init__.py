"""Alembic environment and revisions of the control-plane schema (run by ``db.engine.migrate``)."""
