"""MQTT deployment notifications: the agent polls GetDeployments as soon as a stage starts.

The control plane (``EDGEFLEET_SERVER_MQTT_URL``, :mod:`edgefleet.fleet.notify`) publishes one
small JSON message (QoS 1, not retained) per selected device on
``<prefix>/<fleet>/<device>/deployments`` when a deployment stage starts. An agent with
``edgefleet_mqtt_url`` subscribes to its own topic with a paho-mqtt client thread and, on any
message there, wakes its deployment poll (:meth:`ControlClient.poll_now
<edgefleet.agent.control.ControlClient.poll_now>`). The message's content is not trusted: it
only triggers a poll of the (authenticated) control plane, which decides what to deploy.

Notifications are a shortcut, never a requirement: while the broker is down paho reconnects
with a backoff (1 s doubling up to 120 s), the agent logs it, and the regular poll goes on. After
a reconnect the agent polls once, since messages sent meanwhile are lost (clean sessions).

The URL and topic helpers here are shared by the control plane's publisher, so both sides agree
on the topic. paho-mqtt is imported only when a broker is configured.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

#: Default MQTT port of ``mqtt://`` URLs without one.
DEFAULT_PORT = 1883
#: Keep-alive interval of the MQTT connection, in seconds.
KEEPALIVE_SECONDS = 60
#: paho's reconnect backoff: first and longest delay, in seconds.
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 120
#: Longest accepted topic prefix, in characters.
MAX_PREFIX_CHARS = 200


@dataclass(frozen=True)
class BrokerAddress:
    """Where an MQTT broker listens (plain TCP; credentials and TLS are not supported yet).

    Attributes:
        host: host name or IP address.
        port: TCP port.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://host[:port]`` (port default 1883).

    Raises:
        ValueError: another scheme, no host, a path or query, credentials in the URL (they
            would end up in logs), or a port outside 1-65535; the message says what is expected.
    """
    parts = urlsplit(url.strip())
    expected = "expected mqtt://host:port, e.g. mqtt://127.0.0.1:1883"
    if parts.scheme != "mqtt":
        raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r}; {expected}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"credentials in the MQTT URL are not supported; {expected}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"the MQTT URL must not have a path or query; {expected}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"invalid port in the MQTT URL; {expected}") from None
    if not parts.hostname:
        raise ValueError(f"the MQTT URL has no host; {expected}")
    return BrokerAddress(parts.hostname, port)


def check_topic_prefix(prefix: str) -> str:
    """Validate a topic prefix: 1-200 characters, no MQTT wildcards (``+``, ``#``), no NUL, and
    no leading or trailing ``/``. Returns it unchanged.

    Raises:
        ValueError: the prefix breaks one of these rules (the message says which).
    """
    if not 1 <= len(prefix) <= MAX_PREFIX_CHARS:
        raise ValueError(f"the MQTT topic prefix must have 1-{MAX_PREFIX_CHARS} characters")
    if any(c in prefix for c in "+#\0"):
        raise ValueError("the MQTT topic prefix must not contain '+', '#' or NUL")
    if prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError("the MQTT topic prefix must not start or end with '/'")
    return prefix


def device_topic(prefix: str, fleet: str, device: str) -> str:
    """The topic of one device's deployment notifications:
    ``<prefix>/<fleet>/<device>/deployments`` (fleet and device names never hold wildcards)."""
    return f"{prefix}/{fleet}/{device}/deployments"


def new_client(role: str) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, clean session) with a unique client id
    ``edgefleet-<role>-<random>``, so two processes never take over each other's session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    return mqtt.Client(CallbackAPIVersion.VERSION2,
                       client_id=f"edgefleet-{role}-{secrets.token_hex(6)}",
                       protocol=mqtt.MQTTv311, clean_session=True)


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
