"""Periodic upload from the capture folder to a store (uploader.py)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.agent.capture.sinks import DiskSink, MemorySink
from edgefleet.agent.capture.uploader import PeriodicUploader
from edgefleet.wire.capture import BatchFile

FILES = [BatchFile("f/m/2026/11/23/19/b.0.input.0.bin", b"\x00" * 10),
         BatchFile("f/m/2026/11/23/19/b.jsonl", b"{}\n")]


def test_periodic_upload_moves_files_and_prunes_folders(tmp_path: Path) -> None:
    disk = DiskSink(tmp_path)
    disk.write(FILES)
    (tmp_path / "f/m/2026/11/23/19/.c.jsonl.tmp").write_bytes(b"half")  # being written
    store = MemorySink()
    uploader = PeriodicUploader(disk, store, period=60)
    assert uploader.upload_once() == 2
    assert store.files == {f.key: f.data for f in FILES}
    assert [f.name for f in tmp_path.rglob("*") if f.is_file()] == [".c.jsonl.tmp"]
    (tmp_path / "f/m/2026/11/23/19/.c.jsonl.tmp").unlink()
    disk.write(FILES[:1])
    assert uploader.upload_once() == 1
    assert list(tmp_path.iterdir()) == []


def test_periodic_upload_keeps_files_when_the_store_fails(tmp_path: Path) -> None:
    disk = DiskSink(tmp_path)
    disk.write(FILES)
    store = MemorySink()
    store.failure = ConnectionError("down")
    uploader = PeriodicUploader(disk, store, period=60)
    assert uploader.upload_once() == 0
    assert uploader.failures == 1
    assert len([f for f in tmp_path.rglob("*") if f.is_file()]) == 2


def test_periodic_upload_writes_payloads_in_groups_before_batch_files(tmp_path: Path) -> None:
    disk = DiskSink(tmp_path)
    folder = "f/m/2026/11/23/19"
    for batch in range(3):
        disk.write([BatchFile(f"{folder}/b{batch}.{line}.input.0.bin", b"\x01" * 100)
                    for line in range(25)] + [BatchFile(f"{folder}/b{batch}.jsonl", b"{}\n")])
    store = MemorySink()
    assert PeriodicUploader(disk, store, period=60).upload_once() == 78
    assert store.writes == 4  # 75 payloads in groups of 32, 32 and 11, then the 3 batch files
    kinds = [key.endswith(".jsonl") for key in store.files]  # in the order they were stored
    assert kinds == [False] * 75 + [True] * 3
