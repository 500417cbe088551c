"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fleet.fleet_support import signed_headers

from edgefleet.fleet.sigv4 import SignedRequest, Unauthenticated, parse_authorization, verify

KEY, SECRET = "EFDVAAAAAAAAAAAAAAAA", "s3cr3t-s3cr3t-s3cr3t"
URL = "http://127.0.0.1:8080/SendHeartbeat"
BODY = b'{"DeviceName": "d1"}'


def _request(headers: dict[str, str], body: bytes = BODY, path: str = "/SendHeartbeat",
             query: str = "") -> SignedRequest:
    return SignedRequest("POST", path, query, headers, body)


def _check(request: SignedRequest, secret: str = SECRET, now: float | None = None) -> None:
    verify(request, parse_authorization(request.headers["Authorization"]), secret,
           service="sagemaker", max_skew_seconds=300, now=now)


def test_accepts_botocore_signature() -> None:
    _check(_request(signed_headers("POST", URL, BODY, KEY, SECRET)))


def test_accepts_query_strings_and_encoded_paths() -> None:
    url = "http://127.0.0.1:8080/downloads/packages/a%20b/x.tar.gz?b=2&a=1"
    headers = signed_headers("GET", url, b"", KEY, SECRET)
    _check(SignedRequest("GET", "/downloads/packages/a%20b/x.tar.gz", "b=2&a=1", headers, b""))


@pytest.mark.parametrize("change", ["body", "secret", "path", "host"])
def test_refuses_anything_changed(change: str) -> None:
    headers = signed_headers("POST", URL, BODY, KEY, SECRET)
    request = _request(headers)
    if change == "body":
        request = _request(headers, body=b'{"DeviceName": "d2"}')
    elif change == "path":
        request = _request(headers, path="/GetDeployments")
    elif change == "host":
        request = _request({**headers, "host": "evil:8080"})
    with pytest.raises(Unauthenticated, match="signature does not match"):
        _check(request, secret="other-secret" if change == "secret" else SECRET)


def test_refuses_old_and_future_times() -> None:
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    with pytest.raises(Unauthenticated, match="server's clock"):
        _check(_request(signed_headers("POST", URL, BODY, KEY, SECRET, at=old)))
    with pytest.raises(Unauthenticated, match="server's clock"):
        _check(_request(signed_headers("POST", URL, BODY, KEY, SECRET)), now=time.time() - 1200)


def test_refuses_payload_hash_that_does_not_match_body() -> None:
    headers = signed_headers("POST", URL, BODY, KEY, SECRET)
    headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    with pytest.raises(Unauthenticated, match="x-amz-content-sha256"):
        _check(_request(headers))


def test_refuses_other_service_and_malformed_headers() -> None:
    headers = signed_headers("POST", URL, BODY, KEY, SECRET, service="s3")
    with pytest.raises(Unauthenticated, match="service 's3'"):
        _check(_request(headers))
    with pytest.raises(Unauthenticated, match="malformed"):
        parse_authorization("Bearer abc")
    with pytest.raises(Unauthenticated, match="malformed"):
        parse_authorization(None)


def test_refuses_signed_header_missing_from_request() -> None:
    headers = signed_headers("POST", URL, BODY, KEY, SECRET)
    del headers["Content-Type"]
    with pytest.raises(Unauthenticated, match="missing from the request: content-type"):
        _check(_request(headers))
