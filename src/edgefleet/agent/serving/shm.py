"""Read-only attachments to System V shared memory segments that clients send tensors in.

Clients create a segment (``shmget``), write the tensor, make it read-only (mode 0400 or 0404)
and send its id (shared/spec/agent-api.md). Attaching costs far more than reading, so attachments
are cached and reused; a cached attachment is dropped when the segment is gone, after it sat
idle for ``idle_seconds``, or when more than ``max_attachments`` are held. Views are zero-copy
and read-only: the mapping is read-only, and writing through it would kill the process.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict

import numpy as np
import sysv_ipc

from edgefleet.agent.types import SharedMemoryRef
from edgefleet.errors import InvalidArgument

_ANY_WRITE = 0o222

#: SHM_DEST (linux/shm.h): the owner removed the segment; it goes once the last attach does.
_SHM_DEST = 0o1000

#: Seconds between sweeps for removed segments, and how long one must sit unused to go.
_REMOVED_SWEEP_SECONDS = 1.0


def _removed(segment: sysv_ipc.SharedMemory) -> bool:
    try:
        return bool(segment.mode & _SHM_DEST)
    except sysv_ipc.Error:
        return True


class SharedMemoryCache:
    """Cached read-only attachments, keyed by segment id. Thread-safe.

    Args:
        max_attachments: attachments held at most; the least recently used goes first.
        idle_seconds: an attachment unused this long is detached on the next lookup.
    """

    def __init__(self, max_attachments: int = 32, idle_seconds: float = 30.0) -> None:
        self._max = max_attachments
        self._idle = idle_seconds
        self._lock = threading.Lock()
        self._segments: OrderedDict[int, tuple[sysv_ipc.SharedMemory, memoryview, float]] = (
            OrderedDict())
        self._retiring: list[tuple[sysv_ipc.SharedMemory, memoryview]] = []
        self._last_sweep = 0.0

    def view(self, ref: SharedMemoryRef, dtype: np.dtype[np.generic],
             shape: tuple[int, ...], tensor: str) -> np.ndarray:
        """A zero-copy, read-only array over ``shape`` x ``dtype`` bytes at ``ref.offset``.

        Raises:
            InvalidArgument: no segment with that id, the segment is writable, the range lies
                outside the segment, ``ref.size`` disagrees with shape x dtype size, or numpy
                cannot make an array of that shape (over 64 dimensions, or a zero-size shape
                whose other dimensions overflow its index range).
        """
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if ref.size and ref.size != nbytes:
            raise InvalidArgument(
                f"tensor {tensor!r}: shared memory size {ref.size} bytes does not match shape "
                f"{list(shape)} x {dtype} ({nbytes} bytes)")
        # The array is made under the lock: once it exists it holds the buffer, and eviction
        # then leaves the mapping alone (see _retry_detach).
        with self._lock:
            buffer = self._buffer(ref.segment_id, tensor)
            if ref.offset + nbytes > len(buffer):
                raise InvalidArgument(
                    f"tensor {tensor!r}: bytes {ref.offset}..{ref.offset + nbytes} lie outside "
                    f"shared memory segment {ref.segment_id} of {len(buffer)} bytes")
            try:
                array = np.frombuffer(buffer, dtype=dtype, count=count,
                                      offset=ref.offset).reshape(shape)
            except ValueError as error:  # numpy: over 64 dimensions, or beyond its index range
                shown = list(shape) if len(shape) <= 8 else f"of {len(shape)} dimensions"
                raise InvalidArgument(
                    f"tensor {tensor!r}: shape {shown} cannot be laid out as an array "
                    f"({error}); send the tensor's actual shape") from None
        array.flags.writeable = False
        return array

    def _buffer(self, segment_id: int, tensor: str) -> memoryview:
        # Called with the lock held.
        now = time.monotonic()
        self._expire(now)
        entry = self._segments.get(segment_id)
        if entry is not None:
            segment, buffer, _ = entry
            self._check_mode(segment, segment_id, tensor)
            self._segments[segment_id] = (segment, buffer, now)
            self._segments.move_to_end(segment_id)
            return buffer
        try:
            segment = sysv_ipc.attach(segment_id, 0, sysv_ipc.SHM_RDONLY)
        except (sysv_ipc.ExistentialError, ValueError, OverflowError):
            # INVALID_ARGUMENT, not NOT_FOUND: clients read NOT_FOUND on Predict as "model not
            # loaded" and would call LoadModel.
            raise InvalidArgument(
                f"tensor {tensor!r}: no shared memory segment with id {segment_id}; send the id "
                f"shmget returned, and keep the segment until the reply") from None
        except sysv_ipc.PermissionsError:
            raise InvalidArgument(
                f"tensor {tensor!r}: the agent may not read shared memory segment "
                f"{segment_id}; give the agent's user read permission (mode 0440 or 0444)"
            ) from None
        try:
            self._check_mode(segment, segment_id, tensor)
        except InvalidArgument:
            segment.detach()
            raise
        buffer = memoryview(segment).toreadonly()
        self._segments[segment_id] = (segment, buffer, now)
        while len(self._segments) > self._max:
            self._drop(next(iter(self._segments)))
        return buffer

    @staticmethod
    def _check_mode(segment: sysv_ipc.SharedMemory, segment_id: int, tensor: str) -> None:
        try:
            mode = segment.mode
        except sysv_ipc.ExistentialError:
            raise InvalidArgument(
                f"tensor {tensor!r}: shared memory segment {segment_id} was removed; keep it "
                f"until the reply") from None
        if mode & _ANY_WRITE:
            raise InvalidArgument(
                f"tensor {tensor!r}: shared memory segment {segment_id} has mode "
                f"{mode & 0o777:04o}, which lets someone write to it during inference; make it "
                f"read-only (mode 0400 or 0404) before sending it")

    def _expire(self, now: float) -> None:
        stale = [sid for sid, (_, _, used) in self._segments.items() if now - used > self._idle]
        if now - self._last_sweep > _REMOVED_SWEEP_SECONDS:
            # A segment its owner removed lives on while attached: let go of those soon, not
            # after the full idle time, or clients that use a segment per request pin memory.
            self._last_sweep = now
            stale += [sid for sid, (segment, _, used) in self._segments.items()
                      if sid not in stale and now - used > _REMOVED_SWEEP_SECONDS
                      and _removed(segment)]
        for segment_id in stale:
            self._drop(segment_id)
        self._retry_detach()

    def _drop(self, segment_id: int) -> None:
        segment, buffer, _ = self._segments.pop(segment_id)
        self._retiring.append((segment, buffer))
        self._retry_detach()

    def _retry_detach(self) -> None:
        # Unmapping a segment under an array that a prediction still reads would crash the
        # process; a view that is still exported refuses release(), and then the segment
        # waits here until the next lookup.
        waiting = []
        for segment, buffer in self._retiring:
            try:
                buffer.release()
            except BufferError:
                waiting.append((segment, buffer))
                continue
            # Already detached or removed: nothing is left to release.
            with contextlib.suppress(sysv_ipc.Error):
                segment.detach()
        self._retiring = waiting

    def close(self) -> None:
        """Detach every cached segment."""
        with self._lock:
            for segment_id in list(self._segments):
                self._drop(segment_id)
            self._retry_detach()
