"""Reading and writing the bridge's URLs: local files in the data folder, objects in the bucket,
and the cache of packages downloaded from S3.

Every local write goes to a temporary file in the target's folder, is flushed to disk, then
renamed over the target: a crash leaves the old file or the new one, never half a file (and a
cached package is either whole or absent). Failures are :class:`StorageError` (JSON-RPC
:data:`~edgefleet.bridge.protocol.STORAGE_ERROR`) naming the URL and the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from edgefleet.bridge.config import BridgeConfig
from edgefleet.bridge.paths import DataUrl, resolve_in, s3_key
from edgefleet.bridge.protocol import STORAGE_ERROR, JsonRpcError

log = logging.getLogger(__name__)


class StorageError(JsonRpcError):
    """A file or S3 object could not be read or written; ``data``: ``url``, ``reason``."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(STORAGE_ERROR, f"Storage error: {url}: {reason}",
                         {"url": url, "reason": reason})


#: Makes the S3 client (boto3's ``client("s3", ...)``); replaceable in tests.
S3ClientFactory = Callable[[BridgeConfig], Any]


def boto3_client(config: BridgeConfig) -> Any:
    """A boto3 S3 client for ``config`` (path-style addressing for S3-compatible endpoints)."""
    import boto3
    from botocore.config import Config

    options = Config(s3={"addressing_style": "path"}) if config.s3_endpoint_url else None
    return boto3.session.Session().client("s3", config=options, **config.s3_settings())


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A file to write ``path``'s new content to; it replaces ``path`` only when the block
    succeeds (and is on disk), else it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
        dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".partial", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


class Storage:
    """The data folder, the bucket and the package cache of one :class:`BridgeConfig`.

    Args:
        config: folders, bucket, prefixes, limits.
        s3_client_factory: makes the S3 client on first use (thread-safe; boto3 clients are).
    """

    def __init__(self, config: BridgeConfig,
                 s3_client_factory: S3ClientFactory = boto3_client) -> None:
        self._config = config
        self._factory = s3_client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    # -- S3 --------------------------------------------------------------------------------------

    def _s3(self, url: str) -> tuple[Any, str]:
        bucket = self._config.bucket
        if not bucket:
            raise StorageError(url, "no S3 bucket is configured; set SAPT_AWS_S3_BUCKET (or "
                               "`bucket` in the config file)")
        with self._lock:
            if self._client is None:
                self._client = self._factory(self._config)
            return self._client, bucket

    @staticmethod
    def _s3_reason(error: Exception) -> str:
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code", "")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404") or status == 404:
                return "no such object in the bucket (S3 NoSuchKey)"
            return f"S3 refused: {code or status} {response.get('Error', {}).get('Message', '')}"
        return f"S3 unreachable: {error}"

    # -- reading and writing URLs ----------------------------------------------------------------

    def read(self, url: DataUrl, param: str) -> bytes:
        """The bytes at ``url`` (at most ``max_input_bytes``).

        Raises:
            InvalidParams: the name is unsafe (escapes the folder).
            StorageError: missing, too big, unreadable, or S3 failed.
        """
        limit = self._config.max_input_bytes
        if url.scheme == "file":
            path = resolve_in(self._config.data_folder, url.name, param)
            try:
                with path.open("rb") as file:
                    data = file.read(limit + 1)
            except FileNotFoundError:
                raise StorageError(str(url), f"no such file in the data folder "
                                   f"{self._config.data_folder}") from None
            except OSError as error:
                raise StorageError(str(url), f"cannot read: {error.strerror}") from None
        else:
            key = s3_key(self._config.data_dir, url.name, param)
            client, bucket = self._s3(str(url))
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"]
                data = body.read(limit + 1)
            except Exception as error:  # botocore's ClientError and connection errors
                raise StorageError(str(url), self._s3_reason(error)) from None
        if len(data) > limit:
            raise StorageError(str(url), f"larger than max_input_bytes ({limit} bytes)")
        return data

    def check_writable(self, url: DataUrl, param: str) -> None:
        """Check that ``url`` may be written (before the work that produces its content).

        Raises:
            InvalidParams: the name is unsafe (escapes the folder).
        """
        if url.scheme == "file":
            resolve_in(self._config.data_folder, url.name, param)
        else:
            s3_key(self._config.data_dir, url.name, param)

    def write(self, url: DataUrl, data: bytes, param: str) -> None:
        """Store ``data`` at ``url`` (local files atomically; parent folders are created).

        Raises:
            InvalidParams: the name is unsafe.
            StorageError: the file or object cannot be written.
        """
        if url.scheme == "file":
            path = resolve_in(self._config.data_folder, url.name, param)
            try:
                with atomic_file(path) as file:
                    file.write(data)
            except OSError as error:
                raise StorageError(str(url), f"cannot write: {error.strerror}") from None
            return
        key = s3_key(self._config.data_dir, url.name, param)
        client, bucket = self._s3(str(url))
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as error:
            raise StorageError(str(url), self._s3_reason(error)) from None

    # -- packages ---------------------------------------------------------------------------------

    def local_package(self, name: str, param: str) -> Path:
        """The path of local package ``name`` in the models folder.

        Raises:
            InvalidParams: unsafe name.
            StorageError: nothing at that path.
        """
        path = resolve_in(self._config.models_folder, name, param)
        if not path.exists():
            raise StorageError(f"file:///{name}", f"no package in the models folder "
                               f"{self._config.models_folder}")
        return path

    def cached_package(self, s3_filename: str, param: str) -> tuple[Path, bool]:
        """The local copy of package ``s3_filename`` from the models prefix of the bucket.

        Downloaded once into the cache folder (atomically), then reused without contacting S3.

        Returns:
            (path of the archive, True when it was already in the cache).

        Raises:
            InvalidParams: unsafe name.
            StorageError: no bucket configured, no such object, S3 failed, or the cache is not
                writable.
        """
        key = s3_key(self._config.models_dir, s3_filename, param)
        path = resolve_in(self._config.cache_folder / "packages", s3_filename, param)
        if path.is_file():
            log.info("package %s: using the cached copy %s", s3_filename, path)
            return path, True
        label = f"s3://{self._config.bucket}/{key}"
        client, bucket = self._s3(label)
        log.info("package %s: downloading %s", s3_filename, label)
        try:
            with atomic_file(path) as file:
                client.download_fileobj(bucket, key, file)
        except OSError as error:
            raise StorageError(label, f"cannot write the cache folder: {error.strerror}"
                               ) from None
        except Exception as error:
            raise StorageError(label, self._s3_reason(error)) from None
        return path, False
