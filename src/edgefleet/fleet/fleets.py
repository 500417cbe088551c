"""Service layer for device fleets and devices: create, register, deregister, describe, list.

Every function takes an open :class:`~sqlalchemy.orm.Session` and leaves committing to the
caller's ``with sessions.begin():`` block; errors are :mod:`edgefleet.errors` classes whose
message says what was wrong and what to do.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from edgefleet.fleet import schemas
from edgefleet.fleet.crypto import ServerKey, new_access_key_id, new_secret
from edgefleet.fleet.db.models import (
    DeploymentPlan,
    Device,
    DeviceModel,
    Fleet,
    Stage,
    StageDevice,
)
from edgefleet.fleet.settings import AGENT_POLL_SECONDS
from edgefleet.wire.mqtt import DEFAULT_TOPIC_PREFIX

#: Largest page of ``list_devices``.
MAX_PAGE = 1000


def get_fleet(session: Session, name: str) -> Fleet:
    """The fleet called ``name``. Raises NotFound."""
    fleet = session.scalars(select(Fleet).where(Fleet.name == name)).one_or_none()
    if fleet is None:
        raise NotFound(f"device fleet {name!r} does not exist; create it with "
                       "`edgefleet fleet create` or list fleets with `edgefleet fleet list`")
    return fleet


def _fleet_out(session: Session, fleet: Fleet, count: int | None = None) -> schemas.FleetOut:
    if count is None:
        count = session.scalar(select(func.count()).where(Device.fleet_id == fleet.id)) or 0
    return schemas.FleetOut(name=fleet.name, description=fleet.description,
                            output_location=fleet.output_location,
                            created_at=fleet.created_at, device_count=count,
                            updated_at=fleet.updated_at or fleet.created_at,
                            role_arn=fleet.role_arn, kms_key_id=fleet.kms_key_id,
                            iot_role_alias=fleet.iot_role_alias, tags=fleet.tags or {})


def iot_role_alias(fleet_name: str, *, region: str, account_id: str) -> str:
    """The IoT role alias ARN SageMaker names for a fleet with EnableIotRoleAlias
    ("SageMakerEdge-{DeviceFleetName}", botocore's documentation of the member)."""
    return f"arn:aws:iot:{region}:{account_id}:rolealias/SageMakerEdge-{fleet_name}"


def create_fleet(session: Session, spec: schemas.FleetCreate, *, region: str = "us-east-1",
                 account_id: str = "000000000000") -> schemas.FleetOut:
    """Create a device fleet. Raises AlreadyExists if the name is taken.

    ``region`` and ``account_id`` name the IoT role alias when ``spec.enable_iot_role_alias``.
    """
    if session.scalar(select(Fleet.id).where(Fleet.name == spec.name)) is not None:
        raise AlreadyExists(f"device fleet {spec.name!r} already exists; pick another name")
    now = time.time()
    alias = (iot_role_alias(spec.name, region=region, account_id=account_id)
             if spec.enable_iot_role_alias else None)
    fleet = Fleet(name=spec.name, description=spec.description,
                  output_location=spec.output_location, created_at=now, updated_at=now,
                  role_arn=spec.role_arn, kms_key_id=spec.kms_key_id, iot_role_alias=alias,
                  tags=spec.tags or None)
    session.add(fleet)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(f"device fleet {spec.name!r} already exists; pick another name"
                            ) from None
    return _fleet_out(session, fleet)


def update_fleet(session: Session, name: str, spec: schemas.FleetUpdate, *,
                 region: str = "us-east-1", account_id: str = "000000000000"
                 ) -> schemas.FleetOut:
    """Change a fleet's description, output location, role, KMS key or IoT role alias (members
    left None keep their value). Raises NotFound."""
    fleet = get_fleet(session, name)
    for member in ("description", "output_location", "role_arn", "kms_key_id"):
        value = getattr(spec, member)
        if value is not None:
            setattr(fleet, member, value)
    if spec.enable_iot_role_alias is not None:
        fleet.iot_role_alias = (iot_role_alias(name, region=region, account_id=account_id)
                                if spec.enable_iot_role_alias else None)
    fleet.updated_at = max(time.time(), (fleet.updated_at or 0.0) + 1e-6)
    session.flush()
    return _fleet_out(session, fleet)


def describe_fleet(session: Session, name: str) -> schemas.FleetOut:
    """The fleet called ``name`` with its device count. Raises NotFound."""
    return _fleet_out(session, get_fleet(session, name))


def list_fleets(session: Session) -> list[schemas.FleetOut]:
    """Every fleet, by name (two queries, whatever the number of fleets)."""
    counts: dict[int, int] = {fleet_id: count for fleet_id, count in session.execute(
        select(Device.fleet_id, func.count()).group_by(Device.fleet_id))}
    return [_fleet_out(session, fleet, counts.get(fleet.id, 0))
            for fleet in session.scalars(select(Fleet).order_by(Fleet.name))]


def delete_fleet(session: Session, name: str) -> None:
    """Delete an empty fleet.

    Raises:
        NotFound: no such fleet.
        FailedPrecondition: devices or deployment plans still refer to it.
    """
    fleet = get_fleet(session, name)
    if session.scalar(select(Device.id).where(Device.fleet_id == fleet.id).limit(1)):
        raise FailedPrecondition(f"device fleet {name!r} still has devices; deregister them "
                                 "first (`edgefleet device deregister`)")
    if session.scalar(select(DeploymentPlan.id).where(DeploymentPlan.fleet_id == fleet.id)
                      .limit(1)):
        raise FailedPrecondition(f"deployment plans still target fleet {name!r}; delete them "
                                 "first (`edgefleet plan delete`)")
    session.delete(fleet)


def agent_config(device: Device, fleet: Fleet, secret: str, *, endpoint: str, region: str,
                 root_certs_path: str, poll_seconds: float = AGENT_POLL_SECONDS,
                 mqtt_url: str | None = None,
                 mqtt_topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> dict[str, Any]:
    """The agent config file of a device: the flat JSON the agent reads (AgentConfig keys).

    It polls for deployments every ``poll_seconds``, keeps its state in its own folder
    ``<device>-data`` (relative to where the agent starts; the CLI makes it absolute, beside the
    config file), and, when the server notifies over MQTT, subscribes to the same broker and
    topic prefix.
    """
    config: dict[str, Any] = {
        "sagemaker_edge_core_device_name": device.name,
        "sagemaker_edge_core_device_fleet_name": fleet.name,
        "sagemaker_edge_core_endpoint_override": endpoint,
        "sagemaker_edge_core_region": region,
        "sagemaker_edge_core_root_certs_path": root_certs_path,
        "sagemaker_edge_provider_provider": "Aws",
        "sagemaker_edge_local_data_root_path": f"{device.name}-data",
        "edgefleet_deployment_poll_seconds": poll_seconds,
        "edgefleet_control_access_key_id": device.access_key_id,
        "edgefleet_control_secret_access_key": secret,
    }
    if mqtt_url is not None:
        config["edgefleet_mqtt_url"] = mqtt_url
        config["edgefleet_mqtt_topic_prefix"] = mqtt_topic_prefix
    return config


def register_device(session: Session, key: ServerKey, spec: schemas.DeviceRegister, *,
                    endpoint: str, region: str, poll_seconds: float = AGENT_POLL_SECONDS,
                    mqtt_url: str | None = None,
                    mqtt_topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> schemas.DeviceRegistered:
    """Register a device in a fleet and create its credentials.

    Args:
        session: open session.
        key: the server key, which encrypts the new secret at rest.
        spec: name, fleet, description, IoT thing name, root-certs folder for the config.
        endpoint: the control plane URL written into the agent config.
        region: the region written into the agent config.
        poll_seconds: the agent config's ``edgefleet_deployment_poll_seconds``.
        mqtt_url: the server's MQTT broker, if any: written as ``edgefleet_mqtt_url`` together
            with ``mqtt_topic_prefix`` (``edgefleet_mqtt_topic_prefix``).

    Returns:
        The device, its credentials (the only time the secret is returned) and its agent config.

    Raises:
        NotFound: the fleet does not exist.
        AlreadyExists: a device with that name is registered (in any fleet).
    """
    fleet = get_fleet(session, spec.fleet)
    taken = f"device {spec.name!r} is already registered; deregister it first or pick another name"
    if session.scalar(select(Device.id).where(Device.name == spec.name)) is not None:
        raise AlreadyExists(taken)
    secret = new_secret()
    access_key_id = new_access_key_id()
    device = Device(
        name=spec.name, fleet_id=fleet.id, description=spec.description,
        iot_thing_name=spec.iot_thing_name, access_key_id=access_key_id,
        secret_enc=key.encrypt(secret.encode(), access_key_id), registered_at=time.time())
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(taken) from None
    return schemas.DeviceRegistered(
        device=_device_summary(device, fleet.name),
        credentials=schemas.Credentials(access_key_id=access_key_id, secret_access_key=secret),
        agent_config=agent_config(device, fleet, secret, endpoint=endpoint, region=region,
                                  root_certs_path=spec.root_certs_path,
                                  poll_seconds=poll_seconds, mqtt_url=mqtt_url,
                                  mqtt_topic_prefix=mqtt_topic_prefix))


def register_devices(session: Session, key: ServerKey, fleet_name: str,
                     specs: list[schemas.DeviceRegister]) -> list[schemas.DeviceSummary]:
    """Register several devices in one fleet, all or none (SageMaker's RegisterDevices: no
    secrets are returned; :func:`issue_credentials` gives a device its agent config).

    Raises:
        NotFound: the fleet does not exist.
        AlreadyExists: a device name is registered already, or given twice.
        InvalidArgument: a spec names another fleet.
    """
    fleet = get_fleet(session, fleet_name)
    names = [spec.name for spec in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AlreadyExists(f"devices {', '.join(repeated)} are given more than once")
    taken = session.scalars(select(Device.name).where(Device.name.in_(names))).all()
    if taken:
        raise AlreadyExists(f"devices already registered: {', '.join(sorted(taken)[:10])}; "
                            "deregister them first or pick other names")
    devices = []
    now = time.time()
    for spec in specs:
        if spec.fleet != fleet_name:
            raise InvalidArgument(f"device {spec.name!r} names fleet {spec.fleet!r}, not "
                                  f"{fleet_name!r}")
        access_key_id = new_access_key_id()
        devices.append(Device(
            name=spec.name, fleet_id=fleet.id, description=spec.description,
            iot_thing_name=spec.iot_thing_name, access_key_id=access_key_id,
            secret_enc=key.encrypt(new_secret().encode(), access_key_id), registered_at=now))
    session.add_all(devices)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists("a device of this request was registered meanwhile; retry") from None
    return [_device_summary(d, fleet.name) for d in devices]


def update_devices(session: Session, fleet_name: str,
                   updates: list[schemas.DeviceUpdate]) -> None:
    """Change the description and IoT thing name of devices of one fleet (None: unchanged).

    Raises:
        NotFound: the fleet does not exist, or a device is not registered in it.
    """
    fleet = get_fleet(session, fleet_name)
    for update in updates:
        device = session.scalars(select(Device).where(
            Device.name == update.name, Device.fleet_id == fleet.id)).one_or_none()
        if device is None:
            raise NotFound(f"device {update.name!r} is not registered in fleet {fleet_name!r}")
        if update.description is not None:
            device.description = update.description
        if update.iot_thing_name is not None:
            device.iot_thing_name = update.iot_thing_name


def deregister_devices(session: Session, fleet_name: str, names: list[str]) -> list[str]:
    """Deregister devices of one fleet, all or none; returns their access key ids (which
    stop working; see :func:`deregister_device`).

    Raises:
        NotFound: the fleet does not exist, or a device is not registered in it.
    """
    fleet = get_fleet(session, fleet_name)
    found = {name: access_key_id for name, access_key_id in session.execute(
        select(Device.name, Device.access_key_id).where(Device.name.in_(names),
                                                        Device.fleet_id == fleet.id))}
    missing = [n for n in dict.fromkeys(names) if n not in found]
    if missing:
        raise NotFound(f"devices not registered in fleet {fleet_name!r}: "
                       f"{', '.join(missing[:10])}")
    session.execute(delete(Device).where(Device.name.in_(names), Device.fleet_id == fleet.id))
    return list(found.values())


def issue_credentials(session: Session, key: ServerKey, name: str, *, endpoint: str,
                      region: str, root_certs_path: str,
                      poll_seconds: float = AGENT_POLL_SECONDS, mqtt_url: str | None = None,
                      mqtt_topic_prefix: str = DEFAULT_TOPIC_PREFIX
                      ) -> tuple[str, schemas.DeviceRegistered]:
    """New credentials for a registered device (the old ones stop working) and its agent
    config, as at registration: how a device registered through the sagemaker API (which
    returns no secrets) gets its config, and how a leaked secret is rotated.

    Returns:
        The old access key id (forget it in credential caches) and the registration answer.

    Raises:
        NotFound: no such device.
    """
    device, fleet_name = _get_device(session, name)
    old = device.access_key_id
    secret = new_secret()
    device.access_key_id = new_access_key_id()
    device.secret_enc = key.encrypt(secret.encode(), device.access_key_id)
    session.flush()
    fleet = get_fleet(session, fleet_name)
    return old, schemas.DeviceRegistered(
        device=_device_summary(device, fleet_name),
        credentials=schemas.Credentials(access_key_id=device.access_key_id,
                                        secret_access_key=secret),
        agent_config=agent_config(device, fleet, secret, endpoint=endpoint, region=region,
                                  root_certs_path=root_certs_path, poll_seconds=poll_seconds,
                                  mqtt_url=mqtt_url, mqtt_topic_prefix=mqtt_topic_prefix))


def _get_device(session: Session, name: str) -> tuple[Device, str]:
    row = session.execute(select(Device, Fleet.name).join(Fleet, Device.fleet_id == Fleet.id)
                          .where(Device.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"device {name!r} is not registered; list devices with "
                       "`edgefleet device list`")
    return row[0], row[1]


def deregister_device(session: Session, name: str) -> str:
    """Deregister a device and delete its records; returns its access key id, which stops
    working (other server instances may accept it until their credential cache expires).

    Raises:
        NotFound: no such device.
    """
    device, _ = _get_device(session, name)
    session.execute(delete(Device).where(Device.id == device.id))
    return device.access_key_id


def _device_summary(device: Device, fleet_name: str) -> schemas.DeviceSummary:
    return schemas.DeviceSummary(
        name=device.name, fleet=fleet_name, description=device.description,
        iot_thing_name=device.iot_thing_name, access_key_id=device.access_key_id,
        registered_at=device.registered_at, latest_heartbeat=device.last_heartbeat_at,
        agent_version=device.agent_version, agent_metrics=device.agent_metrics or [])


def _model_out(m: DeviceModel) -> schemas.ModelOut:
    return schemas.ModelOut(model_name=m.model_name, model_version=m.model_version,
                            latest_sample_time=m.latest_sample_time,
                            latest_inference=m.latest_inference, metrics=m.metrics or [])


def _device_out(session: Session, device: Device, fleet_name: str) -> schemas.DeviceOut:
    out = schemas.DeviceOut(**_device_summary(device, fleet_name).model_dump())
    out.models = [_model_out(m) for m in session.scalars(
        select(DeviceModel).where(DeviceModel.device_id == device.id)
        .order_by(DeviceModel.model_name))]
    rows = session.execute(
        select(DeploymentPlan.name, Stage.name, Stage.deployment_name, StageDevice.status,
               StageDevice.status_message)
        .join(Stage, StageDevice.stage_id == Stage.id)
        .join(DeploymentPlan, Stage.plan_id == DeploymentPlan.id)
        .where(StageDevice.device_id == device.id)
        .order_by(Stage.started_at))
    out.deployments = [
        schemas.DeviceDeployment(plan=p, stage=s, deployment_name=d, status=st,
                                 status_message=msg)
        for p, s, d, st, msg in rows]
    return out


def describe_device(session: Session, name: str) -> schemas.DeviceOut:
    """A device with its latest heartbeat, agent metrics, models and deployments.

    Raises:
        NotFound: no such device.
    """
    device, fleet_name = _get_device(session, name)
    return _device_out(session, device, fleet_name)


def list_devices(session: Session, *, fleet: str | None, after: str | None,
                 limit: int, model_name: str | None = None, heartbeat_after: float | None = None,
                 include_models: bool = False) -> schemas.DevicePage:
    """A page of devices ordered by name, optionally of one fleet, starting after ``after``.

    Args:
        model_name: only devices whose latest heartbeat reports this model.
        heartbeat_after: only devices heard from after this time (epoch seconds).
        include_models: give :class:`~schemas.DeviceWithModels` (one more query per page).

    Raises:
        NotFound: ``fleet`` names no fleet.
    """
    query = (select(Device, Fleet.name).join(Fleet, Device.fleet_id == Fleet.id)
             .order_by(Device.name).limit(min(max(limit, 1), MAX_PAGE)))
    if fleet is not None:
        query = query.where(Device.fleet_id == get_fleet(session, fleet).id)
    if after is not None:
        query = query.where(Device.name > after)
    if heartbeat_after is not None:
        query = query.where(Device.last_heartbeat_at > heartbeat_after)
    if model_name is not None:
        query = query.where(select(DeviceModel.device_id).where(
            DeviceModel.device_id == Device.id, DeviceModel.model_name == model_name).exists())
    rows = session.execute(query).all()
    devices = [_device_summary(d, f) for d, f in rows]
    if include_models and rows:
        by_id: dict[int, list[schemas.ModelOut]] = {d.id: [] for d, _ in rows}
        for m in session.scalars(select(DeviceModel).where(DeviceModel.device_id.in_(by_id))
                                 .order_by(DeviceModel.model_name)):
            by_id[m.device_id].append(_model_out(m))
        devices = [schemas.DeviceWithModels(**summary.model_dump(), models=by_id[device.id])
                   for summary, (device, _) in zip(devices, rows, strict=True)]
    full = len(devices) == min(max(limit, 1), MAX_PAGE)
    return schemas.DevicePage(devices=devices, next_after=devices[-1].name if full else None)
