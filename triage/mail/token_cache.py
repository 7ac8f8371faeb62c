"""OAuth 2.0 access tokens cached in the database, shared by every web and worker process.

A token is used until `REFRESH_MARGIN` before it expires. Refreshing takes the row's lock
(`FOR UPDATE` on PostgreSQL), then looks again, so processes that find it stale together ask the
provider once. SQLite (one host) does not hold its write lock over the network: a thread lock
makes one refresh per process (processes on the host may each fetch one). The value is encrypted with a key derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.mail.oauth import AccessToken
from triage.orm import OAuthToken, utcnow

REFRESH_MARGIN = timedelta(minutes=5)
_SQLITE_FETCH = threading.Lock()  # SQLite: one refresh at a time in this process


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"triage oauth token cache\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def cached_token(
    sessions: sessionmaker[Session],
    secret_key: str,
    key: str,
    fetch: Callable[[], AccessToken],
) -> AccessToken:
    """The cached token for `key` if still fresh, else one from `fetch` (stored for the others)."""
    with sessions() as session:
        fresh = _fresh(session, secret_key, key)
    if fresh is not None:
        return fresh
    _ensure_row(sessions, key)
    with sessions() as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:  # never hold SQLite's write lock over the network: a thread lock, one host
        with _SQLITE_FETCH:
            with sessions() as session:
                fresh = _fresh(session, secret_key, key)
            if fresh is not None:  # another thread refreshed it while we waited
                return fresh
            token = fetch()
            with sessions() as session, session.begin():
                row = session.get(OAuthToken, key)
                if row is None:
                    row = OAuthToken(key=key)
                    session.add(row)
                _store(row, secret_key, token)
            return token
    with sessions() as session, session.begin():
        row = session.scalars(
            select(OAuthToken).where(OAuthToken.key == key).with_for_update()
        ).one()
        fresh = _fresh(session, secret_key, key, row)
        if fresh is not None:  # another process refreshed it while we waited for the lock
            return fresh
        token = fetch()
        _store(row, secret_key, token)
        return token


def _store(row: OAuthToken, secret_key: str, token: AccessToken) -> None:
    """Put a new token, encrypted, in its cache row."""
    row.token = _fernet(secret_key).encrypt(token.value.encode()).decode()
    row.expires_at, row.refreshed_at = token.expires_at, utcnow()


def forget(sessions: sessionmaker[Session], key: str) -> None:
    """Drop a token the server refused (revoked early): the next use asks the provider again."""
    with sessions() as session, session.begin():
        session.execute(delete(OAuthToken).where(OAuthToken.key == key))


def _fresh(
    session: Session, secret_key: str, key: str, row: OAuthToken | None = None
) -> AccessToken | None:
    """The stored token unless it is missing, unreadable or within the margin of its expiry."""
    if row is None:
        row = session.get(OAuthToken, key)
    if row is None or row.expires_at is None or not row.token:
        return None
    if row.expires_at - REFRESH_MARGIN <= utcnow():
        return None
    try:
        value = _fernet(secret_key).decrypt(row.token.encode()).decode()
    except InvalidToken:  # SECRET_KEY changed: fetch a new one
        return None
    return AccessToken(value, row.expires_at)


def _ensure_row(sessions: sessionmaker[Session], key: str) -> None:
    """Create the cache row to lock, unless it exists (two processes may race: one wins)."""
    with sessions() as session:
        if session.get(OAuthToken, key) is not None:
            return
        session.add(OAuthToken(key=key, token=""))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
