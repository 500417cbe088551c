"""The agent as a service, with real processes: systemd's notify protocol on a real
``NOTIFY_SOCKET`` datagram socket (READY=1 only once the socket answers, WATCHDOG=1 at half of
``WATCHDOG_USEC`` and only while it answers, STOPPING=1 on SIGTERM), the crash count after
``kill -9`` in the heartbeats a real control plane receives, and ``edgefleet-agent health``."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.agent_process import agent_command, short_socket_dir, start_agent
from support.fleet_server import FLEET, Server, free_port, register, start_server, stop_server
from support.packages import Packages, base_config
from support.polling import wait_for

from edgefleet.agent.systemd import check_health

pytestmark = pytest.mark.slow

#: WATCHDOG_USEC of these tests: 1 s, so the agent pings every 0.5 s.
WATCHDOG_USEC = 1_000_000


@dataclass
class NotifyRecorder:
    """systemd's side of the protocol: a bound datagram socket and what arrived, with times.

    On READY=1 it checks the agent's health at once, as a client started ``After=`` the unit
    would, and keeps the answer.
    """

    path: Path
    socket_path: Path
    messages: list[tuple[float, str]] = field(default_factory=list)
    health_at_ready: str | None = "not checked"
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if message.startswith("READY=1"):
                self.health_at_ready = check_health(self.socket_path, timeout=2)
            self.messages.append((time.monotonic(), message))

    def times(self, assignment: str) -> list[float]:
        return [t for t, m in self.messages if assignment in m.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyRecorder]:
    folder = short_socket_dir()
    got = NotifyRecorder(folder / "notify", folder / "agent.sock")
    # start_agent passes this process's environment on to the agent.
    monkeypatch.setenv("NOTIFY_SOCKET", str(got.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    yield got
    got.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_ready_watchdog_and_stopping_over_a_real_notify_socket(
        packages: Packages, tmp_path: Path, recorder: NotifyRecorder) -> None:
    agent = start_agent(base_config(packages), tmp_path, socket_path=recorder.socket_path)
    try:
        wait_for(lambda: recorder.times("READY=1"), 10, "READY=1")
        assert recorder.health_at_ready is None, recorder.health_at_ready  # it served already
        (_, ready), *_ = [(t, m) for t, m in recorder.messages if "READY=1" in m]
        assert ready == f"READY=1\nSTATUS=serving on unix://{recorder.socket_path}"
        wait_for(lambda: len(recorder.times("WATCHDOG=1")) >= 5, 10, "five keep-alives")
        pings = recorder.times("WATCHDOG=1")
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        # Half of WATCHDOG_USEC after each check, plus the check itself (a few ms; more on a
        # loaded machine).
        assert all(0.45 < gap < 1.0 for gap in gaps), gaps
        assert 0.45 < statistics.median(gaps) < 0.7, gaps
        assert recorder.times("READY=1")[0] < pings[0]
    finally:
        code = agent.stop(signal.SIGTERM)
    assert code == 0, agent.log()
    (stopping,) = recorder.times("STOPPING=1")
    assert all(t < stopping for t in recorder.times("WATCHDOG=1"))  # nothing after STOPPING=1
    assert len(recorder.times("READY=1")) == 1


def test_the_watchdog_starves_while_the_socket_does_not_answer(
        packages: Packages, tmp_path: Path, recorder: NotifyRecorder) -> None:
    agent = start_agent(base_config(packages), tmp_path, socket_path=recorder.socket_path)
    try:
        wait_for(lambda: len(recorder.times("WATCHDOG=1")) >= 2, 10, "keep-alives")
        # The process lives on, but no client can reach it: the socket file is gone.
        recorder.socket_path.unlink()
        cut = time.monotonic()
        wait_for(lambda: [m for t, m in recorder.messages if t > cut and "not answering" in m],
                 5, "the STATUS saying the agent does not answer")
        time.sleep(2.5 * WATCHDOG_USEC / 1e6)  # systemd would have killed it by now
        late = [t for t in recorder.times("WATCHDOG=1") if t > cut + 0.6]
        assert late == [], "WATCHDOG=1 sent while the socket does not answer"
        assert agent.process.poll() is None  # killing is systemd's job, not the agent's
        assert "health check of the agent's own socket failed: no socket at" in agent.log()
    finally:
        agent.stop(signal.SIGTERM)


# -- the crash count in heartbeats ------------------------------------------------------------
@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log")
    yield running
    stop_server(running)


def agent_metrics(server: Server, device: str) -> dict[str, float]:
    described = server.admin.describe_device(device)
    return {m["MetricName"]: m["Value"] for m in described["agent_metrics"]}


def reported(server: Server, device: str, **expected: float) -> dict[str, float] | None:
    metrics = agent_metrics(server, device)
    return metrics if all(metrics.get(k) == v for k, v in expected.items()) else None


def test_kill_9_counts_a_crash_in_the_heartbeats(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "edgefleet-root.pem").write_bytes(server.admin.root_certificate())
    workdir = tmp_path / "turbine-5"
    config: dict[str, Any] = register(server, "turbine-5", workdir, certs)
    # As under the rendered unit: the agent knows its unit and asks systemctl for NRestarts.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\necho 4\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EDGEFLEET_SYSTEMD_UNIT", "edgefleet-agent.service")

    agent = start_agent(config, workdir)
    wait_for(lambda: reported(server, "turbine-5", **{"crash-count": 0}), 20, "a heartbeat")
    agent.stop(signal.SIGKILL)
    agent = start_agent(config, workdir, force=True)  # the killed agent left its socket
    try:
        metrics = wait_for(lambda: reported(server, "turbine-5", **{"restart-count": 1}), 20,
                           "the heartbeat after the restart")
        assert metrics["crash-count"] == 1 and metrics["service-restarts"] == 4
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    assert "did not stop cleanly; crashes so far: 1" in agent.log()
    agent = start_agent(config, workdir)  # after a clean stop: no crash counted
    try:
        metrics = wait_for(lambda: reported(server, "turbine-5", **{"restart-count": 2}), 20,
                           "the heartbeat after the clean restart")
        assert metrics["crash-count"] == 1
    finally:
        assert agent.stop() == 0, agent.log()


# -- edgefleet-agent health -------------------------------------------------------------------
def health(socket_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*agent_command(), "health", "--socket", str(socket_path)],
                          capture_output=True, text=True, timeout=60)


def test_health_command_against_a_live_and_a_stopped_agent(packages: Packages,
                                                           tmp_path: Path) -> None:
    agent = start_agent(base_config(packages), tmp_path)
    try:
        done = health(agent.socket_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"SERVING: unix://{agent.socket_path}\n"
    finally:
        assert agent.stop() == 0
    done = health(agent.socket_path)
    assert done.returncode == 1
    assert done.stderr == (f"edgefleet-agent health: no socket at {agent.socket_path}: no agent "
                           f"serves there (is it running, and with this --socket?)\n")
