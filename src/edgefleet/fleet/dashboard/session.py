"""Dashboard logins: signed session cookies and per-session CSRF tokens.

A login is the admin token checked exactly as the REST API checks it
(:func:`edgefleet.fleet.admin_api.require_admin`, failures counted by the same
:class:`~edgefleet.fleet.limits.AuthFailureLimit`). The cookie then carries
``<admin token id>.<expiry epoch s>.<random nonce>.<HMAC-SHA256>``. The HMAC key is a random
secret stored in ``server_state`` encrypted with the server key, so every worker and every
instance sharing the database (and the server key) accepts the same cookies, and a restart
does not log operators out. Each request also checks that the admin token still exists: a
deleted token ends its sessions. The CSRF token of a session is an HMAC of its nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import AdminToken, ServerState

#: Name of the session cookie.
COOKIE = "edgefleet_session"
_SECRET_NAME = "dashboard_session_secret"


@dataclass(frozen=True)
class Login:
    """A valid session: which admin token opened it, until when (epoch s), its nonce."""

    token_id: int
    expires: int
    nonce: str


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with one HMAC key.

    Args:
        secret: at least 32 random bytes.
        lifetime_seconds: how long a login lasts.
    """

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._key = hmac.new(secret, b"edgefleet dashboard session v1", hashlib.sha256).digest()
        self.lifetime_seconds = lifetime_seconds

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def issue(self, token_id: int, now: float) -> str:
        """A cookie value for a login with admin token ``token_id`` at ``now`` (epoch s)."""
        payload = f"{token_id}.{int(now + self.lifetime_seconds)}.{secrets.token_hex(16)}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, cookie: str | None, now: float) -> Login | None:
        """The login of ``cookie``, or None if it is absent, forged, malformed or expired."""
        if not cookie or len(cookie) > 200:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            token, expires, nonce = payload.split(".")
            login = Login(int(token), int(expires), nonce)
        except ValueError:  # signed by us, so only an older cookie format could get here
            return None
        return login if login.expires >= now else None

    def csrf(self, login: Login) -> str:
        """The CSRF token forms of this session carry."""
        return self._mac(f"csrf.{login.nonce}")

    def check_csrf(self, login: Login, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token."""
        return token is not None and hmac.compare_digest(token, self.csrf(login))


def token_exists(session: Session, token_id: int) -> bool:
    """Whether the admin token a login was made with is still known."""
    return session.scalar(select(AdminToken.id).where(AdminToken.id == token_id)) is not None


def token_id(session: Session, digest: str) -> int | None:
    """The id of the admin token whose SHA-256 hex digest is ``digest``."""
    return session.scalar(select(AdminToken.id).where(AdminToken.token_hash == digest))


_lock = threading.Lock()


def load_signer(sessions: sessionmaker[Session], key: ServerKey,
                lifetime_seconds: float) -> SessionSigner:
    """The signer of this database: its stored secret, created at first use (an insert that
    loses cleanly to a concurrent instance's)."""
    with _lock:
        for _ in range(2):
            with sessions() as session:
                stored = session.scalar(select(ServerState.value).where(
                    ServerState.name == _SECRET_NAME))
            if stored is not None:
                return SessionSigner(key.decrypt(stored, _SECRET_NAME), lifetime_seconds)
            try:
                with sessions.begin() as session:
                    session.add(ServerState(name=_SECRET_NAME, value=key.encrypt(
                        secrets.token_bytes(32), _SECRET_NAME)))
            except IntegrityError:
                continue
        raise RuntimeError("the dashboard session secret could not be stored")
