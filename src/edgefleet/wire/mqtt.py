"""MQTT vocabulary the agent and the control plane share: broker URLs, topic prefixes, the
per-device deployment topic, and the paho client both sides create.

The control plane (:mod:`edgefleet.fleet.notify`) publishes on
``<prefix>/<fleet>/<device>/deployments`` when a deployment stage starts; the agent
(:mod:`edgefleet.agent.device.wakeup`) subscribes to the same topic. Both validate their settings
with the helpers here, so they agree on the topic. paho-mqtt is imported only when a client is
made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

#: Default MQTT port of ``mqtt://`` URLs without one.
DEFAULT_PORT = 1883
#: Keep-alive interval of the MQTT connection, in seconds.
KEEPALIVE_SECONDS = 60
#: paho's reconnect backoff: first and longest delay, in seconds.
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 120
#: Longest accepted topic prefix, in characters.
MAX_PREFIX_CHARS = 200
#: Topic prefix of the control plane and of agents unless configured otherwise.
DEFAULT_TOPIC_PREFIX = "edgefleet"


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
