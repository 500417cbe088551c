"""Bytes that are not the rpc's request message, on every method: INVALID_ARGUMENT, memory flat.

grpcio's own request parsing answers INTERNAL, logs a traceback per call and leaks about 15 KiB
per call for such bytes (issue 14, finding 1); the agent parses request bytes itself.
"""

from __future__ import annotations

import itertools

import grpc
import numpy as np
import psutil
import pytest
from support.agent_process import AgentProcess
from support.packages import Packages

from edgefleet.agent.serving.grpc_server import RPC_MESSAGES, SERVICE_NAME
from edgefleet.proto import agent_pb2 as pb

#: Not a message of any rpc: field 31, wire type 7 (no such wire type) and then junk.
GARBAGE = [b"\xff" * 20, b"\xfb\x01" + b"\x00" * 10, b"\x0a\xff\xff\xff\xff\x0f"]

SHORT, LONG = 10_000, 100_000
#: RSS growth allowed after warm-up; the leak was ~15 KiB per call (150 MiB per 10,000).
MAX_GROWTH_MIB = 8.0


def test_each_rpc_refuses_undecodable_bytes_with_invalid_argument(agent: AgentProcess) -> None:
    for rpc, garbage in itertools.product(RPC_MESSAGES, GARBAGE):
        call = agent.channel.unary_unary(f"/{SERVICE_NAME}/{rpc}")
        with pytest.raises(grpc.RpcError) as caught:
            call(garbage, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, garbage)
        assert "is not a valid AWS.SageMaker.Edge." in (caught.value.details() or "")


@pytest.mark.slow
def test_memory_stays_flat_and_the_log_short_under_undecodable_calls(
        agent: AgentProcess, packages: Packages, long_run: bool) -> None:
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="garbage-after"))
    calls = [agent.channel.unary_unary(f"/{SERVICE_NAME}/{rpc}") for rpc in RPC_MESSAGES]
    process = psutil.Process(agent.process.pid)

    def send(count: int) -> None:
        for index in range(count):
            with pytest.raises(grpc.RpcError) as caught:
                calls[index % len(calls)](GARBAGE[index % len(GARBAGE)], timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    send(1_000)  # warm-up: thread stacks, allocator arenas
    before = process.memory_info().rss
    log_before = len(agent.log())
    trials = LONG if long_run else SHORT
    send(trials)
    growth = (process.memory_info().rss - before) / 2**20

    print(f"\n{trials} undecodable calls: RSS {before / 2**20:.1f} MiB, growth {growth:+.2f} MiB")
    assert growth < MAX_GROWTH_MIB, f"RSS grew {growth:.1f} MiB over {trials} calls"
    # One rate-limited line a minute, not a traceback per call.
    new_log = agent.log()[log_before:]
    assert new_log.count("\n") <= 2 + trials // 20_000, new_log[-2000:]
    assert "Traceback" not in new_log
    # The next valid call is served, and served right.
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    reply = agent.stub.Predict(pb.PredictRequest(name="garbage-after", tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[2, 4]),
        byte_data=x.tobytes())]))
    out = reply.tensors[0]
    got = np.frombuffer(out.byte_data, np.float32).reshape(tuple(out.tensor_metadata.shape))
    np.testing.assert_allclose(got, x * 2 + 1)
