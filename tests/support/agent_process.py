"""Start and stop a real ``edgefleet-agent`` process on a real Unix socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgefleet.proto import agent_pb2_grpc

#: Clients (like the original agent's) raise message limits; so do the tests.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 1 << 30),
                   ("grpc.max_send_message_length", 1 << 30),
                   # Reconnect quickly while the agent starts (gRPC's default waits 1 s).
                   ("grpc.initial_reconnect_backoff_ms", 20),
                   ("grpc.min_reconnect_backoff_ms", 20),
                   ("grpc.max_reconnect_backoff_ms", 100)]


def short_socket_dir() -> Path:
    """A fresh folder with a short path: Unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="ef-", dir="/tmp"))


@dataclass
class AgentProcess:
    """A running agent and a client connected to it."""

    socket_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    channel: grpc.Channel = field(init=False)
    stub: agent_pb2_grpc.AgentStub = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(f"unix://{self.socket_path}", options=CHANNEL_OPTIONS)
        self.stub = agent_pb2_grpc.AgentStub(self.channel)

    def log(self) -> str:
        """Everything the agent wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` to the agent (by its own pid) and wait for it to exit."""
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


#: Every agent started by :func:`start_agent`, in order; :func:`stop_agents_from` stops the ones a
#: failed test left running (a test that raises before its ``stop()`` would otherwise leak a
#: process, and its ``Popen`` warns "still running" in whichever later test collects it).
STARTED: list[AgentProcess] = []


def stop_agents_from(index: int) -> None:
    """SIGKILL every agent in ``STARTED[index:]`` still running, and forget them."""
    for agent in STARTED[index:]:
        agent.stop(signal.SIGKILL, timeout=10)
    del STARTED[index:]


def agent_command() -> list[str]:
    """The agent's command line entry, from the same environment as the tests."""
    exe = shutil.which("edgefleet-agent", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "edgefleet.agent"]


def start_agent(config: dict[str, Any], workdir: Path, *, socket_path: Path | None = None,
                force: bool = False, timeout: float = 20.0) -> AgentProcess:
    """Write ``config`` to ``workdir``, start the agent there, wait until health is SERVING.

    Raises:
        RuntimeError: the agent exited or did not serve within ``timeout`` seconds (the message
            holds its log).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path or short_socket_dir() / "agent.sock"
    config_path = workdir / "agent.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / f"agent-{time.monotonic_ns()}.log"
    args = [*agent_command(), "-a", str(socket_path), "-c", str(config_path)]
    if force:
        args.append("-f")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(args, cwd=workdir, stdout=log_file, stderr=log_file,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    agent = AgentProcess(socket_path, process, log_path)
    STARTED.append(agent)
    deadline = time.monotonic() + timeout
    health = health_pb2_grpc.HealthStub(agent.channel)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode}:\n{agent.log()}")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return agent
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    agent.stop(signal.SIGKILL)
    raise RuntimeError(f"agent did not serve within {timeout} s:\n{agent.log()}")
