"""Staff email notifications (through the outbox): urgent arrivals, centre replies and overdue
tickets.

A worker task looks for what happened since it last ran, so nothing depends on which process stored
the mail. Each event is recorded on the ticket when notified (urgent_notified_at, reply_notified_at,
overdue_notified_due), so it is told once however many workers run. The queue's notify address hears
of urgent and overdue tickets (inbound processing already tells it of centre replies); a queue with no
(valid) notify address alerts every active member of staff instead, so an alert always reaches
someone; the assignee hears of all three. A centre's "No, I still need help" to an automatic answer
is told like a reply, to the assignee, or to the queue (or everyone) when nobody is assigned. Each person can switch a kind off on their Preferences page.
Every alert links to the ticket (EXTERNAL_URL) and quotes the first lines of the centre's mail; an
invalid address is skipped and recorded, never stopping the other alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from triage.config import Settings
from triage.helpdesk import due, tickets
from triage.mail import compose
from triage.mail.outbox import enqueue
from triage.mail.recipients import unanswerable
from triage.orm import AnswerFeedback, AuditEvent, Queue, Ticket, User, utcnow
from triage.states import AuditAction, MessageDirection, MessageKind, TicketStatus

log = logging.getLogger(__name__)

BATCH = 200
# events older than this when first seen (e.g. right after an upgrade) are not mailed
STALE = timedelta(days=1)


def run(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Worker task: send every notification that is due; returns how many emails were queued."""
    with sessions() as session, session.begin():
        now = utcnow()
        return (
            urgent_arrivals(session, settings, now)
            + centre_replies(session, settings, now)
            + overdue(session, settings, now)
        )


def _send(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    recipients: Iterable[str],
    what: str,
    body: str,
) -> int:
    """Queue one alert per distinct valid address; an invalid address is skipped (and recorded on
    the ticket and logged), never stopping the others. The ticket's history names who was
    alerted."""
    alerted: list[str] = []
    skipped: list[str] = []
    for address in dict.fromkeys(a.strip().lower() for a in recipients if a and a.strip()):
        if unanswerable(address):
            skipped.append(address)
            continue
        enqueue(
            session,
            settings,
            ticket,
            kind=MessageKind.NOTIFICATION,
            subject=f"[{ticket.reference}] {what}: {ticket.subject}"[:300],
            body=body,
            reply_to=None,
            auto_submitted=compose.AUTO_GENERATED,
            to=address,
        )
        alerted.append(address)
    if skipped:
        log.warning("alert for %s not sent to invalid address(es) %s", ticket.reference, skipped)
    if alerted or skipped:
        session.add(
            AuditEvent(
                actor="system",
                ticket_id=ticket.id,
                action=AuditAction.NOTIFICATION_SENT,
                details={
                    "what": what,
                    "recipients": len(alerted),
                    "alerted": alerted,
                    "skipped": skipped,
                },
            )
        )
    return len(alerted)


EXCERPT_LINES = 8
EXCERPT_CHARS = 700


def excerpt(ticket: Ticket) -> str:
    """The first lines of the centre's latest written message (its first message when none is
    written), as an alert quotes them."""
    inbound = [m for m in ticket.messages if m.direction == MessageDirection.INBOUND]
    written = [m for m in inbound if not m.auto_submitted_reason] or inbound
    if not written:
        return ""
    text = written[-1].clean_text or written[-1].body_text or ""
    lines = [line.rstrip() for line in text.strip().splitlines()][:EXCERPT_LINES]
    quoted = "\n".join(lines)[:EXCERPT_CHARS]
    return quoted + (" …" if len(quoted) < len(text.strip()) else "")


def ticket_link(settings: Settings, ticket: Ticket) -> str:
    """The ticket's address in the staff app (under EXTERNAL_URL)."""
    return f"{settings.external_url.rstrip('/')}/tickets/{ticket.id}"


def _text(settings: Settings, ticket: Ticket, headline: str) -> str:
    queue = ticket.queue.slug if ticket.queue else "no"
    assignee = ticket.assignee.email if ticket.assignee else "nobody"
    quoted = "\n".join(f"> {line}" for line in excerpt(ticket).splitlines())
    return (
        f"{headline}\n\n{ticket.reference}: {ticket.subject or '(no subject)'}\n"
        f"From: {ticket.centre_name} <{ticket.centre_email}>\n"
        f"Queue: {queue} · assigned to {assignee}\n\n"
        f"Open the ticket: {ticket_link(settings, ticket)}\n\n"
        + (f"The centre wrote:\n{quoted}\n" if quoted else "")
    )


def _assignee(ticket: Ticket, wants: str) -> list[str]:
    user: User | None = ticket.assignee
    return [user.email] if user is not None and user.is_active and getattr(user, wants) else []


def _queue_or_everyone(session: Session, ticket: Ticket, wants: str) -> list[str]:
    """The queue's notify address; when it has none (or only an invalid one), every active member
    of staff who has not switched this kind of alert off (the invalid address is kept, to be
    skipped and shown)."""
    address = ticket.queue.notify_address if ticket.queue is not None else None
    if address and not unanswerable(address):
        return [address]
    everyone = session.scalars(
        select(User.email)
        .where(User.is_active.is_(True), getattr(User, wants).is_(True))
        .order_by(User.email)
    ).all()
    return ([address] if address else []) + list(everyone)


def _claim(session: Session, conditions: list[Any], order: list[Any]) -> list[Ticket]:
    """A batch of matching tickets, locked for this worker (others skip them) on PostgreSQL."""
    query = (
        select(Ticket)
        .where(*conditions)
        .options(
            selectinload(Ticket.queue),
            selectinload(Ticket.assignee),
            selectinload(Ticket.messages),
        )
        .order_by(*order)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def urgent_arrivals(session: Session, settings: Settings, now: datetime) -> int:
    """Tell the queue and the assignee of each urgent ticket not yet notified."""
    rows = _claim(
        session,
        [
            Ticket.urgent.is_(True),
            Ticket.urgent_notified_at.is_(None),
            Ticket.status == TicketStatus.OPEN,
        ],
        [Ticket.id],
    )
    sent = 0
    for ticket in rows:
        ticket.urgent_notified_at = now
        if ticket.created_at >= now - STALE:
            headline = f"Urgent: an exam is happening now. {ticket.urgent_reason or ''}".strip()
            sent += _send(
                session,
                settings,
                ticket,
                _queue_or_everyone(session, ticket, "notify_urgent")
                + _assignee(ticket, "notify_urgent"),
                "Urgent ticket",
                _text(settings, ticket, headline),
            )
    return sent


def centre_replies(session: Session, settings: Settings, now: datetime) -> int:
    """Tell the assignee when the centre replies on their ticket (once per reply); when the centre
    says an automatic answer did not help, tell the queue (or everyone) too, since such a ticket
    usually has no assignee."""
    unseen = or_(
        Ticket.reply_notified_at.is_(None), Ticket.reply_notified_at < Ticket.centre_replied_at
    )
    someone = or_(Ticket.assignee_id.is_not(None), Ticket.answer_rejected_at.is_not(None))
    rows = _claim(session, [Ticket.centre_replied_at.is_not(None), someone, unseen], [Ticket.id])
    sent = 0
    for ticket in rows:
        ticket.reply_notified_at = ticket.centre_replied_at
        if ticket.centre_replied_at is None or ticket.centre_replied_at < now - STALE:
            continue
        recipients = _assignee(ticket, "notify_centre_replies")
        if ticket.answer_rejected_at == ticket.centre_replied_at:  # this "reply" is their "No"
            if not recipients:
                recipients = _queue_or_everyone(session, ticket, "notify_centre_replies")
            what, headline = "Answer did not help", _rejected_headline(session, ticket)
        else:
            what, headline = "Centre replied", "The centre has replied on a ticket assigned to you."
        sent += _send(
            session, settings, ticket, recipients, what, _text(settings, ticket, headline)
        )
    return sent


def _rejected_headline(session: Session, ticket: Ticket) -> str:
    """What the centre said when it answered "No, I still need help", with its comment."""
    comment = session.scalar(
        select(AnswerFeedback.comment)
        .where(AnswerFeedback.ticket_id == ticket.id, AnswerFeedback.solved.is_(False))
        .order_by(AnswerFeedback.id.desc())
        .limit(1)
    )
    said = "The centre says the automatic answer did not help and still needs help."
    if not comment:
        return said + " It left no comment."
    quoted = "\n".join(f"> {line}" for line in comment.splitlines()[:EXCERPT_LINES])
    return f"{said} Its comment:\n{quoted[:EXCERPT_CHARS]}"


def _shortest_targets(session: Session) -> tuple[int, int]:
    """The shortest response targets in minutes, (urgent, any other), over every queue and the
    defaults."""
    urgent, first, following = session.execute(
        select(
            func.min(Queue.urgent_response_minutes),
            func.min(Queue.first_response_minutes),
            func.min(Queue.next_response_minutes),
        )
    ).one()
    return (
        min(urgent or due.DEFAULT_URGENT_MINUTES, due.DEFAULT_URGENT_MINUTES),
        min(
            first or due.DEFAULT_FIRST_MINUTES,
            following or due.DEFAULT_NEXT_MINUTES,
            due.DEFAULT_FIRST_MINUTES,
            due.DEFAULT_NEXT_MINUTES,
        ),
    )


def overdue(session: Session, settings: Settings, now: datetime) -> int:
    """Tell the queue and the assignee when an open ticket passes its due time (once per due
    time)."""
    waiting_since = tickets.waiting_since()
    not_told = or_(
        Ticket.overdue_notified_due.is_(None), Ticket.overdue_notified_due < waiting_since
    )
    urgent_minutes, other_minutes = _shortest_targets(session)
    # A due time is at least the target's minutes after the wait began (business time never runs
    # faster than the clock), so a ticket waiting less than the shortest target cannot be overdue:
    # not loaded.
    may_be_due = or_(
        and_(Ticket.urgent.is_(True), waiting_since <= now - timedelta(minutes=urgent_minutes)),
        waiting_since <= now - timedelta(minutes=other_minutes),
    )
    rows = _claim(
        session,
        [Ticket.status == TicketStatus.OPEN, not_told, may_be_due],
        [Ticket.urgent.desc(), waiting_since, Ticket.id],
    )
    sent = 0
    for ticket in rows:
        due_time = due.due_at(ticket)
        if due_time is None or due_time > now or ticket.overdue_notified_due == due_time:
            continue
        ticket.overdue_notified_due = due_time
        if due_time >= now - STALE:
            headline = (
                "Overdue: a response was due at "
                f"{due_time.astimezone(due.UK):%H:%M on %d %b} (UK time)."
            )
            sent += _send(
                session,
                settings,
                ticket,
                _queue_or_everyone(session, ticket, "notify_overdue")
                + _assignee(ticket, "notify_overdue"),
                "Overdue",
                _text(settings, ticket, headline),
            )
    return sent
