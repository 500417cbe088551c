"""End to end: real ``edgefleet server`` processes, the CLI, and the stock boto3 client.

Two server instances share one database (SQLite file or PostgreSQL) and one data folder: the
operator talks to the first, devices to the second, which shows that no state lives in a process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from fleet.fleet_support import sha1, signed_headers
from support.fleet_server import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture
def servers(tmp_path: Path, database_url: str) -> Iterator[tuple[Server, Server]]:
    """Two instances on one database and data folder."""
    first = start_server(tmp_path / "data", free_port(), tmp_path / "server-1.log",
                         database_url=database_url)
    try:
        second = start_server(tmp_path / "data", free_port(), tmp_path / "server-2.log",
                              database_url=database_url)
    except AssertionError:
        stop_server(first)
        raise
    yield first, second
    stop_server(first)
    stop_server(second)


def _run_cli(server: Server, token: str, *args: str,
             cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefleet.fleet", *args],
                          env={**os.environ, "EDGEFLEET_SERVER_URL": server.url,
                               "EDGEFLEET_ADMIN_TOKEN": token},
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def _cli(server: Server, token: str, *args: str, cwd: Path) -> Any:
    done = _run_cli(server, token, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def _edge_client(config: dict[str, Any], endpoint: str) -> Any:
    return boto3.client(
        "sagemaker-edge", endpoint_url=endpoint,
        region_name=config["sagemaker_edge_core_region"],
        aws_access_key_id=config["edgefleet_control_access_key_id"],
        aws_secret_access_key=config["edgefleet_control_secret_access_key"])


def test_rollout_with_boto3_against_real_servers(servers: tuple[Server, Server], tmp_path: Path,
                                                 onnx_model: Path) -> None:
    admin, devices_side = servers
    token_file = tmp_path / "data" / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert httpx.get(f"{admin.url}/api/v1/fleets").status_code == 401

    _cli(admin, token, "fleet", "create", "wind", "--output-location", "s3://cap/wind",
         cwd=tmp_path)
    configs = {}
    for name in ("turbine-a1", "turbine-a2", "turbine-b1"):
        path = tmp_path / f"{name}.json"
        _cli(admin, token, "device", "register", name, "--fleet", "wind", "--agent-config",
             str(path), "--root-certs-dir", str(tmp_path / "certs"), cwd=tmp_path)
        assert path.stat().st_mode & 0o777 == 0o600
        configs[name] = json.loads(path.read_text())
    assert (tmp_path / "certs" / "edgefleet-root.pem").read_text().startswith("-----BEGIN")
    assert configs["turbine-a1"]["sagemaker_edge_core_root_certs_path"] == str(tmp_path / "certs")
    job = _cli(admin, token, "packaging", "create", "relu-1", "--model-file", str(onnx_model),
               "--model-name", "relu", "--model-version", "1.0", cwd=tmp_path)
    assert job["status"] == "COMPLETED"
    _cli(admin, token, "plan", "create", "p1", "--fleet", "wind", "--model", "relu=relu-1",
         cwd=tmp_path)
    plan = _cli(admin, token, "plan", "add-stage", "p1", "canary", "--name-contains", "-a",
                cwd=tmp_path)
    deployment = plan["stages"][0]["deployment_name"]
    _cli(admin, token, "stage", "start", "p1", "canary", cwd=tmp_path)

    edge = {name: _edge_client(cfg, devices_side.url) for name, cfg in configs.items()}
    ref = {name: {"DeviceName": name, "DeviceFleetName": "wind"} for name in configs}
    assert edge["turbine-a1"].get_device_registration(**ref["turbine-a1"])[
        "DeviceRegistration"] == "REGISTERED"
    got = edge["turbine-a1"].get_deployments(**ref["turbine-a1"])["Deployments"]
    assert [d["DeploymentName"] for d in got] == [deployment]
    definition = got[0]["Definitions"][0]
    assert edge["turbine-b1"].get_deployments(**ref["turbine-b1"])["Deployments"] == []
    with pytest.raises(ClientError) as refused:
        edge["turbine-b1"].get_deployments(**ref["turbine-a1"])
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    a1 = configs["turbine-a1"]
    url = definition["S3Url"]
    package = httpx.get(url, headers=signed_headers(
        "GET", url, b"", a1["edgefleet_control_access_key_id"],
        a1["edgefleet_control_secret_access_key"]))
    assert package.status_code == 200 and sha1(package.content) == definition["Checksum"]["Sum"]

    now = time.time()
    model = {"ModelName": "relu", "ModelVersion": "1.0", "LatestInference": now,
             "LatestSampleTime": now,
             "ModelMetrics": [{"Dimension": "model", "MetricName": "latency-ms", "Value": 0.4,
                               "Timestamp": now}]}
    edge["turbine-a1"].send_heartbeat(
        **ref["turbine-a1"], AgentVersion="0.1.0", Models=[model],
        AgentMetrics=[{"Dimension": "agent", "MetricName": "cpu-percent", "Value": 2.0,
                       "Timestamp": now}],
        DeploymentResult={"DeploymentName": deployment, "DeploymentStatus": "SUCCESS",
                          "DeploymentModels": [{"ModelHandle": "relu", "Status": "SUCCESS"}]})
    edge["turbine-a2"].send_heartbeat(
        **ref["turbine-a2"], AgentVersion="0.1.0",
        DeploymentResult={"DeploymentName": deployment, "DeploymentStatus": "FAIL",
                          "DeploymentModels": [{
                              "ModelHandle": "relu", "Status": "FAIL",
                              "StatusReason": "error rate 12% after swap",
                              "RollbackFailureReason": "previous package deleted"}]})
    with pytest.raises(ClientError):
        edge["turbine-b1"].send_heartbeat(**ref["turbine-a1"], AgentVersion="9.9")

    stage = {d["device_name"]: d for d in _cli(admin, token, "stage", "devices", "p1", "canary",
                                               cwd=tmp_path)}
    assert set(stage) == {"turbine-a1", "turbine-a2"}
    assert stage["turbine-a1"]["status"] == "DEPLOYED"
    assert stage["turbine-a2"]["status"] == "FAILED"
    assert "rollback failed: previous package deleted" in stage["turbine-a2"]["status_message"]
    report = _cli(admin, token, "report", "wind", cwd=tmp_path)
    assert report["agent_versions"] == [{"version": "0.1.0", "agent_count": 2}]
    assert report["model_stats"][0]["active_device_count"] == 1
    missing = _run_cli(admin, token, "device", "describe", "turbine-zz", cwd=tmp_path)
    assert missing.returncode == 1
    assert "device 'turbine-zz' is not registered" in missing.stderr
    refused = _run_cli(admin, "efadm_wrong", "fleet", "list", cwd=tmp_path)
    assert refused.returncode == 1 and "unknown admin token" in refused.stderr
    described = _cli(admin, token, "device", "describe", "turbine-a1", cwd=tmp_path)
    assert described["agent_version"] == "0.1.0"
    assert described["models"][0]["metrics"][0]["MetricName"] == "latency-ms"

    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    with (patch("botocore.auth.get_current_datetime", return_value=past),
          pytest.raises(ClientError) as stale):
        _edge_client(configs["turbine-a1"], devices_side.url).get_device_registration(
            **ref["turbine-a1"])
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    bad = {**configs["turbine-a1"], "edgefleet_control_secret_access_key": "x" * 40}
    with pytest.raises(ClientError) as forged:
        _edge_client(bad, devices_side.url).get_deployments(**ref["turbine-a1"])
    assert forged.value.response["Error"]["Code"] == "InvalidSignatureException"

    stop_server(admin)
    stop_server(devices_side)
    logs = admin.log.read_text() + devices_side.log.read_text()
    assert "POST /SendHeartbeat" in logs
    secrets = [token] + [c["edgefleet_control_secret_access_key"] for c in configs.values()]
    for secret in secrets:
        assert secret not in logs


def test_the_servers_own_info_lines_reach_its_log(tmp_path: Path) -> None:
    # uvicorn configures only its own loggers: the server's INFO lines used to be dropped.
    server = start_server(tmp_path / "data", free_port(), tmp_path / "server.log")
    try:
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not an onnx model")
        job = server.admin.create_packaging_job("broken-job", "broken", "1.0", broken)
        assert job["status"] == "FAILED"
    finally:
        stop_server(server)
    assert "INFO:     edgefleet.fleet.packaging: packaging job broken-job failed" in (
        server.log.read_text())


def test_a_body_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", free_port(), tmp_path / "server.log")
    token = (server.data_dir / "admin-token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
            declared = client.post("/api/v1/fleets", content=b" " * (50 << 20))
            assert declared.status_code == 413, declared.text
            assert declared.json()["error"] == "PayloadTooLarge"

            def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
                for _ in range(64):
                    yield b" " * (64 << 10)
            chunked = client.post("/api/v1/fleets", content=chunks())
            assert chunked.status_code == 413, chunked.text
            assert "more than 1048576 bytes" in chunked.json()["message"]

            ok = client.post("/api/v1/fleets", json={"name": "small", "output_location":
                                                     "s3://captures/small"})
            assert ok.status_code == 201, ok.text
    finally:
        stop_server(server)


def test_rotating_the_admin_token_revokes_the_old_one_on_a_running_server(
        tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", free_port(), tmp_path / "server.log")
    token_file = server.data_dir / "admin-token"
    old = token_file.read_text().strip()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgefleet.fleet", "admin", "rotate-token", "--data-dir",
             str(server.data_dir)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["revoked_tokens"] == 1
        new = token_file.read_text().strip()
        assert new != old and new not in done.stdout + done.stderr  # never printed
        assert token_file.stat().st_mode & 0o777 == 0o600

        def fleets(token: str) -> int:
            return httpx.get(f"{server.url}/api/v1/fleets",
                             headers={"Authorization": f"Bearer {token}"}).status_code
        assert fleets(old) == 401
        assert fleets(new) == 200
    finally:
        stop_server(server)


def test_rotating_without_a_server_database_says_where_it_looked(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.fleet", "admin", "rotate-token", "--data-dir",
         str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no server database in" in done.stderr
