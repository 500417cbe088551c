"""What GetCaptureDataStatus answers: the state of every capture id still known.

A capture is IN_PROGRESS from the moment CaptureData accepts it until its batch is stored
(SUCCESS) or it is given up (FAILURE: dropped by the spool's ``drop-oldest`` policy, or lost when
the pipeline closed without a spool). Finished states stay queryable for
``edgefleet_capture_status_ttl_seconds``, and at most ``edgefleet_capture_status_max_ids`` of
them (the oldest go first: at hundreds of captures a second an hour of ids would otherwise take
gigabytes); after that the id is unknown (NOT_FOUND) and may be used again. While an id is
known, CaptureData refuses it (ALREADY_EXISTS).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

from edgefleet.agent.types import CaptureStatus
from edgefleet.errors import AlreadyExists, NotFound


class StatusTable:
    """Capture id -> state, with expiry of finished states; thread-safe.

    Args:
        ttl: seconds a finished state stays queryable.
        max_finished: finished states kept at most; beyond it the oldest are forgotten early.
            In-progress ids are never forgotten (the capture buffer and spool bound them).
    """

    def __init__(self, ttl: float, max_finished: int = 100_000) -> None:
        self._ttl = ttl
        self._max_finished = max_finished
        self._states: dict[str, CaptureStatus] = {}
        self._expiry: dict[str, float] = {}
        # Finished ids in finishing order; expiry times only grow, so the head expires first.
        self._finished: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def reserve(self, capture_id: str) -> None:
        """Mark a new capture IN_PROGRESS.

        Raises:
            AlreadyExists: the id is in progress, or finished less than ``ttl`` seconds ago.
        """
        with self._lock:
            self._expire(time.time())
            state = self._states.get(capture_id)
            if state is not None:
                raise AlreadyExists(
                    f"capture_id {capture_id!r} is already known (status {state.name}); use a "
                    f"new id for every capture")
            self._states[capture_id] = CaptureStatus.IN_PROGRESS

    def forget(self, capture_id: str) -> None:
        """Drop an id that was reserved but not accepted after all."""
        with self._lock:
            self._states.pop(capture_id, None)

    def finish(self, capture_ids: Iterable[str], status: CaptureStatus,
               expires: float | None = None) -> None:
        """Set SUCCESS or FAILURE; the ids expire at ``expires`` (Unix time, default now + ttl)."""
        when = time.time() + self._ttl if expires is None else expires
        with self._lock:
            for capture_id in capture_ids:
                self._states[capture_id] = status
                self._expiry[capture_id] = when
                self._finished.append((when, capture_id))
            while len(self._expiry) > self._max_finished:
                self._drop_oldest_finished()

    def get(self, capture_id: str) -> CaptureStatus:
        """The capture's state.

        Raises:
            NotFound: the id was never accepted, or finished more than ``ttl`` seconds ago.
        """
        with self._lock:
            self._expire(time.time())
            state = self._states.get(capture_id)
        if state is None:
            raise NotFound(
                f"capture_id {capture_id!r} is unknown: never captured, or its status expired "
                f"(statuses are kept {self._ttl:g} s after the capture is stored, the last "
                f"{self._max_finished} at most)")
        return state

    def _drop_oldest_finished(self) -> None:
        when, capture_id = self._finished.popleft()
        if self._expiry.get(capture_id) == when:  # else finished again later: a newer entry
            del self._expiry[capture_id]
            del self._states[capture_id]

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0][0] <= now:
            when, capture_id = self._finished.popleft()
            if self._expiry.get(capture_id) == when:
                del self._expiry[capture_id]
                del self._states[capture_id]
