"""Reading an HTTP request body without letting the client choose how much memory it takes.

Shared by the control plane's device API and the JSON-RPC bridge (both Starlette, but this
module needs nothing from it: it reads the header value and the chunk stream a request gives).
"""

from __future__ import annotations

from collections.abc import AsyncIterator


class BodyTooLarge(Exception):
    """The body is larger than the limit (declared so, or counted while it arrived)."""


async def read_bounded(content_length: str | None, chunks: AsyncIterator[bytes],
                       limit: int) -> bytes:
    """The whole body, refused before reading when ``Content-Length`` declares more than
    ``limit`` bytes, and as soon as the chunks received pass it (a chunked body declares none).

    Args:
        content_length: the request's ``Content-Length`` header, or None.
        chunks: the body as it arrives (Starlette's ``request.stream()``).
        limit: the largest body accepted, in bytes.

    Raises:
        BodyTooLarge: the body is larger than ``limit``.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge
    received: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        received.append(chunk)
    return b"".join(received)
