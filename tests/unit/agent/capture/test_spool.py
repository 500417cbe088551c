"""The durable spool (spool.py), below the service."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefleet.agent.capture.batcher import Layout
from edgefleet.agent.capture.spool import FILE_THRESHOLD, Spool, pack_request, unpack_request
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


# -- large captures: payload files beside the database ------------------------------------------
LARGE = 40_000  # float32 values: 160 KB, above FILE_THRESHOLD


def payload_files(spool: Spool) -> list[Path]:
    return sorted(spool.payloads.iterdir())


def test_large_captures_live_in_files_until_stored(tmp_path: Path,
                                                   make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path, max_bytes=1 << 22)
    small, large = make_capture("small"), make_capture("large", size=LARGE)
    assert len(pack_request(small)) < FILE_THRESHOLD < len(pack_request(large))
    append(spool, small)
    append(spool, large)
    [name] = payload_files(spool)
    assert name.read_bytes() == pack_request(large)
    assert spool.bytes == len(pack_request(small)) + len(pack_request(large))
    spool.close()

    reopened = open_spool(tmp_path, max_bytes=1 << 22)  # a committed file survives a restart
    assert payload_files(reopened) == [name]
    [batch] = reopened.take_batches(10)
    assert batch.requests == (small, large)
    reopened.complete(batch)
    assert payload_files(reopened) == [] and reopened.bytes == 0
    reopened.close()


def test_files_no_row_names_are_removed_at_start(tmp_path: Path,
                                                 make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path, max_bytes=1 << 22)
    append(spool, make_capture("kept", size=LARGE))
    [kept] = payload_files(spool)
    spool.close()
    (spool.payloads / "0123abcd.bin").write_bytes(b"written, then the power failed")
    reopened = open_spool(tmp_path, max_bytes=1 << 22)
    assert payload_files(reopened) == [kept]
    reopened.close()


def test_a_lost_payload_file_fails_its_capture_only(tmp_path: Path,
                                                    make_capture: MakeCapture) -> None:
    given_up: list[str] = []
    spool = open_spool(tmp_path, max_bytes=1 << 22, on_dropped=given_up.extend)
    for capture_id in ("a", "b", "c"):
        append(spool, make_capture(capture_id, size=LARGE))
    spool.close()  # after a restart the captures come back from their files
    spool = open_spool(tmp_path, max_bytes=1 << 22, on_dropped=given_up.extend)
    payload_files(spool)[0].unlink()  # which capture it belonged to does not matter
    [batch] = spool.take_batches(10)
    assert len(given_up) == 1 and len(batch.requests) == 2
    assert {r.capture_id for r in batch.requests} | set(given_up) == {"a", "b", "c"}
    spool.complete(batch)
    assert spool.records == 0 and payload_files(spool) == []
    spool.close()
    reopened = open_spool(tmp_path)
    statuses = {i: s for i, s, _ in reopened.recovered().finished}
    reopened.close()
    assert statuses == {capture_id: CaptureStatus.FAILURE if capture_id in given_up
                        else CaptureStatus.SUCCESS for capture_id in ("a", "b", "c")}


def test_batches_take_recent_captures_from_memory_and_the_rest_from_disk(
        tmp_path: Path, make_capture: MakeCapture) -> None:
    # queue_limit 3: c0-c2 stay in memory for the flusher, c3-c5 are read back (rows, and
    # payload files for the large odd ones); c5's commit drops c0, in memory too.
    sent = [make_capture(f"c{i}", size=LARGE if i % 2 else 256) for i in range(6)]
    budget = sum(len(pack_request(request)) for request in sent) - 1
    given_up: list[str] = []
    spool = open_spool(tmp_path, queue_limit=3, max_bytes=budget, policy="drop-oldest",
                       on_dropped=given_up.extend)
    for request in sent:
        append(spool, request)
    assert spool.dropped == 1
    for path in payload_files(spool):  # c1's bytes are in memory still; c3's and c5's are lost
        path.unlink()
    [batch] = spool.take_batches(10)
    assert list(batch.requests) == [sent[1], sent[2], sent[4]]
    assert given_up == ["c0", "c3", "c5"]
    spool.complete(batch)
    assert spool.records == 0
    append(spool, sent[1])  # the memory was given back: held there again
    for path in payload_files(spool):
        path.unlink()
    [again] = spool.take_batches(10)
    assert list(again.requests) == [sent[1]] and given_up == ["c0", "c3", "c5"]
    spool.close()


def test_drop_oldest_and_refusals_remove_their_files(tmp_path: Path,
                                                     make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path, max_bytes=400_000, policy="drop-oldest")
    for i in range(4):
        append(spool, make_capture(f"c{i}", size=LARGE))
    assert spool.dropped == 2 and len(payload_files(spool)) == 2
    spool.close()
    refusing = open_spool(tmp_path, max_bytes=400_000)
    with pytest.raises(ResourceExhausted, match="capture spool full"):
        append(refusing, make_capture("c4", size=LARGE))
    assert len(payload_files(refusing)) == 2
    refusing.close()


def test_a_spool_written_before_payload_files_opens(tmp_path: Path,
                                                    make_capture: MakeCapture) -> None:
    old = make_capture("old", size=LARGE)
    database = sqlite3.connect(tmp_path / "spool.sqlite")
    database.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, capture_id TEXT NOT NULL,
            directory TEXT NOT NULL, size INTEGER NOT NULL, batch INTEGER, body BLOB NOT NULL);
        CREATE INDEX records_batch ON records (batch);
        CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL);
        CREATE TABLE finished (capture_id TEXT PRIMARY KEY, status INTEGER NOT NULL,
            expires REAL NOT NULL);""")
    body = pack_request(old)
    database.execute("INSERT INTO records (capture_id, directory, size, body) VALUES (?, ?, ?, ?)",
                     ("old", LAYOUT.directory(old), len(body), body))
    database.commit()
    database.close()
    spool = open_spool(tmp_path, max_bytes=1 << 22)
    assert spool.recovered().in_progress == ["old"]
    new = make_capture("new", size=LARGE)
    append(spool, new)
    [batch] = spool.take_batches(10)
    assert batch.requests == (old, new)
    spool.complete(batch)
    assert spool.records == 0 and payload_files(spool) == []
    spool.close()


def test_batches_of_interleaved_models_hold_exactly_their_captures(
        tmp_path: Path, make_capture: MakeCapture) -> None:
    spool = open_spool(tmp_path)
    for i in range(6):
        append(spool, make_capture(f"c{i}", model="alpha" if i % 2 == 0 else "beta"))
    first = spool.take_batches(3)  # c0 c1 c2: alpha gets c0 and c2, beta c1
    assert [[r.capture_id for r in b.requests] for b in first] == [["c0", "c2"], ["c1"]]
    rest = spool.take_batches(10)
    assert [[r.capture_id for r in b.requests] for b in rest] == [["c3", "c5"], ["c4"]]
    for batch in first + rest:
        spool.complete(batch)
    assert spool.records == 0 and spool.take_batches(10) == []
    spool.close()
