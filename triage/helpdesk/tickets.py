"""Ticket queries and staff actions on tickets (claim, assign, move, note, reply, resolve, reopen).

Status changes are `lifecycle`'s: an action here checks, calls it, and records the audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from triage import catalogue
from triage.config import Settings
from triage.helpdesk import due, lifecycle
from triage.helpdesk.lifecycle import TicketError as TicketError  # callers catch it from here
from triage.mail import compose
from triage.mail.outbox import enqueue
from triage.mail.recipients import unanswerable
from triage.orm import AuditEvent, Message, Note, Queue, Ticket, User, utcnow
from triage.routing import routing_map
from triage.states import OPEN_STATUSES, AuditAction, MessageDirection, MessageKind, TicketStatus

PAGE_SIZE = 25
UNDO_WINDOW = timedelta(
    seconds=30
)  # how long a resolve can be undone (the page offers it for 10 s)


class ReplyConflict(TicketError):
    """Another staff reply was sent since the replier loaded the ticket: they should read it
    first."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class Actor:
    """Who is acting: a logged-in member of staff, or an API token."""

    label: str
    user: User | None = None

    @classmethod
    def of_user(cls, user: User) -> Actor:
        """A member of staff."""
        return cls(f"user:{user.email}", user)

    @classmethod
    def of_token(cls, name: str) -> Actor:
        """An API token, by name."""
        return cls(f"token:{name}")

    @property
    def user_id(self) -> int | None:
        """The acting user's id, if a person."""
        return self.user.id if self.user is not None else None


@dataclass(frozen=True)
class TicketFilter:
    """What a queue page or the API asks for."""

    queue: str | None = None
    status: TicketStatus | None = None
    category: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    text: str | None = None
    oldest_first: bool = True
    page: int = 1
    page_size: int = PAGE_SIZE
    statuses: tuple[TicketStatus, ...] | None = None  # any of these (views: open or pending)
    urgent: bool = False
    centre_replied: bool = False
    automatic: bool = (
        False  # tickets opened by automatic mail (out-of-office, bounces, notifications)
    )


def _filtered(f: TicketFilter) -> Select[Any]:
    """The tickets a filter asks for (neither ordered nor paged)."""
    query = select(Ticket).where(*_state_conditions(f), *_owner_conditions(f))
    if f.queue:
        query = query.join(Queue, Ticket.queue_id == Queue.id).where(Queue.slug == f.queue)
    words = (f.text or "").strip().lower()[:200]
    return query.where(_text_match(words)) if words else query


def _state_conditions(f: TicketFilter) -> list[ColumnElement[bool]]:
    """A filter's conditions on where tickets stand: status, urgency, replies, automatic mail."""
    conditions: list[ColumnElement[bool]] = []
    if f.status:
        conditions.append(Ticket.status == f.status)
    if f.statuses:
        conditions.append(Ticket.status.in_(f.statuses))
    if f.urgent:
        conditions.append(Ticket.urgent.is_(True))
    if f.centre_replied:
        conditions.append(_centre_replied_since_staff())
    if f.automatic:
        conditions.append(_opened_by_automatic_mail())
    return conditions


def _owner_conditions(f: TicketFilter) -> list[ColumnElement[bool]]:
    """A filter's conditions on the category (staff's word, else the model's) and the assignee."""
    conditions: list[ColumnElement[bool]] = []
    if f.category:
        label = func.coalesce(Ticket.confirmed_category, Ticket.predicted_category)
        conditions.append(label == f.category)
    if f.assignee_id is not None:
        conditions.append(Ticket.assignee_id == f.assignee_id)
    if f.unassigned:
        conditions.append(Ticket.assignee_id.is_(None))
    return conditions


def _centre_replied_since_staff() -> ColumnElement[bool]:
    """SQL for `Ticket.centre_replied`: an open ticket the centre wrote on since staff acted."""
    return and_(
        Ticket.centre_replied_at.is_not(None),
        Ticket.status.in_(OPEN_STATUSES),
        or_(
            Ticket.last_staff_action_at.is_(None),
            Ticket.centre_replied_at > Ticket.last_staff_action_at,
        ),
    )


def _opened_by_automatic_mail() -> ColumnElement[bool]:
    """SQL: the ticket's first message is automatic mail (out-of-office, bounce, notification)."""
    first_messages = select(func.min(Message.id)).group_by(Message.ticket_id).scalar_subquery()
    return Ticket.id.in_(
        select(Message.ticket_id).where(
            Message.id.in_(first_messages), Message.auto_submitted_reason.is_not(None)
        )
    )


def _text_match(words: str) -> ColumnElement[bool]:
    """SQL: the words in the subject, the centre's address or a message body, taken literally."""
    # %, _ and \ are not wildcards for the person searching (the web refuses NUL)
    needle = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    in_body = select(Message.ticket_id).where(
        func.lower(Message.body_text).like(needle, escape="\\")
    )
    return or_(
        func.lower(Ticket.subject).like(needle, escape="\\"),
        func.lower(Ticket.centre_email).like(needle, escape="\\"),
        Ticket.id.in_(in_body),
    )


def waiting_since() -> ColumnElement[Any]:
    """SQL for when a ticket's current wait began: creation, after a response the centre's reply."""
    return case(
        (Ticket.first_response_at.is_(None), Ticket.created_at),
        else_=func.coalesce(Ticket.centre_replied_at, Ticket.created_at),
    )


def _answer_rejected_first() -> ColumnElement[Any]:
    """SQL ordering key: tickets the centre said "No, I still need help" on come first."""
    return case((Ticket.answer_rejected_at.is_not(None), 0), else_=1)


def list_tickets(session: Session, f: TicketFilter) -> tuple[list[Ticket], int]:
    """One page of tickets matching the filter (urgent first, then those whose automatic answer
    the centre said did not help, then longest waiting), and the count."""
    base = _filtered(f)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    since = waiting_since()
    order = since.asc() if f.oldest_first else since.desc()
    page = max(1, f.page)
    rows = session.scalars(
        base.options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
        .order_by(Ticket.urgent.desc(), _answer_rejected_first(), order, Ticket.id)
        .offset((page - 1) * f.page_size)
        .limit(f.page_size)
    ).all()
    return list(rows), total


def count_tickets(session: Session, f: TicketFilter) -> int:
    """How many tickets match the filter."""
    return session.scalar(select(func.count()).select_from(_filtered(f).subquery())) or 0


def next_ticket(session: Session, current: Ticket, user: User) -> Ticket | None:
    """The next open ticket to work in the queue (urgent, longest waiting), mine or nobody's."""
    if current.queue is None:
        return None
    rows, _total = list_tickets(
        session,
        TicketFilter(queue=current.queue.slug, statuses=(TicketStatus.OPEN,), page_size=50),
    )
    return next((t for t in rows if t.id != current.id and t.assignee_id in (None, user.id)), None)


@dataclass(frozen=True)
class QueueSummary:
    """A queue with its open, urgent and overdue counts and its oldest waiting ticket's age."""

    slug: str
    name: str
    open_count: int
    oldest: datetime | None
    urgent_count: int = 0
    overdue_count: int = 0


def queue_summaries(session: Session) -> list[QueueSummary]:
    """Every queue with open, urgent and overdue counts and oldest waiting time; triage first."""
    rows = session.execute(
        select(
            Queue.id,
            Queue.slug,
            Queue.name,
            func.count(Ticket.id),
            func.min(Ticket.created_at),
            func.count(Ticket.id).filter(Ticket.urgent),
        )
        .outerjoin(Ticket, (Ticket.queue_id == Queue.id) & Ticket.status.in_(OPEN_STATUSES))
        .group_by(Queue.id, Queue.slug, Queue.name)
    ).all()
    overdue = _overdue_by_queue(session)
    summaries = [
        QueueSummary(slug, name, count, oldest, urgent, overdue.get(queue_id, 0))
        for queue_id, slug, name, count, oldest, urgent in rows
    ]
    return sorted(summaries, key=lambda q: (q.slug != catalogue.TRIAGE_QUEUE, q.slug))


def _overdue_by_queue(session: Session) -> dict[int, int]:
    """How many tickets in each queue are past their response target now."""
    now = utcnow()
    waiting = session.scalars(
        select(Ticket)
        .where(Ticket.status == TicketStatus.OPEN, Ticket.queue_id.is_not(None))
        .options(selectinload(Ticket.queue))
    )
    counts: dict[int, int] = {}
    for ticket in waiting:
        if ticket.queue_id is not None and due.is_overdue(ticket, now):
            counts[ticket.queue_id] = counts.get(ticket.queue_id, 0) + 1
    return counts


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    """A ticket with its thread loaded; TicketError if there is none."""
    ticket = session.get(
        Ticket, ticket_id, options=[selectinload(Ticket.messages).selectinload(Message.attachments)]
    )
    if ticket is None:
        raise TicketError(f"no ticket {ticket_id}")
    return ticket


def _audit(
    session: Session, actor: Actor, ticket: Ticket, action: AuditAction, **details: Any
) -> None:
    session.add(
        AuditEvent(
            actor=actor.label,
            user_id=actor.user_id,
            ticket_id=ticket.id,
            action=action,
            details=details,
        )
    )
    ticket.updated_at = ticket.last_staff_action_at = utcnow()


def assign(session: Session, actor: Actor, ticket: Ticket, assignee: User | None) -> None:
    """Assign a ticket to someone (or nobody); claiming is assigning to yourself."""
    if assignee is not None and not assignee.is_active:
        raise TicketError(f"{assignee.email} is not an active user")
    previous = ticket.assignee.email if ticket.assignee else None
    ticket.assignee = assignee
    _audit(
        session,
        actor,
        ticket,
        AuditAction.TICKET_ASSIGNED,
        previous=previous,
        assignee=assignee.email if assignee else None,
    )


def hand_over_open_tickets(
    session: Session, actor: Actor, owner: User, to: User | None
) -> list[Ticket]:
    """Assign every open or waiting ticket of `owner` to `to` (None: unassigned), each recorded;
    used when `owner` is deactivated."""
    if to is not None and (to.id == owner.id or not to.is_active):
        raise TicketError("hand the tickets to another active user, or to nobody")
    rows = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.assignee_id == owner.id, Ticket.status.in_(OPEN_STATUSES))
            .options(selectinload(Ticket.assignee))
            .order_by(Ticket.id)
        )
    )
    for ticket in rows:
        assign(session, actor, ticket, to)
    return rows


def set_category(session: Session, actor: Actor, ticket: Ticket, category: str) -> None:
    """Record the staff-confirmed category (a correction when it differs from the model's)."""
    if category not in catalogue.BY_SLUG:
        raise TicketError(f"unknown category {category!r}")
    previous = ticket.confirmed_category
    ticket.confirmed_category = category
    ticket.confirmed_by_id = actor.user_id
    _audit(
        session,
        actor,
        ticket,
        AuditAction.TICKET_CATEGORY_CONFIRMED,
        category=category,
        previous=previous,
        predicted=ticket.predicted_category,
        correction=category != ticket.predicted_category,
    )


def move(session: Session, actor: Actor, ticket: Ticket, queue_slug: str) -> None:
    """Move a ticket to another queue."""
    queue = session.scalars(select(Queue).where(Queue.slug == queue_slug)).one_or_none()
    if queue is None:
        raise TicketError(f"unknown queue {queue_slug!r}")
    previous = ticket.queue.slug if ticket.queue else None
    ticket.queue = queue
    _audit(session, actor, ticket, AuditAction.TICKET_MOVED, queue=queue_slug, previous=previous)


def add_note(session: Session, actor: Actor, ticket: Ticket, body: str) -> Note:
    """Add an internal note."""
    if not body.strip():
        raise TicketError("a note needs some text")
    note = Note(ticket_id=ticket.id, author_id=actor.user_id, body=body.strip()[:20_000])
    session.add(note)
    _audit(session, actor, ticket, AuditAction.TICKET_NOTE_ADDED)
    return note


def reply_version(session: Session, ticket: Ticket) -> int:
    """The ticket's reply version: the id of its latest staff reply (0 before any), read from the
    database (a reply sent by another process counts)."""
    return (
        session.scalar(
            select(func.max(Message.id)).where(
                Message.ticket_id == ticket.id, Message.kind == MessageKind.STAFF_REPLY
            )
        )
        or 0
    )


def check_reply_version(session: Session, ticket: Ticket, seen: int) -> None:
    """Refuse (ReplyConflict) when a staff reply newer than version `seen` is on the ticket; the
    ticket row is locked first, so two replies from the same version cannot both pass."""
    session.execute(select(Ticket.id).where(Ticket.id == ticket.id).with_for_update())
    current = reply_version(session, ticket)
    if current <= seen:
        return
    latest = session.get(Message, current)
    author = session.get(User, latest.author_id) if latest and latest.author_id else None
    who = (author.name or author.email) if author is not None else "someone"
    when = f" at {latest.created_at:%H:%M} UTC" if latest is not None else ""
    raise ReplyConflict(
        f"{who} replied to the centre{when} since you opened this ticket: read their reply "
        "first, then send yours again if it is still needed (your text is kept)",
        current,
    )


def reply(
    session: Session,
    settings: Settings,
    actor: Actor,
    ticket: Ticket,
    body: str,
    seen_version: int | None = None,
) -> Message:
    """Send a reply to the centre through the outbox, threaded on the latest inbound message;
    with `seen_version`, refused (ReplyConflict) when another reply was sent since."""
    if not body.strip():
        raise TicketError("a reply needs some text")
    lifecycle.check_can_reply(ticket)
    if seen_version is not None:
        check_reply_version(session, ticket, seen_version)
    if problem := unanswerable(ticket.centre_email):
        raise TicketError(f"the centre's address cannot take a reply: {problem}")
    answered = last_written(ticket)
    message = enqueue(
        session,
        settings,
        ticket,
        kind=MessageKind.STAFF_REPLY,
        subject=compose.reply_subject(ticket.id, ticket.subject),
        body=_reply_text(settings, actor, ticket, body, answered),
        reply_to=answered,
        auto_submitted=None,
        author_id=actor.user_id,
    )
    lifecycle.staff_replied(ticket)
    _audit(session, actor, ticket, AuditAction.TICKET_REPLIED, message_id=message.message_id)
    return message


def last_written(ticket: Ticket) -> Message | None:
    """The centre's latest message written by a person (not a later out-of-office, receipt or
    bounce); the latest inbound message when there is nothing else. Staff replies answer it."""
    inbound = [m for m in ticket.messages if m.direction == MessageDirection.INBOUND]
    written = [m for m in inbound if not m.auto_submitted_reason and m.kind != MessageKind.BOUNCE]
    return written[-1] if written else inbound[-1] if inbound else None


def _reply_text(
    settings: Settings, actor: Actor, ticket: Ticket, body: str, quoted: Message | None
) -> str:
    """The reply as sent: signed, quoting the message it answers."""
    return compose.staff_reply_text(
        body=body,
        reference=ticket.reference,
        centre_name=ticket.centre_name,
        centre_address=ticket.centre_email,
        agent_name=actor.user.name if actor.user is not None else "",
        team_name=settings.support_name,
        quoted_from=_sender_label(quoted) if quoted is not None else "",
        quoted_at=quoted.created_at if quoted is not None else None,
        quoted_text=(quoted.clean_text or quoted.body_text) if quoted is not None else "",
    )


def _sender_label(message: Message) -> str:
    return (
        f"{message.from_name} <{message.from_address}>"
        if message.from_name
        else message.from_address
    )


def resolve(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Resolve a ticket; it needs a staff-confirmed category first (retraining learns from it)."""
    previous = ticket.status
    lifecycle.resolve(ticket)
    _audit(
        session,
        actor,
        ticket,
        AuditAction.TICKET_RESOLVED,
        category=ticket.confirmed_category,
        previous_status=previous,
    )


def undoable_resolve(session: Session, actor: Actor, ticket: Ticket) -> AuditEvent | None:
    """The resolve this actor can still undo: the ticket's latest event, by them, within
    UNDO_WINDOW."""
    if ticket.status != TicketStatus.RESOLVED:
        return None
    latest = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.ticket_id == ticket.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if (
        latest is None
        or latest.action != AuditAction.TICKET_RESOLVED
        or latest.actor != actor.label
        or latest.created_at < utcnow() - UNDO_WINDOW
    ):
        return None
    return latest


def undo_resolve(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Put a ticket this actor resolved moments ago back as it was (open or waiting on the
    centre)."""
    event = undoable_resolve(session, actor, ticket)
    if event is None:
        raise TicketError("too late to undo: reopen the ticket instead")
    previous = (event.details or {}).get("previous_status") or TicketStatus.OPEN
    ticket.status = TicketStatus(previous)
    ticket.resolved_at = None
    _audit(session, actor, ticket, AuditAction.TICKET_RESOLVE_UNDONE, status=ticket.status)


def reopen(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Reopen a resolved or auto-replied ticket, in the queue its category routes to."""
    previous = ticket.status
    queues = {queue.slug: queue for queue in session.scalars(select(Queue))}
    queue = lifecycle.reopen(ticket, routing_map(session), queues)
    _audit(
        session,
        actor,
        ticket,
        AuditAction.TICKET_REOPENED,
        previous_status=previous,
        queue=queue.slug,
    )


def set_urgent(
    session: Session, actor: Actor, ticket: Ticket, urgent: bool, reason: str = ""
) -> None:
    """Mark a ticket urgent (an exam happening now) or not, with the reason staff give."""
    if ticket.urgent == urgent:
        raise TicketError(
            "the ticket is already urgent" if urgent else "the ticket is already not urgent"
        )
    previous = ticket.urgent_reason
    ticket.urgent = urgent
    ticket.urgent_reason = (
        reason.strip() or f"marked {'urgent' if urgent else 'not urgent'} by staff"
    )[:300]
    _audit(
        session,
        actor,
        ticket,
        AuditAction.TICKET_URGENCY_CHANGED,
        urgent=urgent,
        reason=ticket.urgent_reason,
        previous_reason=previous,
    )


def history(session: Session, ticket: Ticket) -> list[AuditEvent]:
    """The ticket's audit trail, oldest first."""
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket.id).order_by(AuditEvent.id)
        )
    )


def notes(session: Session, ticket: Ticket) -> list[Note]:
    """The ticket's internal notes, oldest first."""
    return list(
        session.scalars(
            select(Note)
            .where(Note.ticket_id == ticket.id)
            .options(selectinload(Note.author))
            .order_by(Note.id)
        )
    )


def audit(
    session: Session, actor: Actor, ticket: Ticket, action: AuditAction, **details: Any
) -> None:
    """Record a staff action on a ticket in its history (for modules acting on many tickets)."""
    _audit(session, actor, ticket, action, **details)
