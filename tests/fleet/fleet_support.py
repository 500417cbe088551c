"""Helpers of the control-plane tests: SigV4 signing with botocore, device-API callers of a
TestClient and of a real server."""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient

from edgefleet.fleet.sagemaker_api.protocol import CONTENT_TYPE


def signed_headers(method: str, url: str, body: bytes, access_key: str, secret: str, *,
                   at: dt.datetime | None = None, region: str = "us-east-1",
                   service: str = "sagemaker") -> dict[str, str]:
    """Headers of a SigV4-signed request, signed by botocore (optionally at a given time)."""
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    if at is None:
        signer.add_auth(request)
    else:
        with patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(request)
    # The HTTP client sends Host; botocore signed it from the URL without adding the header.
    return {"host": urlsplit(url).netloc, **dict(request.headers.items())}


class EdgeCaller:
    """Calls the device API of a TestClient with one device's credentials."""

    def __init__(self, client: TestClient, access_key: str, secret: str) -> None:
        self.client, self.access_key, self.secret = client, access_key, secret

    def post(self, operation: str, payload: dict[str, Any], *,
             at: dt.datetime | None = None, secret: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        url = f"http://testserver/{operation}"
        headers = signed_headers("POST", url, body, self.access_key, secret or self.secret,
                                 at=at)
        return self.client.post(f"/{operation}", content=body, headers=headers)

    def post_raw(self, operation: str, body: bytes) -> Any:
        """POST ``body`` as it is (any bytes), signed with this device's credentials."""
        url = f"http://testserver/{operation}"
        headers = signed_headers("POST", url, body, self.access_key, self.secret)
        return self.client.post(f"/{operation}", content=body, headers=headers)

    def get(self, url: str) -> Any:
        headers = signed_headers("GET", url, b"", self.access_key, self.secret)
        return self.client.get(url, headers=headers)


def register(api: TestClient, name: str, fleet: str) -> EdgeCaller:
    """Register a device and return a caller holding its credentials."""
    answer = api.post("/api/v1/devices", json={"name": name, "fleet": fleet})
    assert answer.status_code == 201, answer.text
    creds = answer.json()["credentials"]
    return EdgeCaller(api, creds["access_key_id"], creds["secret_access_key"])


def sha1(data: bytes) -> str:
    """SHA-1 hex digest."""
    return hashlib.sha1(data).hexdigest()


class RemoteDevice:
    """A simulated device of a real server: its device-API requests signed with its own keys
    (from the agent config the server wrote at registration) and sent with ``client``."""

    def __init__(self, url: str, agent_config: dict[str, Any], client: httpx.Client) -> None:
        self.url, self.client = url, client
        self.name = agent_config["sagemaker_edge_core_device_name"]
        self.fleet = agent_config["sagemaker_edge_core_device_fleet_name"]
        self.access_key = agent_config["edgefleet_control_access_key_id"]
        self.secret = agent_config["edgefleet_control_secret_access_key"]

    def post(self, operation: str, payload: dict[str, Any], timeout: float = 30) -> Any:
        """POST a device-API request; the httpx response (httpx errors propagate)."""
        body = json.dumps(payload).encode()
        url = f"{self.url}/{operation}"
        headers = signed_headers("POST", url, body, self.access_key, self.secret)
        return self.client.post(url, content=body, headers=headers, timeout=timeout)

    def heartbeat(self, seq: int, result: dict[str, Any] | None = None,
                  timeout: float = 30) -> Any:
        """SendHeartbeat numbered ``seq``: AgentVersion ``seq-<seq>``, the agent metric
        ``sequence`` and one model of version ``v<seq>``, so that what a heartbeat wrote can
        be told apart in every table; ``result``: a DeploymentResult to report."""
        now = time.time()
        payload: dict[str, Any] = {
            "DeviceName": self.name, "DeviceFleetName": self.fleet, "AgentVersion": f"seq-{seq}",
            "AgentMetrics": [{"Dimension": "agent", "MetricName": "sequence", "Value": seq,
                              "Timestamp": now}],
            "Models": [{"ModelName": "relu", "ModelVersion": f"v{seq}", "LatestInference": now,
                        "ModelMetrics": [{"Dimension": "relu", "MetricName": "sequence",
                                          "Value": seq, "Timestamp": now}]}]}
        if result is not None:
            payload["DeploymentResult"] = result
        return self.post("SendHeartbeat", payload, timeout)


class OperatorCaller:
    """Signs and sends raw ``sagemaker`` requests (``POST /``) with the server's first operator
    key (``credentials``: its operator-credentials file), through ``client``: a TestClient, or
    an httpx client whose base URL is ``url``."""

    def __init__(self, client: TestClient | httpx.Client, credentials: Path,
                 url: str = "http://testserver") -> None:
        parser = configparser.ConfigParser()
        parser.read(credentials)
        self.client, self.url = client, url
        self.credentials = Credentials(parser["default"]["aws_access_key_id"],
                                       parser["default"]["aws_secret_access_key"])

    def post(self, target: str | None, content_type: str | None, body: bytes) -> httpx.Response:
        """POST / with these headers and body, SigV4-signed (service ``sagemaker``)."""
        headers = {}
        if target is not None:
            headers["X-Amz-Target"] = target
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = AWSRequest(method="POST", url=f"{self.url}/", data=body, headers=headers)
        SigV4Auth(self.credentials, "sagemaker", "us-east-1").add_auth(request)
        response: httpx.Response = self.client.post("/", content=body, headers={
            "host": urlsplit(self.url).netloc, **dict(request.headers.items())})
        return response

    def call(self, operation: str, **params: Any) -> Any:
        """A valid call: its JSON answer (assertion: 200)."""
        answer = self.post(f"SageMaker.{operation}", CONTENT_TYPE, json.dumps(params).encode())
        assert answer.status_code == 200, (operation, answer.text)
        return answer.json()
