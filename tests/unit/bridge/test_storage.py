"""Local writes are atomic: the target holds the old content or the new one, never a part."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.bridge.config import BridgeConfig
from edgefleet.bridge.paths import DataUrl
from edgefleet.bridge.protocol import InvalidParams
from edgefleet.bridge.storage import Storage, StorageError, atomic_file


def test_atomic_file_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.npy"
    with atomic_file(target) as file:
        file.write(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["out.npy"]


def test_atomic_file_keeps_the_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as file:
        file.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def storage(tmp_path: Path, **keys: object) -> Storage:
    return Storage(BridgeConfig(data_folder=tmp_path / "data", models_folder=tmp_path / "m",
                                cache_folder=tmp_path / "c", **keys),
                   s3_client_factory=lambda config: pytest.fail("no S3 call expected"))


def test_read_write_local(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.write(DataUrl("file", "a/b.raw"), b"\x01\x02", "output_url")
    assert store.read(DataUrl("file", "a/b.raw"), "input_data_url") == b"\x01\x02"
    with pytest.raises(StorageError, match="no such file"):
        store.read(DataUrl("file", "missing.npy"), "input_data_url")


def test_input_size_cap(tmp_path: Path) -> None:
    store = storage(tmp_path, max_input_bytes=3)
    store.write(DataUrl("file", "big.raw"), b"1234", "output_url")
    with pytest.raises(StorageError, match="max_input_bytes"):
        store.read(DataUrl("file", "big.raw"), "input_data_url")


def test_s3_without_bucket_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="SAPT_AWS_S3_BUCKET"):
        storage(tmp_path).read(DataUrl("s3", "x.npy"), "input_data_url")


def test_cache_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidParams, match="`s3_filename`"):
        storage(tmp_path, bucket="b").cached_package("../../etc/x.tar.gz", "s3_filename")
