"""A real ``edgefleet server`` process for tests, and helpers that drive it and agents."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edgefleet.fleet.client import AdminClient
from edgefleet.proto import agent_pb2 as pb
from support.agent_process import AgentProcess
from support.packages import Packages
from support.polling import wait_for
from support.tls import ServerCertificate

FLEET = "wind"


@dataclass
class Server:
    """A running ``edgefleet server`` (SQLite and the local object store in ``data_dir``)."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    admin: AdminClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(data_dir: Path, port: int, log: Path, *,
                 database_url: str | None = None, tls: ServerCertificate | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    """Start ``edgefleet server`` on 127.0.0.1:``port`` and wait until it is healthy.

    Args:
        data_dir: its data folder (admin token, object store, and the SQLite database unless
            ``database_url`` names another).
        log: file that receives its output (appended).
        tls: serve HTTPS with this certificate (the admin client trusts its CA).
        env: extra environment of the server process (``EDGEFLEET_SERVER_*`` settings, the
            ``AWS_*`` variables its boto3 reads source models with).
        args: more options of ``edgefleet server`` (``--region``: the command's defaults
            override ``EDGEFLEET_SERVER_*`` variables of the same settings).
    """
    database = ["--database-url", database_url] if database_url else []
    if tls is not None:
        database += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.fleet", "server", "--port", str(port),
             "--data-dir", str(data_dir), *database, *args], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify: str | bool = str(tls.ca) if tls else True
    try:
        wait_for(lambda: healthy(url, process, log, verify), 60, "the server to start")
    except AssertionError:
        if process.poll() is None:  # never leave a server behind a failed start
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        raise
    admin = AdminClient(url, (data_dir / "admin-token").read_text().strip(), verify=verify)
    return Server(url, data_dir, process, log, admin)


def stop_server(server: Server) -> None:
    server.admin.close()
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)


def healthy(url: str, process: subprocess.Popen[bytes], log: Path,
            verify: str | bool = True) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"server exited: {log.read_text()}")
    try:
        context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        return httpx.get(f"{url}/healthz", timeout=1, verify=context).status_code == 200
    except httpx.HTTPError:
        return False


def root_certs(server: Server, folder: Path) -> Path:
    """``folder`` holding the server's package-signing root certificate, as agents need it
    (``sagemaker_edge_core_root_certs_path``)."""
    folder.mkdir()
    (folder / "edgefleet-root.pem").write_bytes(server.admin.root_certificate())
    return folder


def register(server: Server, name: str, workdir: Path, certs: Path,
             **keys: Any) -> dict[str, Any]:
    """Register a device; its agent config as the server wrote it, plus fast test timings."""
    answer = server.admin.register_device({"name": name, "fleet": FLEET,
                                           "root_certs_path": str(certs)})
    return fast_agent_config(answer["agent_config"], workdir, **keys)


def fast_agent_config(agent_config: dict[str, Any], workdir: Path,
                      **keys: Any) -> dict[str, Any]:
    """An agent config as the server wrote it, with its data in ``workdir`` and fast test
    timings (polls, heartbeats and the health window under a second)."""
    return {**agent_config,
            "sagemaker_edge_local_data_root_path": str(workdir / "data"),
            "sagemaker_edge_model_deployment_max_retry": 1,
            "edgefleet_deployment_poll_seconds": 0.3,
            "edgefleet_heartbeat_interval_seconds": 0.5,
            "edgefleet_deployment_health_seconds": 1.0,
            "edgefleet_control_backoff_seconds": 0.2,
            "sagemaker_edge_log_verbose": False, **keys}


def package_job(server: Server, name: str, version: str, packages: Packages,
                model_file: str) -> dict[str, Any]:
    job: dict[str, Any] = server.admin.create_packaging_job(
        name, "affine", version, packages.models / model_file)
    assert job["status"] == "COMPLETED", job
    return job


def stage_statuses(server: Server, plan: str, stage: str) -> dict[str, Any]:
    return {d["device_name"]: d for d in server.admin.stage_devices(plan, stage)}


def run_stage(server: Server, plan: str, stage: str, devices: int) -> Any:
    server.admin.stage_action(plan, stage, "start")
    return wait_for(lambda: (lambda s: s if len(s) == devices and all(
        d["status"] in ("DEPLOYED", "FAILED") for d in s.values()) else None)(
            stage_statuses(server, plan, stage)), 60, f"stage {stage} to finish")


def version(agent: AgentProcess) -> str:
    """The version of "affine" the agent serves, as DescribeModel and ListModels both report it.

    The two are separate calls, so a swap can land between them; they are read again until
    they agree (a swap takes far less than the five tries), and an assertion fails if they never do.
    """
    for _ in range(5):
        model = agent.stub.DescribeModel(pb.DescribeModelRequest(name="affine")).model
        listed = {m.name: m for m in agent.stub.ListModels(pb.ListModelsRequest()).models}
        assert set(listed) == {"affine"}
        if listed["affine"].url == model.url:
            break
        time.sleep(0.05)
    assert listed["affine"].url == model.url, (listed["affine"].url, model.url)
    # Deployed models load from their package archive, named <model name>-<version>.tar.gz.
    return Path(model.url).name.removesuffix(".tar.gz").split("-")[1]


def predict(agent: AgentProcess) -> np.ndarray:
    x = np.ones((1, 4), np.float32)
    reply = agent.stub.Predict(pb.PredictRequest(name="affine", tensors=[pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4]),
        byte_data=x.tobytes())]))
    return np.frombuffer(reply.tensors[0].byte_data, np.float32).reshape(1, 4)
