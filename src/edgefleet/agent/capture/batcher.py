"""Batches: which captures go into which file, and where that file lives.

A batch is the unit a sink stores: one ``.jsonl`` file (plus raw files for large payloads) holding
captures of one model whose inference times fall in one UTC hour, at the key::

    <folder_prefix>/<fleet>/<model>/YYYY/MM/DD/HH/<device>-<stream>-<sequence>.jsonl

(shared/spec/agent-api.md, "Capture records"; the prefix is left out when empty). The file name is
deterministic: ``stream`` names the batch sequence (the durable spool's id, or a random id per
process without a spool) and ``sequence`` counts batches in it, so storing a batch again after a
crash overwrites the same object instead of adding a duplicate. The device name keeps the files of
devices in one fleet apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

from edgefleet.agent.types import CaptureRequest


@dataclass(frozen=True, slots=True)
class Batch:
    """Captures to be stored together under ``key`` (a ``.jsonl`` key, ``/``-separated).

    Attributes:
        key: the batch file's key relative to the capture root.
        requests: the captures, in arrival order.
        spool_id: the spool's batch row, or ``None`` without a spool.
    """

    key: str
    requests: tuple[CaptureRequest, ...]
    spool_id: int | None = None


class Layout:
    """Folder layout and file names of batches.

    Args:
        folder_prefix: first path component(s) (``sagemaker_edge_core_folder_prefix``); may be
            empty; leading and trailing ``/`` are ignored.
        fleet: device fleet name.
        device: device name.
    """

    def __init__(self, folder_prefix: str, fleet: str, device: str) -> None:
        prefix = folder_prefix.strip("/")
        self._root = f"{prefix}/{fleet}" if prefix else fleet
        self._device = device

    def directory(self, request: CaptureRequest) -> str:
        """The folder of a capture's batch: model alias and UTC hour of its inference time."""
        hour = _utc_hour(request.inference_time_ns // 3_600_000_000_000)
        return f"{self._root}/{request.model_alias}/{hour}"

    def key(self, directory: str, stream: str, sequence: int) -> str:
        """The key of batch number ``sequence`` (>= 0) of ``stream`` (letters and digits)."""
        return f"{directory}/{self._device}-{stream}-{sequence:010d}.jsonl"

    def group(self, requests: Sequence[CaptureRequest]) -> list[tuple[str, list[CaptureRequest]]]:
        """Split captures by folder, keeping arrival order within and across folders."""
        groups: dict[str, list[CaptureRequest]] = {}
        for request in requests:
            groups.setdefault(self.directory(request), []).append(request)
        return list(groups.items())


@lru_cache(maxsize=64)
def _utc_hour(hours: int) -> str:
    # Called for every capture; formatting a datetime is the expensive part, and captures of
    # one hour share it.
    return f"{datetime.fromtimestamp(hours * 3600, tz=UTC):%Y/%m/%d/%H}"


class BatchSource(Protocol):
    """Where the flusher takes batches from: the in-memory buffer or the durable spool."""

    def wait(self, count: int, timeout: float) -> int:
        """Block until ``count`` captures wait, ``timeout`` seconds pass or :meth:`wake` is
        called; return how many captures wait (not yet in a batch)."""

    def take_batches(self, limit: int) -> list[Batch]:
        """Form batches from up to ``limit`` waiting captures, oldest first; a spool returns
        the batches it formed before a restart first."""

    def complete(self, batch: Batch) -> None:
        """The sink stored ``batch``: free what it held."""

    def wake(self) -> None:
        """Make a blocked :meth:`wait` return now (used to flush on close)."""
