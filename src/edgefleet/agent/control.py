"""The control-plane client: registration checks, heartbeats, deployment polls.

The agent talks to the control plane's ``sagemaker-edge`` device API (shared/spec/control-plane.md)
through :class:`ControlTransport`: :class:`Boto3Transport` is
``boto3.client("sagemaker-edge", endpoint_url=...)`` with the device's own credentials, plus a
SigV4-signed ``GET`` for package downloads; :class:`MemoryTransport` is the public in-memory
double for tests (like httpx's ``MockTransport``).

:class:`ControlClient` runs two daemon threads:

- ``edgefleet-heartbeat`` checks the registration at start and every ``CacheTTL`` seconds
  (GetDeviceRegistration) and sends a heartbeat every ``edgefleet_heartbeat_interval_seconds``
  (SendHeartbeat: agent and per-model metrics, and the oldest DeploymentResult not yet
  acknowledged; at once after a deployment finished);
- ``edgefleet-deployments`` polls GetDeployments every
  ``sagemaker_edge_model_deployment_poll_interval`` minutes (or
  ``edgefleet_deployment_poll_seconds``) and hands each deployment to the
  :class:`~edgefleet.agent.deploy.DeploymentExecutor`; :meth:`ControlClient.poll_now` (an MQTT
  notification, :mod:`edgefleet.agent.notify`) makes it poll at once.

A control plane that is down or refuses requests never stops the agent from serving: every
failure is logged (without secrets) and retried after an exponential backoff with jitter.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from edgefleet import __version__
from edgefleet.agent.backoff import Backoff
from edgefleet.agent.config import AgentConfig
from edgefleet.errors import ConfigError, EdgefleetError, InvalidArgument, Unavailable
from edgefleet.names import ALIAS_PATTERN, check_alias

if TYPE_CHECKING:
    from edgefleet.agent.deploy import DeploymentExecutor
    from edgefleet.agent.metrics import HeartbeatMetrics

log = logging.getLogger(__name__)

#: SigV4 signing name of the sagemaker-edge service (botocore's service model).
SIGNING_NAME = "sagemaker"
#: Download chunk size, in bytes.
CHUNK_BYTES = 1 << 20
#: Shortest time between two deployment polls woken by :meth:`ControlClient.poll_now`, in
#: seconds (bounds the polls a flood of notifications causes).
WAKE_POLL_GAP_SECONDS = 1.0

#: ``ModelVersion`` as botocore's sagemaker-edge model allows it (1-64 chars, plus "-" which
#: edgefleet versions use). Names follow the agent's alias rule (``edgefleet.names``).
_VERSION = re.compile(r"^[a-zA-Z0-9 _.-]{1,64}$")
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")

#: What to check when the control plane refuses the device's signature (HTTP 401/403).
_CREDENTIALS_HINT = (" (check edgefleet_control_access_key_id, "
                     "edgefleet_control_secret_access_key, the device and fleet names, and the "
                     "device clock)")


class ControlPlaneUnavailable(Unavailable):
    """A control-plane request failed: unreachable, timed out, or refused (the message says
    which and what to check). The agent keeps serving and retries later.

    Attributes:
        status: the HTTP status of a refusal, None when no answer came.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def wire_model_name(name: str | None) -> str | None:
    """``name`` if botocore's ``ModelName`` shape accepts it (4-255 chars), else None."""
    if name and 4 <= len(name) <= 255 and ALIAS_PATTERN.fullmatch(name):
        return name
    return None


def wire_version(version: str | None) -> str | None:
    """``version`` if a ``ModelVersion`` may carry it, else None."""
    return version if version and _VERSION.fullmatch(version) else None


def control_backoff(config: AgentConfig) -> Backoff:
    """Retry delays for control-plane requests and package downloads, from the config."""
    return Backoff(config.edgefleet_control_backoff_seconds,
                   config.edgefleet_control_max_backoff_seconds)


# -- wire shapes of GetDeployments ----------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """One model of a deployment (botocore's ``Definition``).

    Attributes:
        handle: the model alias to deploy under or undeploy.
        url: where the package archive is (``S3Url``); may be empty for ``UNDEPLOY``.
        sha1: expected SHA-1 of the archive, lower-case hex ("" if none was given).
        state: ``DEPLOY`` or ``UNDEPLOY``.
    """

    handle: str
    url: str
    sha1: str
    state: Literal["DEPLOY", "UNDEPLOY"]


@dataclass(frozen=True)
class Deployment:
    """A deployment handed out by GetDeployments (botocore's ``EdgeDeployment``)."""

    name: str
    policy: Literal["ROLLBACK_ON_FAILURE", "DO_NOTHING"]
    definitions: tuple[Definition, ...]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Deployment:
        """Parse one ``EdgeDeployment``.

        Raises:
            InvalidArgument: a field is missing or has a value the agent cannot act on; the
                message names it.
        """
        name = raw.get("DeploymentName")
        if not isinstance(name, str) or not ALIAS_PATTERN.fullmatch(name):
            raise InvalidArgument(f"deployment without a valid DeploymentName: {name!r}")
        policy = raw.get("FailureHandlingPolicy") or "ROLLBACK_ON_FAILURE"
        if policy not in ("ROLLBACK_ON_FAILURE", "DO_NOTHING"):
            raise InvalidArgument(f"deployment {name}: unknown FailureHandlingPolicy {policy!r}")
        definitions = []
        for item in raw.get("Definitions") or []:
            if not isinstance(item, Mapping):
                raise InvalidArgument(f"deployment {name}: a definition is not an object")
            handle, state = item.get("ModelHandle"), item.get("State") or "DEPLOY"
            checksum = item.get("Checksum") or {}
            if not isinstance(checksum, Mapping):
                raise InvalidArgument(f"deployment {name}: Checksum is not an object")
            if not isinstance(handle, str):
                raise InvalidArgument(f"deployment {name}: ModelHandle {handle!r} is not a name")
            try:  # the handle becomes the model's alias: the agent's rule applies in full
                check_alias(handle)
            except InvalidArgument as error:
                raise InvalidArgument(f"deployment {name}: ModelHandle: {error.message}") from None
            if state not in ("DEPLOY", "UNDEPLOY"):
                raise InvalidArgument(f"deployment {name}: {handle} has unknown State {state!r}")
            if checksum.get("Type", "SHA1") != "SHA1":
                raise InvalidArgument(f"deployment {name}: {handle} has checksum type "
                                      f"{checksum.get('Type')!r}; only SHA1 is known")
            url = item.get("S3Url") or ""
            if state == "DEPLOY" and not url:
                raise InvalidArgument(f"deployment {name}: {handle} has no S3Url")
            digest = str(checksum.get("Sum") or "").lower()
            # The digest names a folder of the package cache: only 40 hex digits may pass.
            if state == "DEPLOY" and not _SHA1_HEX.fullmatch(digest):
                raise InvalidArgument(f"deployment {name}: {handle} has Checksum.Sum "
                                      f"{digest[:64]!r}; expected 40 hex digits (SHA-1)")
            definitions.append(Definition(handle, url, digest,
                                          cast(Literal["DEPLOY", "UNDEPLOY"], state)))
        if not definitions:
            raise InvalidArgument(f"deployment {name} has no Definitions")
        return cls(name, cast(Literal["ROLLBACK_ON_FAILURE", "DO_NOTHING"], policy),
                   tuple(definitions))


def shown_url(url: str) -> str:
    """``url`` without its query, for logs: presigned URLs carry a bearer signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url


# -- transports -----------------------------------------------------------------------------------

class ControlTransport(Protocol):
    """The device API as the agent uses it. Every method raises
    :class:`ControlPlaneUnavailable` when the request fails."""

    def get_device_registration(self, device_name: str, fleet_name: str) -> tuple[str, float]:
        """``(DeviceRegistration, CacheTTL in seconds)`` of this device."""

    def get_deployments(self, device_name: str, fleet_name: str) -> list[dict[str, Any]]:
        """The ``Deployments`` list of GetDeployments (botocore's ``EdgeDeployment`` dicts)."""

    def send_heartbeat(self, request: dict[str, Any]) -> None:
        """SendHeartbeat with ``request`` (botocore's ``SendHeartbeatRequest`` fields)."""

    def download(self, url: str) -> Generator[bytes, None, None]:
        """Stream the package at ``url`` (an ``S3Url``) in chunks of at most 1 MiB."""


class Boto3Transport:
    """The real transport: boto3's own ``sagemaker-edge`` client and urllib3 for downloads.

    The client is exactly ``boto3.client("sagemaker-edge", endpoint_url=<endpoint override>,
    region_name=..., aws_access_key_id=..., aws_secret_access_key=...)``, with the configured CA
    bundle and client certificate, the request timeout, and botocore's own retries off (the
    :class:`ControlClient` retries with its backoff). Downloads of ``S3Url`` go through urllib3
    (botocore's own HTTP library, so nothing more is loaded): presigned URLs as they are, other
    URLs (the control plane's ``/downloads/...``) SigV4-signed with the device's credentials.

    Raises:
        ConfigError: from botocore, for an invalid endpoint URL (at construction).
    """

    def __init__(self, config: AgentConfig) -> None:
        import boto3
        import urllib3
        from botocore.config import Config
        from botocore.credentials import Credentials

        self._endpoint = config.sagemaker_edge_core_endpoint_override or ""
        self._region = config.sagemaker_edge_core_region
        self._timeout = config.edgefleet_control_timeout_seconds
        secret = config.edgefleet_control_secret_access_key
        secret_value = secret.get_secret_value() if secret is not None else None
        ca_file = config.sagemaker_edge_provider_aws_ca_cert_file
        cert = config.sagemaker_edge_provider_aws_cert_file
        key = config.sagemaker_edge_provider_aws_cert_pk_file
        client_cert = (str(cert), str(key)) if cert and key else None
        try:
            self._client = boto3.client(
                "sagemaker-edge", endpoint_url=self._endpoint, region_name=self._region,
                aws_access_key_id=config.edgefleet_control_access_key_id,
                aws_secret_access_key=secret_value,
                verify=str(ca_file) if ca_file else True,
                config=Config(connect_timeout=self._timeout, read_timeout=self._timeout,
                              retries={"total_max_attempts": 1}, client_cert=client_cert))
        except ValueError as error:
            raise ConfigError(f"sagemaker_edge_core_endpoint_override: {error}; expected a URL "
                              f"such as https://fleet.example:8443") from None
        if config.edgefleet_control_access_key_id and secret_value:
            self._credentials: Any = Credentials(config.edgefleet_control_access_key_id,
                                                 secret_value)
        else:
            self._credentials = boto3.Session().get_credentials()
        self._http = urllib3.PoolManager(
            ca_certs=str(ca_file) if ca_file else None,
            cert_file=client_cert[0] if client_cert else None,
            key_file=client_cert[1] if client_cert else None)

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            answer: dict[str, Any] = getattr(self._client, operation)(**request)
        except ClientError as error:
            info = error.response.get("Error", {})
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            hint = _CREDENTIALS_HINT if status in (401, 403) else ""
            raise ControlPlaneUnavailable(
                f"{operation} refused by {self._endpoint} (HTTP {status}, "
                f"{info.get('Code')}): {info.get('Message')}{hint}", status) from None
        except NoCredentialsError:
            raise ControlPlaneUnavailable(
                f"{operation}: no credentials to sign with; set edgefleet_control_access_key_id "
                f"and edgefleet_control_secret_access_key in the agent config") from None
        except BotoCoreError as error:
            raise ControlPlaneUnavailable(
                f"{operation}: cannot reach the control plane at {self._endpoint}: "
                f"{error}") from None
        return answer

    def get_device_registration(self, device_name: str, fleet_name: str) -> tuple[str, float]:
        """See :meth:`ControlTransport.get_device_registration`."""
        answer = self._call("get_device_registration", DeviceName=device_name,
                            DeviceFleetName=fleet_name)
        try:
            ttl = float(answer.get("CacheTTL") or 0)
        except ValueError:
            ttl = 0.0
        return str(answer.get("DeviceRegistration") or ""), ttl

    def get_deployments(self, device_name: str, fleet_name: str) -> list[dict[str, Any]]:
        """See :meth:`ControlTransport.get_deployments`."""
        answer = self._call("get_deployments", DeviceName=device_name,
                            DeviceFleetName=fleet_name)
        return list(answer.get("Deployments") or [])

    def send_heartbeat(self, request: dict[str, Any]) -> None:
        """See :meth:`ControlTransport.send_heartbeat`."""
        self._call("send_heartbeat", **request)

    def download(self, url: str) -> Generator[bytes, None, None]:
        """See :meth:`ControlTransport.download`."""
        import urllib3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers: dict[str, str] = {}
        query = parse_qs(urlsplit(url).query)
        if "X-Amz-Signature" not in query and self._credentials is not None:
            request = AWSRequest(method="GET", url=url)
            SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_NAME,
                      self._region).add_auth(request)
            headers = dict(request.headers.items())
        try:
            response = self._http.request(
                "GET", url, headers=headers, preload_content=False, retries=False,
                timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout))
        except urllib3.exceptions.HTTPError as error:
            raise ControlPlaneUnavailable(
                f"cannot download {shown_url(url)}: {error}") from None
        try:
            if response.status != 200:
                body = response.read(500).decode("utf-8", "replace")
                hint = _CREDENTIALS_HINT if response.status in (401, 403) else ""
                raise ControlPlaneUnavailable(
                    f"download of {shown_url(url)} answered HTTP {response.status}{hint}: "
                    f"{body}", response.status)
            yield from response.stream(CHUNK_BYTES)
        except urllib3.exceptions.HTTPError as error:
            raise ControlPlaneUnavailable(
                f"download of {shown_url(url)} broke off: {error}") from None
        finally:
            response.release_conn()


class MemoryTransport:
    """An in-memory control plane: the test double of :class:`ControlTransport`.

    Answers from its attributes, records every request, and keeps the real server's
    bookkeeping: a deployment is handed out until a heartbeat reports its result.

    Attributes:
        registration: GetDeviceRegistration's ``DeviceRegistration``.
        cache_ttl: its ``CacheTTL``, in seconds.
        deployments: what GetDeployments answers (``EdgeDeployment`` dicts).
        packages: package bytes by ``S3Url`` (see :meth:`add_package`).
        heartbeats: every SendHeartbeat request received, oldest first.
        results: every DeploymentResult received, oldest first.
        down: when True, every call raises :class:`ControlPlaneUnavailable`.
        refused_results: deployment names whose results SendHeartbeat refuses (HTTP 400).
        calls: number of calls per operation name, failed ones included.
    """

    def __init__(self) -> None:
        self.registration = "REGISTERED"
        self.cache_ttl = 3600.0
        self.deployments: list[dict[str, Any]] = []
        self.packages: dict[str, bytes] = {}
        self.heartbeats: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.down = False
        self.refused_results: set[str] = set()
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.down:
            raise ControlPlaneUnavailable(f"{operation}: the in-memory control plane is down")

    def add_package(self, url: str, data: bytes) -> str:
        """Serve ``data`` at ``url``; returns its SHA-1 (hex) for the deployment's Checksum."""
        self.packages[url] = data
        return hashlib.sha1(data, usedforsecurity=False).hexdigest()

    def get_device_registration(self, device_name: str, fleet_name: str) -> tuple[str, float]:
        """See :meth:`ControlTransport.get_device_registration`."""
        with self._lock:
            self._enter("GetDeviceRegistration")
            return self.registration, self.cache_ttl

    def get_deployments(self, device_name: str, fleet_name: str) -> list[dict[str, Any]]:
        """See :meth:`ControlTransport.get_deployments`."""
        with self._lock:
            self._enter("GetDeployments")
            return list(self.deployments)

    def send_heartbeat(self, request: dict[str, Any]) -> None:
        """See :meth:`ControlTransport.send_heartbeat`."""
        with self._lock:
            self._enter("SendHeartbeat")
            result = request.get("DeploymentResult")
            if result is not None and result["DeploymentName"] in self.refused_results:
                raise ControlPlaneUnavailable(
                    f"SendHeartbeat refused (HTTP 400): invalid DeploymentResult "
                    f"{result['DeploymentName']}", 400)
            self.heartbeats.append(request)
            if result is not None:
                self.results.append(result)
                self.deployments = [d for d in self.deployments
                                    if d["DeploymentName"] != result["DeploymentName"]]

    def download(self, url: str) -> Generator[bytes, None, None]:
        """See :meth:`ControlTransport.download`."""
        with self._lock:
            self._enter("Download")
            data = self.packages.get(url)
        if data is None:
            raise ControlPlaneUnavailable(f"download of {url} answered HTTP 404", 404)
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start:start + CHUNK_BYTES]


def make_transport(config: AgentConfig) -> ControlTransport | None:
    """The transport the config asks for: boto3 for provider ``Aws``, else None."""
    if config.sagemaker_edge_provider_provider != "Aws":
        return None
    return Boto3Transport(config)


# -- the client -----------------------------------------------------------------------------------

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
                self._pause(backoff, error.message)
                continue
            except Exception:  # a bug must not end the thread: the agent keeps serving
                log.exception("heartbeat failed unexpectedly")
                self._pause(backoff, "unexpected error")
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
            try:
                self.poll_deployments()
                backoff.reset()
            except EdgefleetError as error:
                self._pause(backoff, error.message, wake=False)
                continue
            except Exception:  # a bug must not end the thread: the agent keeps serving
                log.exception("deployment poll failed unexpectedly")
                self._pause(backoff, "unexpected error", wake=False)
                continue
            if self._poll_wake.wait(self._poll_seconds):
                self._stop.wait(max(0.0, polled + gap - time.monotonic()))

    def _pause(self, backoff: Backoff, problem: str, *, wake: bool = True) -> None:
        delay = backoff.next_delay()
        log.warning("control plane: %s; retrying in %.1f s", problem, delay)
        (self._wake if wake else self._stop).wait(delay)
