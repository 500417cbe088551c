"""The durable spool (spool.py), below the service."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefleet.agent.capture.batcher import Layout
from edgefleet.agent.capture.spool import Spool, pack_request, unpack_request
from edgefleet.agent.types import CaptureRequest, CaptureStatus
from edgefleet.errors import EdgefleetError, ResourceExhausted

MakeCapture = Callable[..., CaptureRequest]
LAYOUT = Layout("", "windfarm", "edge-1")


def open_spool(path: Path, **overrides: object) -> Spool:
    options: dict[str, object] = {"max_bytes": 1 << 20, "policy": "refuse", "queue_limit": 30,
                                  "status_ttl": 60.0, "on_dropped": lambda ids: None}
    options.update(overrides)
    spool = Spool(path / "spool.sqlite", LAYOUT, **options)  # type: ignore[arg-type]
    spool.start()
    return spool


def append(spool: Spool, request: CaptureRequest) -> None:
    spool.append(request, LAYOUT.directory(request), wait=True)


def test_pack_round_trip(make_capture: MakeCapture) -> None:
    for request in (make_capture("c"), make_capture("s", sampled=True, size=0),
                    CaptureRequest("bare", "m", "", 0)):
        assert unpack_request(pack_request(request)) == request


def test_batches_are_kept_across_a_reopen(tmp_path: Path, make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path)
    for i in range(5):
        append(spool, make_capture(f"c{i}"))
    assert spool.wait(3, 0.0) == 5
    [batch] = spool.take_batches(3)
    assert [r.capture_id for r in batch.requests] == ["c0", "c1", "c2"]
    assert batch.key == f"windfarm/anomaly/2026/11/23/19/edge-1-{spool.stream}-0000000001.jsonl"
    stream = spool.stream
    spool.close()

    reopened = open_spool(tmp_path)
    assert reopened.stream == stream
    assert reopened.recovered().in_progress == [f"c{i}" for i in range(5)]
    assert reopened.records == 5 and reopened.bytes > 0
    [again] = reopened.take_batches(10)  # first the batch formed before the stop, unchanged
    assert again == batch
    reopened.complete(again)
    [rest] = reopened.take_batches(10)
    assert [r.capture_id for r in rest.requests] == ["c3", "c4"]
    assert rest.key.endswith("-0000000002.jsonl")  # batch numbers are never reused
    reopened.complete(rest)
    assert reopened.records == 0 and reopened.bytes == 0
    finished = reopened.recovered().finished
    assert [(i, s) for i, s, _ in finished] == [(f"c{i}", CaptureStatus.SUCCESS)
                                                 for i in range(5)]
    reopened.close()


def test_a_capture_larger_than_the_budget_is_refused(tmp_path: Path,
                                                     make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path, max_bytes=1 << 16, policy="drop-oldest")
    with pytest.raises(ResourceExhausted, match="whole capture spool budget"):
        append(spool, make_capture("huge", size=20_000))
    spool.close()


def test_drop_oldest_reports_the_dropped_ids(tmp_path: Path, make_capture: MakeCapture) -> None:
    dropped: list[str] = []
    spool = open_spool(tmp_path, max_bytes=1 << 16, policy="drop-oldest",
                       on_dropped=dropped.extend)
    for i in range(10):
        append(spool, make_capture(f"c{i}", size=2500))
    assert dropped == [f"c{i}" for i in range(len(dropped))] and dropped
    assert spool.dropped == len(dropped)
    assert spool.bytes <= 1 << 16
    spool.close()


def test_a_failed_write_reaches_the_caller_or_on_dropped(tmp_path: Path,
                                                         make_capture: MakeCapture) -> None:
    dropped: list[str] = []
    spool = open_spool(tmp_path, on_dropped=dropped.extend)
    spool._db.close()  # the database becomes unusable, as after an I/O error
    with pytest.raises(EdgefleetError, match="cannot be written"):
        append(spool, make_capture("waited"))
    spool.append(make_capture("sampled", sampled=True), "dir", wait=False)
    deadline = time.monotonic() + 5
    while not dropped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dropped == ["sampled"]
    spool.close()
