"""Agent Predict latency and throughput beside ONNX Runtime and the bare gRPC transport floor.

For each model, at 1 and 4 concurrent clients, it measures and prints p50, p99 and throughput of:

  (a) onnxruntime in-process (the same thread settings as the agent: 1 intra-op thread, no
      spinning);
  (b) a bare gRPC unary echo over a Unix socket with the same request payload, whose handler
      holds each call as long as the model computes (p50 of (a) at 1 client);
  (c) the agent's Predict with byte_data;
  (d) the agent's Predict with the input in System V shared memory;

then the agent's RSS with the demo model loaded and its time from start to serving, and the
issue's goals as PASS/FAIL lines. Run it on a quiet machine:

    .venv/bin/python benchmarks/agent/bench_predict.py [--demo-model PATH] [--calls 3000]

The demo model is the wind-farm detector the demo wrote (``windfarm-demo-output/``); the image
model is ``light_squeezenet.onnx`` from the ``onnx`` package (real architecture, generated
weights, input 1x3x224x224 float32).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import psutil
import sysv_ipc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgefleet.package import build_package
from edgefleet.package.keys import init_keys
from edgefleet.proto import agent_pb2 as pb
from edgefleet.proto import agent_pb2_grpc as pb_grpc
from edgefleet.tensors import ONNX_TYPES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OPTIONS = [("grpc.max_receive_message_length", 1 << 30),
           ("grpc.max_send_message_length", 1 << 30)]


@dataclass
class Result:
    """Latency percentiles (ms) and throughput (calls/s) of one series."""

    p50: float
    p99: float
    rate: float


def run_series(make_call: Callable[[], Callable[[], object]], calls: int,
               clients: int) -> Result:
    """Run ``calls`` calls split over ``clients`` threads, each with its own call function."""
    per_client = max(1, calls // clients)
    functions = [make_call() for _ in range(clients)]
    for fn in functions:  # warm up connections, caches and allocators
        for _ in range(min(50, per_client)):
            fn()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        fn, out = functions[index], latencies[index]
        barrier.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = np.array([x for series in latencies for x in series]) * 1e3
    return Result(float(np.percentile(merged, 50)), float(np.percentile(merged, 99)),
                  len(merged) / elapsed)


def wait_serving(socket_path: Path, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the health service answers SERVING."""
    started = time.monotonic()
    # Short reconnect backoff: gRPC's default (1 s) would measure the client, not the agent.
    fast = [("grpc.initial_reconnect_backoff_ms", 5), ("grpc.min_reconnect_backoff_ms", 5),
            ("grpc.max_reconnect_backoff_ms", 20)]
    with grpc.insecure_channel(f"unix://{socket_path}", options=fast) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError("agent exited during start")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                time.sleep(0.005)
    raise RuntimeError("agent did not serve in time")


WORKERS = max(2, os.cpu_count() or 2)


def start_agent(work: Path, root_certs: Path, pin: str | None) -> tuple[
        subprocess.Popen[bytes], Path, float]:
    socket_path = work / f"agent-{time.monotonic_ns()}.sock"
    config = work / "agent.json"
    config.write_text(json.dumps({"sagemaker_edge_core_root_certs_path": str(root_certs),
                                  "sagemaker_edge_local_data_root_path": str(work / "data"),
                                  "edgefleet_grpc_workers": WORKERS}))
    command = [sys.executable, "-m", "edgefleet.agent", "-a", str(socket_path), "-c", str(config)]
    if pin:
        command = ["taskset", "-c", pin, *command]
    started = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    wait_serving(socket_path, process, 30)
    return process, socket_path, time.monotonic() - started


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def model_input(path: Path) -> tuple[str, np.ndarray, int]:
    """Input name, a random input array and its wire dtype (batch of 1 for dynamic dims)."""
    session = ort.InferenceSession(str(path))
    node = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in node.shape]
    data_type = ONNX_TYPES[node.type]
    dtype = {5: np.float32, 6: np.float64}[data_type]
    array = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return node.name, array, data_type


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options)


def raw_call(socket_path: Path, method: str, payload: bytes) -> Callable[[], object]:
    """A client that sends pre-serialized bytes and keeps the reply's bytes.

    Agent and floor clients both skip protobuf work, so that the numbers compare the servers,
    not the clients' serialization (all processes share the same two cores).
    """
    channel = grpc.insecure_channel(f"unix://{socket_path}", options=OPTIONS)
    call = channel.unary_unary(method)
    return lambda: call(payload)


def bench_model(label: str, path: Path, package: Path, root_certs: Path, work: Path,
                calls: int, pin: str | None) -> dict[str, dict[int, Result]]:
    name, array, data_type = model_input(path)
    session = ort_session(path)
    feeds = {name: array}
    outputs = session.run(None, feeds)
    metadata = pb.TensorMetadata(name=name.encode(), data_type=data_type, shape=list(array.shape))
    by_bytes = pb.PredictRequest(name=label, tensors=[
        pb.Tensor(tensor_metadata=metadata, byte_data=array.tobytes())]).SerializeToString()
    reply = pb.PredictResponse(tensors=[
        pb.Tensor(tensor_metadata=pb.TensorMetadata(name=b"output", data_type=5,
                                                    shape=list(out.shape)),
                  byte_data=out.tobytes()) for out in outputs]).SerializeToString()
    results: dict[str, dict[int, Result]] = {}
    results["a onnxruntime"] = {c: run_series(lambda: lambda: session.run(None, feeds), calls, c)
                                for c in (1, 4)}
    hold_us = results["a onnxruntime"][1].p50 * 1e3

    echo_socket = work / "echo.sock"
    echo_cmd = [sys.executable, str(HERE / "echo_server.py"), "--socket", str(echo_socket),
                "--hold-us", f"{hold_us:.1f}", "--reply-bytes", str(len(reply)),
                "--workers", str(WORKERS)]
    if pin:
        echo_cmd = ["taskset", "-c", pin, *echo_cmd]
    echo = subprocess.Popen(echo_cmd)
    try:
        for _ in range(200):
            if echo_socket.exists():
                break
            time.sleep(0.02)
        results["b transport floor"] = {
            c: run_series(lambda: raw_call(echo_socket, "/bench.Echo/Call", by_bytes), calls, c)
            for c in (1, 4)}
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(10)
        echo_socket.unlink(missing_ok=True)

    agent, socket_path, _ = start_agent(work, root_certs, pin)
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o600, size=array.nbytes)
    segment.write(array.tobytes())
    segment.mode = 0o400
    by_shm = pb.PredictRequest(name=label, tensors=[pb.Tensor(
        tensor_metadata=metadata,
        shared_memory_handle=pb.SharedMemoryHandle(segment_id=segment.id))]).SerializeToString()
    predict = "/AWS.SageMaker.Edge.Agent/Predict"
    try:
        setup = pb_grpc.AgentStub(grpc.insecure_channel(f"unix://{socket_path}", options=OPTIONS))
        setup.LoadModel(pb.LoadModelRequest(url=str(package), name=label))
        results["c agent byte_data"] = {
            c: run_series(lambda: raw_call(socket_path, predict, by_bytes), calls, c)
            for c in (1, 4)}
        results["d agent shared memory"] = {
            c: run_series(lambda: raw_call(socket_path, predict, by_shm), calls, c)
            for c in (1, 4)}
        results["rss"] = {0: Result(psutil.Process(agent.pid).memory_info().rss / 2**20, 0, 0)}
    finally:
        segment.remove()
        stop(agent)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent Predict benchmark (prints numbers).")
    parser.add_argument("--demo-model", type=Path,
                        default=ROOT / "windfarm-demo-output" / "model" / "turbine-anomaly.onnx",
                        help="the wind-farm demo's ONNX model (run scripts/demo first)")
    parser.add_argument("--calls", type=int, default=3000, help="calls per series (small model)")
    parser.add_argument("--image-calls", type=int, default=400, help="calls per series (image)")
    parser.add_argument("--models", default="demo,image",
                        help="comma-separated subset of: demo, image")
    parser.add_argument("--pin", default=None,
                        help="CPU list for taskset on the servers, e.g. 0 (default: no pinning)")
    parser.add_argument("--workers", type=int, default=None,
                        help="gRPC worker threads of both servers (agent: edgefleet_grpc_workers;"
                        " default: the number of cores, at least 2)")
    args = parser.parse_args()
    if args.workers:
        global WORKERS
        WORKERS = args.workers
    image = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    if not args.demo_model.exists():
        sys.exit(f"{args.demo_model} not found: run scripts/demo first, or pass --demo-model")
    with tempfile.TemporaryDirectory(prefix="efb-", dir="/tmp") as tmp:
        work = Path(tmp)
        keys = init_keys(work / "keys")
        models = {label: spec for label, spec in {
            "demo": (args.demo_model, args.calls),
            "image": (image, args.image_calls),
        }.items() if label in args.models.split(",")}
        report: dict[str, dict[str, dict[int, Result]]] = {}
        for label, (path, calls) in models.items():
            package = build_package(path, name=label, version="1", key_path=keys.signing_key,
                                    cert_path=keys.signing_cert, out_dir=work / "packages")
            report[label] = bench_model(label, path, package, keys.root_certs_dir, work, calls,
                                        args.pin)
        starts = []
        for _ in range(5):
            process, _, seconds = start_agent(work, keys.root_certs_dir, args.pin)
            starts.append(seconds)
            stop(process)
    print_report(report, statistics.median(starts))


def print_report(report: dict[str, dict[str, dict[int, Result]]], start_seconds: float) -> None:
    print(f"{'model':6} {'series':24} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}")
    for label, series in report.items():
        for name, by_clients in series.items():
            if name == "rss":
                continue
            for clients, result in by_clients.items():
                print(f"{label:6} {name:24} {clients:>7} {result.p50:8.3f} {result.p99:8.3f} "
                      f"{result.rate:9.0f}")
    rss = report["demo"]["rss"][0].p50 if "demo" in report else None
    if rss is not None:
        print(f"agent RSS with the demo model loaded: {rss:.1f} MiB")
    print(f"agent start to serving (median of 5): {start_seconds * 1e3:.0f} ms")
    print()
    checks = []
    for label, series in report.items():
        a, b, c = (series[k] for k in ("a onnxruntime", "b transport floor", "c agent byte_data"))
        overhead = c[1].p50 - a[1].p50
        checks.append((f"{label}: agent overhead p50(c)-p50(a) = {overhead:.3f} ms <= 1.2 x "
                       f"p50(b) = {1.2 * b[1].p50:.3f} ms", overhead <= 1.2 * b[1].p50))
    if "demo" in report:
        demo = report["demo"]
        ratio = demo["c agent byte_data"][4].rate / demo["b transport floor"][4].rate
        checks.append((f"demo: 4-client throughput {ratio:.0%} of the floor's >= 90%",
                       ratio >= 0.9))
    if "image" in report:
        image = report["image"]
        ratio = image["c agent byte_data"][4].rate / image["a onnxruntime"][4].rate
        checks.append((f"image: 4-client throughput {ratio:.0%} of onnxruntime's >= 90%",
                       ratio >= 0.9))
        saved = image["c agent byte_data"][1].p50 - image["d agent shared memory"][1].p50
        checks.append((f"image: shared memory saves {saved:.3f} ms at p50 >= 0.5 ms",
                       saved >= 0.5))
    if rss is not None:
        checks.append((f"RSS {rss:.1f} MiB <= 100 MiB", rss <= 100))
    checks.append((f"start to serving {start_seconds:.2f} s <= 1 s", start_seconds <= 1.0))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
