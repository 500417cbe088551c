"""The HTTP transport: JSON-RPC 2.0 over ``POST /`` (also ``POST /jsonrpc``), served by uvicorn.

- a response (or batch of responses) is ``200`` with ``application/json``;
- a notification, or a batch of notifications only, is ``204 No Content`` with no body (the
  specification's section 6 says to return nothing at all);
- a body larger than ``max_request_bytes`` is ``413`` with an Invalid Request error object;
- ``GET /healthz`` answers ``{"status": "ok"}`` (the bridge is up; it does not call the agent).

Starlette and uvicorn are the well-kept ASGI pieces FastAPI itself stands on; one route needs no
more. Calls to the agent block, so each body is answered in Starlette's thread pool.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgefleet.bodies import BodyTooLarge, read_bounded
from edgefleet.bridge.protocol import InvalidRequest, dump, response_error

log = logging.getLogger(__name__)

JSON = "application/json"


def create_app(handle: Callable[[bytes], Any], *, max_request_bytes: int) -> Starlette:
    """The ASGI app answering JSON-RPC bodies with ``handle``.

    Args:
        handle: body -> response object(s) or None (``Dispatcher.handle``); it may block.
        max_request_bytes: largest body accepted, in bytes.
    """
    async def rpc(request: HttpRequest) -> Response:
        try:
            body = await read_bounded(request.headers.get("content-length"), request.stream(),
                                      max_request_bytes)
        except BodyTooLarge:
            error = InvalidRequest(f"the body is larger than {max_request_bytes} bytes "
                                   "(max_request_bytes)")
            return Response(dump(response_error(error, None)), status_code=413, media_type=JSON)
        answer = await run_in_threadpool(handle, body)
        if answer is None:
            return Response(status_code=204)
        return Response(dump(answer), media_type=JSON)

    async def healthz(_: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/", rpc, methods=["POST"]),
                             Route("/jsonrpc", rpc, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def serve_http(app: Starlette, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then return: uvicorn finishes
    the requests in flight first. Call it from the main thread.

    Raises:
        SystemExit: uvicorn could not bind (it logs why, e.g. the port is in use).
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    # After its graceful shutdown uvicorn re-raises the stop signal to the handler that was
    # there before it; this one records it, so that a requested stop exits with status 0.
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        log.info("stopped on %s", signal.Signals(received[0]).name)
    if not server.started:
        raise SystemExit(1)
