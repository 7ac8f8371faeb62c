"""Who else has a ticket open, and who is typing a reply on it (staff collision detection).

Each open ticket page reports every few seconds; a report is one row per ticket and person in the
database (so every web process sees every viewer), and a row not refreshed within `PRESENT_FOR` means
the person has left. Typing counts for `TYPING_FOR` after the last keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from triage.orm import TicketPresence, utcnow

PRESENT_FOR = timedelta(seconds=20)
TYPING_FOR = timedelta(seconds=8)
FORGET_AFTER = timedelta(hours=1)  # rows older than this are deleted


@dataclass(frozen=True)
class Viewer:
    """Someone else with the ticket open."""

    user_id: int
    name: str
    typing: bool


def report(session: Session, ticket_id: int, user_id: int, typing: bool) -> None:
    """Record that this person has the ticket open now (and is typing, when they are)."""
    now = utcnow()
    row = session.get(TicketPresence, (ticket_id, user_id))
    if row is None:
        row = TicketPresence(ticket_id=ticket_id, user_id=user_id, seen_at=now)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another process of this person's added it at the same moment
            row = session.get(TicketPresence, (ticket_id, user_id), populate_existing=True)
            if row is None:
                return
    row.seen_at = now
    if typing:
        row.typing_at = now
    # forget this ticket's and this person's old rows (not everyone's: no two reports fight over them)
    session.execute(
        delete(TicketPresence).where(
            TicketPresence.seen_at < now - FORGET_AFTER,
            or_(TicketPresence.ticket_id == ticket_id, TicketPresence.user_id == user_id),
        )
    )


def leave(session: Session, ticket_id: int, user_id: int) -> None:
    """The person closed the ticket page: they are no longer shown."""
    session.execute(
        delete(TicketPresence).where(
            TicketPresence.ticket_id == ticket_id, TicketPresence.user_id == user_id
        )
    )


def others(session: Session, ticket_id: int, user_id: int) -> list[Viewer]:
    """Everyone else with the ticket open now, typists first, then by name."""
    now = utcnow()
    rows = session.scalars(
        select(TicketPresence)
        .where(
            TicketPresence.ticket_id == ticket_id,
            TicketPresence.user_id != user_id,
            TicketPresence.seen_at >= now - PRESENT_FOR,
        )
        .options(selectinload(TicketPresence.user))
    ).all()
    viewers = [
        Viewer(
            row.user_id,
            row.user.name or row.user.email,
            row.typing_at is not None and row.typing_at >= now - TYPING_FOR,
        )
        for row in rows
        if row.user.is_active
    ]
    return sorted(viewers, key=lambda v: (not v.typing, v.name.lower()))
