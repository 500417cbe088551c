"""Input drift of captured data against the baselines packaged with the models.

A model version packaged by this server may carry a baseline of its training inputs
(:data:`edgefleet.drift.BASELINE_FILE` in the package archive). :class:`PackageBaselines` finds
the version's COMPLETED packaging job, reads the baseline from its archive in the object
store, and caches it per model and version (also the answer "none", for a minute, so that a
version packaged later is picked up). The capture index adds the bin counts of every captured
input of such a version to hourly rows (:mod:`edgefleet.fleet.capture_index`).

:func:`device_drift` turns those rows into one series per model version of a device: one
point per UTC day of inference time that has captures, whose value is the largest population
stability index (:func:`edgefleet.drift.psi`; formula and source in :mod:`edgefleet.drift`)
over the baseline's features, computed from the counts of the trailing :data:`WINDOW_DAYS`
days (the day and the six before it). A point whose window holds fewer than
:data:`edgefleet.drift.MIN_ROWS` tensor rows is left out: its PSI would be mostly sampling
noise.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.drift import MIN_ROWS, Baseline, psi
from edgefleet.errors import EdgefleetError
from edgefleet.fleet.db.models import CaptureDevice, CaptureHour, PackagingJob
from edgefleet.fleet.storage import ObjectStore
from edgefleet.package.loader import read_baseline

log = logging.getLogger(__name__)

#: Days of counts behind each point (the point's own day and the six before it).
WINDOW_DAYS = 7
#: Days a drift series covers by default, ending at the device's latest inference day.
DEFAULT_DAYS = 60
#: Features listed as "top drifted" at a series' latest point.
TOP_FEATURES = 10
_DAY = 86_400


class Baselines(Protocol):
    """The drift baselines of model versions."""

    def get(self, model_name: str, model_version: str) -> Baseline | None:
        """The baseline of ``model_name`` ``model_version``, or None when it has none."""


class FixedBaselines:
    """Baselines given by a mapping ``(model name, version) -> Baseline``: what a server
    without packaged baselines, and tests, use."""

    def __init__(self, baselines: Mapping[tuple[str, str], Baseline] | None = None) -> None:
        self.baselines = dict(baselines or {})

    def get(self, model_name: str, model_version: str) -> Baseline | None:
        """See :meth:`Baselines.get`."""
        return self.baselines.get((model_name, model_version))


class PackageBaselines:
    """Baselines read from the packages this server built (thread-safe).

    Args:
        sessions: the control plane's sessions (packaging jobs).
        store: the object store holding the package archives.
        miss_seconds: how long "this version has no baseline" is believed, in seconds.
        max_entries: baselines kept in memory (least recently used dropped).
    """

    def __init__(self, sessions: sessionmaker[Session], store: ObjectStore, *,
                 miss_seconds: float = 60.0, max_entries: int = 256) -> None:
        self._sessions = sessions
        self._store = store
        self._miss_seconds = miss_seconds
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str], tuple[Baseline | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_name: str, model_version: str) -> Baseline | None:
        """See :meth:`Baselines.get`. A package that cannot be read (store unreachable, a
        damaged baseline) counts as "none" for ``miss_seconds`` and is logged."""
        key = (model_name, model_version)
        now = time.monotonic()
        with self._lock:
            found = self._cache.get(key)
            if found is not None and found[1] > now:
                self._cache.move_to_end(key)
                return found[0]
        baseline = self._load(model_name, model_version)
        with self._lock:
            self._cache[key] = (baseline, math.inf if baseline else now + self._miss_seconds)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return baseline

    def _load(self, model_name: str, model_version: str) -> Baseline | None:
        with self._sessions() as session:
            artifact = session.scalar(
                select(PackagingJob.artifact_key)
                .where(PackagingJob.model_name == model_name,
                       PackagingJob.model_version == model_version,
                       PackagingJob.status == "COMPLETED",
                       PackagingJob.artifact_key.is_not(None))
                .order_by(PackagingJob.completed_at.desc(), PackagingJob.id.desc()).limit(1))
        if artifact is None:
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="edgefleet-baseline-") as tmp:
                path = Path(tmp) / "package.tar.gz"
                with path.open("wb") as out:
                    for chunk in self._store.open_chunks(artifact):
                        out.write(chunk)
                return read_baseline(path)
        except EdgefleetError as exc:
            log.warning("drift baseline of %s %s (package %s) cannot be read: %s",
                        model_name, model_version, artifact, exc.message)
            return None


@dataclass(frozen=True)
class DriftPoint:
    """One day of a drift series.

    Attributes:
        day: start of the UTC day, epoch s.
        rows: tensor rows counted in the window behind the point.
        psi: the largest feature PSI (dimensionless).
        feature: the name of that feature.
    """

    day: float
    rows: int
    psi: float
    feature: str


@dataclass(frozen=True)
class DriftSeries:
    """The drift of one model version on one device.

    Attributes:
        model_name, model_version: the model.
        tensor: the input tensor the baseline describes.
        points: days in order (see the module docstring).
        latest: ``(feature name, PSI)`` of the latest point's most drifted features, largest
            first (at most :data:`TOP_FEATURES`).
    """

    model_name: str
    model_version: str
    tensor: str
    points: list[DriftPoint]
    latest: list[tuple[str, float]]


def _feature_psi(baseline: Baseline, counts: np.ndarray) -> list[tuple[str, float]]:
    found = []
    for index, (name, feature) in enumerate(zip(baseline.feature_names, baseline.features,
                                                strict=True)):
        value = psi(feature, counts[index, :len(feature.shares)])
        if value is not None:
            found.append((name, value))
    return found


def _series(baseline: Baseline, model: str, version: str,
            rows: list[tuple[int, int, list[list[int]]]], first_day: int) -> DriftSeries | None:
    width = max(len(f.shares) for f in baseline.features)
    days: dict[int, tuple[int, np.ndarray]] = {}
    for hour, count_rows, counts in rows:
        if len(counts) != len(baseline.features) or any(
                len(c) != len(f.shares) for c, f in zip(counts, baseline.features, strict=True)):
            continue  # counted against another layout of the baseline
        day = hour // 24
        total, summed = days.get(day, (0, np.zeros((len(counts), width), np.int64)))
        for index, feature_counts in enumerate(counts):
            summed[index, :len(feature_counts)] += feature_counts
        days[day] = (total + count_rows, summed)
    points: list[DriftPoint] = []
    latest: list[tuple[str, float]] = []
    for day in sorted(d for d in days if d >= first_day):
        window = [days[d] for d in range(day - WINDOW_DAYS + 1, day + 1) if d in days]
        total = sum(rows for rows, _ in window)
        if total < MIN_ROWS:
            continue
        features = _feature_psi(baseline, np.sum([counts for _, counts in window], axis=0))
        if not features:
            continue
        name, value = max(features, key=lambda item: item[1])
        points.append(DriftPoint(day * _DAY, total, value, name))
        latest = sorted(features, key=lambda item: -item[1])[:TOP_FEATURES]
    if not days:
        return None
    return DriftSeries(model, version, baseline.tensor, points, latest)


def device_drift(session: Session, baselines: Baselines, device: str, *,
                 days: int = DEFAULT_DAYS) -> list[DriftSeries]:
    """The drift series of every model version of ``device`` whose package has a baseline,
    over the ``days`` UTC days ending at the device's latest captured inference time (two
    queries: the device's totals, its hourly counts in the range).

    Returns:
        One :class:`DriftSeries` per model version with counts, by model name and version;
        empty when the device has no such captures.
    """
    last = session.scalar(select(CaptureDevice.last_time).where(CaptureDevice.device == device))
    if last is None:
        return []
    first_day = math.floor(last / _DAY) - days + 1
    grouped: dict[tuple[str, str], list[tuple[int, int, list[list[int]]]]] = {}
    for model, version, hour, count_rows, counts in session.execute(
            select(CaptureHour.model_name, CaptureHour.model_version, CaptureHour.hour,
                   CaptureHour.drift_rows, CaptureHour.drift_counts)
            .where(CaptureHour.device == device, CaptureHour.drift_counts.is_not(None),
                   CaptureHour.hour >= (first_day - WINDOW_DAYS + 1) * 24)
            .order_by(CaptureHour.model_name, CaptureHour.model_version, CaptureHour.hour)):
        if counts is not None:
            grouped.setdefault((model, version), []).append((hour, count_rows, counts))
    result = []
    for (model, version), rows in grouped.items():
        baseline = baselines.get(model, version)
        if baseline is None:
            continue
        series = _series(baseline, model, version, rows, first_day)
        if series is not None:
            result.append(series)
    return result
