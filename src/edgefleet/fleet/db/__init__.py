"""The control plane's database: SQLAlchemy 2 models (``models``) and Alembic migrations
(``migrations``), applied programmatically at start by :func:`edgefleet.fleet.db.engine.migrate`."""
