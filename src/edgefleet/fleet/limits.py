"""Limits that protect the server from its clients: request body sizes, enforced before a body
is read (an ASGI middleware), and failed authentications per client address.

FastAPI reads a JSON body whole before validating it, so without a limit a client could make the
server hold any amount of memory before it answers 422. The limit holds for a declared
``Content-Length`` (refused at once) and for a chunked body (refused when the bytes received
pass it, while the route reads them).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from edgefleet.errors import ResourceExhausted

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The management API, whose bodies this limits; the device (sagemaker-edge) API caps its own
#: bodies and answers in botocore's error shape (edge_api.MAX_BODY_BYTES).
MANAGEMENT_PREFIX = "/api/"

#: The one route whose body is a model file (multipart upload).
UPLOAD_PATH = "/api/v1/packaging-jobs"


class BodyLimit:
    """Refuse management API request bodies over ``max_bytes`` (``max_upload_bytes`` for model
    uploads) with 413.

    Args:
        app: the ASGI app to protect.
        max_bytes: limit for every route but :data:`UPLOAD_PATH`, in bytes.
        max_upload_bytes: limit for ``POST`` :data:`UPLOAD_PATH`, in bytes.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(MANAGEMENT_PREFIX):
            await self.app(scope, receive, send)  # the device API caps its own, in its shape
            return
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == UPLOAD_PATH
        limit = self.max_upload_bytes if upload else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, _too_large(declared.decode(), limit))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(f"more than {limit}", limit))
            return message

        await self.app(scope, counted, send)


def _too_large(size: str, limit: int) -> str:
    return (f"the request body ({size} bytes) is larger than the server accepts here ({limit} "
            f"bytes); send less, or raise the server's max_request_bytes (max_model_upload_bytes "
            f"for model uploads)")


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": "PayloadTooLarge", "message": message}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class AuthFailureLimit:
    """Refuses a client address for a while after too many failed authentications.

    Each address may fail ``max_failures`` times within ``window_seconds``; after that every
    request from it, with good credentials or not, is refused (``ResourceExhausted``, HTTP 429)
    until its oldest failure in the window has aged out. Refusing good credentials too is what
    makes guessing useless: a right guess during the block is refused like a wrong one. The
    state lives in the process (each ``--workers`` process counts on its own). Thread-safe.

    Args:
        max_failures: failures allowed per address in the window.
        window_seconds: the sliding window, in seconds.
        clock: monotonic seconds (for tests).
    """

    def __init__(self, max_failures: int, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise if ``address`` is refused now.

        Raises:
            ResourceExhausted: too many failures in the window; the message says how long to wait.
        """
        with self._lock:
            failures = self._recent(address)
            if failures is None or len(failures) < self.max_failures:
                return
            wait = failures[0] + self.window_seconds - self._clock()
        raise ResourceExhausted(
            f"too many failed authentications from {address} ({self.max_failures} in "
            f"{self.window_seconds:g} s); try again in {max(wait, 0.0):.0f} s with valid "
            f"credentials")

    def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        with self._lock:
            failures = self._recent(address)
            if failures is None:
                if len(self._failures) >= _MAX_ADDRESSES:  # a flood of addresses: forget one
                    self._failures.pop(next(iter(self._failures)))
                failures = self._failures[address] = deque()
            failures.append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window_seconds
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures


#: Addresses tracked at most (about 100 bytes each plus their failure times).
_MAX_ADDRESSES = 100_000
