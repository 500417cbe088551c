"""Service layer for deployment plans and staged rollouts.

A plan names models (model handle -> completed packaging job) and a fleet. Each stage selects
devices of that fleet when it is started (a snapshot: devices registered later are not added):

- ``SELECTION``: the listed device names (all must be in the fleet);
- ``NAMECONTAINS``: every device whose name contains the substring;
- ``PERCENTAGE``: ``ceil(n * p / 100)`` of the fleet's ``n`` devices, chosen by ordering devices
  on SHA-256(deployment name + device name): stable for a stage, different between stages.

Per device a stage goes READYTODEPLOY (selected) -> INPROGRESS (handed out by GetDeployments)
-> DEPLOYED or FAILED (from the DeploymentResult of a later heartbeat); stopping the stage marks
devices that had not reported STOPPED. GetDeployments hands a deployment to a device until the
device reports its result or the stage stops.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from edgefleet.fleet import schemas
from edgefleet.fleet.db.models import (
    DeploymentPlan,
    Device,
    Fleet,
    PackagingJob,
    PlanModel,
    Stage,
    StageDevice,
)
from edgefleet.fleet.fleets import get_fleet
from edgefleet.fleet.packaging import get_job

#: Device statuses in which GetDeployments still hands out the deployment.
OPEN = ("READYTODEPLOY", "INPROGRESS")


def _get_plan(session: Session, name: str) -> DeploymentPlan:
    plan = session.scalars(select(DeploymentPlan).where(DeploymentPlan.name == name)
                           ).one_or_none()
    if plan is None:
        raise NotFound(f"deployment plan {name!r} does not exist; list plans with "
                       "`edgefleet plan list`")
    return plan


def _get_stage(session: Session, plan: DeploymentPlan, name: str) -> Stage:
    stage = session.scalars(select(Stage).where(Stage.plan_id == plan.id, Stage.name == name)
                            ).one_or_none()
    if stage is None:
        raise NotFound(f"deployment plan {plan.name!r} has no stage {name!r}; see its stages "
                       f"with `edgefleet plan describe {plan.name}`")
    return stage


def _deployment_name(plan: str, stage: str) -> str:
    # EntityName: at most 63 characters, letters, digits and hyphens; unique by the random tail.
    return f"{plan[:36]}-{stage[:12]}-{secrets.token_hex(6)}"


def _add_stage(session: Session, plan: DeploymentPlan, spec: schemas.StageSpec,
               position: int) -> None:
    if session.scalar(select(Stage.id).where(Stage.plan_id == plan.id, Stage.name == spec.name)):
        raise AlreadyExists(f"deployment plan {plan.name!r} already has a stage {spec.name!r}; "
                            "stage names must be unique within a plan")
    sel = spec.selection
    session.add(Stage(
        plan_id=plan.id, name=spec.name, position=position,
        deployment_name=_deployment_name(plan.name, spec.name), selection_type=sel.type,
        device_names=sel.device_names, percentage=sel.percentage,
        name_contains=sel.name_contains, failure_handling_policy=spec.failure_handling_policy,
        status="READYTODEPLOY"))
    session.flush()


def create_plan(session: Session, spec: schemas.PlanCreate) -> schemas.PlanOut:
    """Create a deployment plan with its models and (optionally) stages.

    Raises:
        NotFound: the fleet or a packaging job does not exist.
        FailedPrecondition: a packaging job did not complete.
        InvalidArgument: two models share a handle, or two stages a name.
        AlreadyExists: the plan name is taken.
    """
    if session.scalar(select(DeploymentPlan.id).where(DeploymentPlan.name == spec.name)):
        raise AlreadyExists(f"deployment plan {spec.name!r} already exists; pick another name")
    handles = [m.model_handle for m in spec.models]
    repeated = sorted({h for h in handles if handles.count(h) > 1})
    if repeated:
        raise InvalidArgument(f"model handles within a plan must be unique; "
                              f"{', '.join(repeated)} appear more than once")
    fleet = get_fleet(session, spec.fleet)
    jobs = []
    for model in spec.models:
        job = get_job(session, model.packaging_job)
        if job.status != "COMPLETED":
            raise FailedPrecondition(f"packaging job {job.name!r} did not complete "
                                     f"({job.status_message}); package the model again")
        jobs.append(job)
    now = time.time()
    plan = DeploymentPlan(name=spec.name, fleet_id=fleet.id, created_at=now, updated_at=now,
                          tags=spec.tags or None)
    session.add(plan)
    try:
        session.flush()
    except IntegrityError:  # created by a concurrent request since the check above
        raise AlreadyExists(f"deployment plan {spec.name!r} already exists; pick another name"
                            ) from None
    for model, job in zip(spec.models, jobs, strict=True):
        session.add(PlanModel(plan_id=plan.id, model_handle=model.model_handle,
                              packaging_job_id=job.id))
    for position, stage in enumerate(spec.stages):
        _add_stage(session, plan, stage, position)
    return describe_plan(session, spec.name)


def add_stage(session: Session, plan_name: str, spec: schemas.StageSpec) -> schemas.PlanOut:
    """Append a stage to a plan. Raises NotFound or AlreadyExists (stage name taken)."""
    plan = _get_plan(session, plan_name)
    count = session.scalar(select(func.count()).where(Stage.plan_id == plan.id)) or 0
    _add_stage(session, plan, spec, count)
    _touch(plan)
    return describe_plan(session, plan_name)


def _touch(plan: DeploymentPlan) -> None:
    """Record that the plan or one of its stages changed (LastModifiedTime)."""
    plan.updated_at = max(time.time(), (plan.updated_at or plan.created_at) + 1e-6)


def delete_stage(session: Session, plan_name: str, stage_name: str) -> None:
    """Delete a stage that is not in progress (see :func:`delete_plan`), with its per-device
    statuses.

    Raises:
        NotFound: no such plan or stage.
        FailedPrecondition: the stage is in progress (stop it first).
    """
    plan = _get_plan(session, plan_name)
    stage = _get_stage(session, plan, stage_name)
    if _in_progress(session, select(Stage.id).where(Stage.id == stage.id)) is not None:
        raise _still_running(plan_name, stage_name)
    session.delete(stage)
    _touch(plan)
    session.flush()


def _stage_out(session: Session, stage: Stage,
               counts: dict[str, int] | None = None) -> schemas.StageOut:
    """``counts``: the stage's devices per status, when the caller read them already."""
    if counts is None:
        counts = {status: count for status, count in session.execute(
            select(StageDevice.status, func.count()).where(StageDevice.stage_id == stage.id)
            .group_by(StageDevice.status))}
    return schemas.StageOut(
        name=stage.name, position=stage.position, deployment_name=stage.deployment_name,
        selection=schemas.Selection(type=stage.selection_type,  # type: ignore[arg-type]
                                    device_names=stage.device_names,
                                    percentage=stage.percentage,
                                    name_contains=stage.name_contains),
        failure_handling_policy=stage.failure_handling_policy,  # type: ignore[arg-type]
        status=stage.status,  # type: ignore[arg-type]
        started_at=stage.started_at, stopped_at=stage.stopped_at, device_counts=counts)


def stage_state(stage: schemas.StageOut) -> str:
    """A stage's state as an operator (and SageMaker's StageStatus) reads it: a started stage
    whose selected devices have all reported is DEPLOYED, or FAILED if one of them failed;
    otherwise its own status (READYTODEPLOY, INPROGRESS, STOPPED). It stays open either way:
    GetDeployments hands nothing more out for it."""
    counts = stage.device_counts
    if stage.status == "INPROGRESS" and counts and not any(counts.get(s) for s in OPEN):
        return "FAILED" if counts.get("FAILED") else "DEPLOYED"
    return stage.status


def describe_plan(session: Session, name: str) -> schemas.PlanOut:
    """A plan with its models and stages (and per-stage device status counts).

    Raises:
        NotFound: no such plan.
    """
    return _plan_outs(session, [_get_plan(session, name)])[0]


def list_plans(session: Session) -> list[schemas.PlanOut]:
    """Every plan, by name."""
    return _plan_outs(session, list(session.scalars(
        select(DeploymentPlan).order_by(DeploymentPlan.name))))


def _plan_outs(session: Session, plans: list[DeploymentPlan]) -> list[schemas.PlanOut]:
    # Four queries whatever the number of plans and stages: fleets, models, stages, counts.
    if not plans:
        return []
    ids = [plan.id for plan in plans]
    fleet_names = dict(session.execute(
        select(Fleet.id, Fleet.name).where(Fleet.id.in_({plan.fleet_id for plan in plans}))).all())
    models: dict[int, list[schemas.PlanModelSpec]] = {plan_id: [] for plan_id in ids}
    for plan_id, handle, job in session.execute(
            select(PlanModel.plan_id, PlanModel.model_handle, PackagingJob.name)
            .join(PackagingJob, PlanModel.packaging_job_id == PackagingJob.id)
            .where(PlanModel.plan_id.in_(ids)).order_by(PlanModel.model_handle)):
        models[plan_id].append(schemas.PlanModelSpec(model_handle=handle, packaging_job=job))
    stages = list(session.scalars(
        select(Stage).where(Stage.plan_id.in_(ids)).order_by(Stage.position)))
    counts: dict[int, dict[str, int]] = {stage.id: {} for stage in stages}
    if stages:
        for stage_id, status, count in session.execute(
                select(StageDevice.stage_id, StageDevice.status, func.count())
                .where(StageDevice.stage_id.in_(list(counts)))
                .group_by(StageDevice.stage_id, StageDevice.status)):
            counts[stage_id][status] = count
    stage_outs: dict[int, list[schemas.StageOut]] = {plan_id: [] for plan_id in ids}
    for stage in stages:
        stage_outs[stage.plan_id].append(_stage_out(session, stage, counts[stage.id]))
    return [schemas.PlanOut(name=plan.name, fleet=fleet_names.get(plan.fleet_id, ""),
                            created_at=plan.created_at, models=models[plan.id],
                            stages=stage_outs[plan.id],
                            updated_at=plan.updated_at or plan.created_at,
                            tags=plan.tags or {}) for plan in plans]


def delete_plan(session: Session, name: str) -> None:
    """Delete a plan none of whose stages is in progress (a started stage is in progress
    while a device it selected has not reported its result).

    Raises:
        NotFound: no such plan.
        FailedPrecondition: a stage is in progress (stop it first).
    """
    plan = _get_plan(session, name)
    running = _in_progress(session, select(Stage.id).where(Stage.plan_id == plan.id))
    if running is not None:
        raise _still_running(name, running)
    session.delete(plan)


def _in_progress(session: Session, stages: Any) -> str | None:
    """The name of a started stage among ``stages`` (a select of Stage.id) that still has
    devices which have not reported, or None."""
    name: str | None = session.scalar(
        select(Stage.name).join(StageDevice, StageDevice.stage_id == Stage.id)
        .where(Stage.id.in_(stages), Stage.status == "INPROGRESS",
               StageDevice.status.in_(OPEN)).limit(1))
    return name


def _still_running(plan: str, stage: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"stage {stage!r} of plan {plan!r} is in progress (devices have not reported yet); "
        f"stop it first (StopEdgeDeploymentStage, or `edgefleet stage stop {plan} {stage}`)")


def _select_devices(session: Session, plan: DeploymentPlan, stage: Stage) -> list[int]:
    devices = {name: device_id for name, device_id in session.execute(
        select(Device.name, Device.id).where(Device.fleet_id == plan.fleet_id))}
    if stage.selection_type == "SELECTION":
        wanted = stage.device_names or []
        missing = [n for n in wanted if n not in devices]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InvalidArgument(f"{len(missing)} selected devices are not in the plan's fleet: "
                                  f"{shown}; register them or change the stage")
        return [devices[n] for n in dict.fromkeys(wanted)]
    if stage.selection_type == "NAMECONTAINS":
        part = stage.name_contains or ""
        return [i for n, i in devices.items() if part in n]
    ranked = sorted(devices, key=lambda n: hashlib.sha256(
        (stage.deployment_name + n).encode()).digest())
    count = math.ceil(len(ranked) * (stage.percentage or 0) / 100)
    return [devices[n] for n in ranked[:count]]


def _describe_selection(stage: Stage) -> str:
    if stage.selection_type == "SELECTION":
        return f"selection SELECTION of {', '.join(stage.device_names or [])}"
    if stage.selection_type == "NAMECONTAINS":
        return f"selection NAMECONTAINS {stage.name_contains!r}"
    return f"selection PERCENTAGE {stage.percentage}%"


def start_stage(session: Session, plan_name: str, stage_name: str) -> schemas.StageOut:
    """Select the stage's devices and hand them the deployment from now on.

    Raises:
        NotFound: no such plan or stage.
        FailedPrecondition: the stage was started before, or it selects no device.
        InvalidArgument: a SELECTION names devices outside the fleet.
    """
    plan = _get_plan(session, plan_name)
    stage = _get_stage(session, plan, stage_name)
    if stage.status != "READYTODEPLOY":
        raise FailedPrecondition(f"stage {stage_name!r} is {stage.status} and cannot start "
                                 "again; add a new stage to deploy once more")
    now = time.time()
    device_ids = _select_devices(session, plan, stage)
    if not device_ids:
        raise FailedPrecondition(
            f"stage {stage_name!r} of plan {plan_name!r} selects no device "
            f"({_describe_selection(stage)}) of the plan's fleet; register devices in the "
            f"fleet (`edgefleet device list` shows them) or add a stage that selects some "
            f"(`edgefleet plan add-stage {plan_name} STAGE --devices NAME,...`)")
    session.add_all(StageDevice(stage_id=stage.id, device_id=i, status="READYTODEPLOY",
                                status_message="", updated_at=now) for i in device_ids)
    stage.status = "INPROGRESS"
    stage.started_at = now
    _touch(plan)
    session.flush()
    return _stage_out(session, stage)


def stop_stage(session: Session, plan_name: str, stage_name: str) -> schemas.StageOut:
    """Stop handing the stage's deployment out; devices that had not reported become STOPPED.

    Raises:
        NotFound: no such plan or stage.
        FailedPrecondition: the stage is not in progress.
    """
    plan = _get_plan(session, plan_name)
    stage = _get_stage(session, plan, stage_name)
    if stage.status != "INPROGRESS":
        raise FailedPrecondition(f"stage {stage_name!r} is {stage.status}; only a started stage "
                                 "can stop")
    now = time.time()
    session.execute(update(StageDevice).where(StageDevice.stage_id == stage.id,
                                              StageDevice.status.in_(OPEN))
                    .values(status="STOPPED", status_message="stage stopped", updated_at=now))
    stage.status = "STOPPED"
    stage.stopped_at = now
    _touch(plan)
    session.flush()
    return _stage_out(session, stage)


def _stage_hint(status: str, latest_heartbeat: float | None,
                started_at: float | None) -> str | None:
    """Why a device of a started stage may be stuck: it has not fetched the deployment and/or
    not sent a heartbeat since the stage started."""
    if started_at is None or status not in OPEN:
        return None
    silent = latest_heartbeat is None or latest_heartbeat < started_at
    started = dt.datetime.fromtimestamp(started_at, dt.UTC).isoformat(timespec="seconds")
    if status == "READYTODEPLOY":
        hint = (f"has not fetched the deployment since the stage started at {started}"
                + (" and sent no heartbeat since" if silent else ""))
        return (hint + "; check that the agent runs with this device's config and its poll "
                "interval (edgefleet_deployment_poll_seconds; without it the agent polls once "
                "a day)")
    if silent:
        return (f"fetched the deployment but sent no heartbeat since the stage started at "
                f"{started}; check the agent's log and edgefleet_heartbeat_interval_seconds")
    return None


def stage_devices(session: Session, plan_name: str, stage_name: str, *,
                  exclude_deployed_in_other_stage: bool = False) -> list[schemas.StageDeviceOut]:
    """Every device the stage selected, with its status and latest heartbeat, by device name;
    ``hint`` says when the device has not polled or sent a heartbeat since the stage started.

    ``deployed_stage`` is the stage of this plan that the device DEPLOYED most recently; with
    ``exclude_deployed_in_other_stage`` devices whose ``deployed_stage`` is another stage are
    left out (SageMaker's ExcludeDevicesDeployedInOtherStage).
    """
    plan = _get_plan(session, plan_name)
    stage = _get_stage(session, plan, stage_name)
    rows = session.execute(
        select(Device.id, Device.name, Device.last_heartbeat_at, StageDevice)
        .join(Device, StageDevice.device_id == Device.id)
        .where(StageDevice.stage_id == stage.id).order_by(Device.name)).all()
    deployed: dict[int, str] = {}
    for device_id, name in session.execute(
            select(StageDevice.device_id, Stage.name)
            .join(Stage, StageDevice.stage_id == Stage.id)
            .where(Stage.plan_id == plan.id, StageDevice.status == "DEPLOYED")
            .order_by(StageDevice.updated_at)):
        deployed[device_id] = name  # the latest wins
    return [schemas.StageDeviceOut(device_name=n, status=sd.status,
                                   status_message=sd.status_message, models=sd.models or [],
                                   updated_at=sd.updated_at, latest_heartbeat=beat,
                                   hint=_stage_hint(sd.status, beat, stage.started_at),
                                   deployed_stage=deployed.get(i), started_at=stage.started_at)
            for i, n, beat, sd in rows
            if not (exclude_deployed_in_other_stage and deployed.get(i) not in (None,
                                                                               stage.name))]


@dataclass(frozen=True)
class Deployment:
    """A deployment to hand to one device: GetDeployments' EdgeDeployment, minus URLs."""

    deployment_name: str
    failure_handling_policy: str
    models: list[tuple[str, str, str]]
    """(model handle, package object key, SHA-1 of the package) per model."""


def open_deployments(session: Session, device_id: int) -> list[Deployment]:
    """The deployments the device should apply, oldest stage first; marks them INPROGRESS."""
    rows = session.execute(
        select(Stage.id, Stage.deployment_name, Stage.failure_handling_policy,
               PlanModel.model_handle, PackagingJob.artifact_key, PackagingJob.checksum_sha1)
        .join(StageDevice, StageDevice.stage_id == Stage.id)
        .join(PlanModel, PlanModel.plan_id == Stage.plan_id)
        .join(PackagingJob, PlanModel.packaging_job_id == PackagingJob.id)
        .where(StageDevice.device_id == device_id, StageDevice.status.in_(OPEN),
               Stage.status == "INPROGRESS")
        .order_by(Stage.started_at, Stage.id, PlanModel.model_handle)).all()
    found: dict[int, Deployment] = {}
    for stage_id, name, policy, handle, key, sha1 in rows:
        found.setdefault(stage_id, Deployment(name, policy, [])).models.append(
            (handle, key or "", sha1 or ""))
    if found:
        session.execute(update(StageDevice).where(
            StageDevice.device_id == device_id, StageDevice.stage_id.in_(found),
            StageDevice.status == "READYTODEPLOY").values(status="INPROGRESS",
                                                          updated_at=time.time()))
    return list(found.values())


def may_download(session: Session, device_id: int, key: str) -> bool:
    """Whether a stage that selected the device deploys the package stored at ``key``."""
    return session.scalar(
        select(StageDevice.stage_id)
        .join(Stage, StageDevice.stage_id == Stage.id)
        .join(PlanModel, PlanModel.plan_id == Stage.plan_id)
        .join(PackagingJob, PlanModel.packaging_job_id == PackagingJob.id)
        .where(StageDevice.device_id == device_id, PackagingJob.artifact_key == key)
        .limit(1)) is not None


def record_result(session: Session, device_id: int, result: schemas.EdgeDeploymentResult,
                  now: float) -> bool:
    """Store a heartbeat's DeploymentResult as the device's status in that stage.

    DEPLOYED when every model reports SUCCESS and the overall status is not a failure, else
    FAILED; the message joins the overall message and each failed model's reasons (including
    why a rollback failed). Returns False when the deployment name is not one of this device's
    stages (an old or foreign result; ignored).
    """
    stage_id = session.scalar(select(Stage.id).where(
        Stage.deployment_name == result.DeploymentName))
    if stage_id is None:
        return False
    failed = [m for m in result.DeploymentModels if m.Status != "SUCCESS"]
    overall_failed = (result.DeploymentStatus or "").upper() in ("FAIL", "FAILED")
    status = "FAILED" if failed or overall_failed else "DEPLOYED"
    reasons = [result.DeploymentStatusMessage or ""] + [
        f"{m.ModelHandle}: {m.StatusReason or 'failed'}"
        + (f" (rollback failed: {m.RollbackFailureReason})" if m.RollbackFailureReason else "")
        for m in failed]
    models: list[dict[str, Any]] = [m.model_dump(exclude_none=True)
                                    for m in result.DeploymentModels]
    changed = session.execute(
        update(StageDevice).where(StageDevice.stage_id == stage_id,
                                  StageDevice.device_id == device_id)
        .values(status=status, status_message="; ".join(r for r in reasons if r),
                models=models, updated_at=now))
    return bool(getattr(changed, "rowcount", 0))

