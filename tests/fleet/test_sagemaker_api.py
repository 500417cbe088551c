"""The ``sagemaker`` JSON 1.1 API of a real ``edgefleet server`` process, through the stock
boto3 client: pagination, filters and sorting of the List calls, updates, the round trip of
role ARNs, and the error codes of refused calls (never a 500).

One server (SQLite, a non-default region and account) and one SeaweedFS serve the module;
each test uses its own names.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from support.fleet_server import Server, free_port, start_server, stop_server
from support.models import affine_model
from support.s3server import S3Server
from support.sagemaker import (
    AUTH_ERROR_CODES,
    ROLE_ARN,
    compile_and_package,
    error_of,
    operator_keys,
    s3_env,
    sagemaker_client,
    upload,
)

pytestmark = pytest.mark.slow

REGION = "eu-central-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
TARGET = "application/x-amz-json-1.1"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    store = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def server(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fleet")
    running = start_server(folder / "server", free_port(), folder / "server.log",
                           env={**s3_env(s3), "EDGEFLEET_SERVER_ACCOUNT_ID": ACCOUNT},
                           args=("--region", REGION))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    return sagemaker_client(server, region=REGION)


@pytest.fixture(scope="module")
def model_uri(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = affine_model(tmp_path_factory.mktemp("model") / "affine.onnx")
    return upload(s3, "models", "affine.onnx", path)


def refused(call: Any, **params: Any) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    code, status = error_of(caught.value)
    assert 400 <= status < 500, caught.value.response
    return code, status, caught.value.response["Error"].get("Message", "")


def create_fleet(client: Any, name: str, **extra: Any) -> None:
    client.create_device_fleet(DeviceFleetName=name, RoleArn=ROLE_ARN,
                               OutputConfig={"S3OutputLocation": f"s3://captures/{name}"},
                               **extra)


def names_in_order(summaries: list[dict[str, Any]], key: str) -> list[str]:
    return [s[key] for s in summaries]


def test_arns_name_the_configured_region_and_account(client: Any) -> None:
    create_fleet(client, "arn-fleet")
    client.register_devices(DeviceFleetName="arn-fleet", Devices=[{"DeviceName": "arn-dev"}])
    fleet = client.describe_device_fleet(DeviceFleetName="arn-fleet")
    assert fleet["DeviceFleetArn"] == f"{ARN}:device-fleet/arn-fleet"
    device = client.describe_device(DeviceName="arn-dev", DeviceFleetName="arn-fleet")
    assert device["DeviceArn"] == f"{ARN}:device-fleet/arn-fleet/device/arn-dev"
    (summary,) = client.list_devices(DeviceFleetName="arn-fleet")["DeviceSummaries"]
    assert summary["DeviceArn"] == device["DeviceArn"]
    assert summary["DeviceFleetName"] == "arn-fleet"
    assert isinstance(summary["RegistrationTime"], dt.datetime)


def test_list_devices_pages_through_250_devices(client: Any) -> None:
    create_fleet(client, "paged")
    create_fleet(client, "paged-other")
    names = [f"paged-{i:03d}" for i in range(250)]
    for start in range(0, len(names), 50):
        client.register_devices(DeviceFleetName="paged", Devices=[
            {"DeviceName": n} for n in names[start:start + 50]])
    client.register_devices(DeviceFleetName="paged-other", Devices=[{"DeviceName": "elsewhere"}])

    pages = list(client.get_paginator("list_devices").paginate(
        DeviceFleetName="paged", PaginationConfig={"PageSize": 40}))
    seen = [d["DeviceName"] for page in pages for d in page["DeviceSummaries"]]
    assert len(pages) >= 7 and all(len(p["DeviceSummaries"]) <= 40 for p in pages)
    assert sorted(seen) == names  # none missing, none twice, none of the other fleet

    by_hand: list[str] = []
    sizes = []
    token: str | None = None
    while True:
        answer = client.list_devices(DeviceFleetName="paged", MaxResults=100,
                                     **({"NextToken": token} if token else {}))
        sizes.append(len(answer["DeviceSummaries"]))
        by_hand += [d["DeviceName"] for d in answer["DeviceSummaries"]]
        token = answer.get("NextToken")
        if not token:
            break
    assert sizes == [100, 100, 50]
    assert sorted(by_hand) == names and len(set(by_hand)) == 250
    everything = [d["DeviceName"] for page in client.get_paginator("list_devices").paginate()
                  for d in page["DeviceSummaries"]]
    assert set(names) | {"elsewhere"} <= set(everything)
    assert len(everything) == len(set(everything))


def test_a_next_token_that_is_not_one_is_a_validation_error(client: Any) -> None:
    code, _, _ = refused(client.list_devices, NextToken="not-a-token")
    assert code == "ValidationException"


def test_list_device_fleets_filters_and_sorts(client: Any) -> None:
    create_fleet(client, "sorted-b")
    time.sleep(1.1)  # CreationTimeAfter between the first fleet and the other two
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    create_fleet(client, "sorted-a")
    create_fleet(client, "sorted-c")

    def listed(**params: Any) -> list[str]:
        answer = client.list_device_fleets(NameContains="sorted-", **params)
        return names_in_order(answer["DeviceFleetSummaries"], "DeviceFleetName")
    assert sorted(listed()) == ["sorted-a", "sorted-b", "sorted-c"]
    assert listed(SortBy="NAME", SortOrder="Ascending") == ["sorted-a", "sorted-b", "sorted-c"]
    assert listed(SortBy="NAME", SortOrder="Descending") == ["sorted-c", "sorted-b", "sorted-a"]
    assert listed(SortBy="CREATION_TIME", SortOrder="Ascending") == [
        "sorted-b", "sorted-a", "sorted-c"]
    assert listed(SortBy="CREATION_TIME", SortOrder="Descending") == [
        "sorted-c", "sorted-a", "sorted-b"]
    assert listed(CreationTimeAfter=between, SortBy="NAME",
                  SortOrder="Ascending") == ["sorted-a", "sorted-c"]
    assert listed(CreationTimeBefore=between) == ["sorted-b"]
    (summary,) = client.list_device_fleets(NameContains="sorted-b")["DeviceFleetSummaries"]
    assert summary["DeviceFleetArn"] == f"{ARN}:device-fleet/sorted-b"
    assert isinstance(summary["CreationTime"], dt.datetime)


def test_list_edge_packaging_jobs_filters_and_sorts(client: Any, model_uri: str) -> None:
    compile_and_package(client, compilation="pkgsort-compiled", packaging="pkgsort-b",
                        model_uri=model_uri, model_name="turbine", model_version="1.0",
                        output="s3://models/out")
    time.sleep(1.1)
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    for name, model in (("pkgsort-a", "blade"), ("pkgsort-c", "turbine")):
        client.create_edge_packaging_job(
            EdgePackagingJobName=name, CompilationJobName="pkgsort-compiled", ModelName=model,
            ModelVersion="2.0", RoleArn=ROLE_ARN,
            OutputConfig={"S3OutputLocation": "s3://models/out/packaged"})

    def listed(**params: Any) -> list[str]:
        answer = client.list_edge_packaging_jobs(NameContains="pkgsort-", **params)
        return names_in_order(answer["EdgePackagingJobSummaries"], "EdgePackagingJobName")
    assert listed(SortBy="NAME", SortOrder="Ascending") == ["pkgsort-a", "pkgsort-b",
                                                            "pkgsort-c"]
    assert listed(SortBy="NAME", SortOrder="Descending") == ["pkgsort-c", "pkgsort-b",
                                                             "pkgsort-a"]
    assert listed(SortBy="CREATION_TIME", SortOrder="Ascending") == [
        "pkgsort-b", "pkgsort-a", "pkgsort-c"]
    assert listed(CreationTimeAfter=between, SortBy="NAME",
                  SortOrder="Ascending") == ["pkgsort-a", "pkgsort-c"]
    assert listed(ModelNameContains="turb", SortBy="NAME", SortOrder="Ascending") == [
        "pkgsort-b", "pkgsort-c"]
    assert listed(StatusEquals="COMPLETED", SortBy="NAME", SortOrder="Ascending") == [
        "pkgsort-a", "pkgsort-b", "pkgsort-c"]
    assert listed(StatusEquals="FAILED") == []
    summaries = {s["EdgePackagingJobName"]: s for s in client.list_edge_packaging_jobs(
        NameContains="pkgsort-")["EdgePackagingJobSummaries"]}
    assert summaries["pkgsort-a"]["EdgePackagingJobArn"] == f"{ARN}:edge-packaging-job/pkgsort-a"
    assert (summaries["pkgsort-a"]["ModelName"], summaries["pkgsort-a"]["ModelVersion"]) == (
        "blade", "2.0")
    assert summaries["pkgsort-a"]["CompilationJobName"] == "pkgsort-compiled"
    assert summaries["pkgsort-a"]["EdgePackagingJobStatus"] == "COMPLETED"
    compiled = client.list_compilation_jobs(NameContains="pkgsort-")["CompilationJobSummaries"]
    assert [c["CompilationJobName"] for c in compiled] == ["pkgsort-compiled"]
    assert compiled[0]["CompilationJobArn"] == f"{ARN}:compilation-job/pkgsort-compiled"


def test_list_edge_deployment_plans_filters_and_sorts(client: Any, model_uri: str) -> None:
    create_fleet(client, "plansort-fleet")
    create_fleet(client, "plansort-other")
    compile_and_package(client, compilation="plansort-compiled", packaging="plansort-pkg",
                        model_uri=model_uri, model_name="turbine", model_version="1.0",
                        output="s3://models/out")

    def plan(name: str, fleet: str) -> None:
        client.create_edge_deployment_plan(
            EdgeDeploymentPlanName=name, DeviceFleetName=fleet,
            ModelConfigs=[{"ModelHandle": "turbine", "EdgePackagingJobName": "plansort-pkg"}])
    plan("plansort-b", "plansort-fleet")
    time.sleep(1.1)
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    plan("plansort-a", "plansort-other")
    plan("plansort-c", "plansort-fleet")

    def listed(**params: Any) -> list[str]:
        answer = client.list_edge_deployment_plans(NameContains="plansort-", **params)
        return names_in_order(answer["EdgeDeploymentPlanSummaries"], "EdgeDeploymentPlanName")
    assert listed(SortBy="NAME", SortOrder="Ascending") == ["plansort-a", "plansort-b",
                                                            "plansort-c"]
    assert listed(SortBy="NAME", SortOrder="Descending") == ["plansort-c", "plansort-b",
                                                             "plansort-a"]
    assert listed(SortBy="CREATION_TIME", SortOrder="Descending") == [
        "plansort-c", "plansort-a", "plansort-b"]
    assert listed(CreationTimeAfter=between, SortBy="NAME",
                  SortOrder="Ascending") == ["plansort-a", "plansort-c"]
    assert listed(DeviceFleetNameContains="-other") == ["plansort-a"]
    assert listed(SortBy="DEVICE_FLEET_NAME", SortOrder="Ascending")[-1] == "plansort-a"
    assert listed(SortBy="DEVICE_FLEET_NAME", SortOrder="Descending")[0] == "plansort-a"
    (summary,) = client.list_edge_deployment_plans(NameContains="plansort-a")[
        "EdgeDeploymentPlanSummaries"]
    assert summary["EdgeDeploymentPlanArn"] == f"{ARN}:edge-deployment/plansort-a"
    assert summary["DeviceFleetName"] == "plansort-other"
    assert (summary["EdgeDeploymentSuccess"], summary["EdgeDeploymentPending"],
            summary["EdgeDeploymentFailed"]) == (0, 0, 0)
    assert isinstance(summary["CreationTime"], dt.datetime)


def test_update_device_fleet_changes_it_and_moves_last_modified_time(client: Any) -> None:
    create_fleet(client, "updated", Description="before")
    before = client.describe_device_fleet(DeviceFleetName="updated")
    assert before["Description"] == "before" and before["RoleArn"] == ROLE_ARN
    time.sleep(1.1)
    role = "arn:aws:iam::123456789012:role/OtherEdgeRole"
    client.update_device_fleet(DeviceFleetName="updated", RoleArn=role, Description="after",
                               OutputConfig={"S3OutputLocation": "s3://captures/moved"})
    after = client.describe_device_fleet(DeviceFleetName="updated")
    assert (after["Description"], after["RoleArn"]) == ("after", role)
    assert after["OutputConfig"]["S3OutputLocation"] == "s3://captures/moved"
    assert after["CreationTime"] == before["CreationTime"]
    assert after["LastModifiedTime"] > before["LastModifiedTime"]
    report = client.get_device_fleet_report(DeviceFleetName="updated")
    assert report["OutputConfig"]["S3OutputLocation"] == "s3://captures/moved"
    assert report["Description"] == "after"


def test_the_iot_role_alias_names_the_fleet_when_enabled(client: Any) -> None:
    create_fleet(client, "aliased", EnableIotRoleAlias=True)
    create_fleet(client, "unaliased")
    aliased = client.describe_device_fleet(DeviceFleetName="aliased")
    assert aliased["RoleArn"] == ROLE_ARN
    assert aliased["IotRoleAlias"].endswith("rolealias/SageMakerEdge-aliased")
    assert "IotRoleAlias" not in client.describe_device_fleet(DeviceFleetName="unaliased")
    client.update_device_fleet(DeviceFleetName="unaliased", RoleArn=ROLE_ARN,
                               EnableIotRoleAlias=True,
                               OutputConfig={"S3OutputLocation": "s3://captures/unaliased"})
    assert client.describe_device_fleet(DeviceFleetName="unaliased")["IotRoleAlias"].endswith(
        "rolealias/SageMakerEdge-unaliased")


def test_update_devices_changes_description_and_iot_thing_name(client: Any) -> None:
    create_fleet(client, "devices-updated")
    client.register_devices(DeviceFleetName="devices-updated", Devices=[
        {"DeviceName": "upd-1", "Description": "old", "IotThingName": "thing-old"},
        {"DeviceName": "upd-2", "Description": "untouched"}])
    client.update_devices(DeviceFleetName="devices-updated", Devices=[
        {"DeviceName": "upd-1", "Description": "new", "IotThingName": "thing-new"}])
    device = client.describe_device(DeviceName="upd-1", DeviceFleetName="devices-updated")
    assert (device["Description"], device["IotThingName"]) == ("new", "thing-new")
    other = client.describe_device(DeviceName="upd-2", DeviceFleetName="devices-updated")
    assert other["Description"] == "untouched"
    summaries = {d["DeviceName"]: d for d in client.list_devices(
        DeviceFleetName="devices-updated")["DeviceSummaries"]}
    assert summaries["upd-1"]["Description"] == "new"
    assert summaries["upd-1"]["IotThingName"] == "thing-new"
    code, _, _ = refused(client.update_devices, DeviceFleetName="devices-updated",
                         Devices=[{"DeviceName": "never-registered"}])
    assert code in ("ResourceNotFound", "ValidationException")


def test_missing_and_duplicate_resources(client: Any) -> None:
    assert refused(client.describe_device_fleet, DeviceFleetName="no-such-fleet")[0] == (
        "ResourceNotFound")
    assert refused(client.describe_device, DeviceName="no-such-device",
                   DeviceFleetName="no-such-fleet")[0] == "ResourceNotFound"
    assert refused(client.describe_edge_packaging_job,
                   EdgePackagingJobName="no-such-job")[0] == "ResourceNotFound"
    assert refused(client.describe_compilation_job,
                   CompilationJobName="no-such-job")[0] == "ResourceNotFound"
    assert refused(client.describe_edge_deployment_plan,
                   EdgeDeploymentPlanName="no-such-plan")[0] == "ResourceNotFound"
    create_fleet(client, "twice")
    code, _, _ = refused(create_fleet, client=client, name="twice")
    assert code == "ResourceInUse"
    client.register_devices(DeviceFleetName="twice", Devices=[{"DeviceName": "twice-dev"}])
    code, _, _ = refused(client.register_devices, DeviceFleetName="twice",
                         Devices=[{"DeviceName": "twice-dev"}])
    assert code in ("ResourceInUse", "ValidationException")


def test_a_framework_other_than_onnx_is_refused(client: Any, model_uri: str) -> None:
    code, _, message = refused(
        client.create_compilation_job, CompilationJobName="pytorch-job", RoleArn=ROLE_ARN,
        InputConfig={"S3Uri": model_uri, "Framework": "PYTORCH"},
        OutputConfig={"S3OutputLocation": "s3://models/out", "TargetDevice": "jetson_nano"},
        StoppingCondition={"MaxRuntimeInSeconds": 900})
    assert code == "ValidationException"
    assert "ONNX" in message


def test_a_file_onnx_runtime_cannot_load_fails_the_compilation_job(
        client: Any, s3: S3Server, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    uri = upload(s3, "models", "broken.onnx", broken)
    client.create_compilation_job(
        CompilationJobName="broken-job", RoleArn=ROLE_ARN,
        InputConfig={"S3Uri": uri, "Framework": "ONNX"},
        OutputConfig={"S3OutputLocation": "s3://models/out", "TargetDevice": "jetson_nano"},
        StoppingCondition={"MaxRuntimeInSeconds": 900})
    job = client.describe_compilation_job(CompilationJobName="broken-job")
    assert job["CompilationJobStatus"] == "FAILED"
    assert job["FailureReason"]
    code, _, _ = refused(
        client.create_edge_packaging_job, EdgePackagingJobName="broken-pkg",
        CompilationJobName="broken-job", ModelName="broken", ModelVersion="1.0",
        RoleArn=ROLE_ARN, OutputConfig={"S3OutputLocation": "s3://models/out"})
    assert code in ("ValidationException", "ResourceNotFound", "ResourceInUse")


def test_a_missing_required_member_is_a_validation_error_naming_it(server: Server) -> None:
    unchecked = sagemaker_client(server, region=REGION, parameter_validation=False)
    code, _, message = refused(unchecked.create_device_fleet, DeviceFleetName="no-output")
    assert code == "ValidationException"
    assert "OutputConfig" in message
    code, _, message = refused(unchecked.describe_device, DeviceName="x")
    assert code == "ValidationException"
    assert "DeviceFleetName" in message
    code, _, message = refused(unchecked.list_devices, MaxResults=1000)
    assert code == "ValidationException"
    assert "MaxResults" in message


def test_an_operation_not_served_is_an_unknown_operation(client: Any) -> None:
    code, _, _ = refused(client.list_endpoints)
    assert code == "UnknownOperationException"


def signed_post(server: Server, body: bytes, target: str) -> httpx.Response:
    access_key, secret = operator_keys(server)
    request = AWSRequest(method="POST", url=f"{server.url}/", data=body,
                         headers={"Content-Type": TARGET, "X-Amz-Target": target})
    SigV4Auth(Credentials(access_key, secret), "sagemaker", REGION).add_auth(request)
    return httpx.post(f"{server.url}/", content=body, headers=dict(request.headers.items()))


def error_type(response: httpx.Response) -> str:
    """The error code of a JSON 1.1 error body, as botocore reads it (after any '#')."""
    code: str = response.json()["__type"]
    return code.rsplit("#", 1)[-1]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_serialization_error(
        server: Server, body: bytes) -> None:
    response = signed_post(server, body, "SageMaker.ListDeviceFleets")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(TARGET)
    assert error_type(response) == "SerializationException"


def test_a_signed_raw_request_is_answered_as_botocore_would_read_it(server: Server) -> None:
    response = signed_post(server, json.dumps({"MaxResults": 5}).encode(),
                           "SageMaker.ListDeviceFleets")
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["DeviceFleetSummaries"], list)
    unknown = signed_post(server, b"{}", "SageMaker.NoSuchOperation")
    assert unknown.status_code == 400 and error_type(unknown) == "UnknownOperationException"


def test_a_wrong_secret_is_an_invalid_signature(server: Server) -> None:
    access_key, _ = operator_keys(server)
    wrong = sagemaker_client(server, region=REGION, access_key=access_key,
                             secret_key="not-the-secret")
    code, status, _ = refused(wrong.list_device_fleets)
    assert code == "InvalidSignatureException"
    assert status in (400, 403)


def test_an_unknown_access_key_is_an_unrecognized_client(server: Server) -> None:
    unknown = sagemaker_client(server, region=REGION, access_key="AKIANOSUCHKEY0000000",
                               secret_key="whatever")
    code, status, _ = refused(unknown.list_device_fleets)
    assert code == "UnrecognizedClientException"
    assert status in (400, 403)


def test_device_credentials_are_refused(server: Server, tmp_path: Path) -> None:
    server.admin.create_fleet("device-keys", "s3://captures/device-keys")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "root.pem").write_bytes(server.admin.root_certificate())
    config = server.admin.register_device({"name": "device-keys-1", "fleet": "device-keys",
                                           "root_certs_path": str(certs)})["agent_config"]
    as_device = sagemaker_client(server, region=REGION,
                                 access_key=config["edgefleet_control_access_key_id"],
                                 secret_key=config["edgefleet_control_secret_access_key"])
    code, status, _ = refused(as_device.list_device_fleets)
    assert code in AUTH_ERROR_CODES
    assert status in (400, 403)


def test_an_unsigned_request_is_refused(server: Server) -> None:
    response = httpx.post(f"{server.url}/", content=b"{}", headers={
        "Content-Type": TARGET, "X-Amz-Target": "SageMaker.ListDeviceFleets"})
    assert response.status_code in (400, 403), response.text
    assert error_type(response) in AUTH_ERROR_CODES
