"""A staged rollout through a real ``edgefleet server`` process to real ``edgefleet-agent``
processes, with the agents' own boto3 ``sagemaker-edge`` client.

Three devices get version 1.0 of a model, then a plan upgrades them to 2.0 in two stages. The
stored package is damaged between the stages (as a broken artifact would be): the second
stage's devices fail the SHA-1 check and keep serving 1.0, the canary keeps 2.0, and both the
agents (ListModels, DescribeModel, Predict) and the server (stage devices, fleet report) say so.
A second test kills an agent with SIGKILL inside the health window and restarts it; a third
stops the control plane and shows the agent serving and retrying until it is back.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.agent_process import start_agent
from support.fleet_server import (
    FLEET,
    Server,
    free_port,
    package_job,
    predict,
    register,
    root_certs,
    run_stage,
    stage_statuses,
    start_server,
    stop_server,
    version,
)
from support.models import affine_reference
from support.packages import Packages
from support.polling import wait_for

from edgefleet.proto import agent_pb2 as pb

pytestmark = pytest.mark.slow

@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log")
    yield running
    stop_server(running)


@pytest.fixture()
def certs(server: Server, tmp_path: Path) -> Path:
    return root_certs(server, tmp_path / "certs")


def test_two_stage_rollout_with_a_broken_second_stage(
        server: Server, certs: Path, packages: Packages, tmp_path: Path) -> None:
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    names = ["turbine-1", "turbine-2", "turbine-3"]
    configs = {n: register(server, n, tmp_path / n, certs) for n in names}
    agents = {n: start_agent(configs[n], tmp_path / n) for n in names}
    try:
        package_job(server, "affine-v1", "1.0", packages, "affine.onnx")
        v2 = package_job(server, "affine-v2", "2.0", packages, "affine2.onnx")
        server.admin.create_plan({"name": "base", "fleet": FLEET, "models": [
            {"model_handle": "affine", "packaging_job": "affine-v1"}], "stages": [
            {"name": "all", "selection": {"type": "SELECTION", "device_names": names}}]})
        assert {d["status"] for d in run_stage(server, "base", "all", 3).values()} == {
            "DEPLOYED"}
        assert all(version(a) == "1.0" for a in agents.values())

        server.admin.create_plan({"name": "upgrade", "fleet": FLEET, "models": [
            {"model_handle": "affine", "packaging_job": "affine-v2"}], "stages": [
            {"name": "canary", "selection": {"type": "SELECTION", "device_names": names[:1]}},
            {"name": "rest", "selection": {"type": "SELECTION", "device_names": names[1:]}}]})
        canary = run_stage(server, "upgrade", "canary", 1)
        assert canary["turbine-1"]["status"] == "DEPLOYED", canary
        # The stored artifact is damaged before the second stage starts.
        stored = server.data_dir / "objects" / v2["artifact"]
        stored.write_bytes(stored.read_bytes()[:-100] + b"\0" * 100)
        rest = run_stage(server, "upgrade", "rest", 2)
        for name in names[1:]:
            assert rest[name]["status"] == "FAILED", rest
            assert "checksum mismatch" in rest[name]["status_message"]
            assert "the previous versions serve" in rest[name]["status_message"]
            (model,) = rest[name]["models"]
            assert model["Status"] == "FAIL" and model["State"] == "DEPLOY"

        assert version(agents["turbine-1"]) == "2.0"
        np.testing.assert_array_equal(predict(agents["turbine-1"]),
                                      affine_reference(np.ones((1, 4)), 3.0)[0])
        for name in names[1:]:
            assert version(agents[name]) == "1.0"
            np.testing.assert_array_equal(predict(agents[name]),
                                          affine_reference(np.ones((1, 4)))[0])

        def reported() -> bool:  # connected, and active: each device served a prediction
            stats = server.admin.report(FLEET)["model_stats"]
            return {(s["model_name"], s["model_version"]): (
                s["connected_device_count"], s["active_device_count"]) for s in stats} == {
                ("affine", "1.0"): (2, 2), ("affine", "2.0"): (1, 1)}
        wait_for(reported, 10, "the fleet report to show 1 x 2.0 and 2 x 1.0")
        described = server.admin.describe_device("turbine-2")
        metrics = {m["MetricName"] for m in described["agent_metrics"]}
        assert {"cpu-percent", "rss-bytes", "uptime-seconds", "restart-count"} <= metrics
    finally:
        logs = {n: a.log() for n, a in agents.items()}
        codes = {n: a.stop() for n, a in agents.items()}
    assert codes == dict.fromkeys(names, 0), logs
    for name in names:
        secret = configs[name]["edgefleet_control_secret_access_key"]
        assert secret not in logs[name] and secret not in server.log.read_text()


def test_agent_killed_in_the_health_window_restarts_rolled_back(
        server: Server, certs: Path, packages: Packages, tmp_path: Path) -> None:
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    workdir = tmp_path / "turbine-9"
    config = register(server, "turbine-9", workdir, certs)
    package_job(server, "affine-v1", "1.0", packages, "affine.onnx")
    package_job(server, "affine-v2", "2.0", packages, "affine2.onnx")
    for plan, job in (("base", "affine-v1"), ("upgrade", "affine-v2")):
        server.admin.create_plan({"name": plan, "fleet": FLEET, "models": [
            {"model_handle": "affine", "packaging_job": job}], "stages": [
            {"name": "all", "selection": {"type": "SELECTION", "device_names": ["turbine-9"]}}]})
    agent = start_agent(config, workdir)
    try:
        run_stage(server, "base", "all", 1)
        agent.stop(signal.SIGTERM)
        # Restart with a long health window, and kill the agent inside it.
        agent = start_agent({**config, "edgefleet_deployment_health_seconds": 60}, workdir)
        assert version(agent) == "1.0"  # reloaded at start, before any control-plane call
        server.admin.stage_action("upgrade", "all", "start")
        wait_for(lambda: version(agent) == "2.0", 30, "version 2.0 to be swapped in")
        agent.stop(signal.SIGKILL)
        agent = start_agent(config, workdir, force=True)
        assert version(agent) == "1.0"
        # The killed process's extracted folders are gone; only 1.0's current one is left.
        assert len(list((workdir / "data" / "packages").iterdir())) == 1
        status = wait_for(lambda: (lambda d: d if d["status"] == "FAILED" else None)(
            stage_statuses(server, "upgrade", "all")["turbine-9"]), 30, "the failure report")
        assert "stopped during the deployment" in status["status_message"]
        restarts = wait_for(lambda: {m["MetricName"]: m["Value"] for m in server.admin
                                     .describe_device("turbine-9")["agent_metrics"]}.get(
                                         "restart-count") == 2, 10, "restart-count 2")
        assert restarts
    finally:
        log = agent.log()
        code = agent.stop()
    assert code == 0, log
    assert os.path.exists(workdir / "data" / "deployments" / "state.json")


def test_control_plane_outage_never_stops_serving(
        server: Server, certs: Path, packages: Packages, tmp_path: Path) -> None:
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    for pem in packages.root_certs.iterdir():  # also trust the test packages' signer
        (certs / f"test-{pem.name}").write_bytes(pem.read_bytes())
    workdir = tmp_path / "turbine-5"
    agent = start_agent(register(server, "turbine-5", workdir, certs), workdir)
    try:
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))

        def heartbeat_after(moment: float) -> bool:
            latest = server.admin.describe_device("turbine-5")["latest_heartbeat"]
            return latest is not None and latest > moment
        wait_for(lambda: heartbeat_after(0), 10, "a first heartbeat")
        stop_server(server)
        outage = time.monotonic()
        while time.monotonic() - outage < 3:  # the agent serves throughout the outage
            np.testing.assert_array_equal(predict(agent), affine_reference(np.ones((1, 4)))[0])
        assert "cannot reach the control plane" in agent.log()
        assert "retrying in" in agent.log()
        back = time.time()
        restarted = start_server(server.data_dir, int(server.url.rsplit(":", 1)[1]), server.log)
        server.admin, server.process = restarted.admin, restarted.process
        wait_for(lambda: heartbeat_after(back), 20, "heartbeats after the outage")
    finally:
        log = agent.log()
        code = agent.stop()
    assert code == 0, log
