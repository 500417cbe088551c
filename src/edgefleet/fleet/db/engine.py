"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL (at scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"
#: pg_advisory_lock key that serialises migrations of instances starting together ("edgeflt").
_MIGRATION_LOCK = 0x65646765666C74


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``. Statement parameters never appear in errors or logs.

    SQLite gets WAL, foreign keys and a 30 s busy timeout; its transactions are started by the
    sessions of :func:`make_sessionmaker`.

    Raises:
        sqlalchemy.exc.ArgumentError: the URL is malformed or names an unknown dialect.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, hide_parameters=True, pool_size=16, max_overflow=16,
                         pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Sessions, not the sqlite3 module, decide how transactions begin (_sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(_session: Session, transaction: SessionTransaction,
                  connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    # A write transaction (``sessions.begin()``) takes the write lock first: a deferred one
    # that reads and then writes after another process committed fails at once with
    # "database is locked", while BEGIN IMMEDIATE waits (busy timeout). Reads stay deferred,
    # so that in WAL mode they never wait for writers.
    write = transaction.origin is SessionTransactionOrigin.BEGIN
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


#: How the databases say that their disk is full (SQLite; PostgreSQL's "could not extend file"
#: and "could not write" come with the system's "No space left on device").
_DISK_FULL = ("database or disk is full", "No space left on device")


def failure_message(exc: SQLAlchemyError) -> str:
    """What to tell a client whose request the database refused (a full disk, a lost
    connection): the driver's reason, one line of at most 200 characters (statement parameters
    never appear in it, see :func:`make_engine`), and what to do."""
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0][:200]
    if any(sign in reason for sign in _DISK_FULL):
        return (f"the database is full: the disk under it has no space left ({reason}); free "
                "space on the server, then retry")
    return f"the database failed ({reason}); retry, and see the server log"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (handlers read them afterwards).

    Use ``with sessions.begin() as session:`` to write and ``with sessions() as session:`` to
    read: on SQLite the first takes the write lock at once, the second never waits for it.
    """
    sessions = sessionmaker(engine, expire_on_commit=False)
    event.listen(sessions, "after_begin", _sqlite_begin)
    return sessions


def migrate(engine: Engine) -> None:
    """Apply every Alembic revision not yet applied. Safe when several instances start at once
    on PostgreSQL (an advisory lock serialises them)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
