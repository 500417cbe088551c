"""8 threads x 1,000 predictions on 2 models while other models load and unload."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from support.agent_process import AgentProcess
from support.packages import Packages

from edgefleet.proto import agent_pb2 as pb

THREADS = 8
CALLS_PER_THREAD = 1_000


def test_parallel_predictions_with_loads_and_unloads(agent: AgentProcess,
                                                     packages: Packages) -> None:
    stub = agent.stub
    stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="conc-affine"))
    stub.LoadModel(pb.LoadModelRequest(url=str(packages.mixed), name="conc-mixed"))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.integers(-5, 5, (2, 3)).astype(np.int32)
    requests = {
        "conc-affine": pb.PredictRequest(name="conc-affine", tensors=[pb.Tensor(
            tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[3, 4]),
            byte_data=x.tobytes())]),
        "conc-mixed": pb.PredictRequest(name="conc-mixed", tensors=[
            pb.Tensor(tensor_metadata=pb.TensorMetadata(name=b"a", data_type=pb.FLOAT32,
                                                        shape=[2, 3]), byte_data=a.tobytes()),
            pb.Tensor(tensor_metadata=pb.TensorMetadata(name=b"b", data_type=pb.INT32,
                                                        shape=[2, 3]), byte_data=b.tobytes())]),
    }
    expected = {alias: stub.Predict(request).SerializeToString(deterministic=True)
                for alias, request in requests.items()}
    stop = threading.Event()
    churn_count = 0

    def churn() -> None:
        # Another version under its own alias comes and goes while the two models serve.
        nonlocal churn_count
        while not stop.is_set():
            stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine_v2), name="conc-v2"))
            stub.Predict(pb.PredictRequest(name="conc-v2", tensors=requests["conc-affine"].tensors))
            stub.UnLoadModel(pb.UnLoadModelRequest(name="conc-v2"))
            churn_count += 1

    def worker(index: int) -> int:
        alias = "conc-affine" if index % 2 else "conc-mixed"
        mismatches = 0
        for _ in range(CALLS_PER_THREAD):
            reply = stub.Predict(requests[alias])
            mismatches += reply.SerializeToString(deterministic=True) != expected[alias]
        return mismatches

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            mismatches = list(pool.map(worker, range(THREADS)))
    finally:
        stop.set()
        churner.join(60)
    assert mismatches == [0] * THREADS
    assert churn_count >= 2, "loads and unloads did not interleave with the predictions"
    stub.UnLoadModel(pb.UnLoadModelRequest(name="conc-affine"))
    stub.UnLoadModel(pb.UnLoadModelRequest(name="conc-mixed"))
