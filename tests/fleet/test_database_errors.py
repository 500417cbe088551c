"""A database that refuses statements (as a full disk makes it: "database or disk is full"):
each API answers in its own error shape, with a message that says what happened, and the
server goes on once the database takes statements again. tests/fleet/test_server_full_disk.py
fills a real disk under a real server; these tests make the refusal directly, on SQLite and
PostgreSQL, in process."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import OperatorCaller, register
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from edgefleet.fleet.sagemaker_api.protocol import CONTENT_TYPE
from edgefleet.fleet.settings import ServerSettings

FULL = "database or disk is full"


@contextmanager
def refusing(api: TestClient, *, writes_only: bool = True) -> Iterator[None]:
    """The app's database refuses statements (writes only, or every one) within the block."""
    engine: Engine = api.app.state.context.sessions.kw["bind"]  # type: ignore[attr-defined]

    def refuse(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not writes_only or statement.lstrip().upper().startswith(("INSERT", "UPDATE",
                                                                     "DELETE")):
            raise OperationalError(statement, parameters, sqlite3.OperationalError(FULL))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def test_management_writes_are_503_with_the_reason(api: TestClient) -> None:
    with refusing(api):
        answer = api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    assert answer.status_code == 503, answer.text  # was a plain-text 500
    assert answer.json()["error"] == "Unavailable"
    assert "the database is full" in answer.json()["message"]
    assert "nothing was stored" in answer.json()["message"]
    assert api.get("/api/v1/fleets").json() == []
    assert api.post("/api/v1/fleets", json={"name": "wind",
                                            "output_location": "s3://b/p"}).status_code == 201


def test_device_requests_are_internal_service_errors_with_the_reason(api: TestClient) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    device = register(api, "dev-a", "wind")
    ref = {"DeviceName": "dev-a", "DeviceFleetName": "wind"}
    assert device.post("GetDeployments", ref).status_code == 200  # credentials now cached
    with refusing(api, writes_only=False):
        deployments = device.post("GetDeployments", ref)  # was a plain-text 500
        heartbeat = device.post("SendHeartbeat", {**ref, "AgentVersion": "1.0"})
    for answer in (deployments, heartbeat):
        assert answer.status_code == 500, answer.text
        assert answer.json()["__type"] == "InternalServiceException"
        assert answer.headers["x-amzn-ErrorType"] == "InternalServiceException"
        assert "the database is full" in answer.json()["message"]
    assert device.post("SendHeartbeat", {**ref, "AgentVersion": "1.0"}).status_code == 200


def test_sagemaker_writes_are_service_unavailable_with_the_reason(
        api: TestClient, settings: ServerSettings) -> None:
    operator = OperatorCaller(api, settings.resolved_admin_token_file().with_name(
        "operator-credentials"))
    body = b'{"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/p"}}'
    with refusing(api):
        answer = operator.post("SageMaker.CreateDeviceFleet", CONTENT_TYPE, body)
    assert answer.status_code == 503, answer.text
    assert answer.json()["__type"] == "ServiceUnavailable"
    assert "the database is full" in answer.json()["message"]
    assert operator.post("SageMaker.CreateDeviceFleet", CONTENT_TYPE, body).status_code == 200


def test_a_package_the_object_store_cannot_write_is_503_and_leaves_nothing(
        api: TestClient, onnx_model: Path, settings: ServerSettings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    def full_disk(source: Path, target: Path) -> None:
        Path(target).write_bytes(b"half a package")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with onnx_model.open("rb") as model:
        answer = api.post("/api/v1/packaging-jobs",
                          data={"name": "pkg", "model_name": "relu", "model_version": "1.0"},
                          files={"model": ("relu.onnx", model, "application/octet-stream")})
    assert answer.status_code == 503, answer.text  # was a plain-text 500
    assert "No space left on device" in answer.json()["message"]
    objects = settings.data_dir / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []  # no .partial left behind
    assert api.get("/api/v1/packaging-jobs").json() == []
