"""The agent's side of the control plane's ``sagemaker-edge`` device API.

:class:`ControlTransport` is the device API as the agent uses it: :class:`Boto3Transport` is
boto3's ``sagemaker-edge`` client (``endpoint_url=...``) with the device's own credentials, plus a
SigV4-signed ``GET`` for package downloads; :class:`MemoryTransport` is the public in-memory
double for tests (like httpx's ``MockTransport``). Every failure is a
:class:`ControlPlaneUnavailable` whose message says what to check, without secrets. The
device's credentials can be swapped while requests run (:meth:`ControlTransport.use_credentials`,
which the agent calls on SIGHUP).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.config import AgentConfig
from edgefleet.errors import ConfigError, Unavailable
from edgefleet.wire.edge import SIGNING_NAME

log = logging.getLogger(__name__)

#: Download chunk size, in bytes.
CHUNK_BYTES = 1 << 20

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


def control_backoff(config: AgentConfig) -> Backoff:
    """Retry delays for control-plane requests and package downloads, from the config."""
    return Backoff(config.edgefleet_control_backoff_seconds,
                   config.edgefleet_control_max_backoff_seconds)


def shown_url(url: str) -> str:
    """``url`` without its query, for logs: presigned URLs carry a bearer signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url


@dataclass(frozen=True)
class _Signer:
    """What signs a request: the boto3 client and the credentials for downloads (None: sent
    unsigned, when boto3's chain found none)."""

    client: Any
    credentials: Any


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

    def use_credentials(self, access_key_id: str | None,
                        secret_access_key: SecretStr | None) -> None:
        """Sign every request that starts from now on with these credentials (None and None:
        boto3's credential chain); a request in flight finishes with those it started with.
        Thread-safe.

        Raises:
            ConfigError: the transport cannot be set up again (an invalid endpoint URL).
        """


class Boto3Transport:
    """The real transport: boto3's own ``sagemaker-edge`` client and urllib3 for downloads.

    The client is exactly ``boto3.session.Session().client("sagemaker-edge",
    endpoint_url=<endpoint override>, region_name=..., aws_access_key_id=...,
    aws_secret_access_key=...)`` (one session per transport), with the configured CA bundle
    and client certificate, the request timeout, and botocore's own retries off (the
    :class:`ControlClient` retries with its backoff). Downloads of ``S3Url`` go through urllib3
    (botocore's own HTTP library, so nothing more is loaded): presigned URLs as they are, other
    URLs (the control plane's ``/downloads/...``) SigV4-signed with the device's credentials.

    Requests are thread-safe: :meth:`use_credentials` swaps the client and the download
    credentials as one object, which each request reads once; call it from one thread at a time.

    Raises:
        ConfigError: from botocore, for an invalid endpoint URL (at construction).
    """

    def __init__(self, config: AgentConfig) -> None:
        import urllib3

        self._endpoint = config.sagemaker_edge_core_endpoint_override or ""
        self._region = config.sagemaker_edge_core_region
        self._timeout = config.edgefleet_control_timeout_seconds
        ca_file = config.sagemaker_edge_provider_aws_ca_cert_file
        cert = config.sagemaker_edge_provider_aws_cert_file
        key = config.sagemaker_edge_provider_aws_cert_pk_file
        self._verify = str(ca_file) if ca_file else True
        self._client_cert = (str(cert), str(key)) if cert and key else None
        self._session: Any = None
        self._signer = self._connect(config.edgefleet_control_access_key_id,
                                     config.edgefleet_control_secret_access_key)
        self._http = urllib3.PoolManager(
            ca_certs=str(ca_file) if ca_file else None,
            cert_file=self._client_cert[0] if self._client_cert else None,
            key_file=self._client_cert[1] if self._client_cert else None)

    def _connect(self, access_key_id: str | None, secret: SecretStr | None) -> _Signer:
        import boto3
        from botocore.config import Config
        from botocore.credentials import Credentials

        secret_value = secret.get_secret_value() if secret is not None else None
        if self._session is None:
            # The transport's own session: a boto3 session is not safe to share between
            # threads, and only the one that builds or reloads the agent makes clients here.
            # Kept for reloads, so that a new client reuses its loaded service model.
            self._session = boto3.session.Session()
        session = self._session
        try:
            client = session.client(
                "sagemaker-edge", endpoint_url=self._endpoint, region_name=self._region,
                aws_access_key_id=access_key_id, aws_secret_access_key=secret_value,
                verify=self._verify,
                config=Config(connect_timeout=self._timeout, read_timeout=self._timeout,
                              retries={"total_max_attempts": 1}, client_cert=self._client_cert))
        except ValueError as error:
            raise ConfigError(f"sagemaker_edge_core_endpoint_override: {error}; expected a URL "
                              f"such as https://fleet.example:8443") from None
        if access_key_id and secret_value:
            return _Signer(client, Credentials(access_key_id, secret_value))
        return _Signer(client, session.get_credentials())

    def use_credentials(self, access_key_id: str | None,
                        secret_access_key: SecretStr | None) -> None:
        """See :meth:`ControlTransport.use_credentials`.

        Builds a new client (and so new connections) for the new credentials; the old client
        finishes the requests it carries and is then dropped.

        Raises:
            ConfigError: see the class.
        """
        self._signer = self._connect(access_key_id, secret_access_key)

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        client = self._signer.client  # read once: a reload mid-request leaves this one alone
        try:
            answer: dict[str, Any] = getattr(client, operation)(**request)
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
        credentials = self._signer.credentials
        if "X-Amz-Signature" not in query and credentials is not None:
            request = AWSRequest(method="GET", url=url)
            SigV4Auth(credentials.get_frozen_credentials(), SIGNING_NAME,
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
        access_key_ids: the access key id of every :meth:`use_credentials` call, oldest first.
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
        self.access_key_ids: list[str | None] = []
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

    def use_credentials(self, access_key_id: str | None,
                        secret_access_key: SecretStr | None) -> None:
        """See :meth:`ControlTransport.use_credentials`; records the key id."""
        with self._lock:
            self.access_key_ids.append(access_key_id)


def make_transport(config: AgentConfig) -> ControlTransport | None:
    """The transport the config asks for: boto3 for provider ``Aws``, else None."""
    if config.sagemaker_edge_provider_provider != "Aws":
        return None
    return Boto3Transport(config)


