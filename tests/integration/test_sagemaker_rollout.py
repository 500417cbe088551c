"""A rollout driven end to end by the stock boto3 ``sagemaker`` client against a real
``edgefleet server`` process (SQLite and PostgreSQL), to a real ``edgefleet-agent``.

The calls are those of the SageMaker Edge Manager workshop: a device fleet, two devices, an
ONNX model compiled from S3 (SeaweedFS) and packaged, a deployment plan of two stages. The
first device's agent gets its credentials from the admin API, the first stage deploys the
model to it, and DescribeDevice, ListStageDevices and GetDeviceFleetReport say so; the second
stage (a device without an agent) is started and stopped. Everything is then deleted and each
Describe answers ResourceNotFound. A last test runs examples/sagemaker-api/ as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from support.agent_process import start_agent
from support.databases import fresh_database
from support.fleet_server import (
    Server,
    fast_agent_config,
    free_port,
    predict,
    root_certs,
    start_server,
    stop_server,
    version,
)
from support.models import affine_model, affine_reference
from support.polling import wait_for
from support.s3server import S3Server
from support.sagemaker import (
    CREDENTIALS_FILE,
    ROLE_ARN,
    compile_and_package,
    error_of,
    s3_env,
    sagemaker_client,
    upload,
)

pytestmark = pytest.mark.slow

#: ARNs of the default region and account (settings ``region`` and ``account_id``).
ARN = "arn:aws:sagemaker:us-east-1:000000000000"
EXAMPLE = Path(__file__).parents[2] / "examples" / "sagemaker-api" / "edge_workshop.py"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    store = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, s3: S3Server, tmp_path: Path) -> Iterator[Server]:
    with fresh_database(request.param, tmp_path) as database_url:
        running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log",
                               database_url=database_url, env=s3_env(s3))
        yield running
        stop_server(running)


@pytest.fixture()
def certs(server: Server, tmp_path: Path) -> Path:
    return root_certs(server, tmp_path / "certs")


def not_found(call: Any, **params: Any) -> None:
    with pytest.raises(ClientError) as caught:
        call(**params)
    code, status = error_of(caught.value)
    assert code == "ResourceNotFound", caught.value.response
    assert 400 <= status < 500


def stage_devices(client: Any, plan: str, stage: str) -> dict[str, Any]:
    summaries = client.list_stage_devices(EdgeDeploymentPlanName=plan, StageName=stage)[
        "DeviceDeploymentSummaries"]
    return {s["DeviceName"]: s for s in summaries}


def stage_status(client: Any, plan: str, stage: str) -> str:
    stages = client.describe_edge_deployment_plan(EdgeDeploymentPlanName=plan)["Stages"]
    status: str = {s["StageName"]: s for s in stages}[stage]["DeploymentStatus"]["StageStatus"]
    return status


def test_a_two_stage_rollout_with_the_stock_sagemaker_client(
        server: Server, s3: S3Server, certs: Path, tmp_path: Path) -> None:
    client = sagemaker_client(server)
    assert (server.data_dir / CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    client.create_device_fleet(DeviceFleetName="wind", RoleArn=ROLE_ARN,
                               Description="wind farm north",
                               OutputConfig={"S3OutputLocation": "s3://captures/wind"})
    fleet = client.describe_device_fleet(DeviceFleetName="wind")
    assert fleet["DeviceFleetArn"] == f"{ARN}:device-fleet/wind"
    assert fleet["OutputConfig"]["S3OutputLocation"] == "s3://captures/wind"
    assert isinstance(fleet["CreationTime"], dt.datetime)
    assert isinstance(fleet["LastModifiedTime"], dt.datetime)
    client.register_devices(DeviceFleetName="wind", Devices=[
        {"DeviceName": "turbine-a1", "Description": "ridge, first row"},
        {"DeviceName": "turbine-b2", "IotThingName": "turbine-b2-thing"}])
    device = client.describe_device(DeviceName="turbine-a1", DeviceFleetName="wind")
    assert device["DeviceArn"] == f"{ARN}:device-fleet/wind/device/turbine-a1"
    assert device["Description"] == "ridge, first row"
    assert isinstance(device["RegistrationTime"], dt.datetime)
    assert "LatestHeartbeat" not in device and not device.get("Models")

    model_uri = upload(s3, "models", "affine/affine.onnx", affine_model(tmp_path / "affine.onnx"))
    packaged = compile_and_package(client, compilation="affine-onnx", packaging="affine-v1",
                                   model_uri=model_uri, model_name="affine",
                                   model_version="1.0", output="s3://models/out")
    compiled = client.describe_compilation_job(CompilationJobName="affine-onnx")
    assert compiled["CompilationJobArn"] == f"{ARN}:compilation-job/affine-onnx"
    assert compiled["InputConfig"] == {"S3Uri": model_uri, "Framework": "ONNX"}
    assert isinstance(compiled["CreationTime"], dt.datetime)
    assert packaged["EdgePackagingJobArn"] == f"{ARN}:edge-packaging-job/affine-v1"
    assert (packaged["ModelName"], packaged["ModelVersion"]) == ("affine", "1.0")
    assert packaged["ModelArtifact"] and packaged["ModelSignature"]

    plan_arn = client.create_edge_deployment_plan(
        EdgeDeploymentPlanName="upgrade", DeviceFleetName="wind",
        ModelConfigs=[{"ModelHandle": "affine", "EdgePackagingJobName": "affine-v1"}],
        Stages=[{"StageName": "canary", "DeviceSelectionConfig": {
            "DeviceSubsetType": "SELECTION", "DeviceNames": ["turbine-a1"]}}],
    )["EdgeDeploymentPlanArn"]
    assert plan_arn == f"{ARN}:edge-deployment/upgrade"
    client.create_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", Stages=[
        {"StageName": "rest", "DeviceSelectionConfig": {
            "DeviceSubsetType": "NAMECONTAINS", "DeviceNameContains": "turbine-b"}}])
    plan = client.describe_edge_deployment_plan(EdgeDeploymentPlanName="upgrade")
    assert [s["StageName"] for s in plan["Stages"]] == ["canary", "rest"]
    assert {s["DeploymentStatus"]["StageStatus"] for s in plan["Stages"]} == {"READYTODEPLOY"}

    issued = server.admin.issue_credentials("turbine-a1", root_certs_path=str(certs))
    assert issued["agent_config"]["sagemaker_edge_core_device_name"] == "turbine-a1"
    workdir = tmp_path / "turbine-a1"
    agent = start_agent(fast_agent_config(issued["agent_config"], workdir), workdir)
    try:
        client.start_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", StageName="canary")
        def finished() -> dict[str, Any]:  # empty (falsy) until the device is done
            devices = stage_devices(client, "upgrade", "canary")
            done = devices.get("turbine-a1", {}).get("DeviceDeploymentStatus") in (
                "DEPLOYED", "FAILED")
            return devices if done else {}
        canary = wait_for(finished, 60, "the canary to deploy")
        summary = canary["turbine-a1"]
        assert set(canary) == {"turbine-a1"}
        assert summary["DeviceDeploymentStatus"] == "DEPLOYED", summary
        assert summary["EdgeDeploymentPlanArn"] == plan_arn
        assert summary["DeviceArn"] == f"{ARN}:device-fleet/wind/device/turbine-a1"
        assert isinstance(summary["DeploymentStartTime"], dt.datetime)
        assert version(agent) == "1.0"
        np.testing.assert_array_equal(predict(agent), affine_reference(np.ones((1, 4)))[0])

        def described() -> dict[str, Any]:
            answer: dict[str, Any] = client.describe_device(
                DeviceName="turbine-a1", DeviceFleetName="wind")
            models = [(m["ModelName"], m["ModelVersion"]) for m in answer.get("Models", [])]
            return answer if models == [("affine", "1.0")] else {}
        device = wait_for(described, 20, "DescribeDevice to show affine 1.0")
        assert isinstance(device["LatestHeartbeat"], dt.datetime)
        age = dt.datetime.now(dt.UTC) - device["LatestHeartbeat"]
        assert dt.timedelta(seconds=-5) < age < dt.timedelta(seconds=60)
        assert device["AgentVersion"]

        def reported() -> dict[str, Any]:
            report: dict[str, Any] = client.get_device_fleet_report(DeviceFleetName="wind")
            stats = [(s["ModelName"], s["ModelVersion"], s["ConnectedDeviceCount"],
                      s["ActiveDeviceCount"]) for s in report.get("ModelStats", [])]
            return report if stats == [("affine", "1.0", 1, 1)] else {}
        report = wait_for(reported, 20, "the fleet report to show affine 1.0 on one device")
        assert report["DeviceFleetArn"] == f"{ARN}:device-fleet/wind"
        assert report["DeviceStats"] == {"ConnectedDeviceCount": 1, "RegisteredDeviceCount": 2}
        assert report["AgentVersions"] == [{"Version": device["AgentVersion"], "AgentCount": 1}]
        assert isinstance(report["ReportGenerated"], dt.datetime)
        (model_stats,) = report["ModelStats"]
        assert model_stats["OfflineDeviceCount"] == 0
        assert stage_status(client, "upgrade", "canary") == "DEPLOYED"
        plan = client.describe_edge_deployment_plan(EdgeDeploymentPlanName="upgrade")
        assert plan["EdgeDeploymentSuccess"] == 1 and plan["EdgeDeploymentFailed"] == 0

        # turbine-b2 has no agent: its stage starts, waits on it, and is stopped.
        client.start_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", StageName="rest")
        rest = stage_devices(client, "upgrade", "rest")
        assert set(rest) == {"turbine-b2"}
        assert rest["turbine-b2"]["DeviceDeploymentStatus"] != "DEPLOYED"
        client.stop_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", StageName="rest")
        wait_for(lambda: stage_status(client, "upgrade", "rest") == "STOPPED", 20,
                 "the second stage to stop")
        # A started stage stays active, also once deployed, until it is stopped; stopping it
        # leaves the deployed model where it is.
        client.stop_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", StageName="canary")
        wait_for(lambda: stage_status(client, "upgrade", "canary") == "STOPPED", 20,
                 "the first stage to stop")
        assert version(agent) == "1.0"
    finally:
        log = agent.log()
        code = agent.stop()
    assert code == 0, log

    with pytest.raises(ClientError) as caught:  # a fleet with devices is in use
        client.delete_device_fleet(DeviceFleetName="wind")
    assert error_of(caught.value)[0] == "ResourceInUse", caught.value.response
    client.delete_edge_deployment_stage(EdgeDeploymentPlanName="upgrade", StageName="rest")
    plan = client.describe_edge_deployment_plan(EdgeDeploymentPlanName="upgrade")
    assert [s["StageName"] for s in plan["Stages"]] == ["canary"]
    client.delete_edge_deployment_plan(EdgeDeploymentPlanName="upgrade")
    not_found(client.describe_edge_deployment_plan, EdgeDeploymentPlanName="upgrade")
    client.deregister_devices(DeviceFleetName="wind", DeviceNames=["turbine-a1", "turbine-b2"])
    for name in ("turbine-a1", "turbine-b2"):
        not_found(client.describe_device, DeviceName=name, DeviceFleetName="wind")
    assert client.list_devices(DeviceFleetName="wind")["DeviceSummaries"] == []
    client.delete_device_fleet(DeviceFleetName="wind")
    not_found(client.describe_device_fleet, DeviceFleetName="wind")
    not_found(client.get_device_fleet_report, DeviceFleetName="wind")
    secret = issued["agent_config"]["edgefleet_control_secret_access_key"]
    assert secret not in log and secret not in server.log.read_text()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_the_example_script_runs_unchanged_against_the_server(
        server: Server, s3: S3Server, certs: Path, tmp_path: Path) -> None:
    """examples/sagemaker-api/ with only its endpoint and credentials changed; the device it
    registers gets an agent once it is registered, and the stage deploys to it."""
    model_uri = upload(s3, "workshop", "models/affine.onnx",
                       affine_model(tmp_path / "affine.onnx"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / CREDENTIALS_FILE),
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull})
    command = [sys.executable, str(EXAMPLE), "--endpoint-url", server.url,
               "--model-s3-uri", model_uri, "--output-s3-uri", "s3://workshop/out",
               "--role-arn", ROLE_ARN, "--fleet", "workshop", "--device", "jetson-1",
               "--wait-seconds", "60"]
    output = tmp_path / "example.out"
    with output.open("wb") as out:
        script = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = sagemaker_client(server)

    def registered() -> bool:
        try:
            client.describe_device(DeviceName="jetson-1", DeviceFleetName="workshop")
            return True
        except ClientError:
            assert script.poll() is None, output.read_text()
            return False
    workdir = tmp_path / "jetson-1"
    try:
        wait_for(registered, 60, "the script to register its device", interval=0.2)
        issued = server.admin.issue_credentials("jetson-1", root_certs_path=str(certs))
        agent = start_agent(fast_agent_config(issued["agent_config"], workdir), workdir)
        try:
            assert script.wait(timeout=120) == 0, output.read_text()
            assert version(agent) == "1.0"
        finally:
            agent.stop()
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    text = output.read_text()
    assert "jetson-1: DEPLOYED" in text, text
    assert "affine 1.0 on 1 connected device" in text, text
    # The script cleans up after itself.
    assert client.list_device_fleets(NameContains="workshop")["DeviceFleetSummaries"] == []
    assert client.list_edge_deployment_plans()["EdgeDeploymentPlanSummaries"] == []
