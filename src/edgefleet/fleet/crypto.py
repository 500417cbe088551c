"""Server-side secrets: the server key, encryption at rest, device credentials, admin tokens.

The server must know each device's secret access key to recompute its SigV4 signatures, so the
secret cannot be hashed; it is stored encrypted with AES-256-GCM under the *server key* (32 random
bytes in a file of mode 0600, see :class:`~edgefleet.fleet.settings.ServerSettings`). The admin
token is only ever compared, so only its SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgefleet.errors import FailedPrecondition

_KEY_BYTES = 32
_NONCE_BYTES = 12
#: Access key ids look like AWS ones (20 upper-case characters) but start with "EF".
_ACCESS_KEY_PREFIX = "EFDV"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class ServerKey:
    """AES-256-GCM encryption with the server key; ``associated`` binds a ciphertext to its row.

    Raises:
        FailedPrecondition: from :meth:`decrypt` when the key is not the one that encrypted the
            value (another instance's key, or a replaced key file).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise FailedPrecondition(
                f"the server key must be {_KEY_BYTES} bytes, got {len(key)}; "
                "delete the key file only if the database is new")
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, path: Path) -> ServerKey:
        """Read the key from ``path`` (base64), creating it with mode 0600 if it does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64encode(os.urandom(_KEY_BYTES)) + b"\n")
        try:
            return cls(base64.b64decode(path.read_bytes().strip(), validate=True))
        except ValueError as exc:
            raise FailedPrecondition(
                f"the server key file {path} is not base64 of {_KEY_BYTES} bytes: {exc}") from exc

    def encrypt(self, plaintext: bytes, associated: str) -> bytes:
        """Encrypt ``plaintext``; the result is ``nonce || ciphertext || tag``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated.encode())

    def decrypt(self, blob: bytes, associated: str) -> bytes:
        """Decrypt a value made by :meth:`encrypt` with the same ``associated`` string."""
        try:
            return self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated.encode())
        except Exception as exc:  # cryptography raises InvalidTag without a message
            raise FailedPrecondition(
                "a stored secret does not decrypt with this server's key; every instance "
                "sharing the database must use the same --server-key-file") from exc


#: Operator access keys (the sagemaker API's) start with "EFOP", devices' with "EFDV".
OPERATOR_KEY_PREFIX = "EFOP"


def new_access_key_id(prefix: str = _ACCESS_KEY_PREFIX) -> str:
    """A new access key id: 20 characters, ``prefix`` (default ``EFDV``, a device's; operator
    keys use :data:`OPERATOR_KEY_PREFIX`) + 16 random base32 characters."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(20 - len(prefix)))


def new_secret(nbytes: int = 30) -> str:
    """A new random secret (URL-safe base64, 40 characters for the default 30 bytes)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 hex digest of an admin token (tokens are random, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()
