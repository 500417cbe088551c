"""Rotating a device's credentials under a running agent: a real ``edgefleet server`` process, a
real ``edgefleet-agent`` process on a real Unix socket, and a client calling Predict throughout.

The operator rotates the key with ``edgefleet device credentials NAME --agent-config FILE``
over the agent's own config file. The server refuses the old key at once, so the agent's
heartbeats fail, while Predict goes on; SIGHUP makes the same agent process (same pid) take the
new key, and the server hears it again within a few heartbeat periods. A second test sends
SIGHUP with broken config files: one ERROR each, and the old key keeps working.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from support.agent_process import AgentProcess, start_agent
from support.fleet_server import (
    FLEET,
    Server,
    fast_agent_config,
    free_port,
    start_server,
    stop_server,
)
from support.packages import Packages
from support.polling import wait_for

from edgefleet.proto import agent_pb2 as pb

pytestmark = pytest.mark.slow

DEVICE = "turbine-7"

#: The agent's heartbeat period in these tests (fast_agent_config), in seconds.
HEARTBEAT_SECONDS = 0.5


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log")
    yield running
    stop_server(running)


@dataclass
class Predictions:
    """A client thread calling Predict on the agent without pause until :meth:`stop`."""

    agent: AgentProcess
    served: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="predict-client")
        self._thread.start()

    def _run(self) -> None:
        x = np.ones((1, 4), np.float32)
        request = pb.PredictRequest(name="affine", tensors=[pb.Tensor(
            tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4]),
            byte_data=x.tobytes())])
        while not self._stop.is_set():
            try:
                reply = self.agent.stub.Predict(request, timeout=10)
            except grpc.RpcError as error:
                self.errors.append(f"{error.code()}: {error.details()}")
                continue
            if len(reply.tensors) != 2:
                self.errors.append(f"{len(reply.tensors)} output tensors")
            self.served += 1

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)


@pytest.fixture()
def agent(server: Server, packages: Packages, tmp_path: Path) -> Iterator[AgentProcess]:
    """The device, registered, and its agent started with the config the server wrote (fast
    test timings; the data folder where `device credentials --agent-config` puts it) in
    ``tmp_path/turbine-7/agent.json``, serving a model and heard by the server."""
    workdir = tmp_path / DEVICE
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    answer = server.admin.register_device({"name": DEVICE, "fleet": FLEET,
                                           "root_certs_path": str(packages.root_certs)})
    config = fast_agent_config(answer["agent_config"], workdir,
                               sagemaker_edge_local_data_root_path=str(workdir / f"{DEVICE}-data"))
    running = start_agent(config, workdir)
    try:
        running.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
        wait_for(lambda: latest_heartbeat(server), 10, "the agent's first heartbeat")
        yield running
    finally:
        running.stop()  # a no-op after the test's own stop


def latest_heartbeat(server: Server) -> float | None:
    """When the server stored the device's latest heartbeat (Unix time, seconds)."""
    value = server.admin.describe_device(DEVICE)["latest_heartbeat"]
    return float(value) if value is not None else None


def heartbeat_after(server: Server, before: float) -> float | None:
    latest = latest_heartbeat(server)
    return latest if latest is not None and latest > before else None


def logged(agent: AgentProcess, text: str, since: int) -> bool:
    """Whether the agent logged ``text`` after the first ``since`` characters of its log."""
    return text in agent.log()[since:]


def rotate_with_the_cli(server: Server, agent_config: Path) -> dict[str, Any]:
    """`edgefleet device credentials` as an operator runs it, over the agent's config file;
    returns the device as the server then describes it."""
    token = (server.data_dir / "admin-token").read_text().strip()
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.fleet", "device", "credentials", DEVICE,
         "--agent-config", str(agent_config), "--server", server.url],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "EDGEFLEET_ADMIN_TOKEN": token})
    assert done.returncode == 0, done.stderr
    described: dict[str, Any] = server.admin.describe_device(DEVICE)
    return described


def test_sighup_takes_rotated_credentials_without_dropping_a_call(
        server: Server, agent: AgentProcess, tmp_path: Path) -> None:
    path = tmp_path / DEVICE / "agent.json"
    pid = agent.process.pid
    old_key = server.admin.describe_device(DEVICE)["access_key_id"]
    predictions = Predictions(agent)
    predictions.start()
    try:
        time.sleep(2 * HEARTBEAT_SECONDS)
        before_rotation = predictions.served
        seen = len(agent.log())
        device = rotate_with_the_cli(server, path)
        new_key = device["access_key_id"]
        assert new_key != old_key
        new_secret = json.loads(path.read_text())[
            "edgefleet_control_secret_access_key"]

        # The server refuses the old key: the agent says so, and no heartbeat lands.
        wait_for(functools.partial(logged, agent, "send_heartbeat refused", seen), 10,
                 "the agent to log the refused heartbeat")
        refused = agent.log()[seen:]
        assert "HTTP 403" in refused and "check edgefleet_control_access_key_id" in refused
        last = latest_heartbeat(server)
        assert last is not None
        time.sleep(3 * HEARTBEAT_SECONDS)
        assert latest_heartbeat(server) == last, "a heartbeat signed with the old key landed"

        seen = len(agent.log())
        hup = time.monotonic()
        agent.process.send_signal(signal.SIGHUP)
        accepted = wait_for(lambda: heartbeat_after(server, last), 10 * HEARTBEAT_SECONDS,
                            "a heartbeat with the new key")
        took = time.monotonic() - hup
        assert accepted is not None
        time.sleep(2 * HEARTBEAT_SECONDS)  # Predict goes on after the reload, too
    finally:
        predictions.stop()
    reloaded = agent.log()[seen:]
    print(f"\nPredict calls: {predictions.served} in all, {predictions.served - before_rotation} "
          f"from the rotation on; errors: {len(predictions.errors)}; heartbeat accepted "
          f"{took:.2f} s after SIGHUP ({accepted - last:.2f} s after the last one with the old "
          f"key)")
    assert predictions.errors == []
    assert predictions.served - before_rotation > 100
    assert agent.process.poll() is None and agent.process.pid == pid
    assert f"new control-plane credentials (access key id {new_key})" in reloaded
    # The CLI wrote the server's timings: named, and not applied until a restart.
    assert "changed keys not applied until the agent restarts: " in reloaded
    assert "edgefleet_heartbeat_interval_seconds" in reloaded
    assert "received SIGTERM" not in reloaded and "stopping" not in reloaded
    assert server.admin.describe_device(DEVICE)["access_key_id"] == new_key
    logs = agent.log()
    assert agent.stop() == 0, logs
    assert new_secret not in logs and new_secret not in server.log.read_text()


def test_sighup_with_a_broken_config_keeps_the_old_credentials(
        server: Server, agent: AgentProcess, tmp_path: Path) -> None:
    path = tmp_path / DEVICE / "agent.json"
    good = json.loads(path.read_text())
    predictions = Predictions(agent)
    predictions.start()
    try:
        broken: list[tuple[str | None, str]] = [
            ("{not json", "is not valid JSON"),
            (json.dumps({**good, "edgefleet_heartbeat_interval_seconds": -1}),
             "key edgefleet_heartbeat_interval_seconds: Input should be greater than 0"),
            (None, "cannot read config file"),
        ]
        for content, problem in broken:
            if content is None:
                path.unlink()
            else:
                path.write_text(content)
            seen = len(agent.log())
            agent.process.send_signal(signal.SIGHUP)
            wait_for(functools.partial(logged, agent, "SIGHUP: config not reloaded", seen), 10,
                     f"the agent to refuse a config with {problem!r}")
            time.sleep(0.2)  # anything else the reload would log
            errors = [line for line in agent.log()[seen:].splitlines() if " ERROR " in line]
            assert len(errors) == 1, errors
            assert problem in errors[0] and str(path) in errors[0], errors[0]
        last = latest_heartbeat(server)
        assert last is not None
        wait_for(lambda: heartbeat_after(server, last), 10 * HEARTBEAT_SECONDS,
                 "a heartbeat with the old key")
    finally:
        predictions.stop()
    print(f"\nPredict calls: {predictions.served}; errors: {len(predictions.errors)}")
    assert predictions.errors == [] and predictions.served > 100
    assert agent.process.poll() is None
    logs = agent.log()
    assert "refused" not in logs
    assert agent.stop() == 0, logs
