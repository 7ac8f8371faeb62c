"""Provider webhook tokens already taken (Mailgun's signed tokens): a token seen twice is a replay
and is refused. Kept in the database, so every web process shares them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from triage.orm import WebhookToken


def claim(session: Session, provider: str, token: str, now: datetime, keep: timedelta) -> bool:
    """Record a provider's token as used; False if it was used before (a replay). Committed.

    Tokens older than `keep` (past the freshness window, when their signed timestamp is refused
    anyway) are forgotten first.
    """
    session.execute(delete(WebhookToken).where(WebhookToken.seen_at < now - keep))
    table = WebhookToken.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(provider=provider, token=token, seen_at=now)
    new_id = session.execute(
        statement.on_conflict_do_nothing(index_elements=["provider", "token"]).returning(table.c.id)
    ).scalar_one_or_none()
    session.commit()
    return new_id is not None


def release(session: Session, provider: str, token: str) -> None:
    """Forget a token whose call we could not take (a storing failure), so the provider's retry of
    the same call is not refused as a replay. Committed."""
    session.execute(
        delete(WebhookToken).where(WebhookToken.provider == provider, WebhookToken.token == token)
    )
    session.commit()
