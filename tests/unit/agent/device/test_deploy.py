"""Deployments on the device with the in-memory control plane: real signed packages, real ONNX
Runtime, the real state file; swap, health gate, rollback, DO_NOTHING, restart recovery."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from support.models import affine_model, affine_reference

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.control import ControlClient
from edgefleet.agent.device.deploy import DeploymentExecutor
from edgefleet.agent.device.metrics import HeartbeatMetrics
from edgefleet.agent.device.transport import MemoryTransport
from edgefleet.agent.serving.service import AgentService
from edgefleet.errors import EdgefleetError, NotFound
from edgefleet.package import build_package, init_keys
from edgefleet.wire.edge import Deployment


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def trap_model(path: Path) -> Path:
    """x float32 [-1, 4] -> y = Gather(x, int64(x), axis=1): answers zeros (the probe), fails
    at run time for any value outside 0..3 (real traffic)."""
    return _save(helper.make_graph(
        [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
         helper.make_node("Gather", ["x", "i"], ["y"], axis=1)],
        "trap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), path)


def mute_model(path: Path) -> Path:
    """x float32 [-1, 4] -> Reshape to [3]: loads, but fails every prediction (the probe too)."""
    return _save(helper.make_graph(
        [helper.make_node("Constant", [], ["shape"], value=helper.make_tensor(
            "shape", TensorProto.INT64, [1], [3])),
         helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "mute", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), path)


@dataclass(frozen=True)
class Packages:
    root_certs: Path
    v1: bytes
    v2: bytes
    trap: bytes
    mute: bytes


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    base = tmp_path_factory.mktemp("deploy")
    keys = init_keys(base / "keys")

    def build(model: Path, version: str) -> bytes:
        return build_package(model, name="affine", version=version, key_path=keys.signing_key,
                             cert_path=keys.signing_cert, out_dir=base / version).read_bytes()

    return Packages(
        root_certs=keys.root_certs_dir,
        v1=build(affine_model(base / "v1.onnx"), "1.0"),
        v2=build(affine_model(base / "v2.onnx", scale=3.0), "2.0"),
        trap=build(trap_model(base / "trap.onnx"), "3.0"),
        mute=build(mute_model(base / "mute.onnx"), "4.0"))


class Device:
    """An agent's service, executor and control client on one data root (no gRPC, no
    threads: tests drive each step)."""

    def __init__(self, root: Path, packages: Packages, transport: MemoryTransport,
                 **keys: Any) -> None:
        self.config = AgentConfig.from_mapping({
            "sagemaker_edge_core_device_name": "turbine-1",
            "sagemaker_edge_core_device_fleet_name": "wind",
            "sagemaker_edge_core_root_certs_path": str(packages.root_certs),
            "sagemaker_edge_local_data_root_path": str(root),
            "sagemaker_edge_model_deployment_max_retry": 2,
            "edgefleet_control_backoff_seconds": 0.01,
            "edgefleet_deployment_health_seconds": 0.3, **keys})
        self.service = AgentService(self.config)
        self.stop = threading.Event()
        self.executor = DeploymentExecutor(self.service, self.config,
                                           download=transport.download, stop=self.stop)
        self.metrics = HeartbeatMetrics(self.service.registry, self.executor.state)
        self.client = ControlClient(self.config, transport, self.executor, self.metrics,
                                    self.stop)
        self.executor.restore()

    def version(self, alias: str = "affine") -> str:
        return self.service.describe_model(alias).version

    def close(self) -> None:
        self.stop.set()
        self.executor.close()
        self.service.close()


@pytest.fixture()
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture()
def device(tmp_path: Path, packages: Packages, transport: MemoryTransport) -> Iterator[Device]:
    agent = Device(tmp_path / "data", packages, transport)
    yield agent
    agent.close()


def offer(transport: MemoryTransport, name: str, package: bytes, *,
          policy: str = "ROLLBACK_ON_FAILURE", checksum: str | None = None,
          handle: str = "affine") -> None:
    url = f"http://fleet.test/downloads/packages/{name}/affine.tar.gz"
    sha1 = transport.add_package(url, package)
    transport.deployments.append({
        "DeploymentName": name, "Type": "Model", "FailureHandlingPolicy": policy,
        "Definitions": [{"ModelHandle": handle, "S3Url": url, "State": "DEPLOY",
                         "Checksum": {"Type": "SHA1", "Sum": checksum or sha1}}]})


def deploy(device: Device, transport: MemoryTransport) -> dict[str, Any]:
    """Poll, apply, report; returns the DeploymentResult the control plane received."""
    assert device.client.poll_deployments() == 1
    device.client.send_heartbeat()
    return transport.results[-1]


def predict(device: Device, value: float = 1.0) -> np.ndarray:
    x = np.full((1, 4), value, np.float32)
    return device.service.predict_arrays("affine", {"x": x})["y"]


def test_deploy_then_upgrade_swaps_and_reports_success(
        device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "rollout-1", packages.v1)
    first = deploy(device, transport)
    assert first["DeploymentStatus"] == "SUCCESS", first
    assert device.version() == "1.0"
    offer(transport, "rollout-2", packages.v2)
    result = deploy(device, transport)
    assert result["DeploymentStatus"] == "SUCCESS"
    assert result["DeploymentModels"] == [{
        "ModelHandle": "affine", "ModelName": "affine", "ModelVersion": "2.0",
        "DesiredState": "DEPLOY", "State": "DEPLOY", "Status": "SUCCESS"}]
    assert result["DeploymentStartTime"] <= result["DeploymentEndTime"]
    assert device.version() == "2.0"
    np.testing.assert_array_equal(predict(device), affine_reference(np.ones((1, 4)), 3.0)[0])
    # Reported and acknowledged: the server stops handing it out, the agent stops sending it.
    assert transport.deployments == []
    assert device.executor.state.pending_result() is None
    state = json.loads((device.config.sagemaker_edge_local_data_root_path / "deployments" /
                        "state.json").read_text())
    assert state["deployed"]["affine"]["version"] == "2.0"
    packages_dir = device.config.sagemaker_edge_local_data_root_path / "deployments" / "packages"
    assert len(list(packages_dir.iterdir())) == 1  # version 1.0's package is gone
    # Handed out again before the result arrived: not applied twice.
    transport.deployments.append({"DeploymentName": "rollout-2", "Definitions": [
        {"ModelHandle": "affine", "S3Url": "http://x/y.tar.gz", "State": "DEPLOY"}]})
    assert device.client.poll_deployments() == 0


def test_checksum_mismatch_fails_after_retries_and_keeps_serving(
        device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "bad-sum", packages.v2, checksum="0" * 40)
    result = deploy(device, transport)
    assert result["DeploymentStatus"] == "FAIL"
    (model,) = result["DeploymentModels"]
    assert model["Status"] == "FAIL" and model["State"] == "DEPLOY"
    assert "checksum mismatch" in model["StatusReason"]
    assert "download failed 3 time(s)" in model["StatusReason"]  # 1 + max_retry
    assert "before any model changed" in result["DeploymentStatusMessage"]
    assert transport.calls["Download"] == 1 + 3
    assert device.version() == "1.0"
    np.testing.assert_array_equal(predict(device), affine_reference(np.ones((1, 4)))[0])


def test_health_gate_errors_roll_back(device: Device, transport: MemoryTransport,
                                      packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "trap", packages.trap)
    done = threading.Event()

    def traffic() -> None:  # a client whose inputs the new version cannot handle
        while not done.is_set():
            with contextlib.suppress(EdgefleetError):
                predict(device, 7.0)
            time.sleep(0.01)
    client = threading.Thread(target=traffic)
    client.start()
    try:
        result = deploy(device, transport)
    finally:
        done.set()
        client.join()
    assert result["DeploymentStatus"] == "FAIL"
    (model,) = result["DeploymentModels"]
    assert model["Status"] == "FAIL" and model["ModelVersion"] == "3.0"
    assert "prediction error(s) within the health window" in model["StatusReason"]
    assert "RollbackFailureReason" not in model
    assert "rolled back to the previous versions" in result["DeploymentStatusMessage"]
    assert device.version() == "1.0"
    assert device.executor.state.deployed()["affine"]["version"] == "1.0"
    np.testing.assert_array_equal(predict(device, 7.0), affine_reference(np.full((1, 4), 7.0))[0])


def test_do_nothing_leaves_the_failed_version(device: Device, transport: MemoryTransport,
                                              packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "trap", packages.trap, policy="DO_NOTHING")
    # Errors already counted on the new model before the gate looks: inject one right after
    # the swap through the registry's load hook.
    device.service.registry.on_load.append(lambda m: m.stats.record(0.001, ok=False))
    result = deploy(device, transport)
    assert result["DeploymentStatus"] == "FAIL"
    assert "left as is (DO_NOTHING)" in result["DeploymentStatusMessage"]
    assert device.version() == "3.0"
    assert device.executor.state.deployed()["affine"]["version"] == "3.0"


def test_a_model_failing_the_probe_never_serves(device: Device, transport: MemoryTransport,
                                                packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "mute", packages.mute, policy="DO_NOTHING")
    result = deploy(device, transport)
    (model,) = result["DeploymentModels"]
    assert model["Status"] == "FAIL"
    assert "did not answer a probe prediction" in model["StatusReason"]
    assert device.version() == "1.0"
    extracted = device.config.sagemaker_edge_local_data_root_path / "packages"
    assert len(list(extracted.iterdir())) == 1  # the refused model's folder was removed


def test_first_deployment_failing_is_rolled_back_to_nothing(
        device: Device, transport: MemoryTransport, packages: Packages) -> None:
    device.service.registry.on_load.append(lambda m: m.stats.record(0.001, ok=False))
    offer(transport, "trap", packages.trap)
    result = deploy(device, transport)
    assert result["DeploymentModels"][0]["State"] == "UNDEPLOY"
    with pytest.raises(NotFound):
        device.version()


def test_undeploy_unloads_and_is_not_reloaded(tmp_path: Path, device: Device,
                                              transport: MemoryTransport,
                                              packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    transport.deployments.append({"DeploymentName": "remove", "Definitions": [
        {"ModelHandle": "affine", "State": "UNDEPLOY"}]})
    result = deploy(device, transport)
    assert result["DeploymentModels"][0] == {
        "ModelHandle": "affine", "DesiredState": "UNDEPLOY", "State": "UNDEPLOY",
        "Status": "SUCCESS"}
    assert device.executor.state.deployed() == {}
    device.close()
    again = Device(tmp_path / "data", packages, transport)
    try:
        assert again.service.list_models() == []
    finally:
        again.close()


def test_restart_reloads_deployed_models_without_the_control_plane(
        tmp_path: Path, device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "good", packages.v2)
    deploy(device, transport)
    device.close()
    transport.down = True
    again = Device(tmp_path / "data", packages, transport)
    try:
        assert again.version() == "2.0"
        metrics = {m["MetricName"]: m["Value"] for m in again.metrics.collect().agent_metrics}
        assert metrics["restart-count"] == 1
    finally:
        again.close()


def test_restart_mid_deployment_ends_rolled_back_and_reported(
        tmp_path: Path, packages: Packages, transport: MemoryTransport) -> None:
    offer(transport, "good", packages.v1)
    installer = Device(tmp_path / "data", packages, transport)
    installer.executor.apply(Deployment.from_wire(transport.deployments.pop()))
    installer.close()
    first = Device(tmp_path / "data", packages, transport,
                   edgefleet_deployment_health_seconds=30)
    offer(transport, "upgrade", packages.v2)
    applying = threading.Thread(
        target=first.executor.apply, args=(Deployment.from_wire(transport.deployments[-1]),))
    applying.start()
    deadline = time.monotonic() + 20
    while first.version() != "2.0":  # swapped in, health window running
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.close()  # the agent stops (or dies) in the health window
    applying.join()

    second = Device(tmp_path / "data", packages, transport)
    try:
        assert second.version() == "1.0"  # fully rolled back
        second.client.send_heartbeat()  # "good" was never reported; it goes first
        second.client.send_heartbeat()
        result = transport.results[-1]
        assert result["DeploymentName"] == "upgrade"
        assert result["DeploymentStatus"] == "FAIL"
        assert "stopped during the deployment" in result["DeploymentModels"][0]["StatusReason"]
        assert transport.deployments == []
        assert second.client.poll_deployments() == 0
    finally:
        second.close()


def test_client_unload_of_a_deployed_model_sticks_across_restart(
        tmp_path: Path, device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    device.service.unload_model("affine")
    assert device.executor.state.deployed() == {}
    device.close()
    again = Device(tmp_path / "data", packages, transport)
    try:
        assert again.service.list_models() == []
    finally:
        again.close()


def test_client_unload_while_a_deployment_runs_is_remembered(
        device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    busy = threading.Event()
    release = threading.Event()

    def deployment_in_progress() -> None:
        with device.executor._working():
            busy.set()
            release.wait(10)

    worker = threading.Thread(target=deployment_in_progress)
    worker.start()
    try:
        assert busy.wait(5)
        device.service.unload_model("affine")  # a client, on its own thread
        assert device.executor.state.deployed() == {}
    finally:
        release.set()
        worker.join(10)


@pytest.mark.parametrize("content", [b"{not json", b"[" * 100_000 + b"]" * 100_000,
                                     b"\xff\xfe"])
def test_unreadable_state_file_is_set_aside(tmp_path: Path, packages: Packages,
                                            transport: MemoryTransport, content: bytes) -> None:
    state = tmp_path / "data" / "deployments" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    agent = Device(tmp_path / "data", packages, transport)
    try:
        assert agent.service.list_models() == []
        assert list(state.parent.glob("state.json.unreadable-*"))
    finally:
        agent.close()


def test_one_failing_model_rolls_back_the_whole_deployment(
        device: Device, transport: MemoryTransport, packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "pair", packages.v2)
    offer(transport, "second", packages.mute, handle="second")
    pair = transport.deployments[0]
    pair["Definitions"] += transport.deployments.pop()["Definitions"]
    result = deploy(device, transport)
    first, second = result["DeploymentModels"]
    assert first["Status"] == "FAIL" and first["ModelVersion"] == "2.0"
    assert first["StatusReason"] == "rolled back because second failed"
    assert second["Status"] == "FAIL" and second["State"] == "UNDEPLOY"
    assert "probe prediction" in second["StatusReason"]
    assert "rolled back to the previous versions" in result["DeploymentStatusMessage"]
    assert device.version() == "1.0"
    assert [m.alias for m in device.service.list_models()] == ["affine"]


def test_swap_under_load_never_answers_not_found(device: Device, transport: MemoryTransport,
                                                 packages: Packages) -> None:
    offer(transport, "good", packages.v1)
    deploy(device, transport)
    offer(transport, "upgrade", packages.v2)
    done = threading.Event()
    seen: set[float] = set()
    failures: list[Exception] = []

    def traffic() -> None:
        while not done.is_set():
            try:
                seen.add(float(predict(device)[0, 0]))
            except Exception as error:  # any failure, NOT_FOUND included, fails the test
                failures.append(error)
    clients = [threading.Thread(target=traffic) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        assert deploy(device, transport)["DeploymentStatus"] == "SUCCESS"
    finally:
        done.set()
        for client in clients:
            client.join()
    assert failures == []
    assert seen == {3.0, 4.0}  # 1 * 2 + 1 before the swap, 1 * 3 + 1 after
