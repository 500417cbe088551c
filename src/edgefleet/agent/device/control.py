"""The control-plane client: registration checks, heartbeats, deployment polls.

The agent talks to the control plane's ``sagemaker-edge`` device API (shared/spec/control-plane.md)
through :class:`~edgefleet.agent.device.transport.ControlTransport` (boto3 with the device's own
credentials, or the in-memory double for tests).

:class:`ControlClient` runs two daemon threads:

- ``edgefleet-heartbeat`` checks the registration at start and every ``CacheTTL`` seconds
  (GetDeviceRegistration) and sends a heartbeat every ``edgefleet_heartbeat_interval_seconds``
  (SendHeartbeat: agent and per-model metrics, and the oldest DeploymentResult not yet
  acknowledged; at once after a deployment finished);
- ``edgefleet-deployments`` polls GetDeployments every
  ``sagemaker_edge_model_deployment_poll_interval`` minutes (or
  ``edgefleet_deployment_poll_seconds``) and hands each deployment to the
  :class:`~edgefleet.agent.device.deploy.DeploymentExecutor`; :meth:`ControlClient.poll_now`
  (an MQTT notification, :mod:`edgefleet.agent.device.wakeup`) makes it poll at once.

:meth:`ControlClient.retry_now` (new credentials, on SIGHUP) ends both threads' retry delays,
so a device whose old key was refused is heard again at once.

A control plane that is down or refuses requests never stops the agent from serving: every
failure is logged (without secrets) and retried after an exponential backoff with jitter.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from edgefleet import __version__
from edgefleet.agent.backoff import Backoff
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.deploy import DeploymentExecutor
from edgefleet.agent.device.metrics import HeartbeatMetrics
from edgefleet.agent.device.transport import (
    ControlPlaneUnavailable,
    ControlTransport,
    control_backoff,
)
from edgefleet.errors import EdgefleetError
from edgefleet.wire.edge import Deployment

log = logging.getLogger(__name__)

#: Shortest time between two deployment polls woken by :meth:`ControlClient.poll_now`, in
#: seconds (bounds the polls a flood of notifications causes).
WAKE_POLL_GAP_SECONDS = 1.0


class ControlClient:
    """Registration checks, heartbeats and deployment polls against one control plane.

    Args:
        config: agent configuration (names, intervals, backoff).
        transport: the device API.
        executor: applies deployments and keeps their results until acknowledged.
        metrics: builds the heartbeat's agent and model metrics.
        stop: set when the agent stops (shared with the executor).
    """

    def __init__(self, config: AgentConfig, transport: ControlTransport,
                 executor: DeploymentExecutor, metrics: HeartbeatMetrics,
                 stop: threading.Event) -> None:
        self._config = config
        self._transport = transport
        self._executor = executor
        self._metrics = metrics
        self._stop = stop
        self._device = config.sagemaker_edge_core_device_name
        self._fleet = config.sagemaker_edge_core_device_fleet_name
        self._poll_seconds = (config.edgefleet_deployment_poll_seconds
                              or config.sagemaker_edge_model_deployment_poll_interval * 60.0)
        self.registered = threading.Event()
        self._wake = threading.Event()
        self._poll_wake = threading.Event()
        # Ends the deployment thread's retry delay: new credentials, or the stop. (MQTT
        # notifications wake only its regular wait, so a flood of them keeps the backoff.)
        self._retry = threading.Event()
        self._threads = [
            threading.Thread(target=self._heartbeat_loop, name="edgefleet-heartbeat",
                             daemon=True),
            threading.Thread(target=self._deployment_loop, name="edgefleet-deployments",
                             daemon=True)]

    def _backoff(self) -> Backoff:
        return control_backoff(self._config)

    # -- one step each (also what the unit tests drive) -------------------------------------------
    def check_registration(self) -> float:
        """GetDeviceRegistration; sets :attr:`registered`.

        Returns:
            Seconds until the next check: ``CacheTTL`` (at least 1) when registered, else 0.

        Raises:
            ControlPlaneUnavailable: the request failed.
        """
        status, ttl = self._transport.get_device_registration(self._device, self._fleet)
        if status.upper() != "REGISTERED":
            log.warning("the control plane says device %s of fleet %s is %r, not REGISTERED; "
                        "register it (`edgefleet device register`)", self._device, self._fleet,
                        status)
            self.registered.clear()
            return 0.0
        if not self.registered.is_set():
            log.info("device %s is registered in fleet %s (checked again in %.0f s)",
                     self._device, self._fleet, ttl)
        self.registered.set()
        return max(1.0, ttl)

    def send_heartbeat(self) -> None:
        """SendHeartbeat with the current metrics and the oldest unacknowledged result.

        Raises:
            ControlPlaneUnavailable: the request failed (its metrics are sent next time).
        """
        snapshot = self._metrics.collect()
        request: dict[str, Any] = {
            "AgentVersion": __version__, "DeviceName": self._device,
            "DeviceFleetName": self._fleet, "AgentMetrics": snapshot.agent_metrics,
            "Models": snapshot.models}
        result = self._executor.state.pending_result()
        if result is not None:
            request["DeploymentResult"] = result
        try:
            self._transport.send_heartbeat(request)
        except ControlPlaneUnavailable as error:
            if result is not None and error.status == 400:
                # A result the server will never take must not block every later heartbeat.
                self._executor.state.acknowledge(result["DeploymentName"])
                log.error("the control plane refused the result of deployment %s; dropped "
                          "it: %s", result["DeploymentName"], error.message)
            raise
        self._metrics.commit(snapshot)
        if result is not None:
            self._executor.state.acknowledge(result["DeploymentName"])
            log.info("reported deployment %s: %s", result["DeploymentName"],
                     result["DeploymentStatus"])

    def poll_deployments(self) -> int:
        """GetDeployments, then apply each deployment not applied before.

        Returns:
            How many deployments finished (their results wait for the next heartbeat).

        Raises:
            ControlPlaneUnavailable: the request failed.
        """
        finished = 0
        for raw in self._transport.get_deployments(self._device, self._fleet):
            if self._stop.is_set():
                break
            try:
                deployment = Deployment.from_wire(raw)
            except EdgefleetError as error:
                log.error("ignoring a deployment the agent cannot read: %s", error.message)
                continue
            if self._executor.apply(deployment):
                finished += 1
                self._wake.set()
        return finished

    def poll_now(self) -> None:
        """Make the deployment thread poll GetDeployments at once rather than at the end of the
        poll interval (at most once per :data:`WAKE_POLL_GAP_SECONDS`). Thread-safe, returns at
        once."""
        self._poll_wake.set()

    def retry_now(self) -> None:
        """End the retry delays of both threads, so that a request refused or failed before
        is tried again at once (after :meth:`ControlTransport.use_credentials`). Thread-safe,
        returns at once."""
        self._wake.set()
        self._retry.set()

    # -- threads ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the heartbeat and deployment threads."""
        log.info("control plane %s: heartbeat every %g s, deployment poll every %g s",
                 self._config.sagemaker_edge_core_endpoint_override,
                 self._config.edgefleet_heartbeat_interval_seconds, self._poll_seconds)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (a deployment in progress is left for the next start to roll
        back); waits up to ``timeout`` seconds per thread."""
        self._stop.set()
        self._wake.set()
        self._poll_wake.set()
        self._retry.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _heartbeat_loop(self) -> None:
        backoff = self._backoff()
        interval = self._config.edgefleet_heartbeat_interval_seconds
        next_check = next_beat = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_check:
                    ttl = self.check_registration()
                    next_check = time.monotonic() + (ttl or backoff.next_delay())
                if self.registered.is_set() and (time.monotonic() >= next_beat
                                                 or self._wake.is_set()):
                    self._wake.clear()
                    self.send_heartbeat()
                    more = self._executor.state.pending_result() is not None
                    next_beat = time.monotonic() + (0.0 if more else interval)
                if self.registered.is_set():
                    backoff.reset()
            except EdgefleetError as error:
                self._pause(backoff, error.message, self._wake)
                continue
            except Exception:  # a bug must not end the thread: the agent keeps serving
                log.exception("heartbeat failed unexpectedly")
                self._pause(backoff, "unexpected error", self._wake)
                continue
            self._wake.wait(max(0.0, min(next_check, next_beat) - time.monotonic()))

    def _deployment_loop(self) -> None:
        backoff = self._backoff()
        gap = min(WAKE_POLL_GAP_SECONDS, self._poll_seconds)
        while not self._stop.is_set():
            if not self.registered.is_set():
                self._stop.wait(0.2)
                continue
            polled = time.monotonic()
            self._poll_wake.clear()  # a notification from now on wakes the next wait
            self._retry.clear()  # new credentials from now on end the next retry delay
            try:
                self.poll_deployments()
                backoff.reset()
            except EdgefleetError as error:
                self._pause(backoff, error.message, self._retry)
                continue
            except Exception:  # a bug must not end the thread: the agent keeps serving
                log.exception("deployment poll failed unexpectedly")
                self._pause(backoff, "unexpected error", self._retry)
                continue
            if self._poll_wake.wait(self._poll_seconds):
                self._stop.wait(max(0.0, polled + gap - time.monotonic()))

    def _pause(self, backoff: Backoff, problem: str, wake: threading.Event) -> None:
        delay = backoff.next_delay()
        log.warning("control plane: %s; retrying in %.1f s", problem, delay)
        wake.wait(delay)
