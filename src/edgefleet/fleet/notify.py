"""MQTT notifications of started deployment stages, so agents poll GetDeployments at once.

With ``EDGEFLEET_SERVER_MQTT_URL`` set, starting a stage publishes one message per selected
device on ``<prefix>/<fleet>/<device>/deployments`` (QoS 1, not retained), after the stage's
transaction committed (a woken agent must find the deployment). Per device rather than per
fleet: only the devices a stage selected poll, not the whole fleet. The message is a small JSON
object without secrets::

    {"event": "stage-started", "fleet": "wind", "device": "turbine-1", "plan": "upgrade",
     "stage": "canary", "deployment_name": "upgrade-canary-0123456789ab", "started_at": 1.7e9}

Agents act on the topic only (:mod:`edgefleet.agent.device.wakeup`); the control plane stays the
authority on what to deploy. Each stage start opens one short MQTT connection (stage starts
are rare, and this keeps no connection or thread in the server's worker processes). Publishing
runs after the response was sent; a failure (broker down, refused, slow) is logged and never
fails the stage start: devices then find the deployment at their next regular poll.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet.db.models import DeploymentPlan, Device, Fleet, Stage, StageDevice
from edgefleet.wire.mqtt import (
    KEEPALIVE_SECONDS,
    check_topic_prefix,
    device_topic,
    new_client,
    parse_broker_url,
)

log = logging.getLogger(__name__)

#: Longest time one stage start's publishing may take (connect, publish, acknowledgements), s.
PUBLISH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class StageStarted:
    """What a started stage's notifications say.

    Attributes:
        fleet: the plan's device fleet.
        plan: the deployment plan's name.
        stage: the stage's name.
        deployment_name: the stage's ``DeploymentName`` (as GetDeployments hands it out).
        started_at: when the stage started, in seconds since the epoch.
        devices: names of the devices the stage selected.
    """

    fleet: str
    plan: str
    stage: str
    deployment_name: str
    started_at: float
    devices: tuple[str, ...]

    def payload(self, device: str) -> bytes:
        """The JSON message for ``device`` (UTF-8)."""
        return json.dumps({
            "event": "stage-started", "fleet": self.fleet, "device": device,
            "plan": self.plan, "stage": self.stage, "deployment_name": self.deployment_name,
            "started_at": self.started_at}, separators=(",", ":")).encode()


def stage_started(session: Session, plan: str, stage: str) -> StageStarted | None:
    """The notification data of a stage (None if the plan or stage does not exist)."""
    row = session.execute(
        select(Stage.id, Stage.deployment_name, Stage.started_at, Fleet.name)
        .join(DeploymentPlan, Stage.plan_id == DeploymentPlan.id)
        .join(Fleet, DeploymentPlan.fleet_id == Fleet.id)
        .where(DeploymentPlan.name == plan, Stage.name == stage)).one_or_none()
    if row is None:
        return None
    stage_id, deployment_name, started_at, fleet = row
    devices = session.scalars(
        select(Device.name).join(StageDevice, StageDevice.device_id == Device.id)
        .where(StageDevice.stage_id == stage_id).order_by(Device.name)).all()
    return StageStarted(fleet, plan, stage, deployment_name, started_at or 0.0, tuple(devices))


class MqttNotifier:
    """Publishes :class:`StageStarted` notifications to one broker.

    Args:
        url: ``mqtt://host:port`` (``ServerSettings.mqtt_url``).
        topic_prefix: ``ServerSettings.mqtt_topic_prefix``.
        timeout: longest time one :meth:`publish` may take, in seconds.

    Raises:
        ValueError: ``url`` or ``topic_prefix`` is invalid.
    """

    def __init__(self, url: str, topic_prefix: str, *,
                 timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self._address = parse_broker_url(url)
        self._prefix = check_topic_prefix(topic_prefix)
        self._timeout = timeout

    def topics(self, started: StageStarted) -> list[str]:
        """The topic of each selected device, in the order of ``started.devices``."""
        return [device_topic(self._prefix, started.fleet, d) for d in started.devices]

    def publish(self, started: StageStarted) -> int:
        """Publish one message per selected device; never raises.

        Returns:
            How many messages the broker acknowledged (0 when the broker cannot be reached;
            that is logged as a warning).
        """
        if not started.devices:
            return 0
        begin = time.monotonic()
        try:
            acknowledged = self._publish(started, begin + self._timeout)
        except Exception as error:  # never let a notification fail anything
            log.warning("MQTT broker %s: cannot publish the start of stage %s of plan %s "
                        "(%s); its %d devices find it at their next deployment poll",
                        self._address, started.stage, started.plan,
                        str(error) or type(error).__name__, len(started.devices))
            return 0
        level = logging.INFO if acknowledged == len(started.devices) else logging.WARNING
        log.log(level, "MQTT broker %s acknowledged %d of %d notifications of stage %s of plan "
                "%s in %.0f ms", self._address, acknowledged, len(started.devices),
                started.stage, started.plan, (time.monotonic() - begin) * 1000)
        return acknowledged

    def _publish(self, started: StageStarted, deadline: float) -> int:
        connected = threading.Event()
        refused: list[str] = []
        client = new_client("server")
        client.connect_timeout = max(0.1, deadline - time.monotonic())

        def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        client.on_connect = on_connect
        client.connect(self._address.host, self._address.port, KEEPALIVE_SECONDS)
        client.loop_start()
        try:
            if not connected.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("no answer to CONNECT")
            if refused:
                raise ConnectionRefusedError(f"connection refused: {refused[0]}")
            infos = [client.publish(topic, started.payload(device), qos=1, retain=False)
                     for topic, device in zip(self.topics(started), started.devices,
                                              strict=True)]
            for info in infos:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            return sum(1 for info in infos if info.is_published())
        finally:
            client.disconnect()
            client.loop_stop()


def make_notifier(url: str | None, topic_prefix: str) -> MqttNotifier | None:
    """The notifier the settings ask for, or None when ``url`` is unset.

    Raises:
        ValueError: ``url`` or ``topic_prefix`` is invalid.
    """
    return MqttNotifier(url, topic_prefix) if url else None


def notify_stage_started(notifier: MqttNotifier, sessions: sessionmaker[Session], plan: str,
                         stage: str) -> None:
    """Read the started stage in a new session (after its transaction committed) and publish
    its notifications; never raises (errors are logged)."""
    try:
        with sessions() as session:
            started = stage_started(session, plan, stage)
    except Exception:
        log.exception("cannot read stage %s of plan %s for its MQTT notifications", stage, plan)
        return
    if started is not None:
        notifier.publish(started)
