"""API tokens: created once, shown once, stored only as a SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from triage.models import ApiToken, utcnow

PREFIX = "imi_"
RATE_WINDOW_SECONDS = 60


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, created_by_id: int | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plain token, which is not stored anywhere."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("token name must be 1 to 100 characters")
    plain = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=_hash(plain), prefix=plain[:10], created_by_id=created_by_id)
    session.add(row)
    session.flush()
    return row, plain


def authenticate(session: Session, presented: str) -> ApiToken | None:
    """The live token matching a presented bearer value, or None; records when it was last used."""
    if not presented or not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _hash(presented))).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


def count_request(session: Session, token: ApiToken) -> tuple[int, int]:
    """Count one request against the token's current one-minute window; returns (requests so far, seconds left).

    One UPDATE on the token's row, so every web process shares the count and concurrent requests queue on
    the row lock instead of losing increments. It also records when the token was last used.
    """
    now = utcnow()
    epoch = int(now.timestamp())
    window = epoch // RATE_WINDOW_SECONDS
    count = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id)
        .values(
            rate_window=window,
            rate_count=case((ApiToken.rate_window == window, ApiToken.rate_count + 1), else_=1),
            last_used_at=now,
        )
        .returning(ApiToken.rate_count)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return count, (window + 1) * RATE_WINDOW_SECONDS - epoch


def revoke(session: Session, token_id: int) -> ApiToken | None:
    """Revoke a token by id; returns it, or None if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
