"""Operator access keys: the SigV4 credentials of the ``sagemaker`` API (operators' boto3
scripts), kept apart from device credentials so that neither works on the other's API.

The secret is stored AES-256-GCM-encrypted under the server key, bound to its access key id,
exactly as devices' secrets are (SigV4 needs the secret itself to recompute a signature). A
revoked key stays listed, with its revocation time, and stops working at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.errors import NotFound
from edgefleet.fleet import schemas
from edgefleet.fleet.crypto import OPERATOR_KEY_PREFIX, ServerKey, new_access_key_id, new_secret
from edgefleet.fleet.db.models import OperatorKey


def create_key(session: Session, key: ServerKey,
               description: str = "") -> schemas.OperatorKeyCreated:
    """A new operator key; the answer is the only time the secret is shown."""
    access_key_id = new_access_key_id(OPERATOR_KEY_PREFIX)
    secret = new_secret()
    row = OperatorKey(access_key_id=access_key_id, description=description,
                      secret_enc=key.encrypt(secret.encode(), access_key_id),
                      created_at=time.time())
    session.add(row)
    session.flush()
    return schemas.OperatorKeyCreated(access_key_id=access_key_id, secret_access_key=secret,
                                      description=description, created_at=row.created_at)


def list_keys(session: Session) -> list[schemas.OperatorKeyOut]:
    """Every operator key, oldest first, without secrets."""
    return [schemas.OperatorKeyOut(access_key_id=k.access_key_id, description=k.description,
                                   created_at=k.created_at, revoked_at=k.revoked_at)
            for k in session.scalars(select(OperatorKey).order_by(OperatorKey.id))]


def revoke_key(session: Session, access_key_id: str) -> schemas.OperatorKeyOut:
    """Revoke an operator key: requests it signs are refused from now on.

    Raises:
        NotFound: no such operator key.
    """
    row = session.scalars(select(OperatorKey).where(
        OperatorKey.access_key_id == access_key_id)).one_or_none()
    if row is None:
        raise NotFound(f"no operator key {access_key_id!r}; list them with "
                       "`edgefleet operator-key list`")
    if row.revoked_at is None:
        row.revoked_at = time.time()
    return schemas.OperatorKeyOut(access_key_id=row.access_key_id, description=row.description,
                                  created_at=row.created_at, revoked_at=row.revoked_at)


def lookup_secret(session: Session, key: ServerKey, access_key_id: str) -> str | None:
    """The secret of a live operator key, or None when the key is unknown or revoked."""
    if not access_key_id.startswith(OPERATOR_KEY_PREFIX):
        return None
    row = session.scalars(select(OperatorKey).where(
        OperatorKey.access_key_id == access_key_id,
        OperatorKey.revoked_at.is_(None))).one_or_none()
    return None if row is None else key.decrypt(row.secret_enc, access_key_id).decode()


def credentials_file_text(created: schemas.OperatorKeyCreated, profile: str = "default") -> str:
    """The key in AWS shared-credentials format (``AWS_SHARED_CREDENTIALS_FILE`` reads it)."""
    return (f"[{profile}]\naws_access_key_id = {created.access_key_id}\n"
            f"aws_secret_access_key = {created.secret_access_key}\n")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (created so: never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
