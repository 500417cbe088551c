"""Periodic upload: moving finished batch files from the capture folder to the bucket.

With the ``Disk`` destination and ``sagemaker_edge_core_capture_data_periodic_upload`` on, every
``..._periodic_upload_period_seconds`` the files under the capture folder are uploaded under the
same keys and then deleted (shared/spec/agent-api.md). Raw payload files go before ``.jsonl``
files, so a batch file in the bucket never references a missing payload; relative ``data-ref``
paths stay valid because the folder layout is kept. A crash between an upload and the delete
uploads the file again under the same key: nothing is duplicated.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from edgefleet.agent.capture.sinks import CaptureSink, DiskSink
from edgefleet.wire.capture import BatchFile

log = logging.getLogger(__name__)

#: Files, and bytes, read into memory at most for one write to the store.
CHUNK_FILES = 32
CHUNK_BYTES = 64 << 20


class PeriodicUploader:
    """Moves finished files from a :class:`DiskSink`'s folder to another sink.

    Args:
        disk: the sink whose folder is emptied (its hidden temporary files are skipped).
        store: where files go (usually an :class:`~edgefleet.agent.capture.sinks.S3Sink`).
        period: seconds between two rounds.

    Attributes:
        uploaded: files moved since start.
        failures: rounds stopped by an error.
    """

    def __init__(self, disk: DiskSink, store: CaptureSink, period: float) -> None:
        self.disk = disk
        self.store = store
        self.period = period
        self.uploaded = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="capture-uploader", daemon=True)

    def start(self) -> None:
        """Start the upload thread."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Run a last round and stop the thread, waiting at most ``timeout`` seconds; then
        release the store (its upload threads)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.store.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.upload_once()
        self.upload_once()

    def upload_once(self) -> int:
        """Upload and delete every finished file now; return how many were moved.

        An error stops the round (logged, counted in :attr:`failures`); the next round retries.
        """
        root = self.disk.root
        files = sorted(path for path in root.rglob("*")
                       if path.is_file() and not path.name.startswith("."))
        moved = 0
        try:
            # All raw payload files first, then the batch files; each in groups that the store
            # may write concurrently (S3Sink PUTs all but the last of a group at once).
            for group in ([p for p in files if p.suffix != ".jsonl"],
                          [p for p in files if p.suffix == ".jsonl"]):
                for chunk in _chunks(group):
                    self.store.write([BatchFile(path.relative_to(root).as_posix(),
                                                path.read_bytes()) for path in chunk])
                    for path in chunk:
                        path.unlink()
                    moved += len(chunk)
        except Exception as error:  # any store error: keep the files, retry next round
            self.failures += 1
            log.warning("periodic upload to %s failed after %d of %d files: %s; retrying in "
                        "%g s", self.store.describe(), moved, len(files), error, self.period)
        self.uploaded += moved
        if moved:
            log.debug("periodic upload moved %d files to %s", moved, self.store.describe())
            self._remove_empty_folders(root)
        return moved

    def _remove_empty_folders(self, root: Path) -> None:
        # Under the sink's lock, so a batch being written never loses its folder.
        with self.disk.lock:
            for folder, _, _ in os.walk(root, topdown=False):
                if Path(folder) != root:
                    with contextlib.suppress(OSError):  # not empty
                        os.rmdir(folder)


def _chunks(paths: list[Path]) -> Iterator[list[Path]]:
    """``paths`` in order, in groups of at most ``CHUNK_FILES`` files and ``CHUNK_BYTES`` bytes
    (a larger file makes a group of its own)."""
    chunk: list[Path] = []
    size = 0
    for path in paths:
        length = path.stat().st_size
        if chunk and (len(chunk) == CHUNK_FILES or size + length > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(path)
        size += length
    if chunk:
        yield chunk
