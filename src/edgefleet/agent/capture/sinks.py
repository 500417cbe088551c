"""Capture sinks: where batch files are stored.

Every sink stores :class:`~edgefleet.wire.capture.BatchFile` lists under their keys and
says how a record refers to a raw payload file (``data-ref``). Writes are idempotent: storing the
same files again overwrites them, which is what makes re-delivery after a crash exactly-once.

* :class:`DiskSink`: files under a folder (``Disk`` destination), each written atomically.
* :class:`S3Sink`: objects in an S3-compatible bucket (``Cloud`` destination), through boto3.
* :class:`MemorySink`: a public in-memory double for tests, which can be told to fail.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from edgefleet.agent.config import AgentConfig
from edgefleet.wire.capture import BatchFile, CaptureRecord, decode_batch

#: Flags of a freshly created batch file: fail rather than reuse or follow a link.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class CaptureSink(Protocol):
    """Where batches go. Implementations must be safe to call from one thread at a time."""

    def data_ref(self, key: str) -> str:
        """The ``data-ref`` a record gives for the raw payload file stored at ``key``."""

    def write(self, files: Sequence[BatchFile]) -> None:
        """Store ``files`` in order, replacing files with the same keys.

        Raises:
            Exception: anything; the capture service logs it and retries the same files later.
        """

    def describe(self) -> str:
        """Where the files go, for log lines and error messages (no secrets)."""

    def close(self) -> None:
        """Release threads and connections; called once, when the capture service stops."""


class DiskSink:
    """Batch files under a local folder.

    Each file is written to a hidden temporary file in its folder and renamed over the final
    name, so a reader never sees a partial file. Raw payload files come before the ``.jsonl``
    file that references them. ``data-ref`` is the raw file's name, relative to the batch file's
    folder.

    With ``fsync`` (what the durable mode uses) each file is fsynced before its rename and the
    folders after the renames, so a file that exists survives a power loss; the spool forgets a
    batch only after that. Without it a power loss may lose the files written in the last
    seconds, as it loses the captures that wait in memory; fsync stalls of a busy disk (tens of
    ms) then never hold up the flusher.

    Args:
        root: the capture folder (``sagemaker_edge_core_capture_data_disk_path``).
        fsync: make every write durable before returning.

    Attributes:
        lock: held while files are written; :class:`~edgefleet.agent.capture.uploader.
            PeriodicUploader` holds it while removing emptied folders.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.lock = threading.Lock()

    def data_ref(self, key: str) -> str:
        """The raw file's name (it lies beside the batch file)."""
        return PurePosixPath(key).name

    def write(self, files: Sequence[BatchFile]) -> None:
        """Write the files atomically (see the class docstring).

        Raises:
            OSError: the folder cannot be created or written (full disk, permissions).
        """
        folders: set[Path] = set()
        with self.lock:
            for file in files:
                path = self.root / file.key
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.tmp")
                # A leftover of a crash (or a planted link) goes first; then the file is made
                # new, never followed through a link, and readable by the owner's group only.
                temporary.unlink(missing_ok=True)
                descriptor = os.open(temporary, _NEW_FILE, 0o640)
                with os.fdopen(descriptor, "wb") as stream:
                    stream.write(file.data)
                    if self.fsync:
                        stream.flush()
                        os.fsync(stream.fileno())
                os.replace(temporary, path)
                folders.add(path.parent)
            if self.fsync:
                for folder in folders:
                    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(descriptor)
                    finally:
                        os.close(descriptor)

    def describe(self) -> str:
        """``disk folder <root>``."""
        return f"disk folder {self.root}"

    def close(self) -> None:
        """Nothing to release (files are closed after each write)."""


class S3Sink:
    """Batch files as objects in an S3-compatible bucket.

    ``data-ref`` is the raw object's ``s3://bucket/key`` URI. Objects are written with single
    PUTs: the raw payload objects of a batch concurrently (each PUT waits for a round trip, so
    one at a time made large captures wait on latency, not bandwidth), the ``.jsonl`` after all
    of them succeeded.

    Args:
        client: a boto3 S3 client (thread-safe; its connection pool should hold ``concurrency``
            connections), or None to make one with ``connect`` at the first write.
        bucket: bucket name; the bucket must exist.
        concurrency: PUTs in flight at most (``edgefleet_s3_upload_concurrency``); 1 writes one
            object at a time.
        connect: makes the client when ``client`` is None. boto3 fetches credentials when a
            client is made; from a credentials endpoint (Greengrass's token exchange service,
            ECS) that can fail while the endpoint is down, so the sink makes its client when it
            first writes: a failure is then a failed write, retried with the capture service's
            backoff, and the agent starts and serves meanwhile.
        endpoint: the endpoint URL, for :meth:`describe` before the client exists.
    """

    def __init__(self, client: S3Client | None, bucket: str, concurrency: int = 8, *,
                 connect: Callable[[], S3Client] | None = None,
                 endpoint: str | None = None) -> None:
        if client is None and connect is None:
            raise ValueError("S3Sink needs a client or a way to connect one")
        self._client = client
        self._connect = connect
        self._client_lock = threading.Lock()
        self.bucket = bucket
        self._endpoint = endpoint
        self._concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None

    @property
    def client(self) -> S3Client:
        """The boto3 client, made on first use when the sink was given ``connect``.

        Raises:
            botocore.exceptions.BotoCoreError: credentials cannot be fetched (the credentials
                endpoint is down or refuses); the next use tries again.
        """
        with self._client_lock:
            if self._client is None:
                assert self._connect is not None
                self._client = self._connect()
            return self._client

    @classmethod
    def from_config(cls, config: AgentConfig) -> S3Sink:
        """The sink for ``sagemaker_edge_provider_s3_bucket_name``.

        Uses ``edgefleet_s3_endpoint_url`` (default: AWS S3), ``sagemaker_edge_core_region``,
        ``edgefleet_s3_access_key_id`` and ``edgefleet_s3_secret_access_key`` (default: boto3's
        credential chain) and ``sagemaker_edge_provider_aws_ca_cert_file`` to verify TLS. Path-style
        addressing, so that self-hosted stores work without DNS for bucket names; short timeouts
        and few retries, because the capture service retries with its own backoff.

        Raises:
            ValueError: no bucket is configured.
        """
        bucket = config.sagemaker_edge_provider_s3_bucket_name
        if not bucket:
            raise ValueError("sagemaker_edge_provider_s3_bucket_name is not set")
        # Imported here: boto3 costs ~18 MB of RSS, which agents capturing to Disk never need.
        import boto3
        from botocore.config import Config

        secret = config.edgefleet_s3_secret_access_key
        ca_file = config.sagemaker_edge_provider_aws_ca_cert_file
        concurrency = config.edgefleet_s3_upload_concurrency
        def connect() -> S3Client:
            return boto3.session.Session().client(
                "s3",
                endpoint_url=config.edgefleet_s3_endpoint_url,
                region_name=config.sagemaker_edge_core_region,
                aws_access_key_id=config.edgefleet_s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
                verify=str(ca_file) if ca_file is not None else None,
                config=Config(connect_timeout=3, read_timeout=30,
                              retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"},
                              max_pool_connections=max(10, concurrency)),
            )
        return cls(None, bucket, concurrency, connect=connect,
                   endpoint=config.edgefleet_s3_endpoint_url or "AWS S3")

    def data_ref(self, key: str) -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}"

    def write(self, files: Sequence[BatchFile]) -> None:
        """PUT every file: all but the last concurrently, then the last (the ``.jsonl``), so
        that a record is never visible before its payloads.

        Raises:
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: the store is
                unreachable or refused (credentials, missing bucket); one such error, raised
                after every PUT started has finished.
        """
        if not files:
            return
        *payloads, last = files
        if len(payloads) > 1 and self._concurrency > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency,
                                                thread_name_prefix="capture-s3")
            done, _ = wait([self._pool.submit(self._put, file) for file in payloads])
            for future in done:
                future.result()  # raises the PUT's error
        else:
            for file in payloads:
                self._put(file)
        self._put(last)

    def _put(self, file: BatchFile) -> None:
        self.client.put_object(Bucket=self.bucket, Key=file.key, Body=file.data)

    def close(self) -> None:
        """Stop the upload threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def describe(self) -> str:
        """``bucket s3://<bucket>`` and the endpoint, when not AWS."""
        endpoint = self._endpoint or self.client.meta.endpoint_url
        return f"bucket s3://{self.bucket} at {endpoint}"


class MemorySink:
    """Keeps batch files in a dict; the test double of a sink.

    Set :attr:`failure` to an exception to make every write raise it (a store that is down);
    set it back to ``None`` to bring the store back.

    Attributes:
        files: key -> bytes of everything stored.
        writes: successful :meth:`write` calls.
        failure: the exception writes raise, or ``None``.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.writes = 0
        self.failure: Exception | None = None
        self._lock = threading.Lock()

    def data_ref(self, key: str) -> str:
        """The raw file's name, relative to the batch file's folder (as on disk)."""
        return PurePosixPath(key).name

    def write(self, files: Sequence[BatchFile]) -> None:
        """Store the files, or raise :attr:`failure`."""
        if self.failure is not None:
            raise self.failure
        with self._lock:
            for file in files:
                self.files[file.key] = file.data
            self.writes += 1

    def describe(self) -> str:
        """``memory sink``."""
        return "memory sink"

    def close(self) -> None:
        """Nothing to release."""

    def batch_keys(self) -> list[str]:
        """Keys of the stored ``.jsonl`` files, sorted."""
        with self._lock:
            return sorted(key for key in self.files if key.endswith(".jsonl"))

    def records(self) -> list[CaptureRecord]:
        """Every stored record, decoded, batch files in key order."""
        with self._lock:
            files = dict(self.files)
        result: list[CaptureRecord] = []
        for key in sorted(k for k in files if k.endswith(".jsonl")):
            result.extend(decode_batch(files[key], _beside(files, PurePosixPath(key).parent)))
        return result


def _beside(files: dict[str, bytes], folder: PurePosixPath) -> Callable[[str], bytes]:
    """Resolves a relative ``data-ref`` against a batch file's folder in ``files``."""
    return lambda ref: files[str(folder / ref)]
