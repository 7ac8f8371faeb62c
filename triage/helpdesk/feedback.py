"""Centres' answers to "Did this answer your question?": reading a link, recording an answer once.

"Yes, that solved it" resolves the ticket on the centre's word; "No, I still need help" opens it
for staff at the top of its queue with the centre's comment (both through `lifecycle`). Each answer
is a row of `answer_feedback` (one per automatic answer) and an event in the ticket's history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.config import Settings
from triage.helpdesk import lifecycle
from triage.mail.feedback_links import LinkError, message_key, read_token
from triage.orm import AnswerFeedback, AuditEvent, Message, PublicRateLimit, Queue, Ticket, utcnow
from triage.routing import routing_map
from triage.states import AuditAction, MessageDirection, MessageKind

COMMENT_MAX = 5000
RATE_WINDOW_SECONDS = 60


class FeedbackRefused(Exception):
    """A feedback request that cannot be taken: the HTTP status, a title and a sentence for the
    centre."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class AnswerAsked:
    """The automatic answer a valid link asks about, and the centre's answer if already given."""

    ticket: Ticket
    message: Message
    given: AnswerFeedback | None


def bad_link() -> FeedbackRefused:
    """The refusal of a link that is not one of ours (forged, changed or cut short)."""
    return FeedbackRefused(
        404,
        "This link does not work",
        "It is not a link we sent, or part of it is missing. Please use the link exactly as "
        "it is in our email, or reply to the email instead.",
    )


def find_answer(session: Session, settings: Settings, token: str) -> AnswerAsked:
    """The answer a link names; FeedbackRefused when the link is forged, expired or names none."""
    try:
        target = read_token(settings.secret_key, token, timedelta(days=settings.feedback_link_days))
    except LinkError as exc:
        if exc.expired:
            raise FeedbackRefused(
                410,
                "This link has expired",
                f"Links in our automatic answers work for {settings.feedback_link_days} days. "
                "If you still need help, just reply to the email and our team will pick it up.",
            ) from None
        raise bad_link() from None
    ticket = session.get(Ticket, target.ticket_id)
    message = None
    if ticket is not None:
        message = next(
            (
                m
                for m in ticket.messages
                if m.direction == MessageDirection.OUTBOUND
                and m.kind == MessageKind.AUTO_REPLY
                and message_key(m.message_id) == target.message_key
            ),
            None,
        )
    if ticket is None or message is None:
        raise FeedbackRefused(
            404,
            "We cannot find this answer",
            "The enquiry this link belongs to is no longer on our system. If you still need "
            "help, please email us again.",
        )
    given = session.scalar(select(AnswerFeedback).where(AnswerFeedback.message_id == message.id))
    return AnswerAsked(ticket, message, given)


def _already_answered() -> FeedbackRefused:
    return FeedbackRefused(
        409,
        "You have already told us",
        "We have your answer about this email, thank you. If there is anything else, just reply "
        "to the email and our team will pick it up.",
    )


def check_open(asked: AnswerAsked) -> None:
    """Refuse a link whose answer was given already."""
    if asked.given is not None:
        raise _already_answered()


def record(
    session: Session, settings: Settings, token: str, solved: bool, comment: str = ""
) -> AnswerFeedback:
    """Record the centre's answer once and change the ticket through `lifecycle`; the caller
    commits. FeedbackRefused for a bad link or a second answer (also when two arrive at once)."""
    asked = find_answer(session, settings, token)
    check_open(asked)
    ticket = asked.ticket
    text = comment.replace("\x00", "").strip()[:COMMENT_MAX] if not solved else ""
    feedback = AnswerFeedback(
        ticket_id=ticket.id,
        message_id=asked.message.id,
        solved=solved,
        comment=text,
        category=ticket.predicted_category,
    )
    try:
        with session.begin_nested():
            session.add(feedback)
            session.flush()  # the unique answer per message: a concurrent second answer fails here
    except IntegrityError:
        raise _already_answered() from None
    details: dict[str, object] = {
        "category": ticket.predicted_category,
        "message_id": asked.message.message_id,
    }
    if solved:
        lifecycle.centre_confirmed_answer(ticket)
        action = AuditAction.TICKET_ANSWER_CONFIRMED
    else:
        queues = {queue.slug: queue for queue in session.scalars(select(Queue))}
        reopened = lifecycle.centre_rejected_answer(ticket, routing_map(session), queues)
        action = AuditAction.TICKET_ANSWER_REJECTED
        details.update(comment=text, queue=ticket.queue.slug if ticket.queue else None)
        details["reopened"] = reopened is not None
    session.add(
        AuditEvent(
            actor=f"centre:{ticket.centre_email}",
            ticket_id=ticket.id,
            action=action,
            details=details,
        )
    )
    ticket.updated_at = utcnow()
    return feedback


def rate_limited(session: Session, client: str, per_minute: int) -> int | None:
    """Count a request from `client` (its address) and commit; the seconds to wait when it is over
    `per_minute` in this minute, else None. Counted in the database, so it holds across processes."""
    if per_minute <= 0:
        return None
    now = int(time.time())
    window = now // RATE_WINDOW_SECONDS
    table = PublicRateLimit.__table__
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = insert(table).values(key=f"feedback:{client[:150]}", window=window, count=1)
    statement = values.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "count": case((table.c.window == window, table.c.count + 1), else_=1),
            "window": window,
        },
    ).returning(table.c.count)
    count = session.execute(statement).scalar_one()
    if count == 1:  # this client's first request in a window: forget every client's old windows
        session.execute(delete(table).where(table.c.window < window - 1))
    session.commit()
    if count > per_minute:
        return (window + 1) * RATE_WINDOW_SECONDS - now
    return None
