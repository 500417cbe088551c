"""Where the control plane reads captured data: the folder or bucket the agents write to.

A capture location lists complete batch files (``*.jsonl``) in key order and reads them, or a
byte range of them, and the raw payload files their records name in ``data-ref``
(docs/capture.md). Keys are ``/``-separated paths relative to the location, e.g.
``windfarm/anomaly/2026/11/23/19/edge-1-3f2a9c1d04e7-0000000042.jsonl``.

Files the agents have not finished are never listed: the disk sink writes a hidden
``.<name>.tmp`` and renames it (:class:`edgefleet.agent.capture.sinks.DiskSink`), and the S3
sink PUTs a batch's ``.jsonl`` after its raw files. Only names ending in ``.jsonl`` are batch
files, and names starting with ``.`` (hidden files and folders) are skipped.

* :class:`LocalCaptureLocation`: a folder (the agents'
  ``sagemaker_edge_core_capture_data_disk_path``, or a copy of it).
* :class:`S3CaptureLocation`: ``s3://bucket/prefix`` through boto3, with the client settings
  of the server's S3 object store (:class:`edgefleet.fleet.storage.S3ObjectStore`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edgefleet.errors import ConfigError, InvalidArgument, NotFound, Unavailable
from edgefleet.fleet.storage import S3ObjectStore

#: Largest raw payload file (``data-ref``) the server reads, in bytes.
MAX_REF_BYTES = 256 << 20


@dataclass(frozen=True)
class Listing:
    """One bounded slice of a location's batch files.

    Attributes:
        files: ``(key, size in bytes)`` of batch files, in key order.
        next_after: where the next slice starts (the last key looked at, batch file or not).
        complete: the end of the location was reached.
    """

    files: list[tuple[str, int]]
    next_after: str
    complete: bool


class CaptureLocation(Protocol):
    """Read access to the batch files agents stored."""

    def list_after(self, after: str, limit: int) -> Listing:
        """Batch files whose keys sort after ``after`` ("" from the start), at most ``limit``.

        Raises:
            Unavailable: the location cannot be listed (folder missing, store unreachable).
        """

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes (None: to the end) of the file ``key`` from byte ``offset``.

        Raises:
            NotFound: no such file. Unavailable: the store cannot be read.
        """

    def load_ref(self, batch_key: str, ref: str) -> bytes:
        """The bytes of the raw payload file a record of ``batch_key`` names in ``data-ref``:
        a file name beside the batch file, or ``s3://bucket/key`` inside this location.

        Raises:
            InvalidArgument: the reference points elsewhere (another folder or bucket) or the
                file is larger than :data:`MAX_REF_BYTES`.
            NotFound, Unavailable: as :meth:`read`.
        """

    def describe(self) -> str:
        """The location for messages (no secrets)."""


def _is_batch(name: str) -> bool:
    return name.endswith(".jsonl") and not name.startswith(".")


def _beside(batch_key: str, ref: str) -> str:
    # A relative data-ref is a bare file name (DiskSink.data_ref): nothing that climbs out.
    if not ref or "/" in ref or "\\" in ref or ref in (".", ".."):
        raise InvalidArgument(f"data-ref {ref[:200]!r} of {batch_key} is not a file name "
                              "beside the batch file")
    return str(PurePosixPath(batch_key).parent / ref)


class LocalCaptureLocation:
    """Batch files under the folder ``root`` (symbolic links are not followed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _walk(self, folder: Path, prefix: str, after: str) -> Iterator[tuple[str, int]]:
        entries: list[tuple[str, os.DirEntry[str]]] = []
        with os.scandir(folder) as found:
            for entry in found:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    entries.append((entry.name + "/", entry))
                elif entry.is_file(follow_symlinks=False) and _is_batch(entry.name):
                    entries.append((entry.name, entry))
        # "name/" sorts among file names exactly as the keys below it do (S3's order).
        entries.sort(key=lambda item: item[0])
        for name, entry in entries:
            key = prefix + name
            if name.endswith("/"):
                # Every key below starts with ``key``: all sort before ``after`` unless
                # ``after`` itself lies below or ``key`` sorts after it.
                if key < after and not after.startswith(key):
                    continue
                yield from self._walk(Path(entry.path), key, after)
            elif key > after:
                yield key, entry.stat(follow_symlinks=False).st_size

    def list_after(self, after: str, limit: int) -> Listing:
        """See :meth:`CaptureLocation.list_after` (one sorted walk, pruned before ``after``)."""
        if not self.root.is_dir():
            raise Unavailable(f"capture folder {self.root} does not exist; create it or fix "
                              "--capture-location")
        files: list[tuple[str, int]] = []
        for item in self._walk(self.root, "", after):
            files.append(item)
            if len(files) >= limit:
                return Listing(files, item[0], False)
        return Listing(files, files[-1][0] if files else after, True)

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("..", ".") for p in parts):
            raise InvalidArgument(f"capture key {key[:200]!r} is not a relative path")
        return self.root / key

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """See :meth:`CaptureLocation.read`."""
        path = self._path(key)
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                return stream.read() if length is None else stream.read(length)
        except FileNotFoundError:
            raise NotFound(f"capture file {key} is gone from {self.root}") from None
        except OSError as exc:
            raise Unavailable(f"capture file {key} in {self.root} cannot be read: {exc}") from exc

    def load_ref(self, batch_key: str, ref: str) -> bytes:
        """See :meth:`CaptureLocation.load_ref`."""
        if ref.startswith("s3://"):
            raise InvalidArgument(f"data-ref {ref[:200]} of {batch_key} is in a bucket; the "
                                  f"capture location is the folder {self.root}")
        key = _beside(batch_key, ref)
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"raw payload {key} named by {batch_key} is missing") from None
        if size > MAX_REF_BYTES:
            raise InvalidArgument(f"raw payload {key} is {size} bytes; at most "
                                  f"{MAX_REF_BYTES} are read")
        return self.read(key)

    def describe(self) -> str:
        """``folder <root>``."""
        return f"folder {self.root}"


class S3CaptureLocation:
    """Batch files in ``s3://bucket/prefix``; ``client`` is a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""

    def _failed(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
                "NoSuchKey", "404"):
            return NotFound(f"{what} is gone from s3://{self.bucket}")
        return Unavailable(f"{what} in s3://{self.bucket}/{self.prefix} cannot be read "
                           f"({type(exc).__name__}: {exc})")

    def list_after(self, after: str, limit: int) -> Listing:
        """See :meth:`CaptureLocation.list_after`: ListObjectsV2 from ``after``, at most
        ``limit // 100 + 5`` pages of 1,000 keys (raw ``.bin`` objects lie between batches)."""
        from botocore.exceptions import BotoCoreError, ClientError

        files: list[tuple[str, int]] = []
        start = self._base + after if after else ""
        last = after
        for _ in range(limit // 100 + 5):
            request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._base,
                                       "MaxKeys": 1000}
            if start:
                request["StartAfter"] = start
            try:
                page = self.client.list_objects_v2(**request)
            except (BotoCoreError, ClientError) as exc:
                raise self._failed(exc, "the capture listing") from exc
            contents = page.get("Contents", [])
            for item in contents:
                key = item["Key"][len(self._base):]
                last = key
                if _is_batch(PurePosixPath(key).name) and not any(
                        part.startswith(".") for part in PurePosixPath(key).parts):
                    files.append((key, int(item["Size"])))
                    if len(files) >= limit:
                        return Listing(files, key, False)
            if not page.get("IsTruncated") or not contents:
                return Listing(files, last, True)
            start = contents[-1]["Key"]
        return Listing(files, last, False)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """See :meth:`CaptureLocation.read` (a ranged GET)."""
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._base + key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            request["Range"] = f"bytes={offset}-{end}"
        try:
            data: bytes = self.client.get_object(**request)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._failed(exc, f"capture file {key}") from exc
        return data

    def load_ref(self, batch_key: str, ref: str) -> bytes:
        """See :meth:`CaptureLocation.load_ref`; an ``s3://`` reference must lie in this
        bucket under the prefix (a record cannot make the server read other objects)."""
        if ref.startswith("s3://"):
            bucket, _, full = ref.removeprefix("s3://").partition("/")
            if bucket != self.bucket or not full.startswith(self._base):
                raise InvalidArgument(f"data-ref {ref[:200]} of {batch_key} lies outside the "
                                      f"capture location s3://{self.bucket}/{self.prefix}")
            key = full[len(self._base):]
        else:
            key = _beside(batch_key, ref)
        data = self.read(key, 0, MAX_REF_BYTES + 1)
        if len(data) > MAX_REF_BYTES:
            raise InvalidArgument(f"raw payload {key} is larger than {MAX_REF_BYTES} bytes")
        return data

    def describe(self) -> str:
        """``bucket s3://bucket/prefix``."""
        return f"bucket s3://{self.bucket}/{self.prefix}"


def open_capture_location(url: str) -> CaptureLocation:
    """The location a ``--capture-location`` value names.

    Args:
        url: a folder path or ``file://`` URL, or ``s3://bucket[/prefix][?endpoint=URL&region=R]``
            (boto3's credential chain, as the server's object store).

    Raises:
        ConfigError: another scheme, or an S3 URL without a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalCaptureLocation(Path(parts.path))
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"capture location {url!r}: use a folder, file:///path or "
                          "s3://bucket/prefix?endpoint=URL")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    client = S3ObjectStore(parts.netloc, parts.path, endpoint_url=query.get("endpoint"),
                           region=query.get("region")).client
    return S3CaptureLocation(client, parts.netloc, parts.path)
