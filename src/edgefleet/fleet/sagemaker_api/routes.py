"""``POST /``: the ``sagemaker`` JSON 1.1 endpoint, SigV4-signed by operator credentials.

Order of work per request, each step answering in the protocol's error shape: read the body
(at most :data:`MAX_BODY_BYTES`), authenticate (operator access keys only: a device's
credentials are unknown here, as operator keys are on the device API), find the operation in
``X-Amz-Target``, parse and validate the body against the model, run the handler in a
transaction (read-only operations in a plain session), write the response from the model.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTasks

from edgefleet.bodies import BodyTooLarge, read_bounded
from edgefleet.errors import (
    AlreadyExists,
    EdgefleetError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from edgefleet.fleet import operator_keys, schemas
from edgefleet.fleet.db.engine import failure_message
from edgefleet.fleet.sagemaker_api import protocol
from edgefleet.fleet.sagemaker_api.operations import HANDLERS, READ_ONLY, SERVED, Call
from edgefleet.fleet.sagemaker_api.protocol import CONTENT_TYPE, SERVICE_NAME, ProtocolError
from edgefleet.fleet.sigv4 import SignedRequest, Unauthenticated, parse_authorization, verify

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

#: Largest accepted request body, in bytes (the largest edge request, a plan with 100 stages
#: of 10,000 device names each, is far larger than any script sends; 4 MiB bounds memory).
MAX_BODY_BYTES = 4 << 20

#: Protocol error code and HTTP status per service error class (AWS JSON services answer 400
#: for client errors).
_ERRORS: list[tuple[type[EdgefleetError], str, int]] = [
    (NotFound, "ResourceNotFound", 400),
    (AlreadyExists, "ResourceInUse", 400),
    (FailedPrecondition, "ResourceInUse", 400),
    (InvalidArgument, "ValidationException", 400),
    (OutOfRange, "ValidationException", 400),
    (ResourceExhausted, "ResourceLimitExceeded", 400),
    (Unavailable, "ServiceUnavailable", 503),
]


def _protocol_error(exc: EdgefleetError) -> ProtocolError:
    code, status = next(((c, s) for kind, c, s in _ERRORS if isinstance(exc, kind)),
                        ("InternalFailure", 500))
    return ProtocolError(code, exc.message, status)


def _answer(body: bytes, status: int = 200, error: str | None = None,
            background: BackgroundTasks | None = None) -> Response:
    headers = {"x-amzn-ErrorType": error} if error else None
    return Response(body, status_code=status, media_type=CONTENT_TYPE, headers=headers,
                    background=background)


def _error(exc: ProtocolError) -> Response:
    if exc.status >= 500:
        log.error("sagemaker API request failed: %s: %s", exc.code, exc.message)
    return _answer(json.dumps(exc.body()).encode(), exc.status, exc.code)


async def _authenticate(request: Request, signed: SignedRequest) -> str:
    """The operator access key id that signed the request.

    Raises:
        ProtocolError: no signature (``MissingAuthenticationTokenException``), a malformed
            one (``IncompleteSignatureException``), an unknown or revoked access key id
            (``UnrecognizedClientException``), a wrong signature or clock
            (``InvalidSignatureException``), or too many failures from this address
            (``ThrottlingException``).
    """
    context = request.app.state.context
    address = context.client_address(request)
    try:
        context.auth_failures.check(address)
    except ResourceExhausted as exc:
        raise ProtocolError("ThrottlingException", exc.message) from None
    header = signed.headers.get("authorization")
    try:
        if not header:
            raise ProtocolError(
                "MissingAuthenticationTokenException",
                "the request is not signed; sign it with SigV4 (service 'sagemaker') using an "
                "operator key (<data-dir>/operator-credentials, or `edgefleet operator-key "
                "create`)", 403)
        try:
            auth = parse_authorization(header)
        except Unauthenticated as exc:
            raise ProtocolError("IncompleteSignatureException", exc.message) from None

        def lookup() -> str | None:
            with context.sessions() as session:
                return operator_keys.lookup_secret(session, context.key, auth.access_key_id)
        secret = await run_in_threadpool(lookup)
        if secret is None:
            raise ProtocolError(
                "UnrecognizedClientException",
                f"access key {auth.access_key_id!r} is not an operator key of this server (or "
                "it was revoked); device credentials work only on the device API. List keys "
                "with `edgefleet operator-key list`")
        try:
            verify(signed, auth, secret, service=SERVICE_NAME,
                   max_skew_seconds=context.settings.clock_skew_seconds)
        except Unauthenticated as exc:
            raise ProtocolError("InvalidSignatureException", exc.message, 403) from None
    except ProtocolError:
        context.auth_failures.failed(address)
        raise
    return auth.access_key_id


def _run(request: Request, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], Call]:
    """Run one operation's handler in a session (a transaction for writes)."""
    context = request.app.state.context
    handler = HANDLERS[name]
    if name in READ_ONLY:
        with context.sessions() as session:
            call = Call(context, session)
            return handler(call, params), call
    with context.sessions.begin() as session:
        call = Call(context, session)
        return handler(call, params), call


@router.post("/")
async def sagemaker(request: Request) -> Response:
    """One ``sagemaker`` operation (``X-Amz-Target: SageMaker.<Operation>``)."""
    try:
        try:
            body = await read_bounded(request.headers.get("content-length"), request.stream(),
                                      MAX_BODY_BYTES)
        except BodyTooLarge:
            raise ProtocolError("ValidationException",
                                f"request body over {MAX_BODY_BYTES} bytes") from None
        signed = SignedRequest.from_scope(request.scope, request.headers, body)
        akid = await _authenticate(request, signed)
        op = protocol.operation(request.headers.get("x-amz-target"), SERVED)
        params = protocol.validate(protocol.parse_body(body), op)
        try:
            result, call = await run_in_threadpool(_run, request, op.name, params)
        except ProtocolError:  # e.g. a NextToken this server did not issue
            raise
        except ValidationError as exc:  # a request the model allows and the services do not
            raise ProtocolError("ValidationException",
                                schemas.describe_errors(exc.errors())) from None
        except EdgefleetError as exc:
            raise _protocol_error(exc) from None
        except SQLAlchemyError as exc:  # logged by _error, with the reason (not a bug)
            raise ProtocolError("ServiceUnavailable", f"nothing was stored: "
                                f"{failure_message(exc)}", 503) from None
        except Exception:  # a bug: answered in the protocol's shape, logged whole
            log.exception("sagemaker %s failed", op.name)
            raise ProtocolError("InternalFailure", f"{op.name} failed inside the server (see "
                                "its log); please report it", 500) from None
        try:
            written = protocol.serialize(result, op)
        except (TypeError, ValueError) as exc:
            log.exception("sagemaker %s: response does not match the model", op.name)
            raise ProtocolError("InternalFailure", f"the server built an invalid {op.name} "
                                f"response ({exc}); please report it", 500) from None
        log.info("sagemaker %s by %s", op.name, akid)
    except ProtocolError as exc:
        return _error(exc)
    background = BackgroundTasks()
    for task in call.after:
        background.add_task(task)
    return _answer(json.dumps(written).encode(), background=background)
