"""The wind farm as a device fleet: ``edgefleet server`` as a child process, and the calls an
operator makes to it (fleet, devices, packaging jobs, deployment plans, stages).

Everything goes through the control plane's REST API with :class:`edgefleet.fleet.client.
AdminClient`, as ``edgefleet`` on the command line does (docs/control-plane.md). The server runs
on its embedded defaults: SQLite and a local object store in its data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np

from edgefleet.drift import build_baseline
from edgefleet.fleet.client import AdminClient, ApiError
from windfarm import data
from windfarm.agent import terminate
from windfarm.model import INPUT_NAME

FLEET = "windfarm"

#: The model's name in its packages and the handle (model alias) agents serve it under.
MODEL = "turbine-anomaly"

#: Seconds between an agent's polls for deployments and between its heartbeats; short, so the
#: dashboard moves while the demo runs (a real fleet uses minutes).
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 2.0

#: The agents' health window: a new model must serve this long without failing before the
#: device reports it DEPLOYED (else the agent rolls back to the previous one).
HEALTH_SECONDS = 3.0


class ControlPlaneError(RuntimeError):
    """The server did not start, or a step of the rollout failed; the message says why."""


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "edgefleet"
    if script.exists():
        return [str(script), "server"]
    return [sys.executable, "-m", "edgefleet.fleet", "server"]


class ControlPlane:
    """``edgefleet server`` on 127.0.0.1 as a child process; a context manager.

    Args:
        data_dir: the server's data folder (SQLite database, object store, keys, admin token).
        log_path: file that receives the server's output.
        port: TCP port of the API and the dashboard.
        capture_location: folder the agents write captured data to; the dashboard reads it.
        start_timeout: seconds to wait for ``/healthz``.
    """

    def __init__(self, data_dir: Path, log_path: Path, *, port: int, capture_location: Path,
                 start_timeout: float = 60.0) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = port
        self.capture_location = capture_location
        self.start_timeout = start_timeout
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """The admin client (valid once started)."""
        if self._admin is None:
            raise ControlPlaneError("the control plane is not running")
        return self._admin

    @property
    def admin_token(self) -> str:
        """The admin token: the dashboard's login."""
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the server and wait until it answers.

        Raises:
            ControlPlaneError: it exited (a port already in use, say) or did not answer within
                ``start_timeout``; the message names its log.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.capture_location.mkdir(parents=True, exist_ok=True)
        env = {**os.environ,
               # Fine-grained history and a quick capture scan: the demo compresses a year
               # into minutes.
               "EDGEFLEET_SERVER_HISTORY_SAMPLE_SECONDS": "2",
               "EDGEFLEET_SERVER_CAPTURE_SCAN_SECONDS": "1",
               "EDGEFLEET_SERVER_CAPTURE_LOCATION": str(self.capture_location),
               "EDGEFLEET_SERVER_AGENT_DEPLOYMENT_POLL_SECONDS": str(POLL_SECONDS)}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*_server_command(), "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                raise ControlPlaneError(
                    f"edgefleet server exited with code {self._process.returncode} at start "
                    f"(is port {self.port} in use? choose another with --port); see its log "
                    f"{self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"edgefleet server did not answer on {self.url} within "
                    f"{self.start_timeout:.0f} s; see its log {self.log_path}")
            time.sleep(0.2)
        self._admin = AdminClient(self.url, self.admin_token, timeout=120)

    def stop(self) -> int | None:
        """SIGTERM the server, wait up to 30 s (then SIGKILL); return its exit code."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        process, self._process = self._process, None
        return None if process is None else terminate(process, 30)

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class Device:
    """A registered turbine: its device name and the agent config the server wrote for it."""

    turbine: str
    name: str
    config: Path


def device_name(turbine: str) -> str:
    """The device name of a turbine: ``R80711`` -> ``r80711``."""
    return turbine.lower()


def register_fleet(admin: AdminClient, turbines: list[str], work_dir: Path,
                   capture_dir: Path) -> list[Device]:
    """Create fleet ``windfarm``, register one device per turbine and write its agent config.

    Each config is the one the server returned (credentials, endpoint, root certificate
    folder) plus the demo's choices: its own data folder, capture to ``capture_dir`` with the
    durable spool on, quick polls and heartbeats, a short health window.

    Returns:
        The devices, in the order of ``turbines``.
    """
    certs = work_dir / "root-certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "edgefleet-root.pem").write_bytes(admin.root_certificate())
    admin.create_fleet(FLEET, f"file://{capture_dir}",
                       "The four Senvion MM82 turbines of La Haute Borne (ENGIE)")
    devices = []
    for turbine in turbines:
        name = device_name(turbine)
        answer = admin.register_device({"name": name, "fleet": FLEET,
                                        "description": f"turbine {turbine}",
                                        "root_certs_path": str(certs)})
        folder = work_dir / "agents" / name
        config = {**answer["agent_config"],
                  "sagemaker_edge_local_data_root_path": str(folder / "data"),
                  "sagemaker_edge_core_capture_data_destination": "Disk",
                  "sagemaker_edge_core_capture_data_disk_path": str(capture_dir),
                  "sagemaker_edge_core_capture_data_push_period_seconds": 1.0,
                  "sagemaker_edge_db_enable": True,
                  "edgefleet_deployment_poll_seconds": POLL_SECONDS,
                  "edgefleet_heartbeat_interval_seconds": HEARTBEAT_SECONDS,
                  "edgefleet_deployment_health_seconds": HEALTH_SECONDS,
                  "sagemaker_edge_log_verbose": False}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "config.json"
        # The config holds the device's secret key: readable by its owner only.
        path.touch(mode=0o600)
        path.write_text(json.dumps(config, indent=2) + "\n")
        devices.append(Device(turbine, name, path))
    return devices


def package(admin: AdminClient, onnx_path: Path, version: str,
            baseline_inputs: np.ndarray | None) -> str:
    """Upload the ONNX model as packaging job ``turbine-anomaly-v<version>`` (dots as hyphens:
    job names allow no dots); the server builds
    and signs the package. ``baseline_inputs`` (float32 ``[n, 24]`` training windows), when
    given, become the package's drift baseline.

    Returns:
        The packaging job's name.

    Raises:
        ControlPlaneError: the job failed; the message is the server's.
    """
    name = f"{MODEL}-v{version.replace('.', '-')}"
    baseline = None
    if baseline_inputs is not None:
        # A ready baseline.json rather than the .npy, so that the features have SCADA names
        # ("Ws_avg +10min": mean wind speed of the window's second 10-minute period).
        inputs = np.asarray(baseline_inputs, dtype=np.float32)
        periods = inputs.shape[1] // len(data.FEATURES)
        names = [f"{feature} +{10 * period}min" for period in range(periods)
                 for feature in data.FEATURES]
        baseline = onnx_path.with_name(f"{onnx_path.stem}-{version}-baseline.json")
        baseline.write_bytes(build_baseline(inputs, tensor=INPUT_NAME,
                                            feature_names=names).to_json())
    job = admin.create_packaging_job(name, MODEL, version, onnx_path, baseline=baseline)
    if job["status"] != "COMPLETED":
        raise ControlPlaneError(f"packaging job {name} {job['status']}: {job['status_message']}")
    return name


def create_plan(admin: AdminClient, name: str, job: str,
                stages: list[tuple[str, list[str]]]) -> None:
    """Create deployment plan ``name`` deploying packaging job ``job`` as model ``MODEL``, with
    ``stages`` as (stage name, device names), each rolling back on failure."""
    admin.create_plan({
        "name": name, "fleet": FLEET,
        "models": [{"model_handle": MODEL, "packaging_job": job}],
        "stages": [{"name": stage, "selection": {"type": "SELECTION", "device_names": names},
                    "failure_handling_policy": "ROLLBACK_ON_FAILURE"}
                   for stage, names in stages]})


def run_stage(admin: AdminClient, plan: str, stage: str, *, timeout: float = 300.0,
              stopping: Callable[[], bool] = lambda: False) -> dict[str, str]:
    """Start a stage and wait until each of its devices has reported (DEPLOYED or FAILED).

    Args:
        stopping: polled; when it returns True the wait ends early with what is known.

    Returns:
        Device name -> final status (``status_message`` appended after ": " for FAILED).

    Raises:
        ControlPlaneError: the devices did not all report within ``timeout`` seconds.
    """
    admin.stage_action(plan, stage, "start")
    deadline = time.monotonic() + timeout
    while True:
        try:
            devices = admin.stage_devices(plan, stage)
        except (ApiError, httpx.HTTPError):
            devices = []
        if devices and all(d["status"] in ("DEPLOYED", "FAILED") for d in devices):
            return {d["device_name"]: d["status"] if d["status"] == "DEPLOYED"
                    else f"FAILED: {d['status_message']}" for d in devices}
        if stopping():
            return {d["device_name"]: d["status"] for d in devices}
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"stage {stage} of plan {plan} did not finish in {timeout:.0f} s: " + ", ".join(
                    f"{d['device_name']} {d['status']}" for d in devices))
        time.sleep(0.5)

