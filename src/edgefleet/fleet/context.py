"""The long-lived parts every request handler reaches through ``request.app.state.context``
(built once by :func:`edgefleet.fleet.app.create_app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet.capture_index import CaptureIndex
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.drift_series import Baselines, FixedBaselines
from edgefleet.fleet.edge import CredentialCache
from edgefleet.fleet.heartbeats import HeartbeatWriter
from edgefleet.fleet.limits import AuthFailureLimit
from edgefleet.fleet.notify import MqttNotifier
from edgefleet.fleet.settings import ServerSettings
from edgefleet.fleet.storage import ObjectStore


@dataclass(frozen=True)
class Context:
    """What request handlers need: settings, database, server key, object store, the device
    credential cache, the heartbeat writer, the MQTT notifier of stage starts (None: off), the
    count of failed authentications per client address, the capture index (None: no
    ``capture_location``) and the drift baselines of packaged model versions."""

    settings: ServerSettings
    sessions: sessionmaker[Session]
    key: ServerKey
    store: ObjectStore
    credentials: CredentialCache
    heartbeats: HeartbeatWriter
    notifier: MqttNotifier | None = None
    auth_failures: AuthFailureLimit = field(default_factory=lambda: AuthFailureLimit(20))
    captures: CaptureIndex | None = None
    baselines: Baselines = field(default_factory=FixedBaselines)

    def client_address(self, request: Request) -> str:
        """The address failed authentications are counted by (the TCP peer)."""
        return request.client.host if request.client else "unknown"

    def base_url(self, request: Request) -> str:
        """The URL devices reach this server at: ``public_url`` or the request's own base."""
        return (self.settings.public_url or str(request.base_url)).rstrip("/")
