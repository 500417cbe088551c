"""Property-based fuzzing of every agent rpc through the real socket (issue 14, "Bad input").

Hypothesis builds malformed requests: wrong dtypes, huge, negative or overflowing shapes, byte
lengths that do not match, names that are long or not UTF-8, missing fields, absurd
shared-memory ids, offsets and sizes, timestamps out of range, raw garbage and mutated valid
messages. For every case only a status code documented for that rpc
(/work/shared/spec/agent-api.md, "Status codes clients rely on") may come back, the agent must
stay up, and at the end its memory must not have grown and a valid call must be right.

``pytest --long`` runs 10x the cases (docs/reliability.md has both counts).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.agent_process import AgentProcess, start_agent
from support.packages import Packages, base_config

from edgefleet.agent.serving.grpc_server import RPC_MESSAGES, SERVICE_NAME
from edgefleet.proto import agent_pb2 as pb

pytestmark = pytest.mark.slow

Code = grpc.StatusCode
#: What each rpc may answer; INVALID_ARGUMENT is documented for malformed requests of every rpc.
ALLOWED: dict[str, set[grpc.StatusCode]] = {
    "Predict": {Code.NOT_FOUND, Code.INVALID_ARGUMENT},
    "LoadModel": {Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.RESOURCE_EXHAUSTED,
                  Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT},
    "UnLoadModel": {Code.NOT_FOUND, Code.INVALID_ARGUMENT},
    "ListModels": {Code.INVALID_ARGUMENT},
    "DescribeModel": {Code.NOT_FOUND, Code.INVALID_ARGUMENT},
    "CaptureData": {Code.ALREADY_EXISTS, Code.RESOURCE_EXHAUSTED, Code.OUT_OF_RANGE,
                    Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.NOT_FOUND},
    "GetCaptureDataStatus": {Code.NOT_FOUND, Code.INVALID_ARGUMENT},
}
#: Cases per rpc: CI's run (7 rpcs: 10,500 cases), and under --long (105,000).
SHORT, LONG = 1_500, 15_000
ALIAS = "fuzzed"  # loaded for the whole module; the only name most cases can hit

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(
    ["", ALIAS, "x" * 101, "y" * 20_000, "\u00e9" * 9_000, "../etc", "a.b", f"{ALIAS}\0"]))
#: Model names: mostly the loaded model's, so that cases reach the tensor checks behind it.
MODEL = st.one_of(st.just(ALIAS), st.just(ALIAS), st.just(ALIAS), TEXT)
NAME_BYTES = st.one_of(st.just(b"x"), st.just(b"x"), st.binary(max_size=40), st.sampled_from(
    [b"\xff\xfe", b"x" * 20_000, b"", b"\xc3"]))
#: Shapes: often the model's own [n, 4], else anything int32 allows, up to 70 dimensions.
SHAPES = st.one_of(st.tuples(st.integers(-2, 5), st.just(4)).map(list),
                   st.lists(st.integers(-3, 70) | st.sampled_from([2**31 - 1, -(2**31)]) | INT32,
                            max_size=70))


@st.composite
def tensors(draw: st.DrawFn) -> pb.Tensor:
    tensor = pb.Tensor()
    if draw(st.booleans()):
        meta = tensor.tensor_metadata
        meta.name = draw(NAME_BYTES)
        meta.data_type = draw(st.integers(0, 9) | st.just(pb.FLOAT32) | INT32)
        meta.shape.extend(draw(SHAPES))
    kind = draw(st.sampled_from(["bytes", "shm", "none"]))
    if kind == "bytes":
        rows = draw(st.integers(0, 5))  # often the right length for [rows, 4] float32
        tensor.byte_data = draw(st.just(b"\0" * 16 * rows) | st.binary(max_size=512))
    elif kind == "shm":
        handle = tensor.shared_memory_handle
        handle.segment_id = draw(UINT64)
        handle.offset = draw(UINT64)
        handle.size = draw(UINT64)
    return tensor


@st.composite
def auxiliary(draw: st.DrawFn) -> pb.AuxiliaryData:
    aux = pb.AuxiliaryData(name=draw(TEXT), encoding=draw(st.integers(-5, 10)))
    if draw(st.booleans()):
        aux.byte_data = draw(st.binary(max_size=256))
    else:
        aux.shared_memory_handle.segment_id = draw(UINT64)
        aux.shared_memory_handle.offset = draw(UINT64)
        aux.shared_memory_handle.size = draw(UINT64)
    return aux


def _urls(workdir: Path) -> list[str]:
    """Paths a careless or hostile client might load: every kind of file that is not a package."""
    (workdir / "folder").mkdir(exist_ok=True)
    (workdir / "text.tar.gz").write_text("not an archive")
    if not (workdir / "pipe.tar.gz").exists():
        os.mkfifo(workdir / "pipe.tar.gz")
    return [str(workdir / name) for name in ("folder", "text.tar.gz", "pipe.tar.gz", "missing")] + [
        "/dev/zero", "/dev/null", "/proc/self/mem", "/etc/passwd", "/", ""]


def requests(rpc: str, urls: list[str]) -> st.SearchStrategy[Any]:
    """Well-typed but malformed requests of ``rpc``."""
    if rpc == "Predict":
        return st.builds(pb.PredictRequest, name=MODEL, tensors=st.lists(tensors(), max_size=4))
    if rpc == "LoadModel":
        return st.builds(pb.LoadModelRequest, url=st.sampled_from(urls) | TEXT, name=TEXT)
    if rpc in ("UnLoadModel", "DescribeModel"):
        return st.builds(getattr(pb, f"{rpc}Request"), name=MODEL)
    if rpc == "ListModels":
        return st.just(pb.ListModelsRequest())
    if rpc == "GetCaptureDataStatus":
        return st.builds(pb.GetCaptureDataStatusRequest, capture_id=TEXT)

    @st.composite
    def capture(draw: st.DrawFn) -> pb.CaptureDataRequest:
        request = pb.CaptureDataRequest(
            model_name=draw(MODEL), capture_id=draw(TEXT),
            input_tensors=draw(st.lists(tensors(), max_size=3)),
            output_tensors=draw(st.lists(tensors(), max_size=3)),
            inputs=draw(st.lists(auxiliary(), max_size=2)),
            outputs=draw(st.lists(auxiliary(), max_size=2)))
        if draw(st.booleans()):
            request.inference_timestamp.seconds = draw(INT64)
            request.inference_timestamp.nanos = draw(INT32)
        return request
    return capture()


@st.composite
def wire_bytes(draw: st.DrawFn, rpc: str, urls: list[str]) -> bytes:
    """Bytes on the wire: a malformed request, raw garbage, or a valid one with bytes flipped."""
    kind = draw(st.sampled_from(["message"] * 4 + ["garbage", "mutated"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    data = bytearray(draw(requests(rpc, urls)).SerializeToString())
    if kind == "mutated" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzzed(packages: Packages,
           tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("fuzz")
    agent = start_agent(base_config(packages), workdir / "agent")
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name=ALIAS))
    yield agent, _urls(workdir), packages.affine
    assert agent.stop() == 0, agent.log()[-4000:]


def _valid_predict_is_right(agent: AgentProcess) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    reply = agent.stub.Predict(pb.PredictRequest(name=ALIAS, tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[2, 4]),
        byte_data=x.tobytes())]), timeout=30)
    out = reply.tensors[0]
    got = np.frombuffer(out.byte_data, np.float32).reshape(tuple(out.tensor_metadata.shape))
    np.testing.assert_allclose(got, x * 2 + 1)


@pytest.mark.parametrize("rpc", list(RPC_MESSAGES))
def test_fuzzed_requests_get_only_documented_codes(fuzzed: Any, rpc: str,
                                                   long_run: bool) -> None:
    agent, urls, affine = fuzzed
    call = agent.channel.unary_unary(f"/{SERVICE_NAME}/{rpc}")
    codes: Counter[str] = Counter()
    process = psutil.Process(agent.process.pid)
    before = process.memory_info().rss

    @settings(max_examples=LONG if long_run else SHORT, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=wire_bytes(rpc, urls))
    def case(data: bytes) -> None:
        try:
            call(data, timeout=30)
            codes["OK"] += 1
        except grpc.RpcError as error:
            codes[error.code().name] += 1
            assert error.code() in ALLOWED[rpc], (
                f"{rpc} answered {error.code().name}: {error.details()!r} for {data[:200]!r}")
            assert error.details(), "every error carries details"
        assert agent.process.poll() is None, agent.log()[-4000:]

    case()
    growth = (process.memory_info().rss - before) / 2**20
    print(f"\n{rpc}: {sum(codes.values())} cases {dict(codes)}, RSS growth {growth:+.1f} MiB")
    # Nothing that was refused may change what a valid call gets. (UnLoadModel's cases may
    # have unloaded the model, rightly: load it again for the next rpc.)
    if rpc == "UnLoadModel" and ALIAS not in {m.name for m in agent.stub.ListModels(
            pb.ListModelsRequest()).models}:
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(affine), name=ALIAS))
    _valid_predict_is_right(agent)
    assert growth < 64, f"RSS grew {growth:.1f} MiB over {sum(codes.values())} cases"
    assert "Traceback" not in agent.log(), agent.log()[-4000:]
