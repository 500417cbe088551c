"""Fixtures of the control-plane tests.

``database_url`` is parametrized: every test that uses it runs on SQLite and on the PostgreSQL
at 127.0.0.1:5432, each time in a fresh database that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from support.databases import fresh_database

from edgefleet.fleet.app import create_app
from edgefleet.fleet.bootstrap import prepare
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.engine import make_engine, make_sessionmaker
from edgefleet.fleet.settings import ServerSettings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    """Server settings with the data dir in ``tmp_path``."""
    return ServerSettings(data_dir=tmp_path / "server", database_url=database_url)


@pytest.fixture
def server_key(settings: ServerSettings) -> ServerKey:
    """The server key of ``settings``."""
    return ServerKey.load_or_create(settings.resolved_server_key_file())


@pytest.fixture
def engine(settings: ServerSettings, server_key: ServerKey) -> Iterator[Engine]:
    """A migrated, bootstrapped database."""
    engine = make_engine(settings.resolved_database_url())
    prepare(engine, server_key, settings.resolved_admin_token_file())
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """Session factory of ``engine``."""
    return make_sessionmaker(engine)


@pytest.fixture
def api(settings: ServerSettings, engine: Engine) -> Iterator[TestClient]:
    """TestClient of the app, with the admin token already in its headers."""
    token = settings.resolved_admin_token_file().read_text().strip()
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """A tiny real ONNX model (Relu on float32[1, 4])."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    save(model, str(path))
    return path
