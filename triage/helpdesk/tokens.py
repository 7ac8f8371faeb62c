"""API tokens: created once, shown once, stored only as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, case, select, text, update
from sqlalchemy.orm import Session

from triage.orm import API_SCOPES, ApiToken, utcnow

PREFIX = "imi_"
RATE_WINDOW_SECONDS = 60
# inbound (webhook, contact form), read, write (change, reply), metrics
SCOPES = tuple(API_SCOPES.split())
SCOPE_HELP = {
    "inbound": "submit email (webhook) and contact-form tickets",
    "read": "list and read tickets and queues",
    "write": "change tickets and reply to centres",
    "metrics": "Prometheus /metrics and /healthz details",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    created_by_id: int | None = None,
    scopes: list[str] | tuple[str, ...] = SCOPES,
) -> tuple[ApiToken, str]:
    """Create a token with the given scopes (all by default); returns the row and the plain token
    (not stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("token name must be 1 to 100 characters")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"token scopes must be one or more of: {', '.join(SCOPES)}")
    plain = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=_hash(plain),
        prefix=plain[:10],
        created_by_id=created_by_id,
        scopes=" ".join(s for s in SCOPES if s in scopes),
    )
    session.add(row)
    session.flush()
    return row, plain


@dataclass(frozen=True)
class TokenUse:
    """A live token as one request used it: who it is, its scopes, and its count in the current
    window."""

    id: int
    name: str
    scopes: str
    count: int  # requests in the current one-minute window, this one included
    retry_after: int  # seconds until the window ends

    @property
    def scope_list(self) -> list[str]:
        """The token's scopes (inbound, read, write, metrics)."""
        return self.scopes.split()


_TOKENS = ApiToken.__table__
# built once: executing a prepared statement object skips building it and computing its cache key
# per request
_USE_TOKEN = (
    update(_TOKENS)
    .where(_TOKENS.c.token_hash == bindparam("presented_hash"), _TOKENS.c.revoked_at.is_(None))
    .values(
        rate_window=bindparam("window"),
        rate_count=case(
            (_TOKENS.c.rate_window == bindparam("window"), _TOKENS.c.rate_count + 1), else_=1
        ),
        last_used_at=bindparam("now"),
    )
    .returning(_TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.scopes, _TOKENS.c.rate_count)
)
# PostgreSQL, the statement a transaction of its own: the same, committed without waiting for the
# disk flush
_USE_TOKEN_LAZY_COMMIT = _USE_TOKEN.where(
    text("set_config('synchronous_commit', 'off', true) = 'off'")
)


def well_formed(presented: str) -> bool:
    """True if a presented bearer value could be one of our tokens (the prefix, a sane length)."""
    return bool(presented) and presented.startswith(PREFIX) and len(presented) <= 200


def use_token(session: Session, presented: str) -> TokenUse | None:
    """Find the live token matching a presented bearer value and count the request, in one UPDATE;
    None if none.

    One statement checks the hash, skips revoked tokens, counts the request against the token's
    one-minute window and records when it was used, so every web process shares the count
    (concurrent requests queue on the row lock instead of losing increments) and the whole check is
    one round trip. In a `statement_session` (PostgreSQL: autocommit) the statement is its own
    transaction, and its commit does not wait for the disk flush: every request with the token
    updates that one row, and waiting for each flush while holding the row lock would queue every
    request behind the one before. A database crash can lose the last fraction of a second of counts
    and use times, nothing else.
    """
    if not well_formed(presented):
        return None
    now = utcnow()
    epoch = int(now.timestamp())
    window = epoch // RATE_WINDOW_SECONDS
    params = {"presented_hash": _hash(presented), "window": window, "now": now}
    connection = session.connection()
    # on PostgreSQL only
    alone = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    row = connection.execute(_USE_TOKEN_LAZY_COMMIT if alone else _USE_TOKEN, params).one_or_none()
    if row is None:
        return None
    return TokenUse(
        row.id, row.name, row.scopes, row.rate_count, (window + 1) * RATE_WINDOW_SECONDS - epoch
    )


def revoke(session: Session, token_id: int) -> ApiToken | None:
    """Revoke a token by id; returns it, or None if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_created_by(session: Session, user_id: int) -> list[ApiToken]:
    """Revoke every live token a user created (when the user is deactivated); returns them."""
    rows = list(
        session.scalars(
            select(ApiToken).where(ApiToken.created_by_id == user_id, ApiToken.revoked_at.is_(None))
        )
    )
    for row in rows:
        row.revoked_at = utcnow()
    return rows


def has_scope(token: ApiToken | TokenUse, scope: str) -> bool:
    """True if the token may be used for `scope`."""
    return scope in token.scope_list
