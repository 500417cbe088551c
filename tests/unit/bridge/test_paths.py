"""URLs and names stay inside the configured folders: ``..``, absolute names, hosts and
symbolic links out are refused as Invalid params naming the parameter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.bridge.paths import DataUrl, check_name, parse_data_url, resolve_in, s3_key
from edgefleet.bridge.protocol import InvalidParams


@pytest.mark.parametrize(("url", "expected"), [
    ("file:///keras.bmp", DataUrl("file", "keras.bmp")),
    ("s3:///keras-predicted.data", DataUrl("s3", "keras-predicted.data")),
    ("file:///sub/dir/x.npy", DataUrl("file", "sub/dir/x.npy")),
    ("file:///my%20image.png", DataUrl("file", "my image.png")),
])
def test_parse(url: str, expected: DataUrl) -> None:
    assert parse_data_url(url, "input_data_url") == expected
    assert str(expected) == url.replace("%20", " ")


@pytest.mark.parametrize("url", [
    "file:///../etc/passwd", "file:///a/../../x", "file:////etc/passwd", "s3:///../x",
    "file:///%2e%2e/x", "file:///a/%2E%2E/%2E%2E/x", "file:///a//b", "file:///a/./b",
    "file:///", "file:///a/", "file://host/x", "s3://other-bucket/x", "http:///x",
    "/etc/passwd", "x.png", "file:x.png", "file:///x?y=1", "file:///x#f", "file:///a%00b",
    "file:///%ff", "", "file://[bad/x",
])
def test_refused(url: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        parse_data_url(url, "input_data_url")
    assert raised.value.param == "input_data_url"


@pytest.mark.parametrize("value", [None, 3, ["file:///x"], {"url": 1}])
def test_not_a_string(value: object) -> None:
    with pytest.raises(InvalidParams, match="output_url"):
        parse_data_url(value, "output_url")


def test_check_name_length() -> None:
    check_name("a" * 1024, "x")
    with pytest.raises(InvalidParams, match="longer"):
        check_name("a" * 1025, "x")


def test_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert resolve_in(tmp_path, "sub/new.npy", "p") == tmp_path.resolve() / "sub" / "new.npy"


def test_symlink_out_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, folder / "link.npy")
    os.symlink(tmp_path, folder / "up")
    for name in ("link.npy", "up/secret.txt"):
        with pytest.raises(InvalidParams, match="outside") as raised:
            resolve_in(folder, name, "input_data_url")
        assert raised.value.param == "input_data_url"


def test_symlink_inside_and_linked_folder_are_allowed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    os.symlink(real / "images", real / "pictures")
    linked_folder = tmp_path / "data"
    os.symlink(real, linked_folder)  # the configured folder itself may be a link
    assert resolve_in(linked_folder, "pictures/a.png", "p") == real / "images" / "a.png"


def test_link_loop_is_refused(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(InvalidParams):
        resolve_in(tmp_path, "a", "p")


def test_s3_key() -> None:
    assert s3_key("", "x.npy", "p") == "x.npy"
    assert s3_key("data/in", "a/x.npy", "p") == "data/in/a/x.npy"
    with pytest.raises(InvalidParams, match="1024"):
        s3_key("p", "a" * 1023, "p")
    with pytest.raises(InvalidParams, match="`s3_filename`"):
        s3_key("models", "../secret.tar.gz", "s3_filename")


def test_sibling() -> None:
    assert DataUrl("file", "out/r.npy").sibling("r-y.npy") == DataUrl("file", "out/r-y.npy")
    assert DataUrl("s3", "r.npy").sibling("r-y.npy") == DataUrl("s3", "r-y.npy")
