"""Object stores: local folder, in-memory double, URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.errors import ConfigError, InvalidArgument, NotFound
from edgefleet.fleet.storage import (
    LocalObjectStore,
    MemoryObjectStore,
    S3ObjectStore,
    open_object_store,
)


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_put_and_read(tmp_path: Path, kind: str) -> None:
    store = LocalObjectStore(tmp_path / "o") if kind == "local" else MemoryObjectStore()
    source = tmp_path / "f"
    source.write_bytes(b"x" * (3 << 20))
    store.put_file("packages/j/m-1.tar.gz", source)
    assert store.size("packages/j/m-1.tar.gz") == 3 << 20
    assert b"".join(store.open_chunks("packages/j/m-1.tar.gz")) == source.read_bytes()
    assert store.presigned_url("packages/j/m-1.tar.gz", 60) is None
    with pytest.raises(NotFound, match="no object"):
        store.size("packages/other")
    for bad in ("../x", "/abs", "a/../../b", ""):
        with pytest.raises(InvalidArgument, match="relative path"):
            store.put_file(bad, source)


def test_open_object_store(tmp_path: Path) -> None:
    assert isinstance(open_object_store(None, tmp_path), LocalObjectStore)
    assert isinstance(open_object_store(str(tmp_path / "x"), tmp_path), LocalObjectStore)
    s3 = open_object_store("s3://bucket/pre/fix?endpoint=http://127.0.0.1:1&region=eu-west-1",
                           tmp_path)
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix) == ("bucket", "pre/fix")
    with pytest.raises(ConfigError, match="no bucket"):
        open_object_store("s3:///x", tmp_path)
    with pytest.raises(ConfigError, match="use a folder"):
        open_object_store("ftp://x/y", tmp_path)
