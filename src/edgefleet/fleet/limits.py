"""Request body limits, enforced before a body is read (an ASGI middleware).

FastAPI reads a JSON body whole before validating it, so without a limit a client could make the
server hold any amount of memory before it answers 422. The limit holds for a declared
``Content-Length`` (refused at once) and for a chunked body (refused when the bytes received
pass it, while the route reads them).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

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
