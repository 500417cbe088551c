"""The dashboard's own aggregate queries: what the fleet services do not answer already.

Every function costs a fixed number of queries whatever the fleet's size (a page of device
tiles: three), and none loads more rows than it shows. States use the fleet report's
definition (:mod:`edgefleet.fleet.reports`): *online* is a heartbeat at or after
``now - connected_window_seconds``; *offline* an older one; *never* no heartbeat yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from edgefleet.fleet.db.models import DeploymentPlan, Device, DeviceModel, Fleet, Stage, StageDevice

State = Literal["online", "offline", "never"]
STATES: tuple[State, ...] = ("online", "offline", "never")


@dataclass(frozen=True)
class StateCounts:
    """Devices of a fleet per state."""

    registered: int
    online: int
    offline: int
    never: int


@dataclass
class DeviceTile:
    """What a device's tile shows: state, latest heartbeat (epoch s), agent version, the
    models it serves (name, version) and its status in the latest stage that selected it."""

    name: str
    state: State
    latest_heartbeat: float | None
    agent_version: str | None
    models: list[tuple[str, str | None]] = field(default_factory=list)
    deployment: str | None = None


@dataclass(frozen=True)
class Failure:
    """A device that failed a stage (and, under ROLLBACK_ON_FAILURE, rolled back), with the
    reasons the agent reported (epoch s in ``at``)."""

    device: str
    plan: str
    stage: str
    at: float
    message: str


def fleet_names(session: Session) -> list[str]:
    """Every fleet name, sorted."""
    return list(session.scalars(select(Fleet.name).order_by(Fleet.name)))


def _state_filter(state: State | None, cutoff: float) -> ColumnElement[bool] | None:
    if state == "online":
        return Device.last_heartbeat_at >= cutoff
    if state == "offline":
        return Device.last_heartbeat_at < cutoff
    if state == "never":
        return Device.last_heartbeat_at.is_(None)
    return None


def state_counts(session: Session, fleet_id: int, cutoff: float) -> StateCounts:
    """Devices of the fleet per state (one aggregate query on the fleet/heartbeat index)."""
    registered, online, never = session.execute(
        select(func.count(), func.count(case((Device.last_heartbeat_at >= cutoff, 1))),
               func.count(case((Device.last_heartbeat_at.is_(None), 1))))
        .where(Device.fleet_id == fleet_id)).one()
    return StateCounts(registered, online, registered - online - never, never)


def device_tiles(session: Session, fleet_id: int, cutoff: float, *, state: State | None,
                 offset: int, limit: int) -> list[DeviceTile]:
    """One page of the fleet's devices by name, optionally of one state."""
    query = (select(Device.id, Device.name, Device.last_heartbeat_at, Device.agent_version)
             .where(Device.fleet_id == fleet_id).order_by(Device.name)
             .offset(offset).limit(limit))
    condition = _state_filter(state, cutoff)
    if condition is not None:
        query = query.where(condition)
    tiles: dict[int, DeviceTile] = {}
    for device_id, name, latest, version in session.execute(query):
        tiles[device_id] = DeviceTile(
            name, "never" if latest is None else "online" if latest >= cutoff else "offline",
            latest, version)
    if not tiles:
        return []
    for device_id, model, model_version in session.execute(
            select(DeviceModel.device_id, DeviceModel.model_name, DeviceModel.model_version)
            .where(DeviceModel.device_id.in_(tiles)).order_by(DeviceModel.model_name)):
        tiles[device_id].models.append((model, model_version))
    for device_id, status in session.execute(
            select(StageDevice.device_id, StageDevice.status)
            .join(Stage, StageDevice.stage_id == Stage.id)
            .where(StageDevice.device_id.in_(tiles))
            .order_by(Stage.started_at, Stage.id)):
        tiles[device_id].deployment = status  # ordered: the latest stage's status stays
    return list(tiles.values())


def recent_failures(session: Session, limit: int = 20) -> list[Failure]:
    """The latest failed stage devices, newest first."""
    rows = session.execute(
        select(Device.name, DeploymentPlan.name, Stage.name, StageDevice.updated_at,
               StageDevice.status_message)
        .join(Stage, StageDevice.stage_id == Stage.id)
        .join(DeploymentPlan, Stage.plan_id == DeploymentPlan.id)
        .join(Device, StageDevice.device_id == Device.id)
        .where(StageDevice.status == "FAILED")
        .order_by(StageDevice.updated_at.desc()).limit(limit))
    return [Failure(*row) for row in rows]


def device_id(session: Session, name: str) -> int | None:
    """The id of device ``name``, or None."""
    return session.scalar(select(Device.id).where(Device.name == name))

