"""Object stores for packages: a local folder (embedded default), S3-compatible, in memory.

Keys are ``/``-separated relative paths such as ``packages/<job>/<name>-<version>.tar.gz``.
Devices download either through a presigned URL (:meth:`ObjectStore.presigned_url`, S3) or through
the server's own authenticated ``GET /downloads/{key}`` route (local folder, in memory).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edgefleet.errors import ConfigError, InvalidArgument, NotFound, Unavailable

_CHUNK = 1 << 20


def _check_key(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or any(p in ("..", ".") for p in parts):
        raise InvalidArgument(f"object key {key!r} must be a relative path without '.' or '..'")
    return key


class ObjectStore(Protocol):
    """Where package archives live."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``, replacing any object with that key."""

    def open_chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks of at most 1 MiB. Raises NotFound if it is missing."""

    def size(self, key: str) -> int:
        """The object's size in bytes. Raises NotFound if it is missing."""

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """A URL a device can GET without other credentials, or None when the store has none
        (then the server streams the object itself)."""


class LocalObjectStore:
    """Objects as files under ``root`` (created if needed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        """See :meth:`ObjectStore.put_file`; writes a temporary file and renames it.

        Raises:
            Unavailable: the file cannot be written (a full disk); nothing is left behind.
        """
        target = self._path(key)
        partial = target.with_name(target.name + ".partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, partial)
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise Unavailable(f"cannot write {key!r} to the local object store {self.root}: "
                              f"{exc.strerror or exc}; free space on the server, then "
                              "retry") from None

    def open_chunks(self, key: str) -> Iterator[bytes]:
        """See :meth:`ObjectStore.open_chunks`."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no object {key!r} in the local object store {self.root}")
        return self._read(path)

    @staticmethod
    def _read(path: Path) -> Iterator[bytes]:
        with path.open("rb") as src:
            while chunk := src.read(_CHUNK):
                yield chunk

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no object {key!r} in the local object store {self.root}")
        return path.stat().st_size

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """Always None: the server streams local objects to authenticated devices."""
        return None


class MemoryObjectStore:
    """Objects in a dict; the test double of :class:`ObjectStore`."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_file(self, key: str, path: Path) -> None:
        """See :meth:`ObjectStore.put_file`."""
        self.objects[_check_key(key)] = path.read_bytes()

    def _get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(f"no object {key!r} in the in-memory object store") from None

    def open_chunks(self, key: str) -> Iterator[bytes]:
        """See :meth:`ObjectStore.open_chunks`."""
        data = self._get(key)
        return iter([data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)])

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`."""
        return len(self._get(key))

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """Always None, like the local store."""
        return None


class S3ObjectStore:
    """Objects in an S3-compatible bucket under ``prefix``, through boto3.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` ...).
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3 = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    @property
    def client(self) -> Any:
        """The boto3 S3 client of this store (compilation jobs read source models with it)."""
        return self._s3

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        """See :meth:`ObjectStore.put_file`."""
        self._s3.upload_file(str(path), self.bucket, self._key(key))

    def _missing(self, exc: Exception, key: str) -> NotFound:
        return NotFound(f"no object {key!r} in s3://{self.bucket}/{self.prefix}: {exc}")

    def open_chunks(self, key: str) -> Iterator[bytes]:
        """See :meth:`ObjectStore.open_chunks`."""
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            raise self._missing(exc, key) from exc
        return iter(lambda: body.read(_CHUNK), b"")

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`."""
        from botocore.exceptions import ClientError

        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            raise self._missing(exc, key) from exc
        return int(head["ContentLength"])

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """A presigned GET URL valid for ``expires_seconds``."""
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_seconds)
        return url


def open_object_store(url: str | None, data_dir: Path) -> ObjectStore:
    """The store a ``--object-store`` value names.

    Args:
        url: None (local folder ``data_dir/objects``), a folder path or ``file://`` URL, or
            ``s3://bucket[/prefix][?endpoint=URL&region=NAME]``.
        data_dir: the server's data directory.

    Raises:
        ConfigError: an unsupported scheme or an S3 URL without a bucket.
    """
    if url is None:
        return LocalObjectStore(data_dir / "objects")
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalObjectStore(Path(parts.path))
    if parts.scheme != "s3":
        raise ConfigError(
            f"object store {url!r}: use a folder, file:///path or s3://bucket/prefix?endpoint=...")
    if not parts.netloc:
        raise ConfigError(f"object store {url!r} names no bucket; use s3://bucket/prefix")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return S3ObjectStore(parts.netloc, parts.path, endpoint_url=query.get("endpoint"),
                         region=query.get("region"))
