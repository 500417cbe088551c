"""Packages in a real S3-compatible store (SeaweedFS): packaging writes there, and devices get
presigned download URLs in GetDeployments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import register, sha1
from support.s3server import ACCESS_KEY, SECRET_KEY, S3Server

from edgefleet.fleet.settings import ServerSettings

pytestmark = pytest.mark.slow  # no skip without SeaweedFS: S3Server says what to install


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    server.client().create_bucket(Bucket="packages")
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, s3: S3Server,
             monkeypatch: pytest.MonkeyPatch) -> ServerSettings:
    """Server settings whose object store is the SeaweedFS bucket ``packages``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    return ServerSettings(
        data_dir=tmp_path / "server", database_url=database_url,
        object_store=f"s3://packages/{os.getpid()}-{tmp_path.name}?endpoint={s3.endpoint_url}")


def test_presigned_download_from_s3(api: TestClient, s3: S3Server, onnx_model: Path,
                                    settings: ServerSettings) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://cap/wind"})
    device = register(api, "dev-a", "wind")
    with onnx_model.open("rb") as model:
        job = api.post("/api/v1/packaging-jobs", files={"model": model},
                       data={"name": "relu-1", "model_name": "relu", "model_version": "1.0"})
    assert job.json()["status"] == "COMPLETED", job.text
    prefix = str(settings.object_store).split("/")[3].split("?")[0]
    assert f"{prefix}/packages/relu-1/relu-1.0.tar.gz" in s3.objects("packages")
    api.post("/api/v1/deployment-plans", json={
        "name": "p", "fleet": "wind", "models": [{"model_handle": "relu",
                                                  "packaging_job": "relu-1"}],
        "stages": [{"name": "s", "selection": {"type": "SELECTION", "device_names": ["dev-a"]}}]})
    api.post("/api/v1/deployment-plans/p/stages/s/start")
    got = device.post("GetDeployments", {"DeviceName": "dev-a", "DeviceFleetName": "wind"})
    definition = got.json()["Deployments"][0]["Definitions"][0]
    assert definition["S3Url"].startswith(s3.endpoint_url)
    assert "X-Amz-Signature=" in definition["S3Url"]
    package = httpx.get(definition["S3Url"])
    assert package.status_code == 200
    assert sha1(package.content) == definition["Checksum"]["Sum"] == job.json()["checksum_sha1"]
