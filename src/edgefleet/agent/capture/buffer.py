"""The in-memory ring buffer of captures waiting to be stored (no durable spool).

It holds at most ``capture_data_buffer_size`` captures (shared/spec/agent-api.md) and at most
``edgefleet_capture_buffer_max_bytes`` bytes of their data: a capture takes its slot and bytes when
CaptureData accepts it and gives them back only when the sink has stored its batch, so a slow or
failing sink fills the buffer and CaptureData then answers RESOURCE_EXHAUSTED instead of letting
memory grow.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque

from edgefleet.agent.capture.batcher import Batch, Layout
from edgefleet.agent.types import CaptureRequest
from edgefleet.errors import ResourceExhausted


class CaptureBuffer:
    """Bounded FIFO of captures; a :class:`~edgefleet.agent.capture.batcher.BatchSource`.

    Args:
        capacity: captures held at most, waiting or in a batch being stored (>= 1).
        layout: folder layout.
        max_bytes: tensor and auxiliary bytes held at most (default: no limit).

    Batch files are named with a random stream id per buffer, so two processes never write
    the same key.
    """

    def __init__(self, capacity: int, layout: Layout, max_bytes: int | None = None) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._held_bytes = 0
        self._layout = layout
        self._waiting: deque[CaptureRequest] = deque()
        self._held = 0
        self._stream = secrets.token_hex(6)
        self._sequence = 0
        self._woken = False
        self._wanted = 1  # what the blocked wait() waits for: notify only then (saves wake-ups)
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        """Captures in memory: waiting plus in batches not yet stored."""
        return self._held

    def put(self, request: CaptureRequest) -> None:
        """Add a capture; O(1), never blocks.

        Raises:
            ResourceExhausted: ``capacity`` captures are held already.
        """
        size = _data_bytes(request)
        with self._changed:
            if self._held >= self._capacity:
                raise ResourceExhausted(
                    f"capture buffer full ({self._capacity} captures wait to be stored); retry "
                    f"later, or raise sagemaker_edge_core_capture_data_buffer_size")
            if self._max_bytes is not None and self._held_bytes + size > self._max_bytes:
                raise ResourceExhausted(
                    f"capture buffer full ({self._held_bytes} bytes wait to be stored, this "
                    f"capture has {size}, the budget is {self._max_bytes}); retry later, or "
                    f"raise edgefleet_capture_buffer_max_bytes")
            self._waiting.append(request)
            self._held += 1
            self._held_bytes += size
            if len(self._waiting) == self._wanted:
                self._changed.notify()

    def wait(self, count: int, timeout: float) -> int:
        """See :meth:`BatchSource.wait`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._wanted = count
            while len(self._waiting) < count and not self._woken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            self._woken = False
            return len(self._waiting)

    def take_batches(self, limit: int) -> list[Batch]:
        """See :meth:`BatchSource.take_batches`."""
        with self._changed:
            taken = [self._waiting.popleft() for _ in range(min(limit, len(self._waiting)))]
        batches = []
        for directory, requests in self._layout.group(taken):
            key = self._layout.key(directory, self._stream, self._sequence)
            batches.append(Batch(key, tuple(requests)))
            self._sequence += 1
        return batches

    def complete(self, batch: Batch) -> None:
        """See :meth:`BatchSource.complete`."""
        freed = sum(_data_bytes(r) for r in batch.requests)  # outside the lock put() needs
        with self._changed:
            self._held -= len(batch.requests)
            self._held_bytes -= freed

    def wake(self) -> None:
        """See :meth:`BatchSource.wake`."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()



def _data_bytes(request: CaptureRequest) -> int:
    size = 0
    for group in (request.input_tensors, request.output_tensors, request.auxiliary_inputs,
                  request.auxiliary_outputs):
        for item in group:
            size += len(item.data)
    return size
