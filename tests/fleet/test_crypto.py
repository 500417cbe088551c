"""Server key, encryption at rest and credential formats."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgefleet.errors import FailedPrecondition
from edgefleet.fleet.crypto import ServerKey, new_access_key_id, new_secret, token_hash


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "k" / "server.key"
    key = ServerKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    blob = key.encrypt(b"secret", "row-1")
    assert b"secret" not in blob
    assert ServerKey.load_or_create(path).decrypt(blob, "row-1") == b"secret"


def test_wrong_key_or_row_does_not_decrypt(tmp_path: Path) -> None:
    key = ServerKey.load_or_create(tmp_path / "a")
    blob = key.encrypt(b"secret", "row-1")
    with pytest.raises(FailedPrecondition, match="same --server-key-file"):
        key.decrypt(blob, "row-2")
    with pytest.raises(FailedPrecondition, match="same --server-key-file"):
        ServerKey.load_or_create(tmp_path / "b").decrypt(blob, "row-1")


def test_bad_key_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_text("not base64!")
    with pytest.raises(FailedPrecondition, match="not base64"):
        ServerKey.load_or_create(path)


def test_credential_formats() -> None:
    assert re.fullmatch(r"EFDV[A-Z2-7]{16}", new_access_key_id())
    assert len(new_secret()) == 40
    assert new_secret() != new_secret()
    assert token_hash("t") == token_hash("t") != token_hash("u")
