"""Fresh, empty databases for control-plane tests: a SQLite file, or a new database on the
PostgreSQL at 127.0.0.1:5432 (trust auth) that is dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

#: The PostgreSQL server's maintenance database, where test databases are created and dropped.
PG_ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty database: a SQLite file in ``folder`` (``kind`` "sqlite"), or
    a new database on the PostgreSQL at 127.0.0.1:5432 ("postgresql"), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'fleet.db'}"
        return
    name = f"edgefleet_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
