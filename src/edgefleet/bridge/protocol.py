"""JSON-RPC 2.0 envelopes: parsing, validation, dispatch, batches, notifications, errors.

Pure functions over text and a table of methods; no I/O. Section names below are those of the
JSON-RPC 2.0 specification (https://www.jsonrpc.org/specification):

- "4 Request object": ``jsonrpc`` must be exactly ``"2.0"``, ``method`` a string, ``params`` (may
  be omitted) an array or an object, ``id`` (may be omitted) a string, a number or null;
- "4.1 Notification": a request without an ``id`` member; the server never answers it, not even
  with an error;
- "5 Response object": ``result`` or ``error``, and the request's ``id`` (null when it could not
  be read);
- "5.1 Error object": the codes in :data:`STANDARD_MESSAGES`; -32000 to -32099 are for
  implementation-defined server errors (this bridge's are :data:`AGENT_ERROR` and
  :data:`STORAGE_ERROR`);
- "6 Batch": an array of requests; an empty array is one Invalid Request error, each member is
  answered on its own (notifications not at all), and when nothing is to be answered the server
  returns nothing (over HTTP: 204 No Content).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgefleet.errors import echo

log = logging.getLogger(__name__)

#: Error codes of section "5.1 Error object".
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: Implementation-defined server errors (-32000 to -32099): the agent answered with a gRPC error
#: (``data``: ``grpc_status``, ``grpc_code``, ``details``) ...
AGENT_ERROR = -32000
#: ... or a file or S3 object could not be read or written (``data``: ``url``, ``reason``).
STORAGE_ERROR = -32001

#: The messages section 5.1 gives the predefined codes.
STANDARD_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

#: A request id as section 4 allows it: string, number or null.
RequestId = str | int | float | None


class JsonRpcError(Exception):
    """An error answered as a JSON-RPC error object ("5.1 Error object").

    Attributes:
        code: the error code (see the module's constants).
        message: one sentence for a person: what was wrong and what to do.
        data: details for programs (a JSON object), or None.
    """

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """The error object: ``{"code", "message"}`` and ``"data"`` when there is any."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidRequest(JsonRpcError):
    """The JSON is not a valid request object (-32600); ``reason`` says which member is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_REQUEST, f"Invalid Request: {reason}", {"reason": reason})


class InvalidParams(JsonRpcError):
    """A parameter is missing or wrong (-32602); the message and ``data.param`` name it."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(INVALID_PARAMS, f"Invalid params: `{param}` {reason}",
                         {"param": param, "reason": reason})
        self.param = param


@dataclass(frozen=True, slots=True)
class Request:
    """One valid request object.

    Attributes:
        method: the method name.
        params: the ``params`` member: an object, an array, or None when omitted.
        id: the request id (None also when it was null).
        notification: True when the request had no ``id`` member (section 4.1).
    """

    method: str
    params: dict[str, Any] | list[Any] | None = None
    id: RequestId = None
    notification: bool = False


#: A method: gets the request, returns a JSON-serialisable result or raises JsonRpcError.
Method = Callable[[Request], Any]


@dataclass(frozen=True, slots=True)
class _Invalid:
    """A batch member that is not a request, with the id to answer with."""

    error: JsonRpcError
    id: RequestId = None


@dataclass
class Dispatcher:
    """Answers JSON-RPC text with a table of methods.

    Attributes:
        methods: method name -> method.
        on_call: called after every call with (request, error or None, seconds), for logs.
    """

    methods: Mapping[str, Method]
    on_call: Callable[[Request, JsonRpcError | None, float], None] | None = None

    def handle(self, body: bytes | str) -> Any:
        """Answer one HTTP body or stdio line.

        Returns:
            The response object (a dict), a batch's array of response objects, or None when
            nothing is to be sent (a notification, or a batch of notifications only).
        """
        try:
            message = parse_json(body)
        except JsonRpcError as error:
            return response_error(error, None)
        if isinstance(message, list):
            if not message:
                return response_error(InvalidRequest("a batch must hold at least one request"),
                                      None)
            answers = [self._one(item) for item in message]
            kept = [answer for answer in answers if answer is not None]
            return kept or None
        return self._one(message)

    def _one(self, message: Any) -> dict[str, Any] | None:
        request = validate_request(message)
        if isinstance(request, _Invalid):
            return response_error(request.error, request.id)
        started = time.monotonic()
        error: JsonRpcError | None = None
        result: Any = None
        method = self.methods.get(request.method)
        try:
            if method is None:
                raise JsonRpcError(
                    METHOD_NOT_FOUND, f"Method not found: {echo(request.method)!r}; methods: "
                    f"{', '.join(sorted(self.methods))}",
                    {"method": echo(request.method), "methods": sorted(self.methods)})
            result = method(request)
        except JsonRpcError as raised:
            error = raised
        except Exception as unexpected:
            log.exception("%s failed unexpectedly", request.method)
            error = JsonRpcError(INTERNAL_ERROR, f"Internal error in {request.method}: "
                                 f"{type(unexpected).__name__}; the bridge's log has details",
                                 {"reason": type(unexpected).__name__})
        if self.on_call is not None:
            self.on_call(request, error, time.monotonic() - started)
        if request.notification:
            return None
        if error is not None:
            return response_error(error, request.id)
        return {"jsonrpc": "2.0", "result": result, "id": request.id}


def parse_json(body: bytes | str) -> Any:
    """Decode a JSON text (UTF-8 when bytes).

    ``NaN`` and ``Infinity`` (not JSON) and integers beyond Python's conversion limit are parse
    errors, as are nestings too deep to decode.

    Raises:
        JsonRpcError: PARSE_ERROR, ``data.reason`` saying why.
    """
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except RecursionError:
        reason = "nested too deeply"
    except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError, int limits
        reason = echo(str(error))
    raise JsonRpcError(PARSE_ERROR, f"Parse error: {reason}", {"reason": reason})


def validate_request(message: Any) -> Request | _Invalid:
    """Check one request object against section 4 ("Request object").

    Returns:
        The request, or the Invalid Request error to answer with (and the id to answer with:
        the request's own when it was valid, else null).
    """
    if not isinstance(message, dict):
        return _Invalid(InvalidRequest(f"expected a request object, got {_kind(message)}"))
    has_id = "id" in message
    request_id = message.get("id")
    id_problem = _id_problem(request_id) if has_id else None
    answer_id = None if id_problem else request_id
    if id_problem:
        return _Invalid(InvalidRequest(id_problem))
    if message.get("jsonrpc") != "2.0":
        return _Invalid(InvalidRequest('`jsonrpc` must be exactly "2.0"'), answer_id)
    method = message.get("method")
    if not isinstance(method, str):
        return _Invalid(InvalidRequest(f"`method` must be a string, got {_kind(method)}"),
                        answer_id)
    params = message.get("params")
    if "params" in message and not isinstance(params, dict | list):
        return _Invalid(InvalidRequest(
            f"`params` must be an object or an array when given, got {_kind(params)}"), answer_id)
    return Request(method=method, params=params, id=request_id, notification=not has_id)


def _id_problem(request_id: Any) -> str | None:
    if request_id is None or isinstance(request_id, str):
        return None
    if isinstance(request_id, bool) or not isinstance(request_id, int | float):
        return f"`id` must be a string, a number or null, got {_kind(request_id)}"
    if isinstance(request_id, float) and not math.isfinite(request_id):
        return "`id` is a number too large to represent"
    return None


def response_error(error: JsonRpcError, request_id: RequestId) -> dict[str, Any]:
    """A response object carrying ``error`` ("5 Response object")."""
    return {"jsonrpc": "2.0", "error": error.to_dict(), "id": request_id}


def dump(response: Any) -> bytes:
    """A response (or batch of responses) as compact UTF-8 JSON on one line.

    Raises:
        ValueError: the response holds NaN or infinity (never sent: not JSON).
    """
    return json.dumps(response, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def named_params(request: Request, known: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The request's parameters as a name -> value dict (``{}`` when omitted or ``[]``).

    Parameters outside ``known`` are logged and ignored, so that calls written for the original
    translator (which took a few more optional ones) keep working.

    Raises:
        InvalidParams: positional parameters (a non-empty array) were given.
    """
    params = request.params
    if params is None or params == []:
        return {}
    if isinstance(params, list):
        raise InvalidParams("params", 'must be an object of named parameters (e.g. {"name": '
                            '...}), not an array')
    if known and (extra := sorted(set(params) - known)):
        log.info("%s: ignoring unknown parameters %s", request.method,
                 ", ".join(echo(name, 40) for name in extra))
    return params


def _kind(value: Any) -> str:
    """The JSON type name of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"

