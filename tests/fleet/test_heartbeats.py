"""Group commit of heartbeats (HeartbeatWriter) on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import wait

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet import fleets, schemas
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import Device, DeviceModel
from edgefleet.fleet.edge import (
    CredentialCache,
    DeviceCredentials,
    DeviceIdentity,
    ReceivedHeartbeat,
)
from edgefleet.fleet.heartbeats import HeartbeatWriter


def _beat(name: str, version: str, result: str | None = None) -> schemas.Heartbeat:
    extra = {"DeploymentResult": {"DeploymentName": result}} if result else {}
    return schemas.Heartbeat.model_validate({
        "DeviceName": name, "DeviceFleetName": "wind", "AgentVersion": version,
        "Models": [{"ModelName": "anomaly", "ModelVersion": version}], **extra})


def test_batches_keep_the_latest_heartbeat_per_device(sessions: sessionmaker[Session],
                                                      server_key: ServerKey) -> None:
    with sessions.begin() as s:
        fleets.create_fleet(s, schemas.FleetCreate(name="wind", output_location="x"))
        for i in range(50):
            fleets.register_device(s, server_key, schemas.DeviceRegister(name=f"d{i}",
                                                                         fleet="wind"),
                                   endpoint="x", region="r")
    with sessions() as s:
        ids = dict(s.execute(select(Device.name, Device.id)).all())
    writer = HeartbeatWriter(sessions, interval_seconds=0.05)
    now = time.time()
    futures = [writer.submit(ReceivedHeartbeat(ids[f"d{i}"], _beat(f"d{i}", v), now))
               for v in ("1.0", "2.0") for i in range(50)]
    futures.append(writer.submit(ReceivedHeartbeat(ids["d0"], _beat("d0", "3.0", "x-1"), now)))
    futures.append(writer.submit(ReceivedHeartbeat(ids["d0"], _beat("d0", "4.0"), now)))
    with sessions.begin() as s:
        fleets.deregister_device(s, "d49")
    futures.append(writer.submit(ReceivedHeartbeat(ids["d49"], _beat("d49", "5.0"), now)))
    done, pending = wait(futures, timeout=30)
    assert not pending and all(f.exception() is None for f in done)
    writer.close()
    with sessions() as s:
        versions = dict(s.execute(select(Device.name, Device.agent_version)).all())
        models = s.scalar(select(DeviceModel.model_version).where(
            DeviceModel.device_id == ids["d0"]))
    assert versions["d0"] == "4.0" and models == "4.0"
    assert {versions[f"d{i}"] for i in range(1, 49)} == {"2.0"}
    assert "d49" not in versions


def test_credential_cache_expires_and_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = DeviceCredentials(DeviceIdentity(1, "d", "f"), "secret")
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache = CredentialCache(5.0)
    cache.put("AK", creds)
    assert cache.get("AK") is creds
    clock[0] += 6
    assert cache.get("AK") is None
    cache.put("AK", creds)
    cache.forget("AK")
    assert cache.get("AK") is None
    off = CredentialCache(0)
    off.put("AK", creds)
    assert off.get("AK") is None
