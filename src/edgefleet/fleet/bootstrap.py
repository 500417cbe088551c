"""First start and server-wide state: migrations, server key, admin token, package-signing key.

:func:`prepare` runs once before the server accepts requests (``edgefleet server`` calls it in
the parent process, before uvicorn starts its workers). It is idempotent and safe when several
instances start against one database at the same time: every "create if absent" is an insert
that loses cleanly to a concurrent one.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.errors import FailedPrecondition
from edgefleet.fleet.crypto import ServerKey, token_hash
from edgefleet.fleet.db.engine import make_sessionmaker, migrate
from edgefleet.fleet.db.models import AdminToken, ServerState
from edgefleet.package.keys import init_keys

log = logging.getLogger(__name__)

_KEY_CHECK = "server_key_check"
_ROOT_CERT = "root_cert_pem"
_ROOT_KEY = "root_key_pem"
_SIGNING_CERT = "signing_cert_pem"
_SIGNING_KEY = "signing_key_pem"
_TOKEN_MADE = "admin_token_created"
_OPERATOR_KEY_MADE = "operator_key_created"
_ENCRYPTED = {_KEY_CHECK, _ROOT_KEY, _SIGNING_KEY}


@dataclass(frozen=True)
class FirstStart:
    """What :func:`prepare` created; ``admin_token_file`` (``operator_credentials_file``) is
    set only when a token (an operator key) was made."""

    admin_token_file: Path | None
    operator_credentials_file: Path | None = None


def _put(sessions: sessionmaker[Session], key: ServerKey, name: str, value: bytes) -> bool:
    stored = key.encrypt(value, name) if name in _ENCRYPTED else value
    try:
        with sessions.begin() as session:
            session.add(ServerState(name=name, value=stored))
    except IntegrityError:
        return False
    return True


def read_state(session: Session, key: ServerKey, name: str) -> bytes:
    """A server-state value, decrypted if it is a secret.

    Raises:
        FailedPrecondition: the value is missing (run ``edgefleet server`` once to create it) or
            does not decrypt with ``key``.
    """
    value = session.scalar(select(ServerState.value).where(ServerState.name == name))
    if value is None:
        raise FailedPrecondition(f"server state {name!r} is missing; start `edgefleet server` "
                                 "once against this database to create it")
    return key.decrypt(value, name) if name in _ENCRYPTED else value


def root_certificate(session: Session) -> bytes:
    """The PEM root certificate that package signatures chain to (public)."""
    value = session.scalar(select(ServerState.value).where(ServerState.name == _ROOT_CERT))
    if value is None:
        raise FailedPrecondition("no package-signing root certificate yet; start "
                                 "`edgefleet server` once to create it")
    return value


def signing_identity(session: Session, key: ServerKey) -> tuple[bytes, bytes]:
    """The package-signing private key and certificate, both PEM."""
    return read_state(session, key, _SIGNING_KEY), read_state(session, key, _SIGNING_CERT)


def _create_admin_token(sessions: sessionmaker[Session], path: Path) -> Path | None:
    with sessions() as session:
        if session.get(ServerState, _TOKEN_MADE) is not None:
            return None
    token = "efadm_" + secrets.token_urlsafe(32)
    try:
        with sessions.begin() as session:
            # The marker row's primary key makes exactly one concurrent first start win.
            session.add(ServerState(name=_TOKEN_MADE, value=b"1"))
            session.add(AdminToken(token_hash=token_hash(token), created_at=time.time()))
            session.flush()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(token + "\n")
    except IntegrityError:
        return None
    return path


def _create_operator_key(sessions: sessionmaker[Session], key: ServerKey,
                         path: Path) -> Path | None:
    from edgefleet.fleet import operator_keys

    with sessions() as session:
        if session.get(ServerState, _OPERATOR_KEY_MADE) is not None:
            return None
    try:
        with sessions.begin() as session:
            # As for the admin token, the marker row makes exactly one concurrent start win.
            session.add(ServerState(name=_OPERATOR_KEY_MADE, value=b"1"))
            session.flush()
            created = operator_keys.create_key(session, key, "created at first start")
            operator_keys.write_private(path, operator_keys.credentials_file_text(created))
    except IntegrityError:
        return None
    return path


def rotate_admin_token(engine: Engine, path: Path) -> int:
    """Replace every admin token by a new one, written to ``path`` (mode 0600).

    The new token is written to a temporary file beside ``path`` first, then the tokens are
    replaced in one transaction, then the file is renamed over ``path``: running servers accept
    the new token and refuse the old ones from the next request on, and a failure at any step
    leaves the old token working (and says where the new one is, if it got that far).

    Returns:
        The number of tokens revoked.

    Raises:
        OSError: ``path``'s folder cannot be written.
    """
    token = "efadm_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp made it 0600
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        with make_sessionmaker(engine).begin() as session:
            revoked = len(session.scalars(select(AdminToken.id)).all())
            session.query(AdminToken).delete()
            session.add(AdminToken(token_hash=token_hash(token), created_at=time.time()))
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return revoked


def _create_signing_keys(sessions: sessionmaker[Session], key: ServerKey) -> None:
    with sessions() as session:
        if session.get(ServerState, _SIGNING_KEY) is not None:
            return
    with tempfile.TemporaryDirectory(prefix="edgefleet-keys-") as tmp:
        files = init_keys(Path(tmp))
        values = {_ROOT_CERT: files.root_cert.read_bytes(), _ROOT_KEY: files.root_key.read_bytes(),
                  _SIGNING_CERT: files.signing_cert.read_bytes(),
                  _SIGNING_KEY: files.signing_key.read_bytes()}
    try:
        with sessions.begin() as session:
            for name, value in values.items():
                stored = key.encrypt(value, name) if name in _ENCRYPTED else value
                session.add(ServerState(name=name, value=stored))
    except IntegrityError:
        log.info("another instance created the package-signing key first; using it")


def prepare(engine: Engine, key: ServerKey, admin_token_file: Path,
            operator_credentials_file: Path | None = None) -> FirstStart:
    """Migrate the database and create whatever a first start creates.

    Args:
        engine: the database.
        key: the server key (checked against the database, which remembers the first one).
        admin_token_file: where a new admin token is written (mode 0600), if one is created.
        operator_credentials_file: where the first operator key of the sagemaker API is
            written (mode 0600, AWS shared-credentials format), if one is created (default:
            beside ``admin_token_file``, named ``operator-credentials``).

    Raises:
        FailedPrecondition: the server key is not the one this database was set up with.
    """
    migrate(engine)
    sessions = make_sessionmaker(engine)
    _put(sessions, key, _KEY_CHECK, b"edgefleet")
    with sessions() as session:
        read_state(session, key, _KEY_CHECK)
    _create_signing_keys(sessions, key)
    operators = operator_credentials_file or admin_token_file.with_name("operator-credentials")
    return FirstStart(admin_token_file=_create_admin_token(sessions, admin_token_file),
                      operator_credentials_file=_create_operator_key(sessions, key, operators))
