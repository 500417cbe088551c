"""The SageMaker Edge Manager workshop flow, with nothing but boto3's ``sagemaker`` client.

Creates a device fleet, registers devices, compiles an ONNX model that is already in S3,
packages it, creates a deployment plan of one stage per device, starts the stages, waits for
the devices to deploy, prints the fleet report and deletes everything again. Each call is the
one documented in the boto3 reference of the SageMaker client; the script runs against AWS or
against ``edgefleet server`` (pass ``--endpoint-url``), with credentials from the usual boto3
chain (``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``...).

Exit status: 0 when every device deployed (or, with ``--wait-seconds 0``, the stages were
started), 1 when a device failed to deploy or the wait ran out.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import boto3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint-url", default=None,
                        help="SageMaker API endpoint, e.g. http://localhost:8080 for edgefleet "
                        "server (default: AWS)")
    parser.add_argument("--region", default=None, help="region (default: boto3's)")
    parser.add_argument("--model-s3-uri", required=True,
                        help="s3://bucket/key of the ONNX model (or a .tar.gz holding it)")
    parser.add_argument("--output-s3-uri", required=True,
                        help="s3://bucket/prefix for compiled and packaged models and captures")
    parser.add_argument("--role-arn", required=True,
                        help="IAM role SageMaker assumes to read and write the buckets")
    parser.add_argument("--fleet", default="workshop-fleet", help="device fleet name")
    parser.add_argument("--device", action="append", dest="devices",
                        help="device name (repeat for several; default: edge-device-1)")
    parser.add_argument("--model-name", default="affine")
    parser.add_argument("--model-version", default="1.0")
    parser.add_argument("--target-device", default="jetson_nano",
                        help="Neo target device of the compilation job")
    parser.add_argument("--wait-seconds", type=float, default=600,
                        help="how long to wait for the devices to deploy")
    parser.add_argument("--keep", action="store_true", help="do not delete what was created")
    return parser.parse_args(argv)


def wait_for_job(describe: Any, status_key: str, **name: str) -> dict[str, Any]:
    """Poll a Describe call until the job leaves its starting and in-progress states."""
    while True:
        job: dict[str, Any] = describe(**name)
        if job[status_key] not in ("STARTING", "INPROGRESS"):
            return job
        time.sleep(5)


def stage_devices(sm: Any, plan: str, stage: str) -> list[dict[str, Any]]:
    """Every device of a stage (ListStageDevices, all pages)."""
    pages = sm.get_paginator("list_stage_devices").paginate(
        EdgeDeploymentPlanName=plan, StageName=stage)
    return [d for page in pages for d in page["DeviceDeploymentSummaries"]]


def run(args: argparse.Namespace) -> int:
    sm = boto3.client("sagemaker", endpoint_url=args.endpoint_url, region_name=args.region)
    devices = args.devices or ["edge-device-1"]
    fleet = args.fleet
    compilation = f"{args.model_name}-compilation"
    packaging = f"{args.model_name}-packaging"
    plan = f"{fleet}-plan"
    output = args.output_s3_uri.rstrip("/")

    # 1. A device fleet, and the devices in it.
    sm.create_device_fleet(
        DeviceFleetName=fleet, RoleArn=args.role_arn,
        Description="SageMaker Edge Manager workshop fleet",
        OutputConfig={"S3OutputLocation": f"{output}/captures"})
    print("fleet:", sm.describe_device_fleet(DeviceFleetName=fleet)["DeviceFleetArn"])
    sm.register_devices(DeviceFleetName=fleet, Devices=[
        {"DeviceName": name, "Description": f"workshop device {name}"} for name in devices])
    for name in devices:
        print("device:", sm.describe_device(DeviceName=name, DeviceFleetName=fleet)["DeviceArn"])
    try:
        # 2. Compile the model, then package (sign) it for the edge.
        sm.create_compilation_job(
            CompilationJobName=compilation, RoleArn=args.role_arn,
            InputConfig={"S3Uri": args.model_s3_uri, "Framework": "ONNX"},
            OutputConfig={"S3OutputLocation": f"{output}/compiled",
                          "TargetDevice": args.target_device},
            StoppingCondition={"MaxRuntimeInSeconds": 900})
        compiled = wait_for_job(sm.describe_compilation_job, "CompilationJobStatus",
                                CompilationJobName=compilation)
        print("compilation job:", compiled["CompilationJobStatus"],
              compiled.get("FailureReason", ""))
        if compiled["CompilationJobStatus"] != "COMPLETED":
            return 1
        sm.create_edge_packaging_job(
            EdgePackagingJobName=packaging, CompilationJobName=compilation,
            ModelName=args.model_name, ModelVersion=args.model_version,
            RoleArn=args.role_arn, OutputConfig={"S3OutputLocation": f"{output}/packaged"})
        packaged = wait_for_job(sm.describe_edge_packaging_job, "EdgePackagingJobStatus",
                                EdgePackagingJobName=packaging)
        print("packaging job:", packaged["EdgePackagingJobStatus"],
              packaged.get("ModelArtifact", packaged.get("EdgePackagingJobStatusMessage", "")))
        if packaged["EdgePackagingJobStatus"] != "COMPLETED":
            return 1

        # 3. A deployment plan with one stage per device, started one after the other.
        stages = [f"stage-{i + 1}" for i in range(len(devices))]
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName=plan, DeviceFleetName=fleet,
            ModelConfigs=[{"ModelHandle": args.model_name,
                           "EdgePackagingJobName": packaging}],
            Stages=[{"StageName": stage,
                     "DeviceSelectionConfig": {"DeviceSubsetType": "SELECTION",
                                               "DeviceNames": [name]},
                     "DeploymentConfig": {"FailureHandlingPolicy": "ROLLBACK_ON_FAILURE"}}
                    for stage, name in zip(stages, devices, strict=True)])
        return deploy(sm, plan, stages, fleet, args.wait_seconds)
    finally:
        if not args.keep:
            clean_up(sm, fleet, devices, plan)


def deploy(sm: Any, plan: str, stages: list[str], fleet: str, wait_seconds: float) -> int:
    """Start each stage and wait until its devices deployed; print the fleet report."""
    code = 0
    for stage in stages:
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName=plan, StageName=stage)
        print(f"{stage}: started")
        if wait_seconds <= 0:
            continue
        deadline = time.monotonic() + wait_seconds
        while True:
            summaries = stage_devices(sm, plan, stage)
            statuses = {d["DeviceName"]: d.get("DeviceDeploymentStatus") for d in summaries}
            done = summaries and all(s in ("DEPLOYED", "FAILED") for s in statuses.values())
            if done or time.monotonic() > deadline:
                break
            time.sleep(2)
        for summary in summaries:
            print(f"  {summary['DeviceName']}: {summary.get('DeviceDeploymentStatus')}",
                  summary.get("DeviceDeploymentStatusMessage", ""))
        if not done or any(s != "DEPLOYED" for s in statuses.values()):
            print(f"{stage}: not every device deployed; later stages are not started")
            code = 1
            break
    if wait_seconds > 0 and code == 0:
        report_until_connected(sm, fleet, deadline=time.monotonic() + 60)
    return code


def report_until_connected(sm: Any, fleet: str, deadline: float) -> None:
    """Print GetDeviceFleetReport once the devices reported their models (or at the deadline)."""
    while True:
        report = sm.get_device_fleet_report(DeviceFleetName=fleet)
        stats = report.get("ModelStats", [])
        if any(s["ConnectedDeviceCount"] for s in stats) or time.monotonic() > deadline:
            break
        time.sleep(2)
    devices = report.get("DeviceStats", {})
    print(f"fleet report: {devices.get('ConnectedDeviceCount', 0)} of "
          f"{devices.get('RegisteredDeviceCount', 0)} devices connected")
    for stat in stats:
        print(f"  {stat['ModelName']} {stat['ModelVersion']} on "
              f"{stat['ConnectedDeviceCount']} connected device(s), "
              f"{stat['ActiveDeviceCount']} active")
    for agent in report.get("AgentVersions", []):
        print(f"  agent {agent['Version']}: {agent['AgentCount']} device(s)")


def clean_up(sm: Any, fleet: str, devices: list[str], plan: str) -> None:
    """Delete the plan (its stages first), deregister the devices, delete the fleet."""
    names = [p["EdgeDeploymentPlanName"] for page in sm.get_paginator(
        "list_edge_deployment_plans").paginate(NameContains=plan)
        for p in page["EdgeDeploymentPlanSummaries"]]
    if plan in names:
        for stage in sm.describe_edge_deployment_plan(EdgeDeploymentPlanName=plan)["Stages"]:
            # A started stage stays active (also once deployed) until it is stopped.
            if stage["DeploymentStatus"].get("StageStatus") not in (
                    "CREATING", "READYTODEPLOY", "STOPPING", "STOPPED"):
                sm.stop_edge_deployment_stage(EdgeDeploymentPlanName=plan,
                                              StageName=stage["StageName"])
            sm.delete_edge_deployment_stage(EdgeDeploymentPlanName=plan,
                                            StageName=stage["StageName"])
        sm.delete_edge_deployment_plan(EdgeDeploymentPlanName=plan)
    sm.deregister_devices(DeviceFleetName=fleet, DeviceNames=devices)
    sm.delete_device_fleet(DeviceFleetName=fleet)
    print("cleaned up: plan, devices and fleet deleted")


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
