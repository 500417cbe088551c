"""Hypothesis against the ``sagemaker`` JSON 1.1 API (``POST /``), every request signed with a
real operator key, so that every case gets past authentication into parsing, validation, the
services and the database (SQLite and PostgreSQL).

Requests are drawn from botocore's own model of each served operation: a valid request (naming
the seeded fleet, devices, compilation and packaging jobs, plan and stages) with, four times in
five, one member broken: a wrong JSON type, a required member missing, a string of 100,000
characters or with a NUL or a lone surrogate inserted, integers of 2^70, NaN, infinity, a time
in the year 10,000, a forged or foreign ``NextToken``; sometimes members the model does not
name. One case in ten is a whole body that is not a request (not JSON, not UTF-8, nested
100,000 deep, over the size limit), one in ten a wrong or missing ``X-Amz-Target``.

Whatever the request, the answer is 200 or an error the docs list (docs/control-plane.md, "The
sagemaker API": ``__type``, ``x-amzn-ErrorType`` and the HTTP status of its row), which
botocore's parser reads back as that code, never a 5xx; and the next valid call succeeds
(issue 14, "Bad input"). ``pytest --long`` runs 10x the cases.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.model import Shape, StructureShape
from botocore.parsers import JSONParser
from fastapi.testclient import TestClient
from fleet.fleet_support import OperatorCaller, register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.fleet.sagemaker_api import protocol
from edgefleet.fleet.sagemaker_api.operations import SERVED
from edgefleet.fleet.sagemaker_api.routes import MAX_BODY_BYTES
from edgefleet.fleet.settings import ServerSettings

pytestmark = pytest.mark.slow

SHORT, LONG = 40, 400  # cases per operation and database
OPERATIONS = sorted(SERVED)
CONTROL_PLANE_DOC = Path(__file__).parents[2] / "docs" / "control-plane.md"
#: Longest error message: a message repeats at most 200 characters of any value sent.
MAX_MESSAGE = 10_000
ROLE_ARN = "arn:aws:iam::000000000000:role/SageMakerEdgeRole"

#: Names of what the seed creates, so that most requests find what they name.
FLEET, DEVICES, COMPILATION, PACKAGING, PLAN, STAGES = (
    "wind", ["dev-a", "dev-b"], "comp", "pkg", "plan", ["s1", "s2"])
NAMES = [FLEET, *DEVICES, COMPILATION, PACKAGING, PLAN, *STAGES, "relu", "new-name"]


def documented_errors() -> dict[str, set[int]]:
    """``__type`` -> HTTP statuses, from the error table of docs/control-plane.md's sagemaker
    section (rows like ``| `Code`, `Other` | 403, 400 | when |``; a status per code, or one
    for all)."""
    text = CONTROL_PLANE_DOC.read_text()
    section = text[text.index("## The sagemaker API"):]
    section = section[:section.index("**Accepted, stored and shown")]
    errors: dict[str, set[int]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        codes = re.findall(r"`(\w+)`", cells[0])
        statuses = [int(s) for s in re.findall(r"\d{3}", cells[1])]
        for index, code in enumerate(codes):
            errors[code] = {statuses[index]} if len(statuses) == len(codes) else set(statuses)
    return errors


# -- member values from the model ------------------------------------------------------------------

#: The value each of these members should mostly hold: the seeded names, and what edgefleet
#: serves of a member's choices.
NAME_OF = {"Framework": ["ONNX"], "DeviceFleetName": [FLEET], "DeviceName": DEVICES,
           "DeviceNames": DEVICES, "CompilationJobName": [COMPILATION],
           "EdgePackagingJobName": [PACKAGING], "EdgeDeploymentPlanName": [PLAN],
           "StageName": STAGES, "ModelHandle": ["relu"], "ModelName": ["relu"]}
#: Valid values of string shapes whose pattern a few letters do not match.
VALID_TEXT = {
    "RoleArn": [ROLE_ARN], "FrameworkVersion": ["1.0", "2.11"], "NameContains": [
        "w", "dev", "pkg", "-", "NONE"],
    "S3Uri": ["s3://models/relu.onnx", "s3://models/missing.onnx", "s3://captures/wind",
              "https://models.example/relu.onnx"],
    "ModelPackageArn": ["arn:aws:sagemaker:us-east-1:000000000000:model-package/m/1"],
    "String": ["", "{}", '{"ComponentName": "relu", "ComponentVersion": "1.0.0"}'],
}

#: What :func:`poisoned` puts into a valid string: characters PostgreSQL or UTF-8 cannot hold,
#: controls, quoting and path characters, a long run.
POISON = ["\x00", "\ud800", "\udfff", "\u202e", "\n", "\t", "'", '"', "\\", "/", "%", "..",
          "\U0001f600", "x" * 5_000]


@st.composite
def poisoned(draw: st.DrawFn, text: st.SearchStrategy[str]) -> str:
    """A string of ``text`` with one of :data:`POISON` inserted somewhere: nearly valid, so
    that it passes the model's pattern when the pattern lets the character through."""
    value = draw(text)
    at = draw(st.integers(0, len(value)))
    poison = draw(st.sampled_from(POISON[:3]) | st.sampled_from(POISON))
    return value[:at] + poison + value[at:]


def _token(operation: str, position: Any) -> str:
    raw = json.dumps({"op": operation, "at": position}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def odd_tokens(operation: str) -> st.SearchStrategy[str]:
    """NextTokens nobody should send: garbage, another operation's, and this operation's with
    forged positions of every JSON type."""
    return st.one_of(
        st.sampled_from(["", "garbage", "e30=", "====", "\x00", "%%%", "a" * 8192, "a" * 9000,
                         base64.urlsafe_b64encode(b"[" * 6000).decode()]),
        st.builds(_token, st.sampled_from(OPERATIONS) | st.just(operation), st.one_of(
            st.integers(-(2**70), 2**70), st.text(max_size=30),
            poisoned(st.sampled_from(NAMES)), st.sampled_from(
                ["\x00", "\ud800", "zzzz", "", -1, 2**63, 10**30, 1.5, None, [], {}, True]))),
        st.binary(max_size=40).map(lambda raw: base64.urlsafe_b64encode(raw).decode()))


#: Strings a client should never send.
ODD_TEXT = st.one_of(st.text(max_size=30), st.sampled_from([
    "", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 64, "x" * 5_000, "x" * 100_000,
    "\u202e", "wind\n", "../../etc/passwd", "%00", "' OR 1=1 --", "\U0001f600", "1e400"]))

#: Numbers out of every range, as JSON has them (json.dumps writes NaN and Infinity, which
#: Python's parser and others accept).
ODD_NUMBERS = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.sampled_from(
    [0, -1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 1e-320,
     253402300800, -62135596801, 1e11, 1e19]))

#: Any JSON value: what a member of the wrong type holds.
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=10)

ODD = st.one_of(ODD_TEXT, ODD_NUMBERS, ANY_JSON)


#: Optional members a request mostly has (without them, the services refuse it).
MOSTLY_GIVEN = {"InputConfig"}


def _string(shape: Shape, member: str) -> st.SearchStrategy[str]:
    meta = shape.metadata
    if "enum" in meta:
        choices = st.sampled_from(meta["enum"])
        return st.sampled_from(NAME_OF[member]) | choices if member in NAME_OF else choices
    if shape.name in ("EntityName", "DeviceName"):
        seeded = NAME_OF.get(member, NAMES)
        return st.one_of(st.sampled_from(seeded), st.sampled_from(seeded),
                         st.sampled_from(NAMES), st.from_regex(r"[a-z][a-z0-9]{0,11}",
                                                               fullmatch=True))
    if shape.name in VALID_TEXT:
        return st.sampled_from(VALID_TEXT[shape.name])
    low, high = max(meta.get("min", 0), 1), min(meta.get("max", 20), 20)
    return st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=low,
                   max_size=max(high, low))


def valid(shape: Shape, member: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``shape`` the model allows (``member``: the name it goes by; a name member
    mostly names what the seed created)."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _structure(shape, depth)
    if kind == "list":
        item = shape.member  # type: ignore[attr-defined]
        low = shape.metadata.get("min", 0)
        return st.lists(valid(item, member, depth + 1), min_size=low, max_size=max(low, 3))
    if kind == "string":
        return _string(shape, member)
    if kind in ("integer", "long"):
        meta = shape.metadata
        return st.integers(meta.get("min", 1), meta.get("max", 10_000))
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.one_of(st.floats(0, 2e9), st.sampled_from(
            ["2024-01-01T00:00:00Z", "2030-06-01", "1700000000"]))
    raise AssertionError(f"no strategy for {kind} shapes")


@st.composite
def _structure(draw: st.DrawFn, shape: StructureShape, depth: int) -> dict[str, Any]:
    return {name: draw(valid(member, name, depth + 1))
            for name, member in shape.members.items()
            if name in shape.required_members or name in MOSTLY_GIVEN
            or draw(st.integers(0, 2)) == 0}


def _paths(value: Any, shape: Shape, path: tuple[Any, ...] = ()
           ) -> Iterator[tuple[tuple[Any, ...], Shape]]:
    """Every place in a request a value could go: present members, absent ones, list items."""
    yield path, shape
    if shape.type_name == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        for name, member in shape.members.items():
            yield from _paths(value.get(name), member, (*path, name))
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, shape.member, (*path, index))  # type: ignore[attr-defined]


@st.composite
def mutated(draw: st.DrawFn, operation: str) -> dict[str, Any]:
    """A valid request of ``operation`` with one member broken (one time in five none): of
    the wrong type, out of range, poisoned, removed (a required one too), or a NextToken that
    is forged; sometimes with members the model does not name."""
    shape = protocol.service_model().operation_model(operation).input_shape
    params: dict[str, Any] = draw(valid(shape))
    if "NextToken" in params and draw(st.booleans()):  # a token of this operation
        params["NextToken"] = _token(operation, draw(st.one_of(
            st.integers(0, 5), st.sampled_from(NAMES))))
    if draw(st.integers(0, 4)):
        places = [(path, member) for path, member in _paths(params, shape) if path]
        path, member = draw(st.sampled_from(places))
        odd: st.SearchStrategy[Any] = odd_tokens(operation) if member.name == "NextToken" \
            else ODD
        if member.type_name == "string":
            odd = st.one_of(odd, poisoned(_string(member, str(path[-1]))))
        if draw(st.integers(0, 5)) == 0:
            _remove(params, path)
        else:
            _replace(params, path, draw(odd))
    if draw(st.integers(0, 9)) == 0:
        params.update(draw(st.dictionaries(st.text(max_size=12), ANY_JSON, max_size=3)))
    return params


def _parent(params: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """What holds the member at ``path`` (None: a parent is absent, it goes nowhere)."""
    holder: Any = params
    for step in path[:-1]:
        inside = step in holder if isinstance(holder, dict) else (
            isinstance(holder, list) and step < len(holder))
        if not inside:
            return None
        holder = holder[step]
    return holder


def _remove(params: dict[str, Any], path: tuple[Any, ...]) -> None:
    holder = _parent(params, path)
    if isinstance(holder, dict):
        holder.pop(path[-1], None)
    elif isinstance(holder, list) and path[-1] < len(holder):
        holder.pop(path[-1])


def _replace(params: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    holder = _parent(params, path)
    if isinstance(holder, dict) or (isinstance(holder, list) and path[-1] < len(holder)):
        holder[path[-1]] = value


# -- whole requests --------------------------------------------------------------------------------

def _nested(depth: int, opening: bytes, closing: bytes) -> bytes:
    return b'{"DeviceFleetName": ' + opening * depth + b"1" + closing * depth + b"}"


#: Bodies that are not a request of any operation.
ODD_BODIES = st.one_of(
    st.binary(max_size=200),
    ANY_JSON.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([
        b"", b" ", b"null", b"[]", b"{", b"}", b'{"a":1}{"b":2}', b"\xef\xbb\xbf{}",
        '{"DeviceFleetName": "wind"}'.encode("utf-16"), b'{"DeviceFleetName": "\xff\xfe"}',
        b'{"DeviceFleetName": "wi\xc3"}', b'{"MaxResults": 1e999}', b'{"MaxResults": -0}',
        b'{"MaxResults": ' + b"9" * 5000 + b"}", b'{"MaxResults": NaN}',
        b'{"DeviceFleetName": "wind", "DeviceFleetName": 7}', b"DeviceFleetName=wind",
        b"<ListDevices/>", b'{"DeviceFleetName": "\\ud800"}', b'{"\\u0000": 1}',
        b'{"NextToken": "' + b"A" * 200_000 + b'"}',
        b'{"Description": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}']),
    st.sampled_from([100, 1_000, 10_000, 100_000]).flatmap(lambda depth: st.sampled_from([
        _nested(depth, b"[", b"]"), _nested(depth, b'{"a":', b"}")])))

TARGETS = st.sampled_from([
    None, "", "SageMaker.", "SageMaker", "sagemaker.ListDevices", "SageMaker.listDevices",
    " SageMaker.ListDevices", "SageMaker.ListDevices ", "AmazonSageMaker.ListDevices",
    "SageMaker.ListEndpoints", "SageMaker.NoSuchThing", "SageMaker.__init__",
    "SageMaker." + "X" * 5_000, "SageMakerEdge.SendHeartbeat", "SageMaker.ListDevices\t"])
CONTENT_TYPES = st.sampled_from([protocol.CONTENT_TYPE, "application/json", "text/plain",
                                 None, "application/x-amz-json-1.0"])


@st.composite
def requests(draw: st.DrawFn, operation: str) -> tuple[str | None, str | None, bytes]:
    """(X-Amz-Target, Content-Type, body) of a request meant for ``operation``: mostly a
    request with one member broken (:func:`mutated`); one time in ten a body that is not a
    request, one in ten another target, one in ten another content type."""
    target: str | None = f"SageMaker.{operation}"
    if draw(st.integers(0, 9)) == 0:
        target = draw(TARGETS | st.sampled_from([f"SageMaker.{o}" for o in OPERATIONS]))
    content_type = protocol.CONTENT_TYPE if draw(st.integers(0, 9)) else draw(CONTENT_TYPES)
    if draw(st.integers(0, 9)) == 0:
        return target, content_type, draw(ODD_BODIES)
    return target, content_type, json.dumps(draw(mutated(operation))).encode()


# -- the server ------------------------------------------------------------------------------------

def seed(api: TestClient, credentials: Path, onnx_model: Path) -> OperatorCaller:
    """Give the server a fleet with two devices that sent heartbeats, a compilation job, a
    packaging job and a plan of two stages, the first started; an operator of it. S3 sources
    must be readable (moto's in-process S3 in these tests)."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(onnx_model), "models", "relu.onnx")
    operator = OperatorCaller(api, credentials)
    operator.call("CreateDeviceFleet", DeviceFleetName=FLEET,
                  OutputConfig={"S3OutputLocation": "s3://captures/wind"})
    devices = {name: register(api, name, FLEET) for name in DEVICES}
    operator.call("CreateCompilationJob", CompilationJobName=COMPILATION, RoleArn=ROLE_ARN,
                  InputConfig={"S3Uri": "s3://models/relu.onnx", "Framework": "ONNX"},
                  OutputConfig={"S3OutputLocation": "s3://models/out"},
                  StoppingCondition={"MaxRuntimeInSeconds": 60})
    operator.call("CreateEdgePackagingJob", EdgePackagingJobName=PACKAGING,
                  CompilationJobName=COMPILATION, ModelName="relu", ModelVersion="1.0",
                  RoleArn=ROLE_ARN, OutputConfig={"S3OutputLocation": "s3://models/out"})
    selection = {"DeviceSubsetType": "SELECTION", "DeviceNames": DEVICES}
    operator.call("CreateEdgeDeploymentPlan", EdgeDeploymentPlanName=PLAN,
                  DeviceFleetName=FLEET,
                  ModelConfigs=[{"ModelHandle": "relu", "EdgePackagingJobName": PACKAGING}],
                  Stages=[{"StageName": name, "DeviceSelectionConfig": selection}
                          for name in STAGES])
    operator.call("StartEdgeDeploymentStage", EdgeDeploymentPlanName=PLAN, StageName=STAGES[0])
    for name, device in devices.items():
        answer = device.post("SendHeartbeat", {
            "DeviceName": name, "DeviceFleetName": FLEET, "AgentVersion": "1.0",
            "Models": [{"ModelName": "relu", "ModelVersion": "1.0", "LatestInference": 1.7e9}]})
        assert answer.status_code == 200, answer.text
    return operator


@pytest.fixture
def operator(api: TestClient, settings: ServerSettings,
             onnx_model: Path) -> Iterator[OperatorCaller]:
    """An operator of a seeded server (:func:`seed`), with moto's S3 as the source store."""
    from moto import mock_aws

    with mock_aws():
        yield seed(api, settings.resolved_admin_token_file().with_name("operator-credentials"),
                   onnx_model)


def check_answer(answer: httpx.Response, documented: dict[str, set[int]], case: Any) -> None:
    """200, or an error the docs list, in the JSON 1.1 shape botocore reads."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:500], case)
    assert answer.headers["content-type"].startswith(protocol.CONTENT_TYPE), case
    if answer.status_code == 200:
        assert isinstance(answer.json(), dict), case
        return
    body = answer.json()
    code = body["__type"]
    assert code in documented, (code, body, case)
    assert answer.status_code in documented[code], (code, answer.status_code, case)
    assert answer.headers["x-amzn-ErrorType"] == code, case
    assert isinstance(body["message"], str) and body["message"], case
    assert len(body["message"]) <= MAX_MESSAGE, (len(body["message"]), case)
    parsed = JSONParser().parse({"status_code": answer.status_code, "body": answer.content,
                                 "headers": dict(answer.headers)}, None)
    assert parsed["Error"]["Code"] == code, (parsed, case)


def fuzz(operator: OperatorCaller, operation: str, examples: int,
         documented: dict[str, set[int]]) -> dict[str, int]:
    """Send ``examples`` cases of :func:`requests` for ``operation``, each followed by a valid
    call; how many got each answer (``"200"`` or the error code)."""
    counts: dict[str, int] = {}

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=requests(operation))
    def case(case: tuple[str | None, str | None, bytes]) -> None:
        answer = operator.post(*case)
        check_answer(answer, documented, (case[0], case[1], case[2][:300]))
        code = "200" if answer.status_code == 200 else answer.json()["__type"]
        counts[code] = counts.get(code, 0) + 1
        # The server stays up and right: the next valid call works.
        operator.call("ListDeviceFleets", MaxResults=1)

    case()
    return counts


def test_the_sagemaker_api_answers_every_request_with_a_documented_error(
        operator: OperatorCaller, long_run: bool) -> None:
    documented = documented_errors()
    assert {"ValidationException", "SerializationException", "UnknownOperationException",
            "ResourceNotFound", "ServiceUnavailable"} <= set(documented)
    seen = {operation: fuzz(operator, operation, LONG if long_run else SHORT, documented)
            for operation in OPERATIONS}
    total = sum(sum(counts.values()) for counts in seen.values())
    print(f"\n{total} cases over {len(OPERATIONS)} operations")
    for operation, counts in seen.items():
        print(f"  {operation}: {counts}")
    refused_early = {"ValidationException", "SerializationException", "UnknownOperationException"}
    reached = [operation for operation, counts in seen.items() if set(counts) - refused_early]
    assert len(reached) == len(OPERATIONS), f"cases must get past validation: {seen}"


def _json(params: dict[str, Any]) -> bytes:
    return json.dumps(params).encode()


#: Requests the fuzzer found answered with a 5xx: (what it was, operation, body, the code it
#: gets now; None: 200).
FOUND: list[tuple[str, str, bytes, str | None]] = [
    ("nested 100,000 deep: 500, RecursionError", "DescribeDeviceFleet",
     _nested(100_000, b"[", b"]"), "SerializationException"),
    ("a time past the year 9999: 500, RuntimeError", "ListDeviceFleets",
     _json({"LastModifiedTimeBefore": 1e19}), "ValidationException"),
    ("NUL in S3OutputLocation: 503 on PostgreSQL", "UpdateDeviceFleet", _json({
        "DeviceFleetName": FLEET, "OutputConfig": {"S3OutputLocation": "s3://b/\x00"}}),
     "ValidationException"),
    ("lone surrogate in S3Uri: 500, UnicodeEncodeError", "CreateCompilationJob", _json({
        "CompilationJobName": "surrogate", "RoleArn": ROLE_ARN, "StoppingCondition": {},
        "InputConfig": {"S3Uri": "s3://models/relu.onnx\ud800", "Framework": "ONNX"},
        "OutputConfig": {"S3OutputLocation": "s3://models/out"}}), "ValidationException"),
    ("forged NextToken with a NUL: 503 on PostgreSQL", "ListDevices",
     _json({"NextToken": _token("ListDevices", "\x00")}), "ValidationException"),
    ("forged NextToken with a lone surrogate: 500", "ListDevices",
     _json({"NextToken": _token("ListDevices", "\ud800")}), "ValidationException"),
    ("NextToken nested 6,000 deep: 500, RecursionError", "ListDevices",
     _json({"NextToken": base64.urlsafe_b64encode(b"[" * 6_000).decode()}),
     "ValidationException"),
    ("DeregisterDevices: 500 under -W error (a SQLAlchemy 2.1 deprecation)",
     "DeregisterDevices", _json({"DeviceFleetName": FLEET, "DeviceNames": [DEVICES[1]]}), None),
]


def test_requests_the_fuzzer_found_are_answered_as_documented(operator: OperatorCaller) -> None:
    documented = documented_errors()
    for found, operation, body, code in FOUND:
        answer = operator.post(f"SageMaker.{operation}", protocol.CONTENT_TYPE, body)
        check_answer(answer, documented, found)
        assert answer.headers.get("x-amzn-ErrorType") == code, (found, answer.text)
        operator.call("ListDeviceFleets")
