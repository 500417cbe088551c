"""Alembic revisions, oldest first; each is applied once, in order, at server start."""
