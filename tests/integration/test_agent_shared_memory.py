"""Inputs in System V shared memory give the same outputs as byte_data and onnxruntime."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import sysv_ipc
from support.agent_process import AgentProcess
from support.packages import Packages

from edgefleet.proto import agent_pb2 as pb

SHAPE = [1, 3, 224, 224]


@pytest.fixture()
def image(agent: AgentProcess, packages: Packages) -> Iterator[str]:
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.image), name="image-shm"))
    yield "image-shm"
    agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="image-shm"))


def segment_with(array: np.ndarray, mode: int, offset: int = 0) -> sysv_ipc.SharedMemory:
    data = array.tobytes()
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o600,
                                    size=offset + len(data))
    segment.write(data, offset)
    # Clients make the segment read-only before sending it (shared/spec/agent-api.md).
    segment.mode = mode
    return segment


def shm_request(alias: str, segment: sysv_ipc.SharedMemory, offset: int = 0,
                size: int = 0) -> pb.PredictRequest:
    return pb.PredictRequest(name=alias, tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=SHAPE),
        shared_memory_handle=pb.SharedMemoryHandle(segment_id=segment.id, offset=offset,
                                                   size=size))])


def outputs(reply: pb.PredictResponse) -> list[np.ndarray]:
    return [np.frombuffer(t.byte_data, np.float32).reshape(tuple(t.tensor_metadata.shape))
            for t in reply.tensors]


def test_shared_memory_equals_byte_data_and_onnxruntime(
        agent: AgentProcess, packages: Packages, image: str) -> None:
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    expected = ort.InferenceSession(str(packages.models / "image.onnx")).run(None, {"x": x})
    by_bytes = agent.stub.Predict(pb.PredictRequest(name=image, tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=SHAPE),
        byte_data=x.tobytes())]))
    for mode, offset in ((0o400, 0), (0o404, 4096)):
        segment = segment_with(x, mode, offset)
        try:
            for _ in range(3):  # the cached attachment is reused
                by_shm = agent.stub.Predict(shm_request(image, segment, offset))
                for got_shm, got_bytes, want in zip(outputs(by_shm), outputs(by_bytes),
                                                    expected, strict=True):
                    np.testing.assert_array_equal(got_shm, want)
                    np.testing.assert_array_equal(got_bytes, want)
        finally:
            segment.remove()


def test_new_segment_contents_are_seen(agent: AgentProcess, image: str) -> None:
    for value in (1.0, 2.0):
        x = np.full(SHAPE, value, np.float32)
        segment = segment_with(x, 0o400)
        try:
            reply = agent.stub.Predict(shm_request(image, segment))
            assert outputs(reply)[0][0, 0] == pytest.approx(value)
        finally:
            segment.remove()


@pytest.mark.parametrize("mode", [0o600, 0o666, 0o620])
def test_writable_segment_is_refused(agent: AgentProcess, image: str, mode: int) -> None:
    segment = segment_with(np.zeros(SHAPE, np.float32), mode)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            agent.stub.Predict(shm_request(image, segment))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "read-only" in caught.value.details()
    finally:
        segment.remove()


def test_bad_handles(agent: AgentProcess, image: str) -> None:
    x = np.zeros(SHAPE, np.float32)
    segment = segment_with(x, 0o400)
    try:
        with pytest.raises(grpc.RpcError) as caught:  # range beyond the segment
            agent.stub.Predict(shm_request(image, segment, offset=8))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "outside" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:  # size disagrees with shape x dtype
            agent.stub.Predict(shm_request(image, segment, size=100))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        segment.remove()
    missing = pb.PredictRequest(name=image, tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=SHAPE),
        shared_memory_handle=pb.SharedMemoryHandle(segment_id=2**31 - 5))])
    with pytest.raises(grpc.RpcError) as caught:
        agent.stub.Predict(missing)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_removed_segments_are_let_go(agent: AgentProcess, image: str) -> None:
    """A client that removes its segment after each reply does not pin memory in the agent."""
    segment = segment_with(np.zeros(SHAPE, np.float32), 0o400)
    segment_id = segment.id
    agent.stub.Predict(shm_request(image, segment))
    segment.remove()  # lives on while the agent stays attached
    segment.detach()
    deadline = time.monotonic() + 10
    gone = False
    while not gone and time.monotonic() < deadline:
        time.sleep(1.2)
        other = segment_with(np.zeros(SHAPE, np.float32), 0o400)
        try:  # any later call sweeps removed segments that sat unused for a second
            agent.stub.Predict(shm_request(image, other))
        finally:
            other.remove()
        try:  # by id: Linux lets a removed segment be attached until its last detach
            sysv_ipc.attach(segment_id).detach()
        except (sysv_ipc.ExistentialError, ValueError):  # EIDRM or EINVAL once it is gone
            gone = True
    assert gone, "the agent still holds a removed segment"


@pytest.mark.parametrize("shape", [[1] * 65, [0, 2147483647, 2147483647, 2147483647]],
                         ids=["65-dimensions", "zero-size-overflowing"])
def test_capture_of_a_shape_numpy_cannot_make_is_invalid_argument(
        agent: AgentProcess, image: str, shape: list[int]) -> None:
    segment = segment_with(np.zeros(16, np.float32), 0o400)
    try:
        stamp = time.time_ns()
        with pytest.raises(grpc.RpcError) as caught:
            agent.stub.CaptureData(pb.CaptureDataRequest(
                model_name=image, capture_id=f"shape-{len(shape)}",
                inference_timestamp=pb.Timestamp(seconds=stamp // 10**9, nanos=stamp % 10**9),
                input_tensors=[pb.Tensor(
                    tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32,
                                                      shape=shape),
                    shared_memory_handle=pb.SharedMemoryHandle(segment_id=segment.id))]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "cannot be laid out" in (caught.value.details() or "")
        # The agent goes on serving.
        assert agent.stub.ListModels(pb.ListModelsRequest()).models
    finally:
        segment.remove()
