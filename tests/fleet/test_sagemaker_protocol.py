"""The JSON 1.1 mechanics of the sagemaker API against botocore's own model: requests checked
as SageMaker checks them, responses written so that botocore's parser reads them back."""

from __future__ import annotations

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
