"""Heartbeat history: a bounded, downsampled record of each device's heartbeats.

The device rows keep only the latest heartbeat; the dashboard's charts need the past. A
heartbeat becomes a sample when it is the device's first in a period of ``sample_seconds``
(``floor(at / sample_seconds)`` differs from its previous heartbeat's), so a device has at most
``retention_seconds / sample_seconds`` samples (1,440 with the defaults, 60 s for a day) however
often it beats. :class:`HistoryPruner` deletes samples older than the retention, at most once
per ``prune_every_seconds`` per server process, inside a heartbeat batch's transaction.

Per-model counts (``inference-count``, ``error-count``) of a heartbeat cover the time since the
device's previous heartbeat (edgefleet.agent.device.metrics), kept as ``interval_seconds``: a
sample's rate is ``count / interval_seconds``, the rate around the sample's time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from edgefleet.fleet import schemas
from edgefleet.fleet.db.models import HeartbeatSample
from edgefleet.fleet.settings import ServerSettings


@dataclass(frozen=True)
class HistoryPolicy:
    """How heartbeats are sampled and how long samples are kept (seconds)."""

    sample_seconds: float = 60.0
    retention_seconds: float = 86_400.0
    prune_every_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> HistoryPolicy:
        """The policy of ``history_sample_seconds`` and ``history_retention_seconds``."""
        return cls(settings.history_sample_seconds, settings.history_retention_seconds)

    def is_sample(self, at: float, previous: float | None) -> bool:
        """Whether a heartbeat at ``at`` (epoch s) starts a new sampling period after the
        device's previous heartbeat at ``previous`` (None: its first ever)."""
        return previous is None or (math.floor(at / self.sample_seconds)
                                    != math.floor(previous / self.sample_seconds))


def _values(metrics: Sequence[schemas.EdgeMetric]) -> dict[str, float]:
    return {m.MetricName: m.Value for m in metrics
            if m.MetricName is not None and m.Value is not None}


def sample_row(device_id: int, beat: schemas.Heartbeat, at: float,
               previous: float | None) -> dict[str, Any]:
    """The ``heartbeat_samples`` row of one heartbeat (for a bulk insert)."""
    models: dict[str, dict[str, Any]] = {
        m.ModelName: {"version": m.ModelVersion, **_values(m.ModelMetrics)}
        for m in beat.Models if m.ModelName}
    return {"device_id": device_id, "at": at,
            "interval_seconds": None if previous is None else max(at - previous, 0.0),
            "agent": _values(beat.AgentMetrics), "models": models}


class HistoryPruner:
    """Deletes expired samples, at most once per ``policy.prune_every_seconds`` (thread-safe;
    each server process prunes on its own, which is harmless: the delete is idempotent)."""

    def __init__(self, policy: HistoryPolicy) -> None:
        self.policy = policy
        self._next = 0.0
        self._lock = threading.Lock()

    def maybe_prune(self, session: Session, now: float) -> None:
        """Delete samples older than the retention if the last prune is old enough."""
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.policy.prune_every_seconds
        session.execute(delete(HeartbeatSample).where(
            HeartbeatSample.at < now - self.policy.retention_seconds))


@dataclass(frozen=True)
class Sample:
    """One stored sample (see :class:`~edgefleet.fleet.db.models.HeartbeatSample`)."""

    at: float
    interval_seconds: float | None
    agent: dict[str, float]
    models: dict[str, dict[str, Any]]


def device_samples(session: Session, device_id: int, *, since: float,
                   limit: int = 20_000) -> list[Sample]:
    """A device's samples at or after ``since`` (epoch s), oldest first (one indexed query)."""
    rows = session.execute(
        select(HeartbeatSample.at, HeartbeatSample.interval_seconds, HeartbeatSample.agent,
               HeartbeatSample.models)
        .where(HeartbeatSample.device_id == device_id, HeartbeatSample.at >= since)
        .order_by(HeartbeatSample.at).limit(limit)).all()
    return [Sample(at, interval, agent or {}, models or {})
            for at, interval, agent, models in rows]


def rate(sample: Sample, model: str, metric: str) -> float | None:
    """``metric`` (a count) of ``model`` per second around the sample, or None if unknown."""
    value = sample.models.get(model, {}).get(metric)
    if value is None or not sample.interval_seconds:
        return None
    return float(value) / sample.interval_seconds
