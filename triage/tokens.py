"""API tokens: created once, shown once, stored only as a SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.models import ApiToken, utcnow

PREFIX = "imi_"


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
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now  # at most one write a minute per token, not one per request
    return row


def revoke(session: Session, token_id: int) -> ApiToken | None:
    """Revoke a token by id; returns it, or None if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
