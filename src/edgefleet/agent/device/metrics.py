"""Agent and per-model metrics for heartbeats, in botocore's ``sagemaker-edge`` shapes.

Each heartbeat carries ``AgentMetrics`` and ``Models`` (shapes: botocore's
``sagemaker-edge/2020-09-23`` service model; ``EdgeMetric`` = ``{Dimension, MetricName (4-100
chars, letters, digits, hyphens), Value (double), Timestamp (epoch seconds)}``):

========== ==================================================================================
Dimension  MetricName (Value)
========== ==================================================================================
agent      ``cpu-percent`` (process CPU since the previous heartbeat, % of one core),
           ``rss-bytes``, ``uptime-seconds``, ``restart-count`` (starts after the first, kept
           across restarts), ``crash-count`` (runs that ended without a clean stop: a crash,
           ``kill -9``, a watchdog abort, a power loss; from
           :class:`~edgefleet.agent.systemd.RunHistory`), ``service-restarts`` (systemd's
           ``NRestarts``, when the agent runs as a unit and systemd answered),
           ``models-loaded``
capture    every capture pipeline metric (``capture_spool_bytes`` -> ``capture-spool-bytes``,
           see :meth:`edgefleet.agent.capture.service.CaptureService.metrics`), when capture
           runs
model      per loaded model, since the previous acknowledged heartbeat: ``inference-count``,
           ``error-count``, ``latency-p50-ms`` and ``latency-p99-ms`` (when it predicted)
========== ==================================================================================

A model entry also has ``ModelName`` (the alias; aliases shorter than the 4 characters botocore
requires are left out of heartbeats), ``ModelVersion``, ``LatestInference`` and
``LatestSampleTime`` (the inference time of the model's latest capture, from
:class:`SampleClock`). Counts and latencies of a heartbeat that failed are sent with the next.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from edgefleet.agent.device.state import StateStore
from edgefleet.agent.serving.registry import LoadedModel, ModelRegistry
from edgefleet.agent.serving.service import CaptureBackend
from edgefleet.agent.systemd import RunHistory
from edgefleet.agent.types import CaptureRequest, CaptureStatus
from edgefleet.wire.edge import wire_model_name, wire_version

#: Latencies kept per model between acknowledged heartbeats (the oldest are dropped first).
MAX_LATENCIES = 100_000


class SampleClock:
    """A capture backend wrapper that remembers each model's latest captured inference time.

    Args:
        backend: the capture pipeline that receives every request.
    """

    def __init__(self, backend: CaptureBackend) -> None:
        self._backend = backend
        self._latest: dict[str, float] = {}
        # gRPC workers submit concurrently: without it an older time could overwrite a newer one.
        self._lock = threading.Lock()

    def submit(self, request: CaptureRequest) -> None:
        """Hand ``request`` on; once accepted, note its inference time (epoch seconds)."""
        self._backend.submit(request)
        seconds = request.inference_time_ns / 1e9
        alias = request.model_alias
        with self._lock:
            if seconds > self._latest.get(alias, 0.0):
                self._latest[alias] = seconds

    def status(self, capture_id: str) -> CaptureStatus:
        """The capture's state, from the wrapped pipeline."""
        return self._backend.status(capture_id)

    def latest(self, alias: str) -> float | None:
        """Epoch seconds of the latest capture accepted for ``alias``, or None."""
        return self._latest.get(alias)


@dataclass
class Snapshot:
    """The metrics of one heartbeat, and what to remember once the control plane took it."""

    agent_metrics: list[dict[str, Any]]
    models: list[dict[str, Any]]
    counted: dict[str, tuple[LoadedModel, int, int]] = field(default_factory=dict)


def _metric(dimension: str, name: str, value: float, now: float) -> dict[str, Any]:
    return {"Dimension": dimension, "MetricName": name, "Value": float(value), "Timestamp": now}


class HeartbeatMetrics:
    """Builds each heartbeat's ``AgentMetrics`` and ``Models``.

    Args:
        registry: the loaded models.
        state: the durable agent state (its start count gives ``restart-count``).
        capture: the capture pipeline, or None; its ``metrics()`` dict is reported when present.
        samples: the latest capture time per model, or None.
        runs: the agent's run history (``crash-count``, ``service-restarts``), or None.
    """

    def __init__(self, registry: ModelRegistry, state: StateStore, *,
                 capture: object | None = None, samples: SampleClock | None = None,
                 runs: RunHistory | None = None) -> None:
        self._registry = registry
        self._state = state
        self._runs = runs
        self._capture = capture
        self._samples = samples
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call starts the measurement
        self._started = time.monotonic()
        self._counted: dict[str, tuple[LoadedModel, int, int]] = {}
        self._latencies: dict[str, tuple[LoadedModel, deque[float]]] = {}
        self._lock = threading.Lock()

    def collect(self) -> Snapshot:
        """The metrics for a heartbeat sent now; pass it to :meth:`commit` once sent."""
        now = time.time()
        with self._lock:
            models = self._registry.models()
            for alias in self._latencies.keys() - {m.info.alias for m in models}:
                del self._latencies[alias]
            snapshot = Snapshot(self._agent_metrics(now, len(models)), [])
            for model in models:
                entry = self._model_entry(model, now, snapshot)
                if entry is not None:
                    snapshot.models.append(entry)
        return snapshot

    def commit(self, snapshot: Snapshot) -> None:
        """The control plane took ``snapshot``: count the next heartbeat from there on."""
        with self._lock:
            self._counted = snapshot.counted
            for alias in snapshot.counted:
                entry = self._latencies.get(alias)
                if entry is not None:
                    entry[1].clear()

    def _agent_metrics(self, now: float, loaded: int) -> list[dict[str, Any]]:
        metrics = [
            _metric("agent", "cpu-percent", self._process.cpu_percent(None), now),
            _metric("agent", "rss-bytes", self._process.memory_info().rss, now),
            _metric("agent", "uptime-seconds", time.monotonic() - self._started, now),
            _metric("agent", "restart-count", max(0, self._state.starts - 1), now),
            _metric("agent", "models-loaded", loaded, now)]
        if self._runs is not None:
            metrics.append(_metric("agent", "crash-count", self._runs.crashes, now))
            if self._runs.service_restarts is not None:
                metrics.append(_metric("agent", "service-restarts", self._runs.service_restarts,
                                       now))
        capture_metrics = getattr(self._capture, "metrics", None)
        if capture_metrics is not None:
            metrics.extend(_metric("capture", name.replace("_", "-"), value, now)
                           for name, value in sorted(capture_metrics().items()))
        # The control plane refuses a heartbeat carrying NaN or infinity (JSON has no spelling
        # for them): leave such a metric out rather than lose the whole heartbeat.
        return [metric for metric in metrics if math.isfinite(metric["Value"])]

    def _model_entry(self, model: LoadedModel, now: float,
                     snapshot: Snapshot) -> dict[str, Any] | None:
        alias, stats = model.info.alias, model.stats
        inferences, errors = stats.inferences, stats.errors
        counted = self._counted.get(alias)
        base = counted[1:] if counted is not None and counted[0] is model else (0, 0)
        snapshot.counted[alias] = (model, inferences, errors)
        kept = self._latencies.get(alias)
        if kept is None or kept[0] is not model:
            kept = (model, deque(maxlen=MAX_LATENCIES))
            self._latencies[alias] = kept
        kept[1].extend(stats.drain_latencies())
        name = wire_model_name(alias)
        if name is None:
            return None
        metrics = [_metric("model", "inference-count", inferences - base[0], now),
                   _metric("model", "error-count", errors - base[1], now)]
        if kept[1]:
            p50, p99 = np.percentile(np.fromiter(kept[1], float), [50, 99]) * 1000.0
            metrics += [_metric("model", "latency-p50-ms", p50, now),
                        _metric("model", "latency-p99-ms", p99, now)]
        metrics = [metric for metric in metrics if math.isfinite(metric["Value"])]
        entry: dict[str, Any] = {"ModelName": name, "ModelMetrics": metrics}
        version = wire_version(model.info.version)
        if version is not None:
            entry["ModelVersion"] = version
        if stats.latest_inference:
            entry["LatestInference"] = stats.latest_inference
        sampled = self._samples.latest(alias) if self._samples is not None else None
        if sampled is not None:
            entry["LatestSampleTime"] = sampled
        return entry
