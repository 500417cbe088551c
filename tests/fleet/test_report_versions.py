"""``edgefleet report`` counts devices by the agent version their heartbeats carry.

In process, on SQLite and PostgreSQL: the agent's own heartbeat code (``ControlClient`` with
the config ``device register`` wrote) sends over the app's device API, and the ``report``
command reads the management API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import EdgeCaller, register
from typer.testing import CliRunner

import edgefleet
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.control import ControlClient
from edgefleet.agent.device.deploy import DeploymentExecutor
from edgefleet.agent.device.metrics import HeartbeatMetrics
from edgefleet.agent.device.transport import ControlPlaneUnavailable
from edgefleet.agent.serving.service import AgentService
from edgefleet.cli import app as umbrella
from edgefleet.fleet import cli as fleet_cli
from edgefleet.fleet.client import AdminClient
from edgefleet.version import agent_version

#: An older edgefleet build, in the SageMaker agent's scheme.
OLDER = "1.20261101.0a1b2c3"


class DeviceApi:
    """The agent's control transport over the app's device API (SigV4-signed, in process)."""

    def __init__(self, caller: EdgeCaller) -> None:
        self._caller = caller

    def _post(self, operation: str, body: dict[str, Any]) -> Any:
        answer = self._caller.post(operation, body)
        if answer.status_code != 200:
            raise ControlPlaneUnavailable(f"{operation}: HTTP {answer.status_code}: "
                                          f"{answer.text}", answer.status_code)
        return answer.json()

    def get_device_registration(self, device_name: str, fleet_name: str) -> tuple[str, float]:
        answer = self._post("GetDeviceRegistration", {"DeviceName": device_name,
                                                      "DeviceFleetName": fleet_name})
        return answer["DeviceRegistration"], float(answer["CacheTTL"])

    def get_deployments(self, device_name: str, fleet_name: str) -> list[dict[str, Any]]:
        return list(self._post("GetDeployments", {"DeviceName": device_name,
                                                  "DeviceFleetName": fleet_name})["Deployments"])

    def send_heartbeat(self, request: dict[str, Any]) -> None:
        self._post("SendHeartbeat", request)

    def download(self, url: str) -> Iterator[bytes]:
        raise ControlPlaneUnavailable(f"this test deploys nothing: {url}")


def _agent_heartbeat(api: TestClient, name: str, data_root: Path) -> None:
    """Register ``name`` and send one heartbeat from the agent's code with the written config."""
    answer = api.post("/api/v1/devices", json={"name": name, "fleet": "wind"})
    assert answer.status_code == 201, answer.text
    config = AgentConfig.from_mapping({**answer.json()["agent_config"],
                                       "sagemaker_edge_local_data_root_path": str(data_root)})
    secret = config.edgefleet_control_secret_access_key
    assert config.edgefleet_control_access_key_id is not None and secret is not None
    caller = EdgeCaller(api, config.edgefleet_control_access_key_id, secret.get_secret_value())
    service, stop = AgentService(config), threading.Event()
    executor = DeploymentExecutor(service, config, download=None, stop=stop)
    try:
        client = ControlClient(config, DeviceApi(caller), executor,
                               HeartbeatMetrics(service.registry, executor.state), stop)
        assert client.check_registration() > 0
        client.send_heartbeat()
    finally:
        executor.close()
        service.close()


@pytest.fixture
def cli(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CliRunner whose management commands reach ``api`` (no server process)."""

    class InProcess(AdminClient):
        def __init__(self, base_url: str, token: str, **_: Any) -> None:
            self._http = api

        def close(self) -> None:
            pass

    monkeypatch.setattr(fleet_cli, "AdminClient", InProcess)
    return CliRunner()


def test_report_counts_devices_by_the_agent_version_of_their_heartbeats(
        api: TestClient, cli: CliRunner, tmp_path: Path) -> None:
    assert api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://c/w"}
                    ).status_code == 201
    for name in ("turbine-1", "turbine-2"):
        _agent_heartbeat(api, name, tmp_path / name)
    older = register(api, "turbine-3", "wind")
    beat = older.post("SendHeartbeat", {"DeviceName": "turbine-3", "DeviceFleetName": "wind",
                                        "AgentVersion": OLDER})
    assert beat.status_code == 200, beat.text
    register(api, "turbine-4", "wind")  # registered, never heard from: no version to count

    done = cli.invoke(umbrella, ["report", "wind", "--token", "x"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert edgefleet.__version__ == agent_version()
    assert report["agent_versions"] == sorted(
        [{"version": OLDER, "agent_count": 1}, {"version": agent_version(), "agent_count": 2}],
        key=lambda counted: str(counted["version"]))
    assert report["registered_device_count"] == 4 and report["connected_device_count"] == 3
    described = api.get("/api/v1/devices/turbine-1").json()
    assert described["agent_version"] == agent_version()
