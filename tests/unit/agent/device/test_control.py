"""The control-plane client: heartbeat shapes (checked by botocore's own validator and by the
server's schema), metric windows, registration, backoff, an unreachable control plane, and new
credentials while requests run."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import botocore.session
import numpy as np
import pytest
from botocore.validate import validate_parameters
from pydantic import SecretStr
from support.packages import signed_affine
from support.polling import wait_for

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.control import ControlClient
from edgefleet.agent.device.deploy import DeploymentExecutor
from edgefleet.agent.device.metrics import HeartbeatMetrics, SampleClock
from edgefleet.agent.device.transport import (
    Boto3Transport,
    ControlPlaneUnavailable,
    MemoryTransport,
)
from edgefleet.agent.serving.service import AgentService
from edgefleet.agent.types import CaptureRequest, CaptureStatus
from edgefleet.errors import InvalidArgument
from edgefleet.fleet.schemas import Heartbeat
from edgefleet.wire.edge import Deployment

SECRET = "s3cr3t-Never-In-Logs-0123456789abcdefghij"


class Capture:
    """A capture pipeline double: accepts everything, reports fixed metrics."""

    def submit(self, request: CaptureRequest) -> None:
        pass

    def status(self, capture_id: str) -> CaptureStatus:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        return {"capture_spool_bytes": 4096.0, "capture_accepted_total": 3.0}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signed_affine(tmp_path_factory.mktemp("control"), "1.0")


class Agent:
    """Service, executor, metrics and control client as the daemon wires them."""

    def __init__(self, root: Path, certs: Path, transport: MemoryTransport, **keys: Any) -> None:
        self.config = AgentConfig.from_mapping({
            "sagemaker_edge_core_device_name": "turbine-1",
            "sagemaker_edge_core_device_fleet_name": "wind",
            "sagemaker_edge_core_root_certs_path": str(certs),
            "sagemaker_edge_local_data_root_path": str(root),
            "edgefleet_control_access_key_id": "AKIDEXAMPLE",
            "edgefleet_control_secret_access_key": SECRET,
            "edgefleet_control_backoff_seconds": 0.05,
            "edgefleet_control_max_backoff_seconds": 0.4,
            "edgefleet_heartbeat_interval_seconds": 0.1,
            "edgefleet_deployment_poll_seconds": 0.1,
            "edgefleet_deployment_health_seconds": 0.2, **keys})
        self.samples = SampleClock(Capture())
        self.service = AgentService(self.config, capture=self.samples)
        self.stop = threading.Event()
        self.executor = DeploymentExecutor(self.service, self.config,
                                           download=transport.download, stop=self.stop)
        self.metrics = HeartbeatMetrics(self.service.registry, self.executor.state,
                                        capture=Capture(), samples=self.samples)
        self.client = ControlClient(self.config, transport, self.executor, self.metrics,
                                    self.stop)
        self.executor.restore()

    def close(self) -> None:
        self.client.stop()
        self.executor.close()
        self.service.close()


@pytest.fixture()
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture()
def agent(tmp_path: Path, package: tuple[Path, Path],
          transport: MemoryTransport) -> Iterator[Agent]:
    running = Agent(tmp_path / "data", package[1], transport)
    running.service.load_model(str(package[0]), "affine")
    yield running
    running.close()


def predict(agent: Agent, rows: int = 1) -> None:
    agent.service.predict_arrays("affine", {"x": np.ones((rows, 4), np.float32)})


def botocore_validate(request: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker-edge")
    shape = model.operation_model("SendHeartbeat").input_shape
    assert shape is not None
    validate_parameters(request, shape)


def test_heartbeat_has_botocore_shapes_and_per_window_counts(
        agent: Agent, transport: MemoryTransport) -> None:
    for _ in range(5):
        predict(agent)
    agent.service.capture_data(model_name="affine", capture_id="c1",
                               inference_time_ns=1_700_000_000 * 10**9)
    agent.client.send_heartbeat()
    beat = transport.heartbeats[-1]
    botocore_validate(beat)
    Heartbeat.model_validate(beat)  # and the control plane's own schema
    assert beat["DeviceName"] == "turbine-1" and beat["DeviceFleetName"] == "wind"
    agent_metrics = {(m["Dimension"], m["MetricName"]): m["Value"] for m in beat["AgentMetrics"]}
    assert agent_metrics[("agent", "restart-count")] == 0
    assert agent_metrics[("agent", "rss-bytes")] > 1 << 20
    assert agent_metrics[("agent", "models-loaded")] == 1
    assert agent_metrics[("capture", "capture-spool-bytes")] == 4096
    assert ("agent", "cpu-percent") in agent_metrics and ("agent", "uptime-seconds") in \
        agent_metrics
    (model,) = beat["Models"]
    assert model["ModelName"] == "affine" and model["ModelVersion"] == "1.0"
    assert model["LatestSampleTime"] == 1_700_000_000
    assert model["LatestInference"] > time.time() - 60
    metrics = {m["MetricName"]: m["Value"] for m in model["ModelMetrics"]}
    assert metrics["inference-count"] == 5 and metrics["error-count"] == 0
    assert 0 < metrics["latency-p50-ms"] <= metrics["latency-p99-ms"]

    predict(agent)
    transport.down = True
    with pytest.raises(ControlPlaneUnavailable):
        agent.client.send_heartbeat()
    predict(agent)
    transport.down = False
    agent.client.send_heartbeat()  # the failed heartbeat's window is not lost
    metrics = {m["MetricName"]: m["Value"] for m in transport.heartbeats[-1]["Models"][0][
        "ModelMetrics"]}
    assert metrics["inference-count"] == 2
    agent.client.send_heartbeat()
    metrics = {m["MetricName"]: m["Value"] for m in transport.heartbeats[-1]["Models"][0][
        "ModelMetrics"]}
    assert metrics["inference-count"] == 0 and "latency-p50-ms" not in metrics


def test_short_aliases_are_left_out_of_heartbeats(agent: Agent, package: tuple[Path, Path],
                                                 transport: MemoryTransport) -> None:
    agent.service.load_model(str(package[0]), "abc")  # botocore's ModelName needs 4+ chars
    agent.client.send_heartbeat()
    botocore_validate(transport.heartbeats[-1])
    assert [m["ModelName"] for m in transport.heartbeats[-1]["Models"]] == ["affine"]


def test_unregistered_device_sends_nothing(agent: Agent, transport: MemoryTransport) -> None:
    transport.registration = "NOT_REGISTERED"
    assert agent.client.check_registration() == 0
    agent.client.start()
    time.sleep(0.5)
    assert transport.calls["SendHeartbeat"] == 0 and transport.calls["GetDeployments"] == 0
    assert transport.calls["GetDeviceRegistration"] >= 2  # keeps checking, with backoff


def test_control_plane_down_backs_off_while_predict_serves(
        agent: Agent, transport: MemoryTransport, caplog: pytest.LogCaptureFixture) -> None:
    transport.down = True
    caplog.set_level(logging.DEBUG)
    agent.client.start()
    deadline = time.monotonic() + 1.5
    served = 0
    while time.monotonic() < deadline:
        predict(agent)
        served += 1
    # Backoff 0.05 s doubling to 0.4 s: a handful of tries in 1.5 s, not hundreds.
    assert 3 <= transport.calls["GetDeviceRegistration"] <= 12
    assert served > 100
    assert "retrying in" in caplog.text
    transport.down = False
    deadline = time.monotonic() + 5
    while not transport.heartbeats or not transport.calls["GetDeployments"]:
        assert time.monotonic() < deadline, "no heartbeat after the control plane came back"
        time.sleep(0.02)
    assert transport.heartbeats[-1]["Models"][0]["ModelName"] == "affine"
    assert SECRET not in caplog.text


def test_deployment_reported_at_once_by_the_threads(agent: Agent, transport: MemoryTransport,
                                                    package: tuple[Path, Path]) -> None:
    url = "http://fleet.test/downloads/affine.tar.gz"
    sha1 = transport.add_package(url, package[0].read_bytes())
    transport.deployments.append({
        "DeploymentName": "rollout-1", "FailureHandlingPolicy": "ROLLBACK_ON_FAILURE",
        "Definitions": [{"ModelHandle": "fresh", "S3Url": url, "State": "DEPLOY",
                         "Checksum": {"Type": "SHA1", "Sum": sha1}}]})
    agent.client.start()
    deadline = time.monotonic() + 10
    while not transport.results:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert transport.results[0]["DeploymentStatus"] == "SUCCESS"
    assert agent.service.describe_model("fresh").version == "1.0"


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize(("raw", "problem"), [
    ({"Definitions": []}, "DeploymentName"),
    ({"DeploymentName": "d", "FailureHandlingPolicy": "PANIC"}, "FailureHandlingPolicy"),
    ({"DeploymentName": "d", "Definitions": [{"ModelHandle": "a_b"}]}, "ModelHandle"),
    ({"DeploymentName": "d", "Definitions": [{"ModelHandle": "ab"}]}, "S3Url"),
    ({"DeploymentName": "d", "Definitions": [
        {"ModelHandle": "ab", "S3Url": "u", "Checksum": {"Type": "MD5"}}]}, "MD5"),
    ({"DeploymentName": "d"}, "no Definitions"),
])
def test_unreadable_deployments_are_refused(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        Deployment.from_wire(raw)


def test_boto3_transport_reports_an_unreachable_control_plane(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    transport = Boto3Transport(AgentConfig.from_mapping({
        "sagemaker_edge_provider_provider": "Aws",
        "sagemaker_edge_core_endpoint_override": f"http://127.0.0.1:{port}",
        "edgefleet_control_access_key_id": "AKIDEXAMPLE",
        "edgefleet_control_secret_access_key": SECRET,
        "edgefleet_control_timeout_seconds": 2}))
    with pytest.raises(ControlPlaneUnavailable, match="cannot reach the control plane") as error:
        transport.get_deployments("turbine-1", "wind")
    assert SECRET not in error.value.message
    with pytest.raises(ControlPlaneUnavailable, match="cannot download"):
        list(transport.download(f"http://127.0.0.1:{port}/downloads/x.tar.gz?X-Amz-Signature=1"))


def test_a_result_the_server_refuses_does_not_block_heartbeats(
        agent: Agent, transport: MemoryTransport, package: tuple[Path, Path]) -> None:
    url = "http://fleet.test/downloads/affine.tar.gz"
    sha1 = transport.add_package(url, package[0].read_bytes())
    transport.deployments.append({"DeploymentName": "odd", "Definitions": [
        {"ModelHandle": "fresh", "S3Url": url, "Checksum": {"Type": "SHA1", "Sum": sha1}}]})
    transport.refused_results.add("odd")
    assert agent.client.poll_deployments() == 1
    with pytest.raises(ControlPlaneUnavailable):
        agent.client.send_heartbeat()
    agent.client.send_heartbeat()
    assert "DeploymentResult" not in transport.heartbeats[-1]


def test_a_metric_that_is_not_finite_is_left_out_of_the_heartbeat(tmp_path: Path) -> None:
    # The control plane refuses a heartbeat carrying NaN: one bad metric must not lose it.
    class Capture:
        def metrics(self) -> dict[str, float]:
            return {"spool_bytes": 10.0, "rate": float("nan"), "peak": float("inf")}

    from edgefleet.agent.device.metrics import HeartbeatMetrics
    from edgefleet.agent.device.state import StateStore
    from edgefleet.agent.serving.registry import ModelRegistry

    snapshot = HeartbeatMetrics(ModelRegistry(), StateStore(tmp_path / "state.json"),
                                capture=Capture()).collect()
    names = {m["MetricName"] for m in snapshot.agent_metrics}
    assert "spool-bytes" in names and not names & {"rate", "peak"}
    assert "rss-bytes" in names


def test_retry_now_ends_both_retry_delays(tmp_path: Path, package: tuple[Path, Path],
                                          transport: MemoryTransport) -> None:
    # Retry delays of 15-30 s: only retry_now (new credentials, on SIGHUP) can end them.
    agent = Agent(tmp_path / "data", package[1], transport,
                  edgefleet_control_backoff_seconds=30, edgefleet_control_max_backoff_seconds=30)
    try:
        agent.client.start()
        wait_for(lambda: transport.heartbeats and transport.calls["GetDeployments"], 5,
                 "the first heartbeat and poll")
        transport.down = True  # as a control plane refusing the old key would be
        failed = dict(transport.calls)
        wait_for(lambda: transport.calls["SendHeartbeat"] > failed["SendHeartbeat"]
                 and transport.calls["GetDeployments"] > failed["GetDeployments"], 5,
                 "a failed heartbeat and a failed poll")
        time.sleep(0.3)  # both threads are in their retry delays now
        beats, polls = len(transport.heartbeats), transport.calls["GetDeployments"]
        transport.down = False
        agent.client.retry_now()
        wait_for(lambda: len(transport.heartbeats) > beats
                 and transport.calls["GetDeployments"] > polls, 5,
                 "a heartbeat and a poll right after retry_now")
    finally:
        agent.close()


class SigningRecorder(BaseHTTPRequestHandler):
    """A device API that answers GetDeployments and downloads, recording the access key id each
    request was signed with; the first request waits for ``release``."""

    keys: ClassVar[list[str]]
    release: ClassVar[threading.Event]

    def _key(self) -> None:
        authorization = self.headers.get("Authorization", "")
        self.keys.append(authorization.split("Credential=")[1].split("/")[0])
        if len(self.keys) == 1:
            self.release.wait(10)  # the first request stays in flight

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._key()
        self._answer(b'{"Deployments": []}', "application/json")

    def do_GET(self) -> None:
        self._key()
        self._answer(b"package bytes", "application/octet-stream")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_new_credentials_sign_the_next_request_not_the_one_in_flight() -> None:
    class Handler(SigningRecorder):
        keys: ClassVar[list[str]] = []
        release: ClassVar[threading.Event] = threading.Event()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        transport = Boto3Transport(AgentConfig.from_mapping({
            "sagemaker_edge_provider_provider": "Aws",
            "sagemaker_edge_core_endpoint_override": url,
            "edgefleet_control_access_key_id": "AKIDOLD",
            "edgefleet_control_secret_access_key": SECRET,
            "edgefleet_control_timeout_seconds": 10}))
        answers: list[list[dict[str, Any]]] = []
        in_flight = threading.Thread(
            target=lambda: answers.append(transport.get_deployments("turbine-1", "wind")))
        in_flight.start()
        wait_for(lambda: Handler.keys, 5, "the first request to arrive")
        transport.use_credentials("AKIDNEW", SecretStr("n3w-" + SECRET))
        Handler.release.set()
        in_flight.join(10)
        assert answers == [[]]  # finished, signed with the key it started with
        assert transport.get_deployments("turbine-1", "wind") == []
        assert b"".join(transport.download(f"{url}/downloads/affine.tar.gz")) == b"package bytes"
        assert Handler.keys == ["AKIDOLD", "AKIDNEW", "AKIDNEW"]
    finally:
        server.shutdown()
        server.server_close()
