"""The AWS JSON 1.1 protocol of the ``sagemaker`` service, driven by botocore's own model.

Every shape comes from the service model installed with botocore
(``botocore/data/sagemaker/2017-07-24/service-2.json.gz``), loaded once on first use: requests
are checked against an operation's input shape, responses are written from its output shape
(members the shape does not name are dropped, timestamps become epoch seconds, a missing
required member is a server bug and raises). The wire format is AWS's JSON 1.1 protocol:
``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``, a JSON object body, and errors as
``{"__type": <code>, "message": <text>}`` with the code also in ``x-amzn-ErrorType``, which is
how botocore's JSON parser reads them.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape, StructureShape
from botocore.utils import parse_to_aware_datetime
from botocore.validate import ParamValidator

from edgefleet import jsondoc

#: The service whose protocol this is, and its ``X-Amz-Target`` prefix (``targetPrefix`` in
#: the model's metadata).
SERVICE_NAME = "sagemaker"
TARGET_PREFIX = "SageMaker."
CONTENT_TYPE = "application/x-amz-json-1.1"


class ProtocolError(Exception):
    """An error the protocol answers with ``code`` and HTTP ``status``.

    ``code`` is either an error shape of the operation (``ResourceNotFound``, ``ResourceInUse``,
    ``ResourceLimitExceeded``) or one of the errors common to every AWS JSON service
    (``ValidationException``, ``SerializationException``, ``UnknownOperationException``,
    ``ThrottlingException``, the SigV4 ones, ``InternalFailure``, ``ServiceUnavailable``).
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON error body: ``__type`` and the message (``Message`` too, the member name
        the model's error shapes use)."""
        return {"__type": self.code, "message": self.message, "Message": self.message}


@functools.cache
def service_model() -> ServiceModel:
    """The ``sagemaker`` service model of the installed botocore (about 45 MB once loaded)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICE_NAME)


def operation(target: str | None, served: frozenset[str]) -> OperationModel:
    """The operation an ``X-Amz-Target`` header names.

    Args:
        target: the header's value, e.g. ``SageMaker.ListDevices``.
        served: the operations this server implements.

    Raises:
        ProtocolError: ``UnknownOperationException`` for a missing header, another service's
            prefix, or an operation not in ``served``.
    """
    if not target or not target.startswith(TARGET_PREFIX):
        raise ProtocolError("UnknownOperationException",
                            f"X-Amz-Target {target!r} names no {SERVICE_NAME} operation; send "
                            f"'{TARGET_PREFIX}<Operation>' (boto3's sagemaker client does)")
    name = target.removeprefix(TARGET_PREFIX)
    if name not in served:
        raise ProtocolError("UnknownOperationException",
                            f"operation {name!r} is not served by edgefleet; it serves the edge "
                            f"operations: {', '.join(sorted(served))}")
    return service_model().operation_model(name)


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``).

    Raises:
        ProtocolError: ``SerializationException`` when the body is not a JSON object (not
            UTF-8, not JSON, nested too deeply to parse, or another JSON value).
    """
    if not body.strip():
        return {}
    try:
        value = jsondoc.loads(body)
    except ValueError as exc:
        raise ProtocolError("SerializationException",
                            f"the request body is not JSON ({exc}); send a JSON object") from None
    if not isinstance(value, dict):
        raise ProtocolError("SerializationException",
                            f"the request body is a JSON {type(value).__name__}, not an object")
    return value


# -- requests --------------------------------------------------------------------------------------

@functools.cache
def _pattern(source: str) -> re.Pattern[str] | None:
    # The model's patterns are Java regular expressions; the few Python cannot compile (such as
    # \p{L}) are left to the services' own checks.
    try:
        return re.compile(source)
    except re.error:
        return None


#: Characters no string member may hold: NUL (PostgreSQL's text cannot store it, so SQLite and
#: PostgreSQL would disagree) and UTF-16 surrogates, which JSON's ``\ud800`` escapes can
#: carry but no UTF-8 text can.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a NUL, or a lone UTF-16 surrogate), or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    what = "a NUL character" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
    return f"holds {what} at position {found.start()}"


def _limits(value: Any, shape: Shape, name: str, errors: list[str]) -> None:
    """The checks botocore's client leaves to the service: ``max``, ``pattern``, ``enum``
    (it checks only types, required members and ``min``); text that cannot be stored; page
    sizes (``MaxResults``) of at least 1, which the model leaves without a minimum."""
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        for member, member_shape in shape.members.items():
            if member in value and value[member] is not None:
                _limits(value[member], member_shape, f"{name}.{member}", errors)
        return
    if shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{name} has {len(value)} items; at most {meta['max']} are allowed")
        for index, item in enumerate(value):
            _limits(item, shape.member, f"{name}[{index}]", errors)  # type: ignore[attr-defined]
        return
    if shape.type_name == "string" and isinstance(value, str):
        if (problem := text_problem(value)) is not None:
            errors.append(f"{name} {problem}; send UTF-8 text without it")
        elif "max" in meta and len(value) > meta["max"]:
            errors.append(f"{name} is {len(value)} characters long; at most {meta['max']} "
                          "are allowed")
        elif "enum" in meta and value not in meta["enum"]:
            errors.append(f"{name} is {_shown(value)}; use one of {', '.join(meta['enum'])}")
        elif "pattern" in meta and (pattern := _pattern(meta["pattern"])) is not None \
                and pattern.fullmatch(value) is None:
            errors.append(f"{name} {value[:80]!r} does not match the pattern {meta['pattern']}")
        return
    if shape.type_name in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{name} is {_shown(value)}; at most {meta['max']} is allowed")
        elif shape.name.endswith("MaxResults") and value < meta.get("min", 1):
            errors.append(f"{name} is {_shown(value)}; a page holds at least 1 item")


def _known(value: Any, shape: Shape) -> Any:
    """``value`` without the members its shape does not name and without JSON nulls: a newer
    client may send members this model lacks, and null means absent."""
    if shape.type_name == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        return {k: _known(v, shape.members[k]) for k, v in value.items()
                if k in shape.members and v is not None}
    if shape.type_name == "list" and isinstance(value, list):
        return [_known(item, shape.member) for item in value]  # type: ignore[attr-defined]
    return value


#: Characters of a client's value an error message repeats at most, so that a 4 MiB member does
#: not come back in the answer (and the log).
SHOWN_CHARACTERS = 200


def _shown(value: Any) -> str:
    """A short description of a request value for an error message."""
    if isinstance(value, str):
        return repr(value[:SHOWN_CHARACTERS]) + ("..." if len(value) > SHOWN_CHARACTERS else "")
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return repr(value)[:SHOWN_CHARACTERS]


def _report(report: Any) -> str:
    """botocore's validation report, each line cut to about 2 x :data:`SHOWN_CHARACTERS`
    (a line repeats the whole value: ``Invalid type for parameter X, value: ...``)."""
    try:
        text: str = report.generate_report()
    except RecursionError:  # the value of a member is nested too deeply to print
        return "a member holds arrays or objects nested too deeply; check the members' types"
    keep = SHOWN_CHARACTERS
    return "\n".join(line if len(line) <= 2 * keep else f"{line[:keep]} ... {line[-keep // 2:]}"
                     for line in text.splitlines()[:20])


def _timestamps(value: Any, shape: Shape, name: str, errors: list[str]) -> None:
    """Timestamp members that are no time :func:`epoch` can read. botocore's validator parses
    them too, but lets the ``RuntimeError`` of a number past the year 9999 (``1e19``) through."""
    if shape.type_name == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        for member, member_shape in shape.members.items():
            if member in value:
                _timestamps(value[member], member_shape, f"{name}.{member}", errors)
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            _timestamps(item, shape.member, f"{name}[{index}]", errors)  # type: ignore[attr-defined]
    elif shape.type_name == "timestamp":
        try:
            epoch(value)
        except (ValueError, TypeError, AttributeError, OverflowError, RuntimeError):
            errors.append(f"{name} is {_shown(value)}, not a time: give epoch seconds or an "
                          "ISO 8601 string between the years 1 and 9999")


def validate(params: dict[str, Any], op: OperationModel) -> dict[str, Any]:
    """Check a request against the operation's input shape; returns it without the members
    the shape does not name (ignored, as AWS services ignore them) and without nulls.

    botocore's :class:`~botocore.validate.ParamValidator` checks types, required members and
    minimums (the same checks the client makes before sending); the maximums, patterns and
    enums of the model are checked here as SageMaker checks them.

    Raises:
        ProtocolError: ``ValidationException`` naming each member that is wrong.
    """
    shape = op.input_shape
    if shape is None:
        return {}
    params = _known(params, shape)
    errors: list[str] = []
    _timestamps(params, shape, "input", errors)
    if errors:
        raise ProtocolError("ValidationException", "; ".join(errors[:20]))
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ProtocolError("ValidationException", _report(report))
    _limits(params, shape, "input", errors)
    if errors:
        raise ProtocolError("ValidationException", "; ".join(errors[:20]))
    return params


def epoch(value: Any) -> float:
    """A request timestamp member (epoch seconds, as botocore sends them, or an ISO 8601
    string) as epoch seconds."""
    return parse_to_aware_datetime(value).timestamp()


# -- responses -------------------------------------------------------------------------------------

def _timestamp(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"timestamp member holds {type(value).__name__}")


def _write(value: Any, shape: Shape, name: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise TypeError(f"{name} is a {type(value).__name__}, not a structure")
        out = {member: _write(value[member], member_shape, f"{name}.{member}")
               for member, member_shape in shape.members.items()
               if value.get(member) is not None}
        missing = [m for m in shape.required_members if m not in out]
        if missing:
            raise ValueError(f"{name} lacks the required members {', '.join(missing)}")
        return out
    if kind == "list":
        return [_write(item, shape.member, f"{name}[]")  # type: ignore[attr-defined]
                for item in value]
    if kind == "map":
        return {str(k): _write(v, shape.value, f"{name}{{}}")  # type: ignore[attr-defined]
                for k, v in value.items()}
    if kind == "timestamp":
        return _timestamp(value)
    if kind == "blob":
        return base64.b64encode(value).decode()
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        return bool(value)
    return str(value)


def serialize(result: dict[str, Any], op: OperationModel) -> dict[str, Any]:
    """The response body for ``result``, written from the operation's output shape.

    ``result`` uses the model's member names; ``None`` members are left out, members the shape
    does not name are dropped, timestamps may be epoch seconds or datetimes.

    Raises:
        ValueError, TypeError: ``result`` lacks a required member or holds a wrong type (a bug
            in the operation, answered as ``InternalFailure``).
    """
    shape = op.output_shape
    if shape is None:
        return {}
    written: dict[str, Any] = _write(result, shape, op.name)
    return written


@dataclass(frozen=True)
class Page:
    """A page of a list: ``items`` and the ``NextToken`` for the next one (None: last page)."""

    items: list[Any]
    next_token: str | None


def encode_token(operation_name: str, position: str | int) -> str:
    """An opaque ``NextToken``: the operation and where its next page starts."""
    raw = json.dumps({"op": operation_name, "at": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(operation_name: str, token: str | None) -> str | int | None:
    """Where a page starts, from a ``NextToken`` of :func:`encode_token` (None: the first page).

    Raises:
        ProtocolError: ``ValidationException`` for a token this server did not issue for this
            operation.
    """
    if token is None or token == "":
        return None
    try:
        value = jsondoc.loads(base64.urlsafe_b64decode(token.encode()))
        if value["op"] != operation_name or not isinstance(value["at"], str | int) \
                or (isinstance(value["at"], str) and text_problem(value["at"]) is not None):
            raise ValueError
        position: str | int = value["at"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ProtocolError("ValidationException",
                            f"NextToken is not one this server issued for {operation_name}; "
                            "pass the NextToken of the previous page unchanged") from None
    return position


def page(items: list[Any], operation_name: str, token: str | None, max_results: int) -> Page:
    """One page of an already filtered and sorted list, by offset."""
    start = decode_token(operation_name, token) or 0
    if not isinstance(start, int) or start < 0:
        raise ProtocolError("ValidationException", "NextToken does not name a page position")
    end = start + max_results
    return Page(items[start:end], encode_token(operation_name, end) if end < len(items) else None)
