"""Helpers of the control-plane tests: SigV4 signing with botocore, a device-API caller."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any
from unittest.mock import patch
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient


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
