"""Verification of AWS Signature Version 4 requests, recomputed with botocore's own signer.

The server parses the ``Authorization`` header, rebuilds the request from exactly the headers the
client signed, and asks :class:`botocore.auth.SigV4Auth` for the signature that the secret yields;
the algorithm itself is botocore's (the same code that signed the request on the device). The
format is AWS's "Signature Version 4 signing process" (Authorization header variant).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edgefleet.errors import EdgefleetError

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[A-Za-z0-9]{1,128})/(?P<date>\d{8})/"
    r"(?P<region>[a-z0-9-]{1,32})/(?P<service>[a-z0-9-]{1,32})/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;_.-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class Unauthenticated(EdgefleetError):
    """The request carries no valid credentials: missing or malformed signature or token,
    unknown access key, wrong signature, or a time outside the allowed clock skew."""

    code = grpc.StatusCode.UNAUTHENTICATED


class AccessDenied(EdgefleetError):
    """The caller is authenticated but may not touch the named record (another device's)."""

    code = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class SignedRequest:
    """The parts of a received HTTP request that SigV4 covers.

    Attributes:
        method: HTTP method, e.g. ``POST``.
        raw_path: the path exactly as received (still percent-encoded).
        query: the raw query string without ``?`` (may be empty).
        headers: header names to values, as received (names lower-case as ASGI gives them;
            :func:`verify` also accepts any case).
        body: the request body.
    """

    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], headers: Mapping[str, str],
                   body: bytes) -> SignedRequest:
        """The request an ASGI ``scope`` describes (path exactly as received, percent-encoded),
        with its ``headers`` and ``body``."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return cls(method=scope["method"], raw_path=raw_path.decode("latin-1"),
                   query=scope.get("query_string", b"").decode("latin-1"),
                   headers=dict(headers), body=body)


@dataclass(frozen=True)
class Authorization:
    """A parsed ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str | None) -> Authorization:
    """Parse a SigV4 ``Authorization`` header.

    Raises:
        Unauthenticated: the header is missing or not a SigV4 header.
    """
    match = _AUTH.fullmatch(value or "")
    if match is None:
        raise Unauthenticated(
            "missing or malformed SigV4 Authorization header; sign requests with the device's "
            "access key (boto3 does this when given the device's credentials)")
    return Authorization(
        match["akid"], match["date"], match["region"], match["service"],
        tuple(match["headers"].split(";")), match["signature"])


def verify(request: SignedRequest, auth: Authorization, secret: str, *, service: str,
           max_skew_seconds: float, now: float | None = None) -> None:
    """Check that ``auth.signature`` is what ``secret`` gives for ``request``.

    Args:
        request: the received request.
        auth: its parsed Authorization header.
        secret: the secret access key of ``auth.access_key_id``.
        service: the signing name the endpoint expects (``sagemaker`` for the device API).
        max_skew_seconds: largest accepted distance between ``X-Amz-Date`` and ``now``.
        now: the server's time in epoch seconds (default: the current time).

    Raises:
        Unauthenticated: wrong service, unsigned host or date, a time outside the skew,
            a payload hash that does not match the body, or a wrong signature. The message
            never contains the expected signature.
    """
    headers = {k.lower(): v for k, v in request.headers.items()}
    if auth.service != service:
        raise Unauthenticated(f"credential scope names service {auth.service!r}; sign for "
                              f"{service!r}")
    if "host" not in auth.signed_headers or "x-amz-date" not in auth.signed_headers:
        raise Unauthenticated("the signature must cover the host and x-amz-date headers")
    missing = [h for h in auth.signed_headers if h not in headers]
    if missing:
        raise Unauthenticated(f"signed headers missing from the request: {', '.join(missing)}")
    amz_date = headers["x-amz-date"]
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, _AMZ_DATE))
    except ValueError:
        raise Unauthenticated(f"x-amz-date {amz_date!r} is not YYYYMMDDTHHMMSSZ") from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > max_skew_seconds:
        raise Unauthenticated(
            f"request time {amz_date} is more than {max_skew_seconds:.0f} s away from the "
            "server's clock; synchronise the device clock (NTP) and retry")
    if amz_date[:8] != auth.date:
        raise Unauthenticated("the credential scope date does not match x-amz-date")
    body_hash = hashlib.sha256(request.body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != body_hash:
        raise Unauthenticated("x-amz-content-sha256 does not match the body; payloads must be "
                              "signed")
    query = f"?{request.query}" if request.query else ""
    rebuilt = AWSRequest(
        method=request.method, url=f"http://{headers['host']}{request.raw_path}{query}",
        headers={h: headers[h] for h in auth.signed_headers}, data=request.body)
    rebuilt.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(auth.access_key_id, secret), auth.service, auth.region)
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    if not hmac.compare_digest(expected, auth.signature):
        raise Unauthenticated("the request signature does not match; check the device's secret "
                              "access key and that nothing rewrote the request on the way")
