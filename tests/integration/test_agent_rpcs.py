"""Every rpc of AWS.SageMaker.Edge.Agent and its status codes, over a real socket."""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import psutil
import pytest
from support.agent_process import AgentProcess, start_agent
from support.models import affine_reference
from support.packages import Packages, base_config

from edgefleet.proto import agent_pb2 as pb


def tensor(name: str, array: np.ndarray, data_type: int) -> pb.Tensor:
    return pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=name.encode(), data_type=data_type,
                                          shape=list(array.shape)),
        byte_data=np.ascontiguousarray(array).tobytes())


def decode(out: pb.Tensor) -> np.ndarray:
    dtype = {pb.FLOAT32: np.float32, pb.FLOAT64: np.float64, pb.INT32: np.int32}[
        out.tensor_metadata.data_type]
    return np.frombuffer(out.byte_data, dtype).reshape(tuple(out.tensor_metadata.shape))


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.RpcError)
    return call.code(), call.details()


def expect_error(fn: object, request: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        fn(request)  # type: ignore[operator]
    got, details = code_of(caught.value)
    assert got == code, details
    assert details, "every error carries details a person can act on"
    return details


def load(agent: AgentProcess, url: Path, name: str) -> pb.Model:
    return agent.stub.LoadModel(pb.LoadModelRequest(url=str(url), name=name)).model


def test_load_from_archive_and_directory_list_describe_unload(
        agent: AgentProcess, packages: Packages, tmp_path: Path) -> None:
    model = load(agent, packages.affine, "affine-a")
    assert model.name == "affine-a" and model.handle == "affine-a"
    assert model.url == str(packages.affine)
    assert [(m.name, m.data_type, list(m.shape)) for m in model.input_tensor_metadatas] == [
        (b"x", pb.FLOAT32, [-1, 4])]
    assert [(m.name, list(m.shape)) for m in model.output_tensor_metadatas] == [
        (b"y", [-1, 4]), (b"s", [-1])]

    extracted = tmp_path / "affine-dir"
    extracted.mkdir()
    with tarfile.open(packages.affine) as archive:
        archive.extractall(extracted, filter="data")
    load(agent, extracted, "affine-b")

    listed = {m.name: m for m in agent.stub.ListModels(pb.ListModelsRequest()).models}
    assert {"affine-a", "affine-b"} <= set(listed)
    assert listed["affine-b"].input_tensor_metadatas[0].name == b"x"

    described = agent.stub.DescribeModel(pb.DescribeModelRequest(name="affine-b")).model
    assert described.url == str(extracted)
    # `handle` wins over `name` when both are set.
    described = agent.stub.DescribeModel(
        pb.DescribeModelRequest(name="nonexistent", handle="affine-a")).model
    assert described.name == "affine-a"

    agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="affine-a"))
    agent.stub.UnLoadModel(pb.UnLoadModelRequest(handle="affine-b"))
    names = {m.name for m in agent.stub.ListModels(pb.ListModelsRequest()).models}
    assert not {"affine-a", "affine-b"} & names


def test_load_model_errors(agent: AgentProcess, packages: Packages, tmp_path: Path) -> None:
    load(agent, packages.affine, "affine-dup")
    details = expect_error(agent.stub.LoadModel, pb.LoadModelRequest(
        url=str(packages.affine), name="affine-dup"), grpc.StatusCode.ALREADY_EXISTS)
    assert "affine-dup" in details
    expect_error(agent.stub.LoadModel, pb.LoadModelRequest(
        url=str(tmp_path / "missing.tar.gz"), name="missing"), grpc.StatusCode.NOT_FOUND)
    for bad in ("bad_name", "a.b", "-lead", "trail-", ""):
        details = expect_error(agent.stub.LoadModel, pb.LoadModelRequest(
            url=str(packages.affine), name=bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert "name" in details
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(packages.models / "affine.onnx", bare / "model.onnx")
    details = expect_error(agent.stub.LoadModel, pb.LoadModelRequest(
        url=str(bare), name="bare"), grpc.StatusCode.FAILED_PRECONDITION)
    assert "unsigned" in details.lower() or "signature" in details.lower()
    agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="affine-dup"))


def test_unload_and_describe_errors(agent: AgentProcess) -> None:
    expect_error(agent.stub.UnLoadModel, pb.UnLoadModelRequest(name="never-loaded"),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(agent.stub.DescribeModel, pb.DescribeModelRequest(name="never-loaded"),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(agent.stub.DescribeModel, pb.DescribeModelRequest(name="no_underscores"),
                 grpc.StatusCode.INVALID_ARGUMENT)


def test_predict_matches_onnxruntime(agent: AgentProcess, packages: Packages) -> None:
    load(agent, packages.affine, "affine-p")
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    reply = agent.stub.Predict(pb.PredictRequest(name="affine-p",
                                                 tensors=[tensor("x", x, pb.FLOAT32)]))
    session = ort.InferenceSession(str(packages.models / "affine.onnx"))
    expected = session.run(None, {"x": x})
    assert [t.tensor_metadata.name for t in reply.tensors] == [b"y", b"s"]
    assert [list(t.tensor_metadata.shape) for t in reply.tensors] == [[5, 4], [5]]
    assert all(t.WhichOneof("data") == "byte_data" for t in reply.tensors)
    for got, want in zip(reply.tensors, expected, strict=True):
        np.testing.assert_array_equal(decode(got), want)
    np.testing.assert_allclose(decode(reply.tensors[0]), affine_reference(x)[0])


def test_predict_without_metadata_uses_the_models(agent: AgentProcess,
                                                  packages: Packages) -> None:
    load(agent, packages.mixed, "mixed-m")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(6, dtype=np.int32).reshape(2, 3) * 10
    reply = agent.stub.Predict(pb.PredictRequest(handle="mixed-m", tensors=[
        pb.Tensor(byte_data=a.tobytes()), pb.Tensor(byte_data=b.tobytes())]))
    out = reply.tensors[0]
    assert out.tensor_metadata.data_type == pb.FLOAT64
    np.testing.assert_array_equal(decode(out), (a + b).astype(np.float64))
    # One dynamic dimension follows from the byte count.
    load(agent, packages.affine, "affine-nometa")
    x = np.ones((3, 4), np.float32)
    reply = agent.stub.Predict(pb.PredictRequest(name="affine-nometa", tensors=[
        pb.Tensor(byte_data=x.tobytes())]))
    assert list(reply.tensors[0].tensor_metadata.shape) == [3, 4]


def test_predict_errors_name_the_tensor(agent: AgentProcess, packages: Packages) -> None:
    load(agent, packages.mixed, "mixed-e")
    a = np.zeros((2, 3), np.float32)
    b = np.zeros((2, 3), np.int32)
    predict = agent.stub.Predict
    expect_error(predict, pb.PredictRequest(name="not-loaded", tensors=[]),
                 grpc.StatusCode.NOT_FOUND)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    details = expect_error(predict, pb.PredictRequest(
        name="mixed-e", tensors=[tensor("a", a, pb.FLOAT32)]), invalid)
    assert "2 input tensor" in details and "got 1" in details
    details = expect_error(predict, pb.PredictRequest(name="mixed-e", tensors=[
        tensor("a", a, pb.FLOAT32), tensor("b", b.astype(np.int64), pb.INT64)]), invalid)
    assert "'b'" in details and "INT64" in details and "INT32" in details
    details = expect_error(predict, pb.PredictRequest(name="mixed-e", tensors=[
        tensor("a", np.zeros((3, 3), np.float32), pb.FLOAT32), tensor("b", b, pb.INT32)]),
        invalid)
    assert "'a'" in details and "[3, 3]" in details and "[2, 3]" in details
    short = pb.Tensor(tensor_metadata=pb.TensorMetadata(name=b"b", data_type=pb.INT32,
                                                        shape=[2, 3]),
                      byte_data=b"\0" * 7)
    details = expect_error(predict, pb.PredictRequest(name="mixed-e", tensors=[
        tensor("a", a, pb.FLOAT32), short]), invalid)
    assert "'b'" in details and "7 bytes" in details and "24 bytes" in details
    details = expect_error(predict, pb.PredictRequest(name="mixed-e", tensors=[
        tensor("a", a, pb.FLOAT32), tensor("c", b, pb.INT32)]), invalid)
    assert "'c'" in details
    details = expect_error(predict, pb.PredictRequest(name="mixed-e", tensors=[
        tensor("a", a, pb.FLOAT32), pb.Tensor(tensor_metadata=pb.TensorMetadata(
            name=b"b", data_type=pb.INT32, shape=[2, 3]))]), invalid)
    assert "no data" in details


def test_large_message_beyond_grpc_default(agent: AgentProcess, packages: Packages) -> None:
    load(agent, packages.affine, "affine-big")
    x = np.ones((2_000_000, 4), np.float32)  # 32 MB in, 40 MB out
    reply = agent.stub.Predict(pb.PredictRequest(name="affine-big",
                                                 tensors=[tensor("x", x, pb.FLOAT32)]))
    assert decode(reply.tensors[1])[0] == pytest.approx(12.0)


def test_unload_waits_for_predictions_in_flight(agent: AgentProcess,
                                                packages: Packages) -> None:
    load(agent, packages.affine, "affine-slow")
    x = np.ones((6_000_000, 4), np.float32)
    request = pb.PredictRequest(name="affine-slow", tensors=[tensor("x", x, pb.FLOAT32)])
    result: dict[str, object] = {}

    def predict() -> None:
        try:
            result["reply"] = agent.stub.Predict(request)
        except grpc.RpcError as error:
            result["error"] = error

    worker = threading.Thread(target=predict)
    worker.start()
    time.sleep(0.15)  # the request is on its way or computing
    agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="affine-slow"))
    worker.join()
    if "error" in result:
        # The prediction had not reached the agent yet: then it is refused cleanly.
        assert code_of(result["error"])[0] == grpc.StatusCode.NOT_FOUND
    else:
        reply = result["reply"]
        assert isinstance(reply, pb.PredictResponse)
        assert decode(reply.tensors[1])[-1] == pytest.approx(12.0)


def test_resource_exhausted_for_a_model_larger_than_memory(
        packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("huge")
    bare = work / "huge"
    bare.mkdir()
    with (bare / "model.onnx").open("wb") as sparse:  # sparse: takes no disk
        sparse.truncate(psutil.virtual_memory().total)
    process = start_agent(base_config(packages, edgefleet_allow_unsigned_models=True), work)
    try:
        details = expect_error(process.stub.LoadModel, pb.LoadModelRequest(
            url=str(bare), name="huge"), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "MiB" in details
    finally:
        assert process.stop() == 0


def test_socket_file_mode_is_0660(agent: AgentProcess) -> None:
    assert os.stat(agent.socket_path).st_mode & 0o777 == 0o660


@pytest.mark.parametrize("rpc", ["UnLoadModel", "DescribeModel"])
def test_a_huge_model_name_is_invalid_argument_not_a_dropped_reply(agent: AgentProcess,
                                                                    rpc: str) -> None:
    # Echoed whole, a 20,000-character name would exceed the client's 16 KiB metadata limit.
    request = getattr(pb, f"{rpc}Request")(name="m" * 20_000)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(agent.stub, rpc)(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "(20000 characters)" in (caught.value.details() or "")


@pytest.mark.parametrize("name", [b"t" * 20_000, b"\xff" * 20_000], ids=["long", "not-utf8"])
def test_a_huge_tensor_name_is_invalid_argument_not_a_dropped_reply(
        agent: AgentProcess, packages: Packages, name: bytes) -> None:
    alias = f"mixed-n{name[0]}"
    load(agent, packages.mixed, alias)
    a = np.zeros((2, 3), np.float32)
    huge = pb.Tensor(tensor_metadata=pb.TensorMetadata(name=name, data_type=pb.INT32,
                                                       shape=[2, 3]),
                     byte_data=np.zeros((2, 3), np.int32).tobytes())
    details = expect_error(agent.stub.Predict, pb.PredictRequest(
        name=alias, tensors=[tensor("a", a, pb.FLOAT32), huge]),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert "20000 bytes" in details and len(details) < 1000


def test_a_huge_auxiliary_name_is_invalid_argument(agent: AgentProcess,
                                                   packages: Packages) -> None:
    load(agent, packages.mixed, "mixed-x")
    request = pb.CaptureDataRequest(
        model_name="mixed-x", capture_id="huge-aux",
        input_tensors=[tensor("a", np.zeros((2, 3), np.float32), pb.FLOAT32)],
        inputs=[pb.AuxiliaryData(name="x" * 20_000, encoding=pb.JSON,
                                 byte_data=b"{}")])
    details = expect_error(agent.stub.CaptureData, request, grpc.StatusCode.INVALID_ARGUMENT)
    assert "20000 characters" in details and len(details) < 1000
