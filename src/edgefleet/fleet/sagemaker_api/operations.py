"""The ``sagemaker`` operations edgefleet serves, each a thin mapping onto the services.

A handler takes the validated request (the model's member names) and returns the response
(the model's member names; timestamps as epoch seconds). It calls the same service functions
as the REST API and the CLI (``fleets``, ``packaging``, ``compilation``, ``rollout``,
``reports``): one behaviour, three adapters. What the model has and edgefleet does not use
(``RoleArn``, ``KmsKeyId``, ``Tags``, ``IotRoleAlias``, ``VpcConfig``, ...) is stored and shown
where the services keep it, never acted on; docs/control-plane.md lists each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from edgefleet.errors import NotFound
from edgefleet.fleet import compilation, fleets, packaging, reports, rollout, schemas
from edgefleet.fleet.context import Context
from edgefleet.fleet.sagemaker_api.protocol import Page, decode_token, encode_token, epoch, page
from edgefleet.fleet.storage import LocalObjectStore, S3ObjectStore

Params = dict[str, Any]
Result = dict[str, Any]

#: Page size when a request gives no MaxResults: the model's maximum for list operations
#: (ListMaxResults, 100) and for plan stages (DeploymentStageMaxResults, 10).
DEFAULT_MAX_RESULTS = 100
DEFAULT_MAX_STAGES = 10
#: Models per DescribeDevice page.
MAX_MODELS_PER_PAGE = 100


@dataclass
class Call:
    """One request: the server's context, an open session, and work to run after the
    response is sent (MQTT notification of a started stage)."""

    context: Context
    session: Session
    after: list[Callable[[], None]] = field(default_factory=list)

    def arn(self, kind: str, name: str) -> str:
        """``arn:aws:sagemaker:<region>:<account id>:<kind>/<name>``."""
        settings = self.context.settings
        return f"arn:aws:sagemaker:{settings.region}:{settings.account_id}:{kind}/{name}"

    def device_arn(self, fleet: str, device: str) -> str:
        """A device's ARN: under its fleet's, as SageMaker names them."""
        return self.arn("device-fleet", f"{fleet}/device/{device}")

    def object_uri(self, key: str | None) -> str | None:
        """Where an object of the server's store lives, as a URI (s3:// or file://)."""
        if key is None:
            return None
        store = self.context.store
        if isinstance(store, S3ObjectStore):
            prefix = f"{store.prefix}/" if store.prefix else ""
            return f"s3://{store.bucket}/{prefix}{key}"
        if isinstance(store, LocalObjectStore):
            return (store.root / key).resolve().as_uri()
        return f"memory:///{key}"


Handler = Callable[[Call, Params], Result]
HANDLERS: dict[str, Handler] = {}


def _op(handler: Handler) -> Handler:
    """Register a handler under its CamelCase operation name."""
    HANDLERS["".join(part.capitalize() for part in handler.__name__.split("_"))] = handler
    return handler


def _tags(params: Params) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}


def _or_none(text: str | None) -> str | None:
    """Optional string members have ``min`` 1: an empty one is left out."""
    return text or None


# -- list filters, sort orders, pages --------------------------------------------------------------

def _time_filters(items: Iterable[Any], params: Params, created: str,
                  modified: str | None) -> list[Any]:
    chosen = list(items)
    bounds = [("CreationTimeAfter", created, 1), ("CreationTimeBefore", created, -1)]
    if modified is not None:
        bounds += [("LastModifiedTimeAfter", modified, 1), ("LastModifiedTimeBefore", modified,
                                                             -1)]
    for member, attribute, sign in bounds:
        if member in params:
            limit = epoch(params[member])
            chosen = [i for i in chosen if (getattr(i, attribute) or 0.0) * sign > limit * sign]
    return chosen


def _contains(items: list[Any], params: Params, member: str, attribute: str) -> list[Any]:
    if not params.get(member):
        return items
    part = params[member].lower()
    return [i for i in items if part in (getattr(i, attribute) or "").lower()]


def _sorted(items: list[Any], params: Params, keys: dict[str, Callable[[Any], Any]],
            default: str) -> list[Any]:
    """Sorted by ``SortBy`` (default ``default``) and ``SortOrder`` (default Descending, as
    SageMaker lists newest first); ties by name keep pages stable."""
    key = keys[params.get("SortBy", default)]
    descending = params.get("SortOrder", "Descending") == "Descending"
    return sorted(items, key=lambda item: (key(item), item.name), reverse=descending)


def _page(items: list[Any], op: str, params: Params,
          max_default: int = DEFAULT_MAX_RESULTS) -> Page:
    return page(items, op, params.get("NextToken"), params.get("MaxResults") or max_default)


# -- device fleets ---------------------------------------------------------------------------------

def _fleet_output(fleet: schemas.FleetOut) -> Result:
    output: Result = {"S3OutputLocation": fleet.output_location}
    if fleet.kms_key_id:
        output["KmsKeyId"] = fleet.kms_key_id
    return output


@_op
def create_device_fleet(call: Call, p: Params) -> Result:
    """CreateDeviceFleet: a fleet; captured data goes to ``OutputConfig.S3OutputLocation``."""
    settings = call.context.settings
    fleets.create_fleet(call.session, schemas.FleetCreate(
        name=p["DeviceFleetName"], description=p.get("Description", ""),
        output_location=p["OutputConfig"]["S3OutputLocation"], role_arn=p.get("RoleArn"),
        kms_key_id=p["OutputConfig"].get("KmsKeyId"),
        enable_iot_role_alias=p.get("EnableIotRoleAlias", False), tags=_tags(p)),
        region=settings.region, account_id=settings.account_id)
    return {}


@_op
def describe_device_fleet(call: Call, p: Params) -> Result:
    """DescribeDeviceFleet."""
    fleet = fleets.describe_fleet(call.session, p["DeviceFleetName"])
    return {"DeviceFleetName": fleet.name, "DeviceFleetArn": call.arn("device-fleet", fleet.name),
            "OutputConfig": _fleet_output(fleet), "Description": _or_none(fleet.description),
            "CreationTime": fleet.created_at, "LastModifiedTime": fleet.updated_at,
            "RoleArn": fleet.role_arn, "IotRoleAlias": fleet.iot_role_alias}


@_op
def update_device_fleet(call: Call, p: Params) -> Result:
    """UpdateDeviceFleet: description, output location, role, KMS key, IoT role alias."""
    settings = call.context.settings
    fleets.update_fleet(call.session, p["DeviceFleetName"], schemas.FleetUpdate(
        description=p.get("Description"),
        output_location=p["OutputConfig"]["S3OutputLocation"], role_arn=p.get("RoleArn"),
        kms_key_id=p["OutputConfig"].get("KmsKeyId"),
        enable_iot_role_alias=p.get("EnableIotRoleAlias")),
        region=settings.region, account_id=settings.account_id)
    return {}


@_op
def list_device_fleets(call: Call, p: Params) -> Result:
    """ListDeviceFleets: filters by time and name, sorted, paged."""
    items = _contains(_time_filters(fleets.list_fleets(call.session), p, "created_at",
                                    "updated_at"), p, "NameContains", "name")
    items = _sorted(items, p, {"NAME": lambda f: f.name, "CREATION_TIME": lambda f: f.created_at,
                               "LAST_MODIFIED_TIME": lambda f: f.updated_at}, "CREATION_TIME")
    chosen = _page(items, "ListDeviceFleets", p)
    return {"DeviceFleetSummaries": [
        {"DeviceFleetArn": call.arn("device-fleet", f.name), "DeviceFleetName": f.name,
         "CreationTime": f.created_at, "LastModifiedTime": f.updated_at}
        for f in chosen.items], "NextToken": chosen.next_token}


@_op
def delete_device_fleet(call: Call, p: Params) -> Result:
    """DeleteDeviceFleet: only an empty fleet that no plan targets (else ResourceInUse)."""
    fleets.delete_fleet(call.session, p["DeviceFleetName"])
    return {}


@_op
def get_device_fleet_report(call: Call, p: Params) -> Result:
    """GetDeviceFleetReport: device counts, agent versions, per-model device counts."""
    window = call.context.settings.connected_window_seconds
    report = reports.fleet_report(call.session, p["DeviceFleetName"], window_seconds=window)
    fleet = fleets.describe_fleet(call.session, report.fleet)
    return {
        "DeviceFleetArn": call.arn("device-fleet", report.fleet),
        "DeviceFleetName": report.fleet, "OutputConfig": _fleet_output(fleet),
        "Description": _or_none(report.description), "ReportGenerated": report.generated_at,
        "DeviceStats": {"ConnectedDeviceCount": report.connected_device_count,
                        "RegisteredDeviceCount": report.registered_device_count},
        "AgentVersions": [{"Version": v.version, "AgentCount": v.agent_count}
                          for v in report.agent_versions if v.version],
        "ModelStats": [{"ModelName": m.model_name, "ModelVersion": m.model_version or "",
                        "OfflineDeviceCount": m.offline_device_count,
                        "ConnectedDeviceCount": m.connected_device_count,
                        "ActiveDeviceCount": m.active_device_count,
                        "SamplingDeviceCount": m.sampling_device_count}
                       for m in report.model_stats]}


# -- devices ---------------------------------------------------------------------------------------

def _device_updates(p: Params) -> list[schemas.DeviceUpdate]:
    return [schemas.DeviceUpdate(name=d["DeviceName"], description=d.get("Description"),
                                 iot_thing_name=d.get("IotThingName")) for d in p["Devices"]]


@_op
def register_devices(call: Call, p: Params) -> Result:
    """RegisterDevices: all or none; no secrets in the answer (as in SageMaker). A device gets
    its credentials and agent config from ``edgefleet device credentials NAME``."""
    fleets.register_devices(call.session, call.context.key, p["DeviceFleetName"], [
        schemas.DeviceRegister(name=d["DeviceName"], fleet=p["DeviceFleetName"],
                               description=d.get("Description", ""),
                               iot_thing_name=d.get("IotThingName"))
        for d in p["Devices"]])
    return {}


@_op
def update_devices(call: Call, p: Params) -> Result:
    """UpdateDevices: description and IoT thing name of devices of one fleet."""
    fleets.update_devices(call.session, p["DeviceFleetName"], _device_updates(p))
    return {}


@_op
def deregister_devices(call: Call, p: Params) -> Result:
    """DeregisterDevices: their credentials stop working at once on this instance."""
    for access_key_id in fleets.deregister_devices(call.session, p["DeviceFleetName"],
                                                   p["DeviceNames"]):
        call.context.credentials.forget(access_key_id)
    return {}


def _models(models: Iterable[schemas.ModelOut]) -> list[Result]:
    return [{"ModelName": m.model_name, "ModelVersion": m.model_version or "",
             "LatestSampleTime": m.latest_sample_time, "LatestInference": m.latest_inference}
            for m in models]


@_op
def describe_device(call: Call, p: Params) -> Result:
    """DescribeDevice: latest heartbeat, agent version, models (paged by NextToken)."""
    device = fleets.describe_device(call.session, p["DeviceName"])
    if device.fleet != p["DeviceFleetName"]:
        raise NotFound(f"device {device.name!r} is not in fleet {p['DeviceFleetName']!r}; it is "
                       f"in {device.fleet!r}")
    models = page(device.models, "DescribeDevice", p.get("NextToken"), MAX_MODELS_PER_PAGE)
    return {"DeviceArn": call.device_arn(device.fleet, device.name), "DeviceName": device.name,
            "Description": _or_none(device.description), "DeviceFleetName": device.fleet,
            "IotThingName": device.iot_thing_name, "RegistrationTime": device.registered_at,
            "LatestHeartbeat": device.latest_heartbeat, "Models": _models(models.items),
            "MaxModels": len(device.models), "NextToken": models.next_token,
            "AgentVersion": device.agent_version}


@_op
def list_devices(call: Call, p: Params) -> Result:
    """ListDevices: by name, optionally of one fleet, running one model, or heard from since a
    time; paged by name, so pages stay right while devices register."""
    after = decode_token("ListDevices", p.get("NextToken"))
    limit = p.get("MaxResults") or DEFAULT_MAX_RESULTS
    found = fleets.list_devices(
        call.session, fleet=p.get("DeviceFleetName"), after=None if after is None else str(after),
        limit=limit, model_name=p.get("ModelName"),
        heartbeat_after=epoch(p["LatestHeartbeatAfter"]) if "LatestHeartbeatAfter" in p else None,
        include_models=True)
    return {"DeviceSummaries": [
        {"DeviceName": d.name, "DeviceArn": call.device_arn(d.fleet, d.name),
         "Description": _or_none(d.description), "DeviceFleetName": d.fleet,
         "IotThingName": d.iot_thing_name, "RegistrationTime": d.registered_at,
         "LatestHeartbeat": d.latest_heartbeat, "AgentVersion": d.agent_version,
         "Models": [{"ModelName": m.model_name, "ModelVersion": m.model_version or ""}
                    for m in (d.models if isinstance(d, schemas.DeviceWithModels) else [])]}
        for d in found.devices],
        "NextToken": None if found.next_after is None else encode_token("ListDevices",
                                                                        found.next_after)}


# -- compilation and packaging ---------------------------------------------------------------------

def _compilation(call: Call, job: schemas.CompilationJobOut) -> Result:
    platform = job.output_config.get("TargetPlatform") or {}
    return {"CompilationJobName": job.name, "CompilationJobArn": call.arn("compilation-job",
                                                                          job.name),
            "CompilationJobStatus": job.status, "CompilationStartTime": job.started_at,
            "CompilationEndTime": job.ended_at, "StoppingCondition": job.stopping_condition,
            "CreationTime": job.created_at, "LastModifiedTime": job.updated_at,
            "FailureReason": job.failure_reason,
            "ModelArtifacts": {"S3ModelArtifacts": call.object_uri(job.model_key) or ""},
            "RoleArn": job.role_arn, "InputConfig": job.input_config,
            "OutputConfig": job.output_config,
            "CompilationTargetDevice": job.output_config.get("TargetDevice"),
            "CompilationTargetPlatformOs": platform.get("Os"),
            "CompilationTargetPlatformArch": platform.get("Arch"),
            "CompilationTargetPlatformAccelerator": platform.get("Accelerator")}


@_op
def create_compilation_job(call: Call, p: Params) -> Result:
    """CreateCompilationJob: check an ONNX model with ONNX Runtime and keep it for packaging
    (edgefleet compiles nothing: devices run ONNX models with ONNX Runtime)."""
    context = call.context
    job = compilation.create_job(context.sessions, context.store, schemas.CompilationCreate(
        name=p["CompilationJobName"], role_arn=p["RoleArn"], input_config=p.get("InputConfig", {}),
        output_config=p["OutputConfig"], stopping_condition=p.get("StoppingCondition", {}),
        tags=_tags(p)), source_endpoint_url=context.settings.source_s3_endpoint_url)
    return {"CompilationJobArn": call.arn("compilation-job", job.name)}


@_op
def describe_compilation_job(call: Call, p: Params) -> Result:
    """DescribeCompilationJob."""
    return _compilation(call, compilation.describe_job(call.session, p["CompilationJobName"]))


@_op
def list_compilation_jobs(call: Call, p: Params) -> Result:
    """ListCompilationJobs: filters by time, name and status, sorted, paged."""
    items = _contains(_time_filters(compilation.list_jobs(call.session), p, "created_at",
                                    "updated_at"), p, "NameContains", "name")
    if "StatusEquals" in p:
        items = [j for j in items if j.status == p["StatusEquals"]]
    items = _sorted(items, p, {"Name": lambda j: j.name, "CreationTime": lambda j: j.created_at,
                               "Status": lambda j: j.status}, "CreationTime")
    chosen = _page(items, "ListCompilationJobs", p)
    return {"CompilationJobSummaries": [_compilation(call, j) for j in chosen.items],
            "NextToken": chosen.next_token}


def _packaging(call: Call, job: schemas.PackagingJobOut) -> Result:
    output: Result = {"S3OutputLocation": job.output_location or ""}
    if job.kms_key_id:
        output["KmsKeyId"] = job.kms_key_id
    return {"EdgePackagingJobArn": call.arn("edge-packaging-job", job.name),
            "EdgePackagingJobName": job.name, "CompilationJobName": job.compilation_job_name,
            "ModelName": job.model_name, "ModelVersion": job.model_version,
            "RoleArn": job.role_arn, "OutputConfig": output, "ResourceKey": job.resource_key,
            "EdgePackagingJobStatus": job.status, "EdgePackagingJobStatusMessage":
            job.status_message, "CreationTime": job.created_at,
            "LastModifiedTime": job.updated_at or job.completed_at or job.created_at,
            "ModelArtifact": call.object_uri(job.artifact), "ModelSignature": job.signature}


@_op
def create_edge_packaging_job(call: Call, p: Params) -> Result:
    """CreateEdgePackagingJob: sign the compilation job's model into a package (runs within
    the call: DescribeEdgePackagingJob right after shows COMPLETED or FAILED)."""
    context = call.context
    output = p["OutputConfig"]
    packaging.create_job_from_compilation(
        context.sessions, context.key, context.store, name=p["EdgePackagingJobName"],
        compilation_job_name=p["CompilationJobName"], model_name=p["ModelName"],
        model_version=p["ModelVersion"], options=schemas.PackagingOptions(
            role_arn=p["RoleArn"], output_location=output["S3OutputLocation"],
            kms_key_id=output.get("KmsKeyId"), resource_key=p.get("ResourceKey"),
            preset_deployment_type=output.get("PresetDeploymentType"),
            preset_deployment_config=output.get("PresetDeploymentConfig"), tags=_tags(p)))
    return {}


@_op
def describe_edge_packaging_job(call: Call, p: Params) -> Result:
    """DescribeEdgePackagingJob: status, package location and signature."""
    return _packaging(call, packaging.describe_job(call.session, p["EdgePackagingJobName"]))


@_op
def list_edge_packaging_jobs(call: Call, p: Params) -> Result:
    """ListEdgePackagingJobs: filters by time, name, model name and status, sorted, paged."""
    items = _time_filters(packaging.list_jobs(call.session), p, "created_at", "updated_at")
    items = _contains(_contains(items, p, "NameContains", "name"), p, "ModelNameContains",
                      "model_name")
    if "StatusEquals" in p:
        items = [j for j in items if j.status == p["StatusEquals"]]
    items = _sorted(items, p, {
        "NAME": lambda j: j.name, "MODEL_NAME": lambda j: j.model_name,
        "CREATION_TIME": lambda j: j.created_at, "STATUS": lambda j: j.status,
        "LAST_MODIFIED_TIME": lambda j: j.updated_at or j.created_at}, "CREATION_TIME")
    chosen = _page(items, "ListEdgePackagingJobs", p)
    return {"EdgePackagingJobSummaries": [_packaging(call, j) for j in chosen.items],
            "NextToken": chosen.next_token}


@_op
def stop_edge_packaging_job(call: Call, p: Params) -> Result:
    """StopEdgePackagingJob: packaging finishes within CreateEdgePackagingJob, so there is
    never a running job to stop; the job must exist (ResourceNotFound otherwise)."""
    packaging.describe_job(call.session, p["EdgePackagingJobName"])
    return {}


# -- deployment plans and stages -------------------------------------------------------------------

def _stage_spec(stage: Params) -> schemas.StageSpec:
    selection = stage["DeviceSelectionConfig"]
    return schemas.StageSpec(
        name=stage["StageName"], selection=schemas.Selection(
            type=selection["DeviceSubsetType"], device_names=selection.get("DeviceNames"),
            percentage=selection.get("Percentage"),
            name_contains=selection.get("DeviceNameContains")),
        failure_handling_policy=stage.get("DeploymentConfig", {}).get(
            "FailureHandlingPolicy", "ROLLBACK_ON_FAILURE"))


def _selection(selection: schemas.Selection) -> Result:
    return {"DeviceSubsetType": selection.type, "Percentage": selection.percentage,
            "DeviceNames": selection.device_names,
            "DeviceNameContains": selection.name_contains}




def _stage_summary(stage: schemas.StageOut) -> Result:
    counts = stage.device_counts
    failed = counts.get("FAILED", 0)
    return {"StageName": stage.name, "DeviceSelectionConfig": _selection(stage.selection),
            "DeploymentConfig": {"FailureHandlingPolicy": stage.failure_handling_policy},
            "DeploymentStatus": {
                "StageStatus": rollout.stage_state(stage),
                "EdgeDeploymentSuccessInStage": counts.get("DEPLOYED", 0),
                "EdgeDeploymentPendingInStage": sum(counts.get(s, 0) for s in rollout.OPEN),
                "EdgeDeploymentFailedInStage": failed,
                "EdgeDeploymentStatusMessage": f"{failed} device(s) failed; see "
                                               "ListStageDevices" if failed else None,
                "EdgeDeploymentStageStartTime": stage.started_at}}


def _plan_counts(plan: schemas.PlanOut) -> Result:
    def total(statuses: tuple[str, ...]) -> int:
        return sum(stage.device_counts.get(s, 0) for stage in plan.stages for s in statuses)
    return {"EdgeDeploymentSuccess": total(("DEPLOYED",)),
            "EdgeDeploymentPending": total(rollout.OPEN),
            "EdgeDeploymentFailed": total(("FAILED",))}


@_op
def create_edge_deployment_plan(call: Call, p: Params) -> Result:
    """CreateEdgeDeploymentPlan: models by handle, a fleet, stages."""
    plan = rollout.create_plan(call.session, schemas.PlanCreate(
        name=p["EdgeDeploymentPlanName"], fleet=p["DeviceFleetName"],
        models=[schemas.PlanModelSpec(model_handle=m["ModelHandle"],
                                      packaging_job=m["EdgePackagingJobName"])
                for m in p["ModelConfigs"]],
        stages=[_stage_spec(s) for s in p.get("Stages", [])], tags=_tags(p)))
    return {"EdgeDeploymentPlanArn": call.arn("edge-deployment", plan.name)}


@_op
def create_edge_deployment_stage(call: Call, p: Params) -> Result:
    """CreateEdgeDeploymentStage: append stages to a plan."""
    for stage in p["Stages"]:
        rollout.add_stage(call.session, p["EdgeDeploymentPlanName"], _stage_spec(stage))
    return {}


@_op
def start_edge_deployment_stage(call: Call, p: Params) -> Result:
    """StartEdgeDeploymentStage: select the stage's devices; with an MQTT broker configured
    they are told to poll once the response is sent."""
    plan, stage = p["EdgeDeploymentPlanName"], p["StageName"]
    rollout.start_stage(call.session, plan, stage)
    context = call.context
    if context.notifier is not None:
        from edgefleet.fleet import notify

        notifier = context.notifier
        call.after.append(lambda: notify.notify_stage_started(notifier, context.sessions, plan,
                                                              stage))
    return {}


@_op
def stop_edge_deployment_stage(call: Call, p: Params) -> Result:
    """StopEdgeDeploymentStage: devices that have not applied it no longer get it."""
    rollout.stop_stage(call.session, p["EdgeDeploymentPlanName"], p["StageName"])
    return {}


@_op
def describe_edge_deployment_plan(call: Call, p: Params) -> Result:
    """DescribeEdgeDeploymentPlan: models, fleet, device counts, stages (paged)."""
    plan = rollout.describe_plan(call.session, p["EdgeDeploymentPlanName"])
    stages = _page(plan.stages, "DescribeEdgeDeploymentPlan", p, DEFAULT_MAX_STAGES)
    return {"EdgeDeploymentPlanArn": call.arn("edge-deployment", plan.name),
            "EdgeDeploymentPlanName": plan.name,
            "ModelConfigs": [{"ModelHandle": m.model_handle,
                              "EdgePackagingJobName": m.packaging_job} for m in plan.models],
            "DeviceFleetName": plan.fleet, **_plan_counts(plan),
            "Stages": [_stage_summary(s) for s in stages.items],
            "NextToken": stages.next_token, "CreationTime": plan.created_at,
            "LastModifiedTime": plan.updated_at}


@_op
def list_edge_deployment_plans(call: Call, p: Params) -> Result:
    """ListEdgeDeploymentPlans: filters by time, name and fleet name, sorted, paged."""
    items = _time_filters(rollout.list_plans(call.session), p, "created_at", "updated_at")
    items = _contains(_contains(items, p, "NameContains", "name"), p,
                      "DeviceFleetNameContains", "fleet")
    items = _sorted(items, p, {
        "NAME": lambda x: x.name, "DEVICE_FLEET_NAME": lambda x: x.fleet,
        "CREATION_TIME": lambda x: x.created_at, "LAST_MODIFIED_TIME": lambda x: x.updated_at},
        "CREATION_TIME")
    chosen = _page(items, "ListEdgeDeploymentPlans", p)
    return {"EdgeDeploymentPlanSummaries": [
        {"EdgeDeploymentPlanArn": call.arn("edge-deployment", x.name),
         "EdgeDeploymentPlanName": x.name, "DeviceFleetName": x.fleet, **_plan_counts(x),
         "CreationTime": x.created_at, "LastModifiedTime": x.updated_at}
        for x in chosen.items], "NextToken": chosen.next_token}


@_op
def list_stage_devices(call: Call, p: Params) -> Result:
    """ListStageDevices: each device the stage selected, its status and message."""
    plan_name, stage_name = p["EdgeDeploymentPlanName"], p["StageName"]
    plan = rollout.describe_plan(call.session, plan_name)
    devices = rollout.stage_devices(
        call.session, plan_name, stage_name,
        exclude_deployed_in_other_stage=p.get("ExcludeDevicesDeployedInOtherStage", False))
    chosen = _page(devices, "ListStageDevices", p)
    return {"DeviceDeploymentSummaries": [
        {"EdgeDeploymentPlanArn": call.arn("edge-deployment", plan.name),
         "EdgeDeploymentPlanName": plan.name, "StageName": stage_name,
         "DeployedStageName": d.deployed_stage, "DeviceFleetName": plan.fleet,
         "DeviceName": d.device_name, "DeviceArn": call.device_arn(plan.fleet, d.device_name),
         "DeviceDeploymentStatus": d.status,
         "DeviceDeploymentStatusMessage": d.status_message or d.hint,
         "DeploymentStartTime": d.started_at}
        for d in chosen.items], "NextToken": chosen.next_token}


@_op
def delete_edge_deployment_plan(call: Call, p: Params) -> Result:
    """DeleteEdgeDeploymentPlan (ResourceInUse while a stage is in progress)."""
    rollout.delete_plan(call.session, p["EdgeDeploymentPlanName"])
    return {}


@_op
def delete_edge_deployment_stage(call: Call, p: Params) -> Result:
    """DeleteEdgeDeploymentStage (ResourceInUse while it is in progress)."""
    rollout.delete_stage(call.session, p["EdgeDeploymentPlanName"], p["StageName"])
    return {}


#: The operations served, by name.
SERVED = frozenset(HANDLERS)
#: Operations that only read: they run in a read-only session, the others in a transaction.
READ_ONLY = frozenset(name for name in HANDLERS if name.startswith(("Describe", "List", "Get")))
