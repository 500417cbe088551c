"""Start and stop ``edgefleet-agent`` as a child process, the way a device's init system would.

The agent reads a flat JSON config with the SageMaker Edge Manager agent's keys
(shared/spec/agent-api.md, "Command line and config") and serves on a Unix socket, where the
standard ``grpc.health.v1`` service tells when it is ready.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class AgentError(RuntimeError):
    """The agent did not start or did not answer; the message says where its log is."""


def agent_command() -> list[str]:
    """``edgefleet-agent`` of this interpreter's environment, else ``python -m edgefleet.agent``."""
    script = Path(sys.executable).parent / "edgefleet-agent"
    if script.exists():
        return [str(script)]
    found = shutil.which("edgefleet-agent")
    return [found] if found else [sys.executable, "-m", "edgefleet.agent"]


def terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Stop a child the way an init system does: SIGTERM, wait up to ``timeout`` seconds, then
    SIGKILL; return its exit code. A second Ctrl-C or SIGTERM while waiting still never leaves
    the child behind (it is killed, and the interruption goes on)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise


class AgentProcess:
    """``edgefleet-agent -a SOCKET -c CONFIG`` as a child process; a context manager.

    The socket goes in a fresh short folder under the system temp dir (Unix socket paths are
    limited to about 100 bytes). Entering starts the agent and waits until the health service
    answers SERVING; leaving sends SIGTERM and waits, then kills if it has not exited.

    Args:
        config: the agent's JSON config.
        log_path: file that receives the agent's stdout and stderr.
        start_timeout: seconds to wait for SERVING.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
    """

    def __init__(self, config: Path, log_path: Path, *, start_timeout: float = 60.0,
                 stop_timeout: float = 30.0) -> None:
        self.config = config
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._socket_dir = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
        self.socket = self._socket_dir / "agent.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """gRPC target of the agent: ``unix://<socket>``."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        """Process id of the running agent."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the agent and wait until it serves.

        Raises:
            AgentError: it exited or did not serve within ``start_timeout``.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*agent_command(), "-a", str(self.socket), "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.start_timeout
        # Retry the connection every 20 ms while the agent starts (gRPC's default waits 1 s).
        fast_reconnect = [("grpc.initial_reconnect_backoff_ms", 20),
                          ("grpc.min_reconnect_backoff_ms", 20),
                          ("grpc.max_reconnect_backoff_ms", 100)]
        with grpc.insecure_channel(self.target, options=fast_reconnect) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self._process.poll() is not None:
                    raise AgentError(
                        f"edgefleet-agent exited with code {self._process.returncode} at start; "
                        f"see its log {self.log_path}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise AgentError(
                        f"edgefleet-agent did not serve on {self.socket} within "
                        f"{self.start_timeout:.0f} s; see its log {self.log_path}")
                time.sleep(0.2)

    def stop(self) -> int | None:
        """SIGTERM the agent, wait up to ``stop_timeout`` (then SIGKILL); return its exit code."""
        process, self._process = self._process, None
        code = None if process is None else terminate(process, self.stop_timeout)
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        return code

    def __enter__(self) -> AgentProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

