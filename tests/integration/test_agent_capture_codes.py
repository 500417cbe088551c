"""CaptureData and GetCaptureDataStatus status codes over a real socket."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from support.agent_process import AgentProcess, start_agent
from support.packages import Packages, base_config

from edgefleet.agent.capture import read_batch_file
from edgefleet.proto import agent_pb2 as pb


def tensor(name: str, array: np.ndarray) -> pb.Tensor:
    return pb.Tensor(tensor_metadata=pb.TensorMetadata(name=name.encode(), data_type=pb.FLOAT32,
                                                       shape=list(array.shape)),
                     byte_data=array.tobytes())


def request(capture_id: str, *, model: str = "affine", ahead_s: float = 0.0,
            x: np.ndarray | None = None) -> pb.CaptureDataRequest:
    x = np.ones((1, 4), np.float32) if x is None else x
    stamp = time.time_ns() + int(ahead_s * 1e9)
    return pb.CaptureDataRequest(
        model_name=model, capture_id=capture_id,
        inference_timestamp=pb.Timestamp(seconds=stamp // 10**9, nanos=stamp % 10**9),
        input_tensors=[tensor("x", x)], output_tensors=[tensor("y", x * 2 + 1)])


def status(agent: AgentProcess, capture_id: str) -> int:
    return agent.stub.GetCaptureDataStatus(
        pb.GetCaptureDataStatusRequest(capture_id=capture_id)).status


def wait_status(agent: AgentProcess, capture_id: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(agent, capture_id)
        if current != pb.IN_PROGRESS:
            return current
        time.sleep(0.05)
    return pb.IN_PROGRESS


def code(call: object, message: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(message)  # type: ignore[operator]
    assert caught.value.details(), "every error carries details a person can act on"
    return caught.value.code(), caught.value.details()


@pytest.fixture(scope="module")
def capture_agent(packages: Packages,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    work = tmp_path_factory.mktemp("capture-agent")
    agent = start_agent(base_config(
        packages, sagemaker_edge_core_capture_data_push_period_seconds=0.2,
        sagemaker_edge_core_capture_data_disk_path=str(work / "captured")), work)
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
    yield agent
    assert agent.stop() == 0, agent.log()


def test_capture_is_stored_and_reported(capture_agent: AgentProcess) -> None:
    capture_agent.stub.CaptureData(request("capture-ok"))
    assert wait_status(capture_agent, "capture-ok") == pb.SUCCESS
    stored = list((capture_agent.log_path.parent / "captured").rglob("*.jsonl"))
    records = [r for path in stored for r in read_batch_file(path)]
    ours = [r for r in records if r.request.capture_id == "capture-ok"]
    assert len(ours) == 1
    np.testing.assert_array_equal(ours[0].input_arrays["x"], np.ones((1, 4), np.float32))


def test_capture_codes(capture_agent: AgentProcess) -> None:
    capture = capture_agent.stub.CaptureData
    capture(request("dup"))
    assert code(capture, request("dup"))[0] == grpc.StatusCode.ALREADY_EXISTS
    got, details = code(capture, request("future", ahead_s=3600))
    assert got == grpc.StatusCode.OUT_OF_RANGE and "future" in details
    assert code(capture, request(""))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code(capture, request("x" * 300))[0] == grpc.StatusCode.INVALID_ARGUMENT
    broken = request("broken")
    broken.input_tensors[0].byte_data = b"\0" * 3
    got, details = code(capture, broken)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "3 bytes" in details
    assert code(capture, request("no-model", model="not-loaded"))[0] == grpc.StatusCode.NOT_FOUND
    got, _ = code(capture_agent.stub.GetCaptureDataStatus,
                  pb.GetCaptureDataStatusRequest(capture_id="never-sent"))
    assert got == grpc.StatusCode.NOT_FOUND
    # Echoed whole, a 9,000-character id would exceed the client's 16 KiB metadata limit.
    got, details = code(capture_agent.stub.GetCaptureDataStatus,
                        pb.GetCaptureDataStatusRequest(capture_id="c" * 9000))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "got 9000" in details


def test_unreachable_cloud_without_spool_is_failed_precondition(
        packages: Packages, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = start_agent(base_config(
        packages, sagemaker_edge_core_capture_data_destination="Cloud",
        sagemaker_edge_provider_s3_bucket_name="captures",
        sagemaker_edge_core_capture_data_push_period_seconds=0.1,
        edgefleet_s3_endpoint_url=f"http://127.0.0.1:{port}",
        edgefleet_s3_access_key_id="key", edgefleet_s3_secret_access_key="secret"), tmp_path)
    try:
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
        agent.stub.CaptureData(request("first"))
        # Once the agent has seen the store fail, it refuses what it could only keep in memory.
        deadline = time.monotonic() + 60
        refused: tuple[grpc.StatusCode, str] | None = None
        attempt = 0
        while refused is None and time.monotonic() < deadline:
            attempt += 1
            try:
                agent.stub.CaptureData(request(f"next-{attempt}"))
            except grpc.RpcError as error:
                refused = (error.code(), error.details())
            time.sleep(0.2)
        assert refused is not None and refused[0] == grpc.StatusCode.FAILED_PRECONDITION, refused
        assert "failing" in refused[1]
        # What was accepted before is kept and retried, not dropped.
        assert status(agent, "first") == pb.IN_PROGRESS
    finally:
        assert agent.stop() == 0
