"""The in-memory ring buffer (buffer.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from edgefleet.agent.capture.batcher import Layout
from edgefleet.agent.capture.buffer import CaptureBuffer
from edgefleet.agent.types import CaptureRequest
from edgefleet.errors import ResourceExhausted

MakeCapture = Callable[..., CaptureRequest]


def test_full_buffer_refuses_until_a_batch_is_stored(make_capture: MakeCapture) -> None:
    buffer = CaptureBuffer(3, Layout("", "f", "d"))
    for i in range(3):
        buffer.put(make_capture(f"c{i}"))
    with pytest.raises(ResourceExhausted, match="buffer_size"):
        buffer.put(make_capture("c3"))
    [batch] = buffer.take_batches(10)
    with pytest.raises(ResourceExhausted):  # taken but not stored: slots still held
        buffer.put(make_capture("c3"))
    buffer.complete(batch)
    buffer.put(make_capture("c3"))
    assert buffer.held == 1


def test_batch_names_are_unique_per_buffer(make_capture: MakeCapture) -> None:
    layout = Layout("", "f", "d")
    keys = set()
    for buffer in (CaptureBuffer(5, layout), CaptureBuffer(5, layout)):
        for i in range(4):
            buffer.put(make_capture(f"c{i}"))
            keys.update(batch.key for batch in buffer.take_batches(1))
    assert len(keys) == 8


def test_wait_returns_on_count_timeout_or_wake(make_capture: MakeCapture) -> None:
    buffer = CaptureBuffer(10, Layout("", "f", "d"))
    started = time.monotonic()
    assert buffer.wait(2, 0.05) == 0
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.02, lambda: [buffer.put(make_capture(f"c{i}")) for i in range(2)]).start()
    assert buffer.wait(2, 5.0) == 2
    threading.Timer(0.02, buffer.wake).start()
    started = time.monotonic()
    assert buffer.wait(5, 5.0) == 2
    assert time.monotonic() - started < 1.0


def test_byte_budget_refuses_and_frees_on_complete() -> None:
    from edgefleet.agent.types import CapturedTensor

    def capture(capture_id: str, size: int) -> CaptureRequest:
        tensor = CapturedTensor(name="x", data_type=0, shape=(size,), data=b"\0" * size)
        return CaptureRequest(capture_id=capture_id, model_alias="m", model_version="1",
                              inference_time_ns=time.time_ns(), input_tensors=(tensor,))

    buffer = CaptureBuffer(10, Layout("", "f", "d"), max_bytes=1000)
    buffer.put(capture("a", 600))
    with pytest.raises(ResourceExhausted, match="edgefleet_capture_buffer_max_bytes"):
        buffer.put(capture("b", 600))
    for batch in buffer.take_batches(10):
        buffer.complete(batch)
    buffer.put(capture("b", 600))
