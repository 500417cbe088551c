"""MQTT deployment notifications: the agent polls GetDeployments as soon as a stage starts.

The control plane (``EDGEFLEET_SERVER_MQTT_URL``, :mod:`edgefleet.fleet.notify`) publishes one
small JSON message (QoS 1, not retained) per selected device on
``<prefix>/<fleet>/<device>/deployments`` when a deployment stage starts. An agent with
``edgefleet_mqtt_url`` subscribes to its own topic with a paho-mqtt client thread and, on any
message there, wakes its deployment poll (:meth:`ControlClient.poll_now
<edgefleet.agent.device.control.ControlClient.poll_now>`). The message's content is not trusted: it
only triggers a poll of the (authenticated) control plane, which decides what to deploy.

Notifications are a shortcut, never a requirement: while the broker is down paho reconnects
with a backoff (1 s doubling up to 120 s), the agent logs it, and the regular poll goes on. After
a reconnect the agent polls once, since messages sent meanwhile are lost (clean sessions).

The URL and topic rules are shared with the control plane's publisher (:mod:`edgefleet.wire.mqtt`).
paho-mqtt is imported only when a broker is configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgefleet.wire.mqtt import (
    KEEPALIVE_SECONDS,
    RECONNECT_MAX_SECONDS,
    RECONNECT_MIN_SECONDS,
    check_topic_prefix,
    device_topic,
    new_client,
    parse_broker_url,
)

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


class DeploymentWakeup:
    """Subscribes to this device's notification topic and calls ``wake`` on each message.

    Args:
        url: the broker (``edgefleet_mqtt_url``, already validated).
        topic_prefix: ``edgefleet_mqtt_topic_prefix``.
        fleet: this device's fleet name.
        device: this device's name.
        wake: called from paho's thread on every message and after every reconnect; must be
            quick and thread-safe (``ControlClient.poll_now``).

    Raises:
        ValueError: ``url`` or ``topic_prefix`` is invalid (at construction).
    """

    def __init__(self, url: str, topic_prefix: str, fleet: str, device: str,
                 wake: Callable[[], None]) -> None:
        self._address = parse_broker_url(url)
        self.topic = device_topic(check_topic_prefix(topic_prefix), fleet, device)
        self._wake = wake
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._connected_before = False
        self._failing = False
        self.connected = threading.Event()
        """Set while subscribed (for tests and diagnostics)."""

    def start(self) -> None:
        """Start paho's network thread; it connects in the background and keeps reconnecting.
        Never raises for an unreachable broker (that is logged)."""
        client = new_client("agent")
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self._address.host, self._address.port, KEEPALIVE_SECONDS)
        client.loop_start()
        self._client = client
        log.info("deployment notifications: subscribing to %s at %s", self.topic,
                 self._address)

    def stop(self) -> None:
        """Disconnect and end paho's thread (waits for it)."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self.connected.clear()

    # -- paho callbacks (paho's thread) -----------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            self._problem(f"the broker refused the connection: {reason}")
            return
        client.subscribe(self.topic, qos=1)
        self.connected.set()
        with self._lock:
            again, self._connected_before, self._failing = self._connected_before, True, False
        if again:  # messages published while disconnected are lost: look once
            log.info("deployment notifications: reconnected to %s; polling once for what was "
                     "missed", self._address)
            self._wake()
        else:
            log.info("deployment notifications: connected to %s", self._address)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._problem("cannot connect (check edgefleet_mqtt_url and that the broker runs)")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if self._client is not None:  # not our own stop()
            self._problem(f"disconnected ({reason})")

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        log.debug("deployment notification on %s (%d bytes): polling now", message.topic,
                  len(message.payload))
        self._wake()

    def _problem(self, what: str) -> None:
        # The first failure of an outage is a warning; paho's retries after it are debug.
        with self._lock:
            first, self._failing = not self._failing, True
        log.log(logging.WARNING if first else logging.DEBUG,
                "deployment notifications: broker %s: %s; retrying with backoff (up to %d s), "
                "deployment polls go on meanwhile", self._address, what, RECONNECT_MAX_SECONDS)
