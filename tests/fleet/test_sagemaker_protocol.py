"""The JSON 1.1 mechanics of the sagemaker API against botocore's own model: requests checked
as SageMaker checks them, responses written so that botocore's parser reads them back."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from botocore.model import OperationModel
from botocore.parsers import JSONParser

from edgefleet.fleet.sagemaker_api import protocol
from edgefleet.fleet.sagemaker_api.operations import HANDLERS, SERVED
from edgefleet.fleet.sagemaker_api.protocol import ProtocolError

#: The operations the issue and ../shared/spec/control-plane.md section 2 name.
EXPECTED = {
    "CreateDeviceFleet", "DescribeDeviceFleet", "UpdateDeviceFleet", "ListDeviceFleets",
    "DeleteDeviceFleet", "RegisterDevices", "DeregisterDevices", "UpdateDevices",
    "DescribeDevice", "ListDevices", "GetDeviceFleetReport", "CreateEdgePackagingJob",
    "DescribeEdgePackagingJob", "ListEdgePackagingJobs", "StopEdgePackagingJob",
    "CreateEdgeDeploymentPlan", "CreateEdgeDeploymentStage", "StartEdgeDeploymentStage",
    "StopEdgeDeploymentStage", "DescribeEdgeDeploymentPlan", "ListEdgeDeploymentPlans",
    "ListStageDevices", "DeleteEdgeDeploymentPlan", "DeleteEdgeDeploymentStage",
    "CreateCompilationJob", "DescribeCompilationJob", "ListCompilationJobs"}


def test_every_operation_of_the_spec_is_served_and_named_as_the_model_names_it() -> None:
    assert SERVED == EXPECTED
    model_operations = set(protocol.service_model().operation_names)
    assert set(HANDLERS) <= model_operations


def op(name: str) -> OperationModel:
    return protocol.operation(f"SageMaker.{name}", SERVED)


@pytest.mark.parametrize("target", [None, "", "ListDevices", "AmazonS3.ListBuckets",
                                    "SageMaker.ListEndpoints", "SageMaker.NoSuchThing"])
def test_targets_that_name_no_served_operation_are_unknown_operations(target: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.operation(target, SERVED)
    assert caught.value.code == "UnknownOperationException"
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [b"{", b"[1]", b"\xff\xfe", b'"text"', b"null"])
def test_bodies_that_are_not_a_json_object_are_serialization_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_body(body)
    assert caught.value.code == "SerializationException"


def test_an_empty_body_is_an_empty_request() -> None:
    assert protocol.parse_body(b"") == {}


@pytest.mark.parametrize(("params", "named"), [
    ({}, "DeviceFleetName"),  # required
    ({"DeviceFleetName": 7, "OutputConfig": {"S3OutputLocation": "s3://b/p"}},
     "DeviceFleetName"),  # type
    ({"DeviceFleetName": "", "OutputConfig": {"S3OutputLocation": "s3://b/p"}},
     "DeviceFleetName"),  # min
    ({"DeviceFleetName": "a" * 64, "OutputConfig": {"S3OutputLocation": "s3://b/p"}},
     "DeviceFleetName"),  # max
    ({"DeviceFleetName": "bad_name!", "OutputConfig": {"S3OutputLocation": "s3://b/p"}},
     "DeviceFleetName"),  # pattern
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "ftp://b/p"}},
     "S3OutputLocation"),  # nested pattern
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/p",
                                                  "PresetDeploymentType": "Snap"}},
     "PresetDeploymentType"),  # enum
])
def test_bad_requests_are_validation_errors_naming_the_member(params: dict[str, object],
                                                              named: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.validate(params, op("CreateDeviceFleet"))
    assert caught.value.code == "ValidationException"
    assert named in caught.value.message


def test_members_the_model_does_not_name_and_nulls_are_ignored() -> None:
    params = protocol.validate({"DeviceFleetName": "wind", "Future": 1, "Description": None,
                                "OutputConfig": {"S3OutputLocation": "s3://b/p", "New": 2}},
                               op("CreateDeviceFleet"))
    assert params == {"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/p"}}


def test_timestamps_arrive_as_epoch_seconds_and_iso_strings() -> None:
    params = protocol.validate({"LatestHeartbeatAfter": 1700000000.5}, op("ListDevices"))
    assert protocol.epoch(params["LatestHeartbeatAfter"]) == 1700000000.5
    assert protocol.epoch("2023-11-14T22:13:20Z") == 1700000000.0
    with pytest.raises(ProtocolError):
        protocol.validate({"LatestHeartbeatAfter": "yesterday"}, op("ListDevices"))


def parsed(result: dict[str, object], name: str) -> dict[str, object]:
    """What boto3's client returns for our response: written, then read by botocore."""
    operation = op(name)
    body = json.dumps(protocol.serialize(result, operation)).encode()
    response = {"status_code": 200, "headers": {}, "body": body}
    out: dict[str, object] = JSONParser().parse(response, operation.output_shape)
    out.pop("ResponseMetadata", None)
    return out


def test_responses_are_read_back_by_botocore_with_datetimes_and_without_unknown_members() -> None:
    out = parsed({"DeviceFleetName": "wind", "DeviceFleetArn": "arn:aws:sagemaker:r:1:d/wind",
                  "OutputConfig": {"S3OutputLocation": "s3://b/p"}, "CreationTime": 1.7e9,
                  "LastModifiedTime": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
                  "Description": None, "Internal": "dropped"}, "DescribeDeviceFleet")
    assert out == {"DeviceFleetName": "wind", "DeviceFleetArn": "arn:aws:sagemaker:r:1:d/wind",
                   "OutputConfig": {"S3OutputLocation": "s3://b/p"},
                   "CreationTime": dt.datetime.fromtimestamp(1.7e9, dt.UTC),
                   "LastModifiedTime": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}


def test_a_response_without_a_required_member_is_refused() -> None:
    with pytest.raises(ValueError, match="CreationTime"):
        protocol.serialize({"DeviceFleetName": "wind", "DeviceFleetArn": "a",
                            "OutputConfig": {"S3OutputLocation": "s3://b/p"},
                            "LastModifiedTime": 1.0}, op("DescribeDeviceFleet"))


def test_pages_by_offset_cover_the_list_once() -> None:
    items = list(range(25))
    seen: list[int] = []
    token = None
    while True:
        chosen = protocol.page(items, "ListDeviceFleets", token, 10)
        seen += chosen.items
        token = chosen.next_token
        if token is None:
            break
    assert seen == items


@pytest.mark.parametrize("token", ["garbage", "e30=", protocol.encode_token("ListDevices", 3)])
def test_tokens_this_server_did_not_issue_for_the_operation_are_refused(token: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.page([1, 2, 3], "ListDeviceFleets", token, 10)
    assert caught.value.code == "ValidationException"
    assert "NextToken" in caught.value.message


def test_errors_are_read_by_botocore_as_their_code_and_message() -> None:
    error = ProtocolError("ResourceNotFound", "no fleet 'x'")
    response = {"status_code": 400, "headers": {"x-amzn-ErrorType": error.code},
                "body": json.dumps(error.body()).encode()}
    parsed_error = JSONParser().parse(response, op("DescribeDeviceFleet").output_shape)["Error"]
    assert parsed_error["Code"] == "ResourceNotFound"
    assert parsed_error["Message"] == "no fleet 'x'"


# -- found by the fuzzer (tests/fleet/test_sagemaker_fuzz.py); each was a 5xx or a wrong answer --

@pytest.mark.parametrize("body", [b'{"DeviceFleetName": ' + b"[" * 100_000 + b"]" * 100_000
                                  + b"}", b'{"a": ' * 5_000 + b"1" + b"}" * 5_000])
def test_bodies_nested_too_deeply_to_parse_are_serialization_errors(body: bytes) -> None:
    # json.loads raised RecursionError, which nothing caught: a plain-text 500.
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_body(body)
    assert caught.value.code == "SerializationException"
    assert "nested too deeply" in caught.value.message


@pytest.mark.parametrize("when", [1e19, -1e19, 2**64, 1e308, 253402300800, "10000-01-01",
                                  "0001-01-01T00:00:00+14:00"])
def test_times_past_the_year_9999_are_validation_errors(when: object) -> None:
    # botocore's validator let the RuntimeError of datetime's overflow through: a 500.
    with pytest.raises(ProtocolError) as caught:
        protocol.validate({"LastModifiedTimeBefore": when}, op("ListDeviceFleets"))
    assert caught.value.code == "ValidationException"
    assert "LastModifiedTimeBefore" in caught.value.message


@pytest.mark.parametrize(("params", "named"), [
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/\x00"}},
     "S3OutputLocation"),
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/\ud800"}},
     "S3OutputLocation"),
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/p"},
      "Tags": [{"Key": "k", "Value": "\udfff"}]}, "Value"),
    ({"DeviceFleetName": "wind", "OutputConfig": {"S3OutputLocation": "s3://b/p",
                                                  "PresetDeploymentConfig": "{\x00}"}},
     "PresetDeploymentConfig"),
])
def test_text_no_database_can_store_is_a_validation_error(params: dict[str, object],
                                                          named: str) -> None:
    # PostgreSQL refused the NUL (503 ServiceUnavailable, as if the database were down) and
    # neither database could encode the lone surrogate (500 InternalFailure).
    with pytest.raises(ProtocolError) as caught:
        protocol.validate(params, op("CreateDeviceFleet"))
    assert caught.value.code == "ValidationException"
    assert named in caught.value.message


@pytest.mark.parametrize("position", ["\x00", "dev\x00", "\ud800", -1])
def test_forged_tokens_are_refused_before_they_reach_the_database(position: object) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"op": "ListDevices",
                                                 "at": position}).encode()).decode()
    with pytest.raises(ProtocolError) as caught:
        if isinstance(position, int):
            protocol.page([1, 2], "ListDevices", token, 10)
        else:
            protocol.decode_token("ListDevices", token)
    assert caught.value.code == "ValidationException"


def test_a_token_nested_too_deeply_is_refused() -> None:
    # its JSON raised RecursionError inside the handler: a 500 InternalFailure
    token = base64.urlsafe_b64encode(b"[" * 6_000).decode()
    assert len(token) <= 8192  # the model's NextToken maximum: it passes validation
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_token("ListDevices", token)
    assert caught.value.code == "ValidationException"


@pytest.mark.parametrize("size", [0, -5, -(2**70)])
def test_page_sizes_below_one_are_validation_errors(size: int) -> None:
    # ListMaxResults has no minimum in the model: -5 gave a page of items[0:-5] and a NextToken
    # that the next call refused.
    with pytest.raises(ProtocolError) as caught:
        protocol.validate({"MaxResults": size}, op("ListDeviceFleets"))
    assert caught.value.code == "ValidationException"
    assert "MaxResults" in caught.value.message


@pytest.mark.parametrize("params", [
    {"DeviceFleetName": ["x" * 100_000]},  # a wrong type: botocore's report repeats the value
    {"DeviceFleetName": "wind", "SortBy": "x" * 100_000},  # not one of the enum
    {"DeviceFleetName": [[[[[["x" * 50_000] * 4]]]]]},
])
def test_error_messages_repeat_at_most_a_few_hundred_characters_of_a_value(
        params: dict[str, object]) -> None:
    name = "ListDeviceFleets" if "SortBy" in params else "DescribeDeviceFleet"
    with pytest.raises(ProtocolError) as caught:
        protocol.validate(params, op(name))
    assert caught.value.code == "ValidationException"
    assert len(caught.value.message) < 1_000, len(caught.value.message)
