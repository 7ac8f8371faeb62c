"""OAuth 2.0 access tokens cached in the database, shared by every web and worker process.

A token is used until `REFRESH_MARGIN` before it expires. Refreshing takes the row's lock
(`FOR UPDATE` on PostgreSQL, the write lock on SQLite), then looks again, so processes that find it
stale together ask the provider once. The value is encrypted with a key derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.mail.oauth import AccessToken
from triage.orm import OAuthToken, utcnow

REFRESH_MARGIN = timedelta(minutes=5)


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
    with sessions() as session, session.begin():
        row = session.scalars(
            select(OAuthToken).where(OAuthToken.key == key).with_for_update()
        ).one()
        fresh = _fresh(session, secret_key, key, row)
        if fresh is not None:  # another process refreshed it while we waited for the lock
            return fresh
        token = fetch()
        row.token = _fernet(secret_key).encrypt(token.value.encode()).decode()
        row.expires_at, row.refreshed_at = token.expires_at, utcnow()
        return token


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
