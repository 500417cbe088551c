"""The fleet report (GetDeviceFleetReport's meaning), computed with three aggregate queries.

Definitions, with ``window`` = ``connected_window_seconds`` and ``cutoff`` = now - window:

- *connected*: the device's latest heartbeat is at or after ``cutoff``;
- per model version (as the latest heartbeats report it): *offline* devices report it but are
  not connected; *connected* ones are; *active* ones are connected and their latest inference
  with it is at or after ``cutoff``; *sampling* ones are connected and their latest captured
  sample is at or after ``cutoff``.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from edgefleet.fleet import schemas
from edgefleet.fleet.db.models import Device, DeviceModel
from edgefleet.fleet.fleets import get_fleet


def fleet_report(session: Session, fleet_name: str, *, window_seconds: float,
                 now: float | None = None) -> schemas.FleetReport:
    """Agent versions with counts and per-model device counts of one fleet.

    Args:
        fleet_name: the fleet.
        window_seconds: how recent a heartbeat (inference, sample) must be, in seconds.
        now: the report time in epoch seconds (default: now).

    Raises:
        NotFound: no such fleet.
    """
    fleet = get_fleet(session, fleet_name)
    generated = time.time() if now is None else now
    cutoff = generated - window_seconds
    connected = Device.last_heartbeat_at >= cutoff

    registered, online = session.execute(
        select(func.count(), func.count(case((connected, 1))))
        .where(Device.fleet_id == fleet.id)).one()
    versions = session.execute(
        select(Device.agent_version, func.count()).where(
            Device.fleet_id == fleet.id, Device.agent_version.is_not(None))
        .group_by(Device.agent_version).order_by(Device.agent_version)).all()
    stats = session.execute(
        select(DeviceModel.model_name, DeviceModel.model_version,
               func.count(case((connected, None), else_=1)),
               func.count(case((connected, 1))),
               func.count(case((and_(connected, DeviceModel.latest_inference >= cutoff), 1))),
               func.count(case((and_(connected, DeviceModel.latest_sample_time >= cutoff), 1))))
        .join(Device, DeviceModel.device_id == Device.id)
        .where(Device.fleet_id == fleet.id)
        .group_by(DeviceModel.model_name, DeviceModel.model_version)
        .order_by(DeviceModel.model_name, DeviceModel.model_version)).all()
    return schemas.FleetReport(
        fleet=fleet.name, description=fleet.description, output_location=fleet.output_location,
        generated_at=generated, connected_window_seconds=window_seconds,
        registered_device_count=registered, connected_device_count=online,
        agent_versions=[schemas.AgentVersionCount(version=v or "", agent_count=c)
                        for v, c in versions],
        model_stats=[schemas.ModelStat(
            model_name=n, model_version=v, offline_device_count=off,
            connected_device_count=con, active_device_count=act, sampling_device_count=smp)
            for n, v, off, con, act, smp in stats])
