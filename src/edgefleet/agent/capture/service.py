"""CaptureService: the capture pipeline behind CaptureData and GetCaptureDataStatus.

::

    submit() --> ring buffer (memory) ------------------+--> flusher --> sink (Disk | S3)
             '-> group commit --> SQLite spool (durable) -'    batches,     '-> periodic upload
                                                               retries          (Disk -> bucket)

Without a spool (``sagemaker_edge_db_enable`` off) a capture waits in a ring buffer of
``capture_data_buffer_size`` captures. With it, :meth:`CaptureService.submit` returns only once the
capture is committed to the spool (fsynced; concurrent calls share one commit), so everything
acknowledged survives a crash or power loss and is delivered exactly once after the restart.
Captures the agent samples from Predict traffic are committed without waiting, so sampling never
slows a prediction down.

One flusher thread writes a batch when ``capture_data_batch_size`` captures wait, or every
``capture_data_push_period_seconds``, whichever comes first. A failing sink is retried with
exponential backoff; nothing accepted is dropped while the service runs, except by the spool's
``drop-oldest`` policy. Without a spool, CaptureData is refused with FAILED_PRECONDITION while the
destination fails; with one, the spool keeps captures up to ``edgefleet_capture_spool_max_bytes``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.capture.batcher import Batch, BatchSource, Layout
from edgefleet.agent.capture.buffer import CaptureBuffer
from edgefleet.agent.capture.sinks import CaptureSink, DiskSink, S3Sink
from edgefleet.agent.capture.spool import Spool
from edgefleet.agent.capture.status import StatusTable
from edgefleet.agent.capture.uploader import PeriodicUploader
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import CaptureRequest, CaptureStatus
from edgefleet.errors import FailedPrecondition, ResourceExhausted, Unavailable
from edgefleet.wire.capture import DeviceIdentity, encode_batch

log = logging.getLogger(__name__)

#: The spool's file, under ``sagemaker_edge_local_data_root_path``.
SPOOL_FILE = "capture/spool.sqlite"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays between attempts to store a batch that failed: about ``initial`` seconds, doubling
    up to ``maximum`` seconds, with jitter (see :class:`~edgefleet.agent.backoff.Backoff`)."""

    initial: float = 0.5
    maximum: float = 30.0

    def start(self) -> Backoff:
        """A fresh sequence of delays for one batch."""
        return Backoff(self.initial, self.maximum)


def sink_from_config(config: AgentConfig) -> CaptureSink:
    """The sink ``sagemaker_edge_core_capture_data_destination`` names: a :class:`DiskSink` on
    ``..._capture_data_disk_path`` (fsyncing in durable mode) or an :class:`S3Sink` on the
    configured bucket."""
    if config.sagemaker_edge_core_capture_data_destination == "Cloud":
        return S3Sink.from_config(config)
    return DiskSink(config.sagemaker_edge_core_capture_data_disk_path,
                    fsync=config.sagemaker_edge_db_enable)


class CaptureService:
    """The capture pipeline (see the module docstring).

    Args:
        config: agent configuration; every ``..._capture_data_*``, ``edgefleet_capture_*``,
            ``edgefleet_s3_*`` key and ``sagemaker_edge_db_enable`` apply.
        sink: where batches go; ``None`` builds it from the config (:func:`sink_from_config`).
        retry: delays between attempts to store a batch.

    Raises:
        sqlite3.Error, OSError: the spool cannot be opened (durable mode).
    """

    def __init__(self, config: AgentConfig, *, sink: CaptureSink | None = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        self._config = config
        self._sink = sink if sink is not None else sink_from_config(config)
        self._retry = retry
        self._identity = DeviceIdentity(config.sagemaker_edge_core_device_fleet_name,
                                        config.sagemaker_edge_core_device_name)
        self._layout = Layout(config.sagemaker_edge_core_folder_prefix,
                              config.sagemaker_edge_core_device_fleet_name,
                              config.sagemaker_edge_core_device_name)
        self._statuses = StatusTable(config.edgefleet_capture_status_ttl_seconds,
                                     config.edgefleet_capture_status_max_ids)
        self._spool: Spool | None = None
        self._buffer: CaptureBuffer | None = None
        self._source: BatchSource
        if config.sagemaker_edge_db_enable:
            self._spool = Spool(
                config.sagemaker_edge_local_data_root_path / SPOOL_FILE, self._layout,
                max_bytes=config.edgefleet_capture_spool_max_bytes,
                policy=config.edgefleet_capture_overflow_policy,
                queue_limit=config.sagemaker_edge_core_capture_data_buffer_size,
                status_ttl=config.edgefleet_capture_status_ttl_seconds,
                on_dropped=self._given_up)
            recovered = self._spool.recovered()
            for capture_id in recovered.in_progress:
                self._statuses.reserve(capture_id)
            for capture_id, status, expires in recovered.finished:
                self._statuses.finish([capture_id], status, expires)
            self._source = self._spool
            if recovered.in_progress:
                log.info("capture spool %s holds %d captures (%d bytes) from before the "
                         "restart; delivering them to %s", self._spool.path,
                         self._spool.records, self._spool.bytes, self._sink.describe())
        else:
            self._buffer = CaptureBuffer(config.sagemaker_edge_core_capture_data_buffer_size,
                                         self._layout,
                                         max_bytes=config.edgefleet_capture_buffer_max_bytes)
            self._source = self._buffer
        self._uploader: PeriodicUploader | None = None
        if (isinstance(self._sink, DiskSink)
                and config.sagemaker_edge_core_capture_data_periodic_upload):
            self._uploader = PeriodicUploader(
                self._sink, S3Sink.from_config(config),
                config.sagemaker_edge_core_capture_data_periodic_upload_period_seconds)
        self._flusher = threading.Thread(target=self._flush_loop, name="capture-flusher",
                                         daemon=True)
        self._stop = threading.Event()
        self._deadline = 0.0
        self._closed = False
        self._down: str | None = None
        self._counts = dict.fromkeys(
            ("accepted", "refused", "stored", "failed", "batches", "delivery_failures"), 0)
        self._counts_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the spool writer, the flusher and the periodic uploader. In durable mode the
        flusher first re-delivers what the spool holds from before a restart."""
        if self._spool is not None:
            self._spool.start()
        self._flusher.start()
        if self._uploader is not None:
            self._uploader.start()
        log.info("capture to %s, %s", self._sink.describe(),
                 f"durable spool {self._spool.path}" if self._spool is not None
                 else "no spool (sagemaker_edge_db_enable is off)")

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting captures, store what waits, stop the threads.

        With a spool, a failing destination is not waited for: what waits stays in the spool for
        the next start. Without one, the destination is retried for at most ``timeout`` seconds;
        what it cannot store by then is lost (logged, statuses FAILURE).
        """
        self._closed = True
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._source.wake()
        if self._flusher.is_alive():
            self._flusher.join(timeout + 1.0)
        if self._uploader is not None:
            self._uploader.stop(max(0.0, self._deadline - time.monotonic()))
        if not self._flusher.is_alive():
            self._sink.close()
        if self._spool is not None:
            if self._flusher.is_alive():
                log.warning("capture flusher still storing a batch at shutdown; it stays in the "
                            "spool %s for the next start", self._spool.path)
            else:
                self._spool.close()

    # -- the API AgentService uses -------------------------------------------------------------
    def submit(self, request: CaptureRequest) -> None:
        """Accept one capture; returns at once (durable mode: once committed to the spool).

        Raises:
            AlreadyExists: ``request.capture_id`` is still known (in progress or recently
                finished).
            ResourceExhausted: the buffer is full, or the spool budget is reached under the
                ``refuse`` policy.
            FailedPrecondition: the destination is failing and there is no spool.
            Unavailable: the service is closed.
        """
        if self._closed:
            raise Unavailable("the capture pipeline is shutting down; retry after the restart")
        if self._spool is None and self._down is not None:
            self._count("refused")
            raise FailedPrecondition(
                f"capture destination {self._sink.describe()} is failing ({self._down}) and "
                f"there is no local spool; retry later, or set sagemaker_edge_db_enable to keep "
                f"captures on the device while the destination is offline")
        self._statuses.reserve(request.capture_id)
        try:
            if self._spool is not None:
                self._spool.append(request, self._layout.directory(request),
                                   wait=not request.sampled)
            else:
                assert self._buffer is not None
                self._buffer.put(request)
        except BaseException as error:
            self._statuses.forget(request.capture_id)
            if isinstance(error, ResourceExhausted):
                self._count("refused")
            raise
        self._count("accepted")

    def status(self, capture_id: str) -> CaptureStatus:
        """IN_PROGRESS until the capture is stored, then SUCCESS (or FAILURE when given up).

        Raises:
            NotFound: unknown id, or finished more than ``edgefleet_capture_status_ttl_seconds``
                ago.
        """
        return self._statuses.get(capture_id)

    def metrics(self) -> dict[str, float]:
        """Counters and gauges of the pipeline, Prometheus-style names.

        ``capture_buffered`` (captures in memory, no spool), ``capture_spool_records``,
        ``capture_spool_bytes``, ``capture_spool_max_bytes``, ``capture_accepted_total``,
        ``capture_refused_total`` (RESOURCE_EXHAUSTED or FAILED_PRECONDITION),
        ``capture_stored_total``, ``capture_dropped_total`` (by ``drop-oldest``),
        ``capture_failed_total`` (status FAILURE), ``capture_batches_total``,
        ``capture_delivery_failures_total`` (failed sink writes), ``capture_destination_up``
        (1 or 0), ``capture_uploaded_files_total`` and ``capture_upload_failures_total``
        (periodic upload).
        """
        with self._counts_lock:
            result = {f"capture_{name}_total": float(value) for name, value in self._counts.items()}
        result["capture_destination_up"] = 0.0 if self._down is not None else 1.0
        result["capture_buffered"] = float(self._buffer.held if self._buffer is not None else 0)
        spool = self._spool
        result["capture_spool_records"] = float(spool.records if spool is not None else 0)
        result["capture_spool_bytes"] = float(spool.bytes if spool is not None else 0)
        result["capture_spool_max_bytes"] = float(self._config.edgefleet_capture_spool_max_bytes)
        result["capture_dropped_total"] = float(spool.dropped if spool is not None else 0)
        uploader = self._uploader
        result["capture_uploaded_files_total"] = float(uploader.uploaded if uploader else 0)
        result["capture_upload_failures_total"] = float(uploader.failures if uploader else 0)
        return result

    # -- internals -----------------------------------------------------------------------------
    def _count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += amount

    def _given_up(self, capture_ids: list[str]) -> None:
        self._statuses.finish(capture_ids, CaptureStatus.FAILURE)
        self._count("failed", len(capture_ids))

    def _flush_loop(self) -> None:
        batch_size = self._config.sagemaker_edge_core_capture_data_batch_size
        period = self._config.sagemaker_edge_core_capture_data_push_period_seconds
        while True:
            try:
                batches = self._source.take_batches(batch_size)
            except Exception:
                # The flusher must outlive any one failure (a full disk under the spool, say):
                # what waits stays where it is and the next pass tries again.
                log.exception("capture: forming batches failed; retrying in 1 s")
                if self._stop.wait(1.0):
                    return
                continue
            for position, batch in enumerate(batches):
                if not self._deliver(batch):
                    self._abandon(batches[position:])
                    return
            if self._stop.is_set():
                if self._source.wait(1, 0.0) == 0:
                    return
            else:
                self._source.wait(batch_size, period)

    def _deliver(self, batch: Batch) -> bool:
        """Store a batch, retrying with backoff; False when closing and out of time."""
        if not batch.requests:  # every capture of it was given up (lost payload files)
            self._source.complete(batch)
            return True
        try:
            files = encode_batch(
                batch.requests, key=batch.key, device=self._identity,
                embed_limit=self._config.sagemaker_edge_core_capture_data_base64_embed_limit,
                data_ref=self._sink.data_ref)
        except Exception:
            # A batch that cannot be encoded never will be: report it failed, keep going.
            log.exception("capture: a batch of %d captures cannot be encoded; marked FAILURE",
                          len(batch.requests))
            self._source.complete(batch)
            self._given_up([r.capture_id for r in batch.requests])
            return True
        backoff = self._retry.start()
        delay = backoff.next_delay()
        while True:
            try:
                self._sink.write(files)
                break
            except Exception as error:  # any sink error: keep the batch, retry later
                self._count("delivery_failures")
                self._down = f"{type(error).__name__}: {error}"
                log.warning("capture destination %s failed (%s); %s; retrying in %.1f s",
                            self._sink.describe(), self._down, self._backlog(), delay)
            if self._stop.is_set():
                remaining = self._deadline - time.monotonic()
                if remaining <= 0 or self._spool is not None:  # the spool keeps it: no wait
                    return False
                time.sleep(min(delay, remaining))
            else:
                self._stop.wait(delay)
            delay = backoff.next_delay()
        if self._down is not None:
            log.info("capture destination %s is back; %s", self._sink.describe(),
                     self._backlog())
            self._down = None
        self._source.complete(batch)
        self._statuses.finish([r.capture_id for r in batch.requests], CaptureStatus.SUCCESS)
        self._count("stored", len(batch.requests))
        self._count("batches")
        return True

    def _backlog(self) -> str:
        if self._spool is not None:
            return (f"{self._spool.records} captures ({self._spool.bytes} of "
                    f"{self._config.edgefleet_capture_spool_max_bytes} bytes) wait in the spool")
        assert self._buffer is not None
        return f"{self._buffer.held} captures wait in memory"

    def _abandon(self, batches: list[Batch]) -> None:
        # Closing and the destination is still failing: a spool keeps the captures.
        if self._spool is not None:
            log.warning("capture destination %s unreachable at shutdown; %s for the next start",
                        self._sink.describe(), self._backlog())
            return
        lost = [r.capture_id for batch in batches for r in batch.requests]
        lost += [r.capture_id for batch in self._source.take_batches(1 << 30)
                 for r in batch.requests]
        self._given_up(lost)
        log.error("capture destination %s unreachable at shutdown: %d captures lost; set "
                  "sagemaker_edge_db_enable to keep them on the device", self._sink.describe(),
                  len(lost))
