"""What a new user meets following docs/control-plane.md: generated agent configs, stage
hints, empty stages, ``device list`` and ``edgefleet server --help`` (the walkthrough's model is
checked against a real demo run in tests/integration/test_windfarm_demo.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import EdgeCaller, register
from sqlalchemy import Engine
from typer.testing import CliRunner

from edgefleet.agent.config import AgentConfig
from edgefleet.cli import app as umbrella
from edgefleet.fleet import cli as fleet_cli
from edgefleet.fleet.app import create_app
from edgefleet.fleet.client import AdminClient
from edgefleet.fleet.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]


def _fleet(api: TestClient, name: str = "wind") -> None:
    answer = api.post("/api/v1/fleets", json={"name": name, "output_location": "s3://b/p"})
    assert answer.status_code == 201, answer.text


def _plan(api: TestClient, onnx_model: Path, stages: list[dict[str, Any]]) -> None:
    with onnx_model.open("rb") as model:
        job = api.post("/api/v1/packaging-jobs", files={"model": model}, data={
            "name": "relu-1", "model_name": "relu", "model_version": "1.0"})
    assert job.status_code == 201, job.text
    plan = api.post("/api/v1/deployment-plans", json={
        "name": "p", "fleet": "wind",
        "models": [{"model_handle": "relu", "packaging_job": "relu-1"}], "stages": stages})
    assert plan.status_code == 201, plan.text


# -- 1. poll interval and MQTT in the generated agent config --------------------------------------

def test_agent_config_polls_every_30_seconds_without_mqtt(api: TestClient) -> None:
    _fleet(api)
    config = api.post("/api/v1/devices", json={"name": "t1", "fleet": "wind"}).json()[
        "agent_config"]
    assert config["edgefleet_deployment_poll_seconds"] == 30.0
    assert "edgefleet_mqtt_url" not in config and "edgefleet_mqtt_topic_prefix" not in config
    parsed = AgentConfig.from_mapping(config)
    assert parsed.edgefleet_deployment_poll_seconds == 30.0


def test_agent_config_names_the_servers_mqtt_broker(settings: ServerSettings,
                                                     engine: Engine) -> None:
    with_mqtt = ServerSettings(data_dir=settings.data_dir, database_url=settings.database_url,
                               mqtt_url="mqtt://broker.example:1884",
                               mqtt_topic_prefix="farm/north", agent_deployment_poll_seconds=12)
    token = settings.resolved_admin_token_file().read_text().strip()
    with TestClient(create_app(with_mqtt)) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        _fleet(api)
        config = api.post("/api/v1/devices", json={"name": "t1", "fleet": "wind"}).json()[
            "agent_config"]
    assert config["edgefleet_mqtt_url"] == "mqtt://broker.example:1884"
    assert config["edgefleet_mqtt_topic_prefix"] == "farm/north"
    assert config["edgefleet_deployment_poll_seconds"] == 12
    parsed = AgentConfig.from_mapping(config)
    assert parsed.edgefleet_mqtt_url == "mqtt://broker.example:1884"


# -- 2. stage devices says when a device has been silent since the stage started ------------------

def test_stage_devices_hint_at_silent_devices(api: TestClient, onnx_model: Path) -> None:
    _fleet(api)
    callers = {name: register(api, name, "wind") for name in ("t1", "t2", "t3")}
    _plan(api, onnx_model, [{"name": "all", "selection": {"type": "NAMECONTAINS",
                                                          "name_contains": "t"}}])
    assert api.post("/api/v1/deployment-plans/p/stages/all/start").status_code == 200
    time.sleep(0.01)  # heartbeats below come strictly after the start
    ref = {"DeviceFleetName": "wind"}
    # t2 fetches the deployment and sends a heartbeat; t3 fetches it and stays silent.
    for name in ("t2", "t3"):
        got = callers[name].post("GetDeployments", {**ref, "DeviceName": name})
        assert got.status_code == 200, got.text
    beat = callers["t2"].post("SendHeartbeat", {**ref, "DeviceName": "t2",
                                                "AgentVersion": "0.1.0"})
    assert beat.status_code == 200, beat.text

    devices = {d["device_name"]: d for d in api.get(
        "/api/v1/deployment-plans/p/stages/all/devices").json()}
    started = api.get("/api/v1/deployment-plans/p").json()["stages"][0]["started_at"]
    assert devices["t1"]["status"] == "READYTODEPLOY"
    assert devices["t1"]["latest_heartbeat"] is None
    hint = devices["t1"]["hint"]
    assert "has not fetched the deployment since the stage started at" in hint
    assert "no heartbeat since" in hint and "poll interval" in hint
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", hint)
    assert devices["t2"]["hint"] is None and devices["t2"]["latest_heartbeat"] >= started
    assert devices["t3"]["status"] == "INPROGRESS"
    assert "sent no heartbeat since the stage started" in devices["t3"]["hint"]


# -- 7. a stage that selects no device does not start ---------------------------------------------

def test_starting_a_stage_that_selects_no_device_is_refused(api: TestClient,
                                                            onnx_model: Path) -> None:
    _fleet(api)
    register(api, "turbine-1", "wind")
    _plan(api, onnx_model, [{"name": "north", "selection": {"type": "NAMECONTAINS",
                                                            "name_contains": "north"}}])
    refused = api.post("/api/v1/deployment-plans/p/stages/north/start")
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "FailedPrecondition"
    assert "selects no device" in body["message"]
    assert "NAMECONTAINS 'north'" in body["message"]
    assert "edgefleet plan add-stage" in body["message"]
    stage = api.get("/api/v1/deployment-plans/p").json()["stages"][0]
    assert stage["status"] == "READYTODEPLOY" and stage["started_at"] is None


# -- 8. device list does not claim empty what describe fills --------------------------------------

def test_device_list_leaves_out_models_and_deployments(api: TestClient,
                                                       onnx_model: Path) -> None:
    _fleet(api)
    caller: EdgeCaller = register(api, "t1", "wind")
    _plan(api, onnx_model, [{"name": "s1", "selection": {"type": "SELECTION",
                                                         "device_names": ["t1"]}}])
    api.post("/api/v1/deployment-plans/p/stages/s1/start")
    caller.post("SendHeartbeat", {"DeviceName": "t1", "DeviceFleetName": "wind",
                                  "AgentVersion": "0.1.0",
                                  "Models": [{"ModelName": "relu", "ModelVersion": "1.0"}]})
    described = api.get("/api/v1/devices/t1").json()
    assert described["models"][0]["model_name"] == "relu"
    assert described["deployments"][0]["stage"] == "s1"
    (listed,) = api.get("/api/v1/devices").json()["devices"]
    assert "models" not in listed and "deployments" not in listed
    assert listed["agent_version"] == "0.1.0"
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "models" not in schemas["DeviceSummary"]["properties"]
    assert "models" in schemas["DeviceOut"]["properties"]


# -- 3 and 4. the CLI writes a private config with its own data folder ----------------------------

@pytest.fixture
def cli(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CliRunner whose management commands reach ``api`` (no server process)."""

    class InProcess(AdminClient):
        def __init__(self, base_url: str, token: str, **_: Any) -> None:
            self._http = api

        def close(self) -> None:
            pass

    monkeypatch.setattr(fleet_cli, "AdminClient", InProcess)
    _fleet(api)
    yield CliRunner()


def _register(runner: CliRunner, name: str, config: Path) -> Any:
    result = runner.invoke(umbrella, ["device", "register", name, "--fleet", "wind",
                                      "--agent-config", str(config), "--token", "x"])
    assert result.exit_code == 0, result.output
    return result


def test_cli_config_has_a_private_per_device_data_folder(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "devices"
    roots = set()
    for name in ("t1", "t2"):
        _register(cli, name, folder / f"{name}.json")
        path = folder / f"{name}.json"
        assert path.stat().st_mode & 0o777 == 0o600
        config = json.loads(path.read_text())
        root = config["sagemaker_edge_local_data_root_path"]
        assert root == str(folder.resolve() / f"{name}-data") and Path(root).is_absolute()
        assert config["edgefleet_deployment_poll_seconds"] == 30.0
        AgentConfig.from_mapping(config)
        roots.add(root)
    assert len(roots) == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_cli_warns_when_the_config_could_be_committed(cli: CliRunner, tmp_path: Path) -> None:
    outside = _register(cli, "t0", tmp_path / "outside" / "t0.json")
    assert "warning" not in outside.stderr
    work = tmp_path / "work"
    work.mkdir()
    # A throwaway repository inside the test's temporary folder.
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    exposed = _register(cli, "t1", work / "t1.json")
    assert "inside a git work tree and not ignored" in exposed.stderr
    assert ".gitignore" in exposed.stderr
    (work / ".gitignore").write_text("devices/\n")
    ignored = _register(cli, "t2", work / "devices" / "t2.json")
    assert "warning" not in ignored.stderr


# -- 5. edgefleet server --help -------------------------------------------------------------------

@pytest.mark.parametrize("command", [umbrella, None])
def test_server_help_shows_defaults_and_whole_option_names(command: Any) -> None:
    if command is None:  # python -m edgefleet.fleet
        import typer

        command = typer.Typer()
        fleet_cli.add_commands(command)
    result = CliRunner().invoke(command, ["server", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    for default in ("<data-dir>/objects", "<data-dir>/server.key", "<data-dir>/admin-token"):
        assert default in text
    for option in ("--connected-window-seconds", "--admin-token-file", "--mqtt-topic-prefix",
                   "--access-log / --no-access-log"):
        assert option in text
    assert "s3://bucket/prefix?endpoint=URL&region=R" in text
    assert "…" not in text and "<bool>" not in text
