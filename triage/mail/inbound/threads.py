"""Threading: the ticket an email continues, by the Message-IDs it answers or by its subject."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from triage.mail import compose
from triage.mail.parse import ParsedEmail
from triage.mail.recipients import choose_recipient
from triage.orm import Message, Ticket, parse_reference


@dataclass(frozen=True)
class ThreadKeys:
    """What ties an email to a ticket: the Message-IDs it answers and a reference in its subject."""

    answered: tuple[str, ...]  # In-Reply-To, References (latest first), ids a bounce reports
    reference: int | None  # the ticket number of `[IMI-000123]` in the subject

    @classmethod
    def of(cls, parsed: ParsedEmail) -> ThreadKeys:
        """The keys an email carries."""
        candidates = [parsed.in_reply_to, *reversed(parsed.references), *parsed.bounced_message_ids]
        return cls(tuple(i for i in candidates if i), parse_reference(parsed.subject))

    @property
    def present(self) -> bool:
        """Whether the email may continue a ticket at all (else it is new, with no lookup)."""
        return bool(self.answered) or self.reference is not None


def find_thread(
    session: Session, parsed: ParsedEmail, secret: str, keys: ThreadKeys
) -> Ticket | None:
    """The ticket this email continues, or None.

    By our own signed Message-IDs it answers (whoever writes), then by other stored Message-IDs
    and by the reference in its subject, both only when the sender takes part in that ticket: a
    stranger quoting another centre's Message-ID or reference opens a ticket of its own.
    """
    for message_id in keys.answered:
        ticket_id = compose.ticket_from_message_id(secret, message_id)
        if ticket_id is not None and (ticket := session.get(Ticket, ticket_id)) is not None:
            return ticket
    addresses = sender_addresses(parsed)
    if not addresses:
        return None
    for ticket_id in _tickets_answered(session, keys):
        ticket = session.get(Ticket, ticket_id)
        if ticket is not None and is_participant(session, ticket, addresses):
            return ticket
    ticket = session.get(Ticket, keys.reference) if keys.reference is not None else None
    if ticket is not None and is_participant(session, ticket, addresses):
        return ticket
    return None


def mentioned_ticket(session: Session, keys: ThreadKeys) -> int | None:
    """A ticket holding a message the email answers, though it did not continue it."""
    return next(iter(_tickets_answered(session, keys)), None)


def _tickets_answered(session: Session, keys: ThreadKeys) -> list[int]:
    """The tickets holding a stored message whose Message-ID the email answers (at most 20)."""
    if not keys.answered:
        return []
    query = (
        select(Message.ticket_id)
        .where(Message.message_id.in_(keys.answered))
        .group_by(Message.ticket_id)
        .order_by(Message.ticket_id)
        .limit(20)
    )
    return list(session.scalars(query))


def sender_addresses(parsed: ParsedEmail) -> set[str]:
    """The addresses the email's writer is known by: the sender and where answers go."""
    return {parsed.from_address, choose_recipient(parsed).address} - {""}


def is_participant(session: Session, ticket: Ticket, addresses: set[str]) -> bool:
    """Whether an address is the ticket's centre or wrote or received one of its messages."""
    if ticket.centre_email in addresses:
        return True
    query = select(
        exists().where(
            Message.ticket_id == ticket.id,
            or_(Message.from_address.in_(addresses), Message.to_addresses.in_(addresses)),
        )
    )
    return bool(session.scalar(query))
