"""The agent process: the one composition root that wires config -> service -> servers.

Read this file to see the whole agent: settings are validated, the capture pipeline and the
``AgentService`` are built, the deployment executor reloads the models deployed before, the gRPC
server (Agent + health) binds the Unix socket with mode 0660, and the control-plane client
(registration, heartbeats, deployments; docs/deployments.md) starts when the provider is
``Aws``, with MQTT deployment notifications when ``edgefleet_mqtt_url`` is set. Under systemd
(``$NOTIFY_SOCKET``) the agent reports ``READY=1`` once its own socket answers a health check,
feeds the watchdog while it does, and counts unclean previous runs (:mod:`edgefleet.agent.systemd`).
A stop (SIGTERM, SIGINT or :meth:`Agent.stop`) ends the control-plane threads, stops
accepting calls, lets the calls in flight finish, flushes capture, unloads models and removes
the socket file. A reload (SIGHUP, :meth:`Agent.reload`) takes new control-plane credentials from
the config read again, without touching the gRPC server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from grpc_health.v1 import health_pb2

from edgefleet import __version__
from edgefleet.agent.capture import CaptureService
from edgefleet.agent.config import IDENTITY_KEYS, RELOADABLE_KEYS, AgentConfig
from edgefleet.agent.device.control import ControlClient
from edgefleet.agent.device.deploy import DeploymentExecutor
from edgefleet.agent.device.metrics import HeartbeatMetrics, SampleClock
from edgefleet.agent.device.transport import make_transport
from edgefleet.agent.device.wakeup import DeploymentWakeup
from edgefleet.agent.serving.grpc_server import SERVICE_NAME, build_server
from edgefleet.agent.serving.service import AgentService, CaptureBackend
from edgefleet.agent.systemd import (
    RUNS_FILE,
    UNIT_ENV,
    Notifier,
    RunHistory,
    check_health,
    read_service_restarts,
)
from edgefleet.errors import FailedPrecondition, UntrustedSigner
from edgefleet.package.signing import load_root_certificates

log = logging.getLogger(__name__)

#: Socket file mode: owner and group may connect (shared/DESIGN.md, security by default).
SOCKET_MODE = 0o660

#: Seconds the calls in flight get to finish when the agent stops.
STOP_GRACE_SECONDS = 30.0


def prepare_socket_path(path: Path, *, force: bool) -> None:
    """Make sure ``path`` is free for a new socket.

    Raises:
        FailedPrecondition: a live agent serves on it; a stale socket is there and ``force`` is
            off; the path is not a socket; or its folder does not exist.
    """
    if not path.parent.is_dir():
        raise FailedPrecondition(f"socket folder {path.parent} does not exist; create it first")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FailedPrecondition(
            f"{path} exists and is not a socket; refusing to replace it: choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: stale
    except OSError as error:
        raise FailedPrecondition(f"cannot probe socket {path}: {error}") from None
    else:
        raise FailedPrecondition(
            f"another process is serving on {path}; stop it or choose another socket path")
    finally:
        probe.close()
    if not force:
        raise FailedPrecondition(
            f"stale socket file {path} exists (no process serves on it); remove it or start "
            f"the agent with -f")
    path.unlink()
    log.info("removed stale socket %s", path)


def pin_threads(cpus: Sequence[int]) -> None:
    """Run every thread of this process, and every thread it starts later, on ``cpus``.

    Linux keeps one CPU mask per thread and a new thread copies its creator's, so the masks of
    the threads running now (``/proc/self/task``) are set and later ones inherit them.

    Args:
        cpus: CPU numbers (as in ``/proc/cpuinfo``); empty leaves the masks alone.

    Raises:
        FailedPrecondition: a CPU outside the set this process may use (its current mask, which
            cgroups, containers and ``taskset`` narrow), or a system without CPU masks.
    """
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise FailedPrecondition(
            "edgefleet_cpu_affinity needs Linux (sched_setaffinity); remove the key here")
    allowed = os.sched_getaffinity(0)
    outside = sorted(set(cpus) - allowed)
    if outside:
        raise FailedPrecondition(
            f"edgefleet_cpu_affinity names CPUs {outside} this agent may not run on; it may use "
            f"CPUs {sorted(allowed)} (its container, cgroup or taskset decides which)")
    mask = set(cpus)
    try:
        tasks = [int(task) for task in os.listdir("/proc/self/task")]
    except OSError:  # no /proc (a bare container): this thread, and those it starts, only
        tasks = [0]
    for task in tasks:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(task, mask)
    log.info("agent threads pinned to CPUs %s", ",".join(map(str, sorted(mask))))


def check_root_certificates(config: AgentConfig) -> str | None:
    """Why every signed package would be refused with this config, or None if it would not.

    The agent still starts (an operator may add the certificates later; LoadModel reads the
    folder on each call), but says so at start instead of at the first LoadModel.
    """
    if config.edgefleet_allow_unsigned_models:
        return None
    path = config.sagemaker_edge_core_root_certs_path
    if path is None:
        return ("sagemaker_edge_core_root_certs_path is not set, so every signed package will be "
                "refused; set it to the folder of PEM root certificates (`edgefleet keys init "
                "DIR` writes DIR/root-certs)")
    try:
        load_root_certificates(path)
    except UntrustedSigner as error:
        return (f"{error.message} (resolved against {Path.cwd()}); until then every package "
                f"is refused (`edgefleet keys init DIR` writes DIR/root-certs)")
    return None


class Agent:
    """A running agent: build with the config, :meth:`start`, later :meth:`stop`.

    Args:
        config: validated configuration.
        socket_path: where to serve (``unix://`` + this path for clients).
        force: remove a stale socket file first.
        capture: the capture pipeline (default: a ``CaptureService`` built from the config).

    Raises:
        FailedPrecondition: ``edgefleet_cpu_affinity`` names a CPU the process may not use
            (see :func:`pin_threads`).
    """

    def __init__(self, config: AgentConfig, socket_path: Path, *, force: bool = False,
                 capture: CaptureBackend | None = None) -> None:
        pin_threads(config.edgefleet_cpu_affinity)  # first: the threads started below inherit it
        self.config = config
        self.socket_path = socket_path
        self.force = force
        # The agent's state (packages, spool, deployment state) is for its own user only; an
        # existing folder keeps the mode its operator gave it.
        config.sagemaker_edge_local_data_root_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.capture = capture if capture is not None else CaptureService(config)
        # The wrapper notes each model's latest capture time for heartbeats.
        self.samples = SampleClock(self.capture)
        self.notifier = Notifier()
        self.runs = RunHistory(config.sagemaker_edge_local_data_root_path / RUNS_FILE)
        self.service = AgentService(config, capture=self.samples)
        self._control_stop = threading.Event()
        self._transport = transport = make_transport(config)
        self.deployments = DeploymentExecutor(
            self.service, config, download=transport.download if transport else None,
            stop=self._control_stop)
        self.control = None if transport is None else ControlClient(
            config, transport, self.deployments,
            HeartbeatMetrics(self.service.registry, self.deployments.state, capture=self.capture,
                             samples=self.samples, runs=self.runs),
            self._control_stop)
        self.notifications: DeploymentWakeup | None = None
        if self.control is not None and config.edgefleet_mqtt_url:
            self.notifications = DeploymentWakeup(
                config.edgefleet_mqtt_url, config.edgefleet_mqtt_topic_prefix,
                config.sagemaker_edge_core_device_fleet_name,
                config.sagemaker_edge_core_device_name, self.control.poll_now)
        self._server, self._health = build_server(
            self.service, workers=config.edgefleet_grpc_workers,
            max_message_bytes=config.edgefleet_max_message_bytes)
        self._stopped = threading.Event()
        self._started = False

    def start(self) -> None:
        """Bind the socket (mode 0660) and serve.

        Raises:
            FailedPrecondition: the socket path is taken (see :func:`prepare_socket_path`) or
                cannot be bound, or the run history (crash count) cannot be written.
        """
        started = time.monotonic()
        prepare_socket_path(self.socket_path, force=self.force)
        unit = os.environ.get(UNIT_ENV)
        try:
            self.runs.begin(service_restarts=read_service_restarts(unit) if unit else None)
        except OSError as error:
            raise FailedPrecondition(
                f"cannot write the run history {self.runs.path}: {error.strerror}; make the "
                f"data folder writable for the agent's user") from None
        try:
            self._serve(started)
        except BaseException:
            self.runs.end()  # a start that fails with an error is an orderly exit, not a crash
            raise

    def _serve(self, started: float) -> None:
        start = getattr(self.capture, "start", None)
        if start is not None:
            start()
        self.deployments.restore()  # serve the deployed models from the first call on
        # The socket file is created with the process umask; narrow it so that the file never
        # exists with wider permissions, even for a moment.
        previous = os.umask(0o117)
        try:
            port = self._server.add_insecure_port(f"unix:{self.socket_path}")
            if port == 0:
                raise FailedPrecondition(f"cannot bind socket {self.socket_path}")
            self._server.start()
        finally:
            os.umask(previous)
        os.chmod(self.socket_path, SOCKET_MODE)
        for name in ("", SERVICE_NAME):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._started = True
        if self.control is not None:
            self.control.start()
        if self.notifications is not None:
            self.notifications.start()
        self.notifier.supervise(self._answers, status=f"serving on unix://{self.socket_path}")
        problem = check_root_certificates(self.config)
        if problem is not None:
            log.warning("%s", problem)
        log.info("edgefleet-agent %s serving on unix://%s (device %s, fleet %s) in %.0f ms",
                 __version__, self.socket_path, self.config.sagemaker_edge_core_device_name,
                 self.config.sagemaker_edge_core_device_fleet_name,
                 (time.monotonic() - started) * 1000)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting calls, finish those in flight, flush capture, remove the socket."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.notifier.stopping()
        if self.notifications is not None:
            self.notifications.stop()
        if self.control is not None:
            self.control.stop()
        self._control_stop.set()
        self.deployments.close()
        log.info("stopping: finishing calls in flight (up to %.0f s)", grace)
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self.service.close()
        close = getattr(self.capture, "close", None)
        if close is not None:
            close()
        if self._started:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self.runs.end()
        self.notifier.close()
        log.info("stopped")

    def reload(self, config: AgentConfig) -> list[str]:
        """Take the control-plane credentials of ``config``: the agent's config file, read and
        validated again (on SIGHUP). Call it from one thread at a time.

        Only :data:`~edgefleet.agent.config.RELOADABLE_KEYS` apply at run time. Heartbeats,
        registration checks, deployment polls and downloads that start after this call sign
        with the new credentials (at once: their retry delays end); one in flight finishes
        with the old. gRPC calls are not touched. A changed key of any other kind is logged
        as a warning naming it and waits for a restart; when one of
        :data:`~edgefleet.agent.config.IDENTITY_KEYS` changed, the new credentials are for
        another device or control plane and are not taken either.

        Returns:
            The keys applied; empty when the credentials are unchanged or were kept.

        Raises:
            ConfigError: the transport cannot be set up again (an invalid endpoint URL); the
                current credentials stay in use.
        """
        changed = self.config.changed_keys(config)
        credentials = [key for key in changed if key in RELOADABLE_KEYS]
        others = [key for key in changed if key not in RELOADABLE_KEYS]
        if others:
            log.warning("config reloaded: changed keys not applied until the agent restarts: "
                        "%s (a reload applies only %s)", ", ".join(others),
                        " and ".join(RELOADABLE_KEYS))
        moved = [key for key in others if key in IDENTITY_KEYS]
        if credentials and moved:
            log.warning("config reloaded: kept the current control-plane credentials: the new "
                        "ones come with a changed %s, so they are for another device or control "
                        "plane; restart the agent to use them", ", ".join(moved))
            return []
        if not credentials:
            log.info("config reloaded: the control-plane credentials are unchanged")
            return []
        key_id = config.edgefleet_control_access_key_id
        if self._transport is not None:
            self._transport.use_credentials(key_id, config.edgefleet_control_secret_access_key)
        self.config = self.config.model_copy(
            update={key: getattr(config, key) for key in credentials})
        if self.control is not None:
            self.control.retry_now()
        # The key id is not a secret (`edgefleet device list` shows it), and it tells the
        # operator which credentials the device uses now.
        log.info("config reloaded: new control-plane credentials (access key id %s) %s",
                 key_id or "none: boto3's credential chain",
                 "sign the next request" if self.control is not None else
                 "unused: sagemaker_edge_provider_provider is not Aws")
        return credentials

    def _answers(self) -> str | None:
        # The watchdog's liveness test: a health check over the socket, as a client would.
        return check_health(self.socket_path, timeout=self.notifier.check_timeout)

    def wait(self) -> None:
        """Block until :meth:`stop` has been called."""
        self._stopped.wait()

