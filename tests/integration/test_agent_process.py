"""The agent process: socket lifecycle, signals, config errors, health."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.agent_process import agent_command, short_socket_dir, start_agent
from support.packages import Packages, base_config
from support.polling import wait_for

from edgefleet.proto import agent_pb2 as pb


def run_agent(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*agent_command(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_removes_socket(packages: Packages, tmp_path: Path,
                                                 stop_signal: int) -> None:
    agent = start_agent(base_config(packages), tmp_path)
    health = health_pb2_grpc.HealthStub(agent.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="AWS.SageMaker.Edge.Agent"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert agent.stop(stop_signal) == 0
    assert not agent.socket_path.exists()
    assert "stopped" in agent.log()


def test_sighup_reloads_and_keeps_serving(packages: Packages, tmp_path: Path) -> None:
    # SIGHUP reads the config again (docs/agent-config.md, "Reloading on SIGHUP"); it used to
    # stop the agent.
    agent = start_agent(base_config(packages), tmp_path)
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
    unchanged = "config reloaded: the control-plane credentials are unchanged"
    agent.process.send_signal(signal.SIGHUP)
    wait_for(lambda: agent.log().count(unchanged) == 1, 10, "the reload to be logged")
    agent.process.send_signal(signal.SIGHUP)  # and again: the agent waits for the next signal
    wait_for(lambda: agent.log().count(unchanged) == 2, 10, "the second reload to be logged")
    assert agent.process.poll() is None
    listed = agent.stub.ListModels(pb.ListModelsRequest())
    assert [m.name for m in listed.models] == ["affine"]
    assert "stopping" not in agent.log()
    assert agent.stop() == 0


def test_calls_in_flight_finish_on_sigterm(packages: Packages, tmp_path: Path) -> None:
    agent = start_agent(base_config(packages), tmp_path)
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
    x = np.ones((4_000_000, 4), np.float32)
    request = pb.PredictRequest(name="affine", tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[4_000_000, 4]),
        byte_data=x.tobytes())])
    replies: list[pb.PredictResponse] = []
    sent = threading.Event()

    def predict() -> None:
        future = agent.stub.Predict.future(request)
        sent.set()
        replies.append(future.result())

    worker = threading.Thread(target=predict)
    worker.start()
    sent.wait()
    # Let the 64 MB request arrive before the signal: the agent has then accepted the call.
    threading.Event().wait(0.3)
    agent.process.send_signal(signal.SIGTERM)
    worker.join(60)
    assert replies and len(replies[0].tensors) == 2
    assert agent.process.wait(30) == 0


def test_stale_socket_needs_force(packages: Packages, tmp_path: Path) -> None:
    stale = short_socket_dir() / "agent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the file stays; nobody listens
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(base_config(packages)))
    result = run_agent(["-a", str(stale), "-c", str(config)], tmp_path)
    assert result.returncode != 0
    assert "stale socket" in result.stderr and "-f" in result.stderr
    agent = start_agent(base_config(packages), tmp_path, socket_path=stale, force=True)
    assert agent.stop() == 0


def test_socket_held_by_a_live_agent_is_an_error(packages: Packages, tmp_path: Path) -> None:
    agent = start_agent(base_config(packages), tmp_path)
    config = tmp_path / "second.json"
    config.write_text(json.dumps(base_config(packages)))
    result = run_agent(["-a", str(agent.socket_path), "-c", str(config), "-f"], tmp_path)
    assert result.returncode != 0
    assert "another process is serving" in result.stderr
    # The first agent still serves.
    assert list(agent.stub.ListModels(pb.ListModelsRequest()).models) == []
    assert agent.stop() == 0


@pytest.mark.parametrize(("config", "expected"), [
    ({"sagemaker_edge_core_capture_data_buffer_size": "lots"},
     "sagemaker_edge_core_capture_data_buffer_size"),
    ({"sagemaker_edge_core_capture_data_destination": "Tape"},
     "sagemaker_edge_core_capture_data_destination"),
    ({"sagemaker_edge_log_verbose": "maybe"}, "sagemaker_edge_log_verbose"),
    ({"edgefleet_cpu_affinity": [-1]}, "edgefleet_cpu_affinity"),
])
def test_config_errors_name_the_key(tmp_path: Path, config: dict[str, object],
                                    expected: str) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    result = run_agent(["-a", str(short_socket_dir() / "a.sock"), "-c", str(path)], tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_config_key_warns_and_serves(packages: Packages, tmp_path: Path) -> None:
    agent = start_agent(base_config(packages, sagemaker_edge_core_colour="blue"), tmp_path)
    assert agent.stop() == 0
    assert "sagemaker_edge_core_colour" in agent.log()


def test_help_explains() -> None:
    result = subprocess.run([*agent_command(), "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for word in ("-a", "-c", "-f", "SageMaker", "SIGTERM"):
        assert word in result.stdout


def test_agent_without_models_answers_not_found(packages: Packages, tmp_path: Path) -> None:
    agent = start_agent(base_config(packages), tmp_path)
    with pytest.raises(grpc.RpcError) as caught:
        agent.stub.Predict(pb.PredictRequest(name="nothing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "call LoadModel" in caught.value.details()
    assert agent.stop() == 0


def test_data_root_is_private(packages: Packages, tmp_path: Path) -> None:
    data = tmp_path / "state"
    agent = start_agent(base_config(packages, sagemaker_edge_local_data_root_path=str(data)),
                        tmp_path)
    try:
        assert data.stat().st_mode & 0o777 == 0o700
    finally:
        assert agent.stop() == 0


def test_message_limit_beyond_grpc_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"edgefleet_max_message_bytes": 1 << 32}))
    result = run_agent(["-a", str(short_socket_dir() / "a.sock"), "-c", str(path)], tmp_path)
    assert result.returncode == 2
    assert "edgefleet_max_message_bytes" in result.stderr


def _thread_cpus(pid: int) -> dict[str, str]:
    cpus = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                cpus[task.name] = line.split(":", 1)[1].strip()
    return cpus


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one")
def test_cpu_affinity_pins_every_thread(packages: Packages, tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    agent = start_agent(base_config(packages, edgefleet_cpu_affinity=[cpu]), tmp_path)
    try:
        # Threads that start with the first calls (gRPC workers, ONNX Runtime) count too.
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
        x = np.ones((1, 4), np.float32)
        request = pb.PredictRequest(name="affine", tensors=[pb.Tensor(
            tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4]),
            byte_data=x.tobytes())])
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: agent.stub.Predict(request), range(32)))
        threads = _thread_cpus(agent.process.pid)
        assert len(threads) > 3
        assert set(threads.values()) == {str(cpu)}
        assert f"pinned to CPUs {cpu}" in agent.log()
    finally:
        assert agent.stop() == 0


def test_cpu_affinity_outside_the_allowed_cpus_stops_the_start(packages: Packages,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(base_config(packages, edgefleet_cpu_affinity=[4095])))
    result = run_agent(["-a", str(short_socket_dir() / "a.sock"), "-c", str(path)], tmp_path)
    assert result.returncode == 1
    assert "edgefleet_cpu_affinity names CPUs [4095]" in result.stderr
    assert f"{sorted(os.sched_getaffinity(0))}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("trial", range(8))
def test_sigterm_as_soon_as_the_socket_appears_is_a_clean_stop(
        packages: Packages, tmp_path: Path, trial: int) -> None:
    # The socket exists before the agent serves: a SIGTERM then (an orchestrator stopping a
    # unit that just started) must still end in a clean stop, never an exit by the signal or a
    # process that ignores it.
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(base_config(packages)))
    sock = short_socket_dir() / "agent.sock"
    process = subprocess.Popen([*agent_command(), "-a", str(sock), "-c", str(config)],
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(0.002 * trial)  # a little later each trial: across the rest of the start
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    assert b"received SIGTERM" in err and not sock.exists()
