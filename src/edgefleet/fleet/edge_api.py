"""The device API: ``sagemaker-edge`` over rest-json, as boto3's service model describes it.

``POST /SendHeartbeat``, ``POST /GetDeviceRegistration``, ``POST /GetDeployments`` take the whole
request as a JSON body and must be SigV4-signed (signing name ``sagemaker``) by the device's own
credentials, so ``boto3.client("sagemaker-edge", endpoint_url=...)`` is a client. Errors come
back the way botocore's rest-json parser reads them: ``x-amzn-ErrorType`` and
``{"__type", "message"}``. ``GET /downloads/{key}`` streams a package of the local object store
to a device that a stage selected for it (same SigV4 signing).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from edgefleet.bodies import BodyTooLarge, read_bounded
from edgefleet.errors import (
    EdgefleetError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from edgefleet.fleet import edge, rollout, schemas
from edgefleet.fleet.db.engine import failure_message
from edgefleet.fleet.sigv4 import (
    AccessDenied,
    SignedRequest,
    Unauthenticated,
    parse_authorization,
)

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_Body = TypeVar("_Body", bound=BaseModel)
#: Largest accepted device-API body, in bytes (a heartbeat with 100 models is about 60 KB).
MAX_BODY_BYTES = 1 << 20

#: AWS error code and HTTP status per error class; anything else is InternalServiceException.
_AWS_ERRORS: list[tuple[type[EdgefleetError], str, int]] = [
    (Unauthenticated, "InvalidSignatureException", 403),
    (AccessDenied, "AccessDeniedException", 403),
    (InvalidArgument, "ValidationException", 400),
    (NotFound, "ResourceNotFound", 404),
    # botocore retries ThrottlingException with backoff, as the agent's own client does.
    (ResourceExhausted, "ThrottlingException", 429),
]


def _aws_error(exc: EdgefleetError) -> JSONResponse:
    code, status = next(((c, s) for kind, c, s in _AWS_ERRORS if isinstance(exc, kind)),
                        ("InternalServiceException", 500))
    if status == 500:
        log.error("device request failed: %s", exc.message)
    return JSONResponse({"__type": code, "message": exc.message}, status_code=status,
                        headers={"x-amzn-ErrorType": code})


async def _signed(request: Request) -> SignedRequest:
    # Bodies are read before authentication, so their size is capped first: by the declared
    # length, and by counting as they arrive (a chunked body declares none).
    try:
        body = await read_bounded(request.headers.get("content-length"), request.stream(),
                                  MAX_BODY_BYTES)
    except BodyTooLarge:
        raise InvalidArgument(f"request body over {MAX_BODY_BYTES} bytes; send fewer metrics "
                              "per heartbeat") from None
    return SignedRequest.from_scope(request.scope, request.headers, body)


def _parse(model: type[_Body], body: bytes) -> _Body:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise InvalidArgument(
            f"invalid {model.__name__} request: {schemas.describe_errors(exc.errors())}"
        ) from None


def _url_for(request: Request) -> Callable[[str], str]:
    context = request.app.state.context
    base = context.base_url(request)
    ttl = context.settings.download_url_ttl_seconds

    def url_for(key: str) -> str:
        return context.store.presigned_url(key, ttl) or f"{base}/downloads/{quote(key)}"
    return url_for


async def _identify(request: Request, signed: SignedRequest) -> edge.DeviceIdentity:
    """The device that signed the request (cached credentials, else one database read)."""
    context = request.app.state.context
    address = context.client_address(request)
    context.auth_failures.check(address)
    try:
        auth = parse_authorization(signed.headers.get("authorization"))
        credentials = context.credentials.get(auth.access_key_id)
        if credentials is None:
            def lookup() -> edge.DeviceCredentials | None:
                with context.sessions() as session:
                    return edge.lookup_credentials(session, context.key, auth.access_key_id)
            credentials = await run_in_threadpool(lookup)
            if credentials is not None:
                context.credentials.put(auth.access_key_id, credentials)
        return edge.authenticate(credentials, signed, auth,
                                 max_skew_seconds=context.settings.clock_skew_seconds)
    except Unauthenticated:
        context.auth_failures.failed(address)
        raise


async def _authorized(request: Request, model: type[_Body]
                      ) -> tuple[edge.DeviceIdentity, _Body]:
    """The signing device and the parsed body of a device-API request."""
    signed = await _signed(request)
    identity = await _identify(request, signed)
    return identity, _parse(model, signed.body)


def _aws_errors(handler: Callable[[Request], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
    """Answer the handler's EdgefleetErrors, and statements the database refused (a full
    disk), the way botocore parses rest-json errors."""
    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except EdgefleetError as exc:
            return _aws_error(exc)
        except SQLAlchemyError as exc:
            return _aws_error(Unavailable(f"nothing was stored: {failure_message(exc)}"))
    return answer


def _json(result: dict[str, Any]) -> Response:
    return Response(json.dumps(result), media_type="application/json")


@router.post("/SendHeartbeat")
@_aws_errors
async def send_heartbeat(request: Request) -> Response:
    """SendHeartbeat: queue the caller's heartbeat and answer (empty) once it is committed."""
    identity, beat = await _authorized(request, schemas.Heartbeat)
    edge.require_self(identity, beat.DeviceName, beat.DeviceFleetName)
    try:
        # submit() may block (see HeartbeatWriter.submit): off the event loop.
        committed = await run_in_threadpool(
            request.app.state.context.heartbeats.submit,
            edge.ReceivedHeartbeat(identity.device_id, beat, time.time()))
        await asyncio.wrap_future(committed)
    except SQLAlchemyError as exc:
        raise Unavailable(f"the heartbeat was not stored: {failure_message(exc)}") from None
    return _json({})


@router.post("/GetDeviceRegistration")
@_aws_errors
async def get_device_registration(request: Request) -> Response:
    """GetDeviceRegistration: ``REGISTERED`` and the cache TTL for the caller."""
    identity, ref = await _authorized(request, schemas.DeviceRef)
    ttl = request.app.state.context.settings.registration_cache_ttl_seconds
    return _json(edge.registration(identity, ref, ttl))


@router.post("/GetDeployments")
@_aws_errors
async def get_deployments(request: Request) -> Response:
    """GetDeployments: the caller's open deployments with package URLs and SHA-1 checksums."""
    identity, ref = await _authorized(request, schemas.DeviceRef)
    sessions, url_for = request.app.state.context.sessions, _url_for(request)

    def work() -> dict[str, Any]:
        with sessions.begin() as session:
            return edge.deployments(session, identity, ref, url_for)
    return _json(await run_in_threadpool(work))


@router.get("/downloads/{key:path}")
@_aws_errors
async def download(request: Request) -> Response:
    """Stream a package to a device whose stage deploys it (local and in-memory stores)."""
    context = request.app.state.context
    key = request.path_params["key"]
    identity = await _identify(request, await _signed(request))

    def check() -> int:
        with context.sessions() as session:
            if not rollout.may_download(session, identity.device_id, key):
                raise AccessDenied("no deployment of this device uses that package")
        size: int = context.store.size(key)
        return size
    size = await run_in_threadpool(check)
    return StreamingResponse(context.store.open_chunks(key), media_type="application/gzip",
                             headers={"content-length": str(size)})
