"""Safe extraction: hostile archives are refused with the member named, corrupt ones reported."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edgefleet.errors import PackageError, UnsafeArchive
from edgefleet.package import extract_archive, open_package
from edgefleet.package.archive import write_archive

Members = Sequence[tuple[tarfile.TarInfo, bytes]]
WriteTarGz = Callable[[Members], Path]


def member(name: str, content: bytes = b"data", *, kind: bytes = tarfile.REGTYPE,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    """A member of type ``kind``; only regular files carry ``content``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind != tarfile.REGTYPE:
        content = b""
    info.size = len(content)
    return info, content


def extract(path: Path, into: Path, **caps: int) -> None:
    into.mkdir(exist_ok=True)
    extract_archive(path, into, **caps)


def test_write_then_extract_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    archive = tmp_path / "pkg.tar.gz"
    write_archive(archive, {"big.bin": source, "note": b"hello"})

    extract(archive, tmp_path / "out")

    assert (tmp_path / "out" / "big.bin").read_bytes() == source.read_bytes()
    assert (tmp_path / "out" / "note").read_bytes() == b"hello"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("crafted", "expected"), [
    (member("/etc/model.onnx"), "absolute path"),
    (member("../model.onnx"), "'..'"),
    (member("a/../../model.onnx"), "'..'"),
    (member("model.onnx", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
    (member("model.onnx", kind=tarfile.LNKTYPE, linkname="other"), "hard link"),
    (member("null", kind=tarfile.CHRTYPE), "device file"),
    (member("disk", kind=tarfile.BLKTYPE), "device file"),
    (member("pipe", kind=tarfile.FIFOTYPE), "FIFO"),
    (member("models", kind=tarfile.DIRTYPE), "folder"),
    (member("models/model.onnx"), "inside a folder"),
])
def test_hostile_member_is_refused_by_name(
        tmp_path: Path, write_tar_gz: WriteTarGz,
        crafted: tuple[tarfile.TarInfo, bytes], expected: str) -> None:
    path = write_tar_gz([member("ok.txt"), crafted])

    with pytest.raises(UnsafeArchive, match=expected) as caught:
        extract(path, tmp_path / "out")

    assert repr(crafted[0].name) in caught.value.message
    assert not (tmp_path / "etc").exists()
    assert not (tmp_path / "model.onnx").exists()


def test_duplicate_member_is_refused(tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    path = write_tar_gz([member("model.onnx", b"good"), member("model.onnx", b"evil")])

    with pytest.raises(UnsafeArchive, match=r"'model.onnx' appears twice"):
        extract(path, tmp_path / "out")


def test_too_many_members(tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    path = write_tar_gz([member(f"f{i}") for i in range(4)])

    with pytest.raises(UnsafeArchive, match=r"more than 3 members .*'f3'"):
        extract(path, tmp_path / "out", max_members=3)


def test_total_size_over_the_cap_names_the_member(
        tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    path = write_tar_gz([member("a", b"x" * 600), member("b", b"y" * 600)])

    with pytest.raises(UnsafeArchive, match=r"'b' .*past the size cap of 1000 bytes"):
        extract(path, tmp_path / "out", max_bytes=1000)

    assert not (tmp_path / "out" / "b").exists()


def test_header_claiming_a_huge_size_is_refused_before_reading(
        tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    info, _ = member("model.onnx")
    info.size = 10 << 30  # the header claims 10 GiB; the archive holds 4 bytes
    path = write_tar_gz([(info, b"tiny")])

    with pytest.raises(UnsafeArchive, match=r"'model.onnx'.*size cap"):
        extract(path, tmp_path / "out", max_bytes=1 << 20)


def test_oversized_extended_header_hits_the_stream_cap(
        tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    # A PAX header whose own data is 8 MB: tarfile would buffer it all before any member
    # check runs; the count of decompressed bytes stops it.
    info, content = member("model.onnx")
    info.pax_headers = {"comment": "x" * (8 << 20)}
    path = write_tar_gz([member("first"), (info, content)])

    with pytest.raises(UnsafeArchive, match=r"expands to more than .*'first'"):
        extract(path, tmp_path / "out", max_bytes=1 << 20, max_members=16)


@pytest.mark.parametrize("keep", [0.5, -4], ids=["cut-in-half", "trailer-cut"])
def test_truncated_gzip_is_a_package_error(tmp_path: Path, archive: Path, keep: float) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep)] if keep > 0 else data[: int(keep)])

    with pytest.raises(PackageError, match="truncated or corrupt"):
        extract(archive, tmp_path / "out")


def test_not_gzip_is_a_package_error(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"this is not gzip")

    with pytest.raises(PackageError, match="truncated or corrupt"):
        extract(path, tmp_path / "out")


def test_refused_archive_leaves_nothing_under_extract_root(
        tmp_path: Path, write_tar_gz: WriteTarGz) -> None:
    path = write_tar_gz([member("model.onnx"), member("../escape")])
    root = tmp_path / "extracted"

    with pytest.raises(UnsafeArchive):
        open_package(path, extract_root=root, root_certs_path=None, allow_unsigned=True)

    assert list(root.iterdir()) == []
    assert not (tmp_path / "escape").exists()
