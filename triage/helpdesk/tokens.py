"""API tokens: created once, shown once, stored only as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from triage.models import API_SCOPES, ApiToken, utcnow

PREFIX = "imi_"
RATE_WINDOW_SECONDS = 60
SCOPES = tuple(API_SCOPES.split())  # inbound (webhook, contact form), read, write (change, reply), metrics
SCOPE_HELP = {
    "inbound": "submit email (webhook) and contact-form tickets",
    "read": "list and read tickets and queues",
    "write": "change tickets and reply to centres",
    "metrics": "Prometheus /metrics and /healthz details",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, created_by_id: int | None = None, scopes: list[str] | tuple[str, ...] = SCOPES
) -> tuple[ApiToken, str]:
    """Create a token with the given scopes (all by default); returns the row and the plain token (not stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("token name must be 1 to 100 characters")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"token scopes must be one or more of: {', '.join(SCOPES)}")
    plain = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=_hash(plain), prefix=plain[:10], created_by_id=created_by_id,
                   scopes=" ".join(s for s in SCOPES if s in scopes))  # fmt: skip
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


def revoke_created_by(session: Session, user_id: int) -> list[ApiToken]:
    """Revoke every live token a user created (when the user is deactivated); returns them."""
    rows = list(
        session.scalars(select(ApiToken).where(ApiToken.created_by_id == user_id, ApiToken.revoked_at.is_(None)))
    )
    for row in rows:
        row.revoked_at = utcnow()
    return rows


def has_scope(token: ApiToken, scope: str) -> bool:
    """True if the token may be used for `scope`."""
    return scope in token.scope_list
