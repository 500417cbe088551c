"""Service layer of the device API (``sagemaker-edge``): who is calling, and what it may do.

Every request is signed with SigV4 by the device's own credentials. :func:`lookup_credentials`
finds the device by access key id and decrypts its secret (:class:`CredentialCache` keeps that
for a few seconds), :func:`authenticate` checks the signature with it, and :func:`require_self`
refuses a request that names another device (403, the same answer whether that device exists or
not, so nothing leaks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session

from edgefleet.fleet import history, rollout, schemas
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import Base, Device, Fleet
from edgefleet.fleet.sigv4 import (
    AccessDenied,
    Authorization,
    SignedRequest,
    Unauthenticated,
    verify,
)
from edgefleet.wire.edge import SIGNING_NAME


@dataclass(frozen=True)
class DeviceIdentity:
    """The device a request was signed by."""

    device_id: int
    name: str
    fleet: str


@dataclass(frozen=True)
class DeviceCredentials:
    """A device's identity and its decrypted secret access key (kept in memory only)."""

    identity: DeviceIdentity
    secret: str


def lookup_credentials(session: Session, key: ServerKey,
                       access_key_id: str) -> DeviceCredentials | None:
    """The credentials of ``access_key_id``, or None if no registered device has it."""
    row = session.execute(
        select(Device.id, Device.name, Device.secret_enc, Fleet.name)
        .join(Fleet, Device.fleet_id == Fleet.id)
        .where(Device.access_key_id == access_key_id)).one_or_none()
    if row is None:
        return None
    device_id, name, secret_enc, fleet = row
    return DeviceCredentials(DeviceIdentity(device_id, name, fleet),
                             key.decrypt(secret_enc, access_key_id).decode())


class CredentialCache:
    """Known devices' credentials for ``ttl_seconds`` (0 disables), so that frequent heartbeats
    skip a database read. A deregistered device's credentials keep working at most that long.
    Thread-safe; unknown access keys are never cached."""

    def __init__(self, ttl_seconds: float, max_entries: int = 200_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, DeviceCredentials]] = {}
        self._lock = threading.Lock()

    def get(self, access_key_id: str) -> DeviceCredentials | None:
        """The cached credentials, or None when absent or older than the TTL."""
        entry = self._entries.get(access_key_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def forget(self, access_key_id: str) -> None:
        """Drop one device's credentials (after it was deregistered through this process)."""
        with self._lock:
            self._entries.pop(access_key_id, None)

    def put(self, access_key_id: str, credentials: DeviceCredentials) -> None:
        """Remember credentials until the TTL passes (no-op when the TTL is 0)."""
        if self._ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[access_key_id] = (time.monotonic() + self._ttl, credentials)


def authenticate(credentials: DeviceCredentials | None, request: SignedRequest,
                 auth: Authorization, *, max_skew_seconds: float) -> DeviceIdentity:
    """The device that signed ``request``.

    Raises:
        Unauthenticated: unknown access key id (including deregistered devices), wrong
            signature, or a time outside ``max_skew_seconds``.
    """
    if credentials is None:
        raise Unauthenticated("unknown access key id: the device's credentials were rotated "
                              "(install the new agent config and send the agent SIGHUP) or "
                              "the device was deregistered (register it again)")
    verify(request, auth, credentials.secret, service=SIGNING_NAME,
           max_skew_seconds=max_skew_seconds)
    return credentials.identity


def require_self(identity: DeviceIdentity, device_name: str, fleet_name: str) -> None:
    """Refuse a request about any device but the caller.

    Raises:
        AccessDenied: ``device_name``/``fleet_name`` are not the caller's.
    """
    if device_name != identity.name or fleet_name != identity.fleet:
        raise AccessDenied("these credentials may only act as the device they were issued to; "
                           "check sagemaker_edge_core_device_name and "
                           "sagemaker_edge_core_device_fleet_name in the agent config")


def registration(identity: DeviceIdentity, ref: schemas.DeviceRef,
                 cache_ttl_seconds: int) -> dict[str, Any]:
    """GetDeviceRegistration's answer for the caller."""
    require_self(identity, ref.DeviceName, ref.DeviceFleetName)
    return {"DeviceRegistration": "REGISTERED", "CacheTTL": str(cache_ttl_seconds)}


def deployments(session: Session, identity: DeviceIdentity, ref: schemas.DeviceRef,
                url_for: Callable[[str], str]) -> dict[str, Any]:
    """GetDeployments' answer: the caller's open deployments, with download URLs.

    Args:
        url_for: maps a package's object key to the URL the device downloads it from.
    """
    require_self(identity, ref.DeviceName, ref.DeviceFleetName)
    return {"Deployments": [
        {"DeploymentName": d.deployment_name, "Type": "Model",
         "FailureHandlingPolicy": d.failure_handling_policy,
         "Definitions": [{"ModelHandle": handle, "S3Url": url_for(key),
                          "Checksum": {"Type": "SHA1", "Sum": sha1}, "State": "DEPLOY"}
                         for handle, key, sha1 in d.models]}
        for d in rollout.open_deployments(session, identity.device_id)]}


@dataclass(frozen=True)
class ReceivedHeartbeat:
    """A SendHeartbeat from an authenticated device, received at ``received_at`` (epoch s)."""

    device_id: int
    beat: schemas.Heartbeat
    received_at: float


def _metrics(metrics: list[schemas.EdgeMetric]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in metrics]


def write_heartbeats(session: Session, received: Sequence[ReceivedHeartbeat],
                     samples: history.HistoryPruner | None = None) -> None:
    """Store heartbeats (at most one per device): agent version and metrics, the models each
    device runs (replacing its previous list), and DeploymentResults. Heartbeats of devices
    deregistered meanwhile are dropped. With ``samples``, a device's first heartbeat of each
    sampling period also goes into the heartbeat history (one bulk insert for the batch), and
    expired history is pruned now and then (see :mod:`edgefleet.fleet.history`).

    On PostgreSQL a batch without DeploymentResults commits asynchronously
    (``synchronous_commit = off``): a crash of the database may lose the last heartbeats, which
    the next ones replace anyway. Deployment results always commit durably.
    """
    if session.get_bind().dialect.name == "postgresql" and all(
            r.beat.DeploymentResult is None for r in received):
        session.execute(text("SET LOCAL synchronous_commit = off"))
    # Row locks (PostgreSQL) in id order keep a concurrent deregistration from deleting a
    # device between this check and the model inserts, without deadlocks between instances.
    # The previous heartbeat times come with the same query: they decide the history samples.
    previous: dict[int, float | None] = {device_id: at for device_id, at in session.execute(
        select(Device.id, Device.last_heartbeat_at).where(
            Device.id.in_([r.device_id for r in received])).order_by(Device.id)
        .with_for_update())}
    alive = set(previous)
    kept = [r for r in received if r.device_id in alive]
    if not kept:
        return
    # Core statements on the tables: executemany without the ORM's per-row bookkeeping.
    devices, device_models = Base.metadata.tables["devices"], Base.metadata.tables["device_models"]
    session.execute(
        update(devices).where(devices.c.id == bindparam("device"))
        .values(last_heartbeat_at=bindparam("at"), agent_version=bindparam("version"),
                agent_metrics=bindparam("metrics")),
        [{"device": r.device_id, "at": r.received_at, "version": r.beat.AgentVersion,
          "metrics": _metrics(r.beat.AgentMetrics)} for r in kept])
    session.execute(delete(device_models).where(device_models.c.device_id.in_(alive)))
    models = [
        {"device_id": r.device_id, "model_name": m.ModelName, "model_version": m.ModelVersion,
         "latest_sample_time": m.LatestSampleTime, "latest_inference": m.LatestInference,
         "metrics": _metrics(m.ModelMetrics)}
        for r in kept for m in {m.ModelName: m for m in r.beat.Models if m.ModelName}.values()]
    if models:
        session.execute(insert(device_models), models)
    if samples is not None:
        rows = [history.sample_row(r.device_id, r.beat, r.received_at, previous[r.device_id])
                for r in kept
                if samples.policy.is_sample(r.received_at, previous[r.device_id])]
        if rows:
            session.execute(insert(Base.metadata.tables["heartbeat_samples"]), rows)
        samples.maybe_prune(session, max(r.received_at for r in kept))
    for r in kept:
        if r.beat.DeploymentResult is not None:
            rollout.record_result(session, r.device_id, r.beat.DeploymentResult, r.received_at)
