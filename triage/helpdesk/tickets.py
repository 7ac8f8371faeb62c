"""Ticket queries and staff actions (claim, assign, recategorise, move, note, reply, resolve, reopen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from triage import catalogue
from triage.config import Settings
from triage.mail import compose
from triage.mail.outbox import enqueue
from triage.mail.recipients import unanswerable
from triage.orm import AuditEvent, Message, Note, Queue, Ticket, User, utcnow

STATUSES = ("open", "pending", "auto_replied", "resolved")
OPEN_STATUSES = ("open", "pending")
PAGE_SIZE = 25


class TicketError(ValueError):
    """A staff action that cannot be done, with a message saying why."""


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
    status: str | None = None
    category: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    text: str | None = None
    oldest_first: bool = True
    page: int = 1
    page_size: int = PAGE_SIZE
    statuses: tuple[str, ...] | None = None  # any of these (views: "open" means open or pending)
    urgent: bool = False
    centre_replied: bool = False
    automatic: bool = (
        False  # tickets opened by automatic mail (out-of-office, bounces, notifications)
    )


def _filtered(f: TicketFilter) -> Select[Any]:
    query = select(Ticket)
    if f.queue:
        query = query.join(Queue, Ticket.queue_id == Queue.id).where(Queue.slug == f.queue)
    if f.status:
        query = query.where(Ticket.status == f.status)
    if f.category:
        label = func.coalesce(Ticket.confirmed_category, Ticket.predicted_category)
        query = query.where(label == f.category)
    if f.assignee_id is not None:
        query = query.where(Ticket.assignee_id == f.assignee_id)
    if f.unassigned:
        query = query.where(Ticket.assignee_id.is_(None))
    if f.statuses:
        query = query.where(Ticket.status.in_(f.statuses))
    if f.urgent:
        query = query.where(Ticket.urgent.is_(True))
    if f.centre_replied:
        query = query.where(
            Ticket.centre_replied_at.is_not(None),
            Ticket.status.in_(OPEN_STATUSES),
            or_(
                Ticket.last_staff_action_at.is_(None),
                Ticket.centre_replied_at > Ticket.last_staff_action_at,
            ),
        )
    if f.automatic:
        first_messages = select(func.min(Message.id)).group_by(Message.ticket_id).scalar_subquery()
        query = query.where(
            Ticket.id.in_(
                select(Message.ticket_id).where(
                    Message.id.in_(first_messages), Message.auto_submitted_reason.is_not(None)
                )
            )
        )
    # literal text: %, _ and \ are not wildcards for the person searching (NUL is refused at the web boundary)
    words = (f.text or "").strip().lower()[:200]
    if words:
        needle = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_body = select(Message.ticket_id).where(
            func.lower(Message.body_text).like(needle, escape="\\")
        )
        query = query.where(
            or_(
                func.lower(Ticket.subject).like(needle, escape="\\"),
                func.lower(Ticket.centre_email).like(needle, escape="\\"),
                Ticket.id.in_(in_body),
            )
        )
    return query


def waiting_since() -> ColumnElement[Any]:
    """SQL for when a ticket's current wait began: creation until a first response, then the centre's reply."""
    return case(
        (Ticket.first_response_at.is_(None), Ticket.created_at),
        else_=func.coalesce(Ticket.centre_replied_at, Ticket.created_at),
    )


def list_tickets(session: Session, f: TicketFilter) -> tuple[list[Ticket], int]:
    """One page of tickets matching the filter, urgent first, then by how long they have waited; and the count."""
    base = _filtered(f)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    since = waiting_since()
    order = since.asc() if f.oldest_first else since.desc()
    page = max(1, f.page)
    rows = session.scalars(
        base.options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
        .order_by(Ticket.urgent.desc(), order, Ticket.id)
        .offset((page - 1) * f.page_size)
        .limit(f.page_size)
    ).all()
    return list(rows), total


def count_tickets(session: Session, f: TicketFilter) -> int:
    """How many tickets match the filter."""
    return session.scalar(select(func.count()).select_from(_filtered(f).subquery())) or 0


def next_ticket(session: Session, current: Ticket, user: User) -> Ticket | None:
    """The next open ticket to work in the same queue (urgent first, longest waiting), mine or nobody's."""
    if current.queue is None:
        return None
    rows, _total = list_tickets(
        session, TicketFilter(queue=current.queue.slug, statuses=("open",), page_size=50)
    )
    return next((t for t in rows if t.id != current.id and t.assignee_id in (None, user.id)), None)


@dataclass(frozen=True)
class QueueSummary:
    """A queue with its open count and its oldest waiting ticket's age."""

    slug: str
    name: str
    open_count: int
    oldest: datetime | None


def queue_summaries(session: Session) -> list[QueueSummary]:
    """Every queue with open counts and oldest waiting time; triage first."""
    rows = session.execute(
        select(Queue.slug, Queue.name, func.count(Ticket.id), func.min(Ticket.created_at))
        .outerjoin(Ticket, (Ticket.queue_id == Queue.id) & Ticket.status.in_(OPEN_STATUSES))
        .group_by(Queue.id, Queue.slug, Queue.name)
    ).all()
    summaries = [QueueSummary(slug, name, count, oldest) for slug, name, count, oldest in rows]
    return sorted(summaries, key=lambda q: (q.slug != catalogue.TRIAGE_QUEUE, q.slug))


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    """A ticket with its thread loaded; TicketError if there is none."""
    ticket = session.get(
        Ticket, ticket_id, options=[selectinload(Ticket.messages).selectinload(Message.attachments)]
    )
    if ticket is None:
        raise TicketError(f"no ticket {ticket_id}")
    return ticket


def _audit(session: Session, actor: Actor, ticket: Ticket, action: str, **details: Any) -> None:
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
        "ticket.assigned",
        previous=previous,
        assignee=assignee.email if assignee else None,
    )


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
        "ticket.category_confirmed",
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
    _audit(session, actor, ticket, "ticket.moved", queue=queue_slug, previous=previous)


def add_note(session: Session, actor: Actor, ticket: Ticket, body: str) -> Note:
    """Add an internal note."""
    if not body.strip():
        raise TicketError("a note needs some text")
    note = Note(ticket_id=ticket.id, author_id=actor.user_id, body=body.strip()[:20_000])
    session.add(note)
    _audit(session, actor, ticket, "ticket.note_added")
    return note


def reply(session: Session, settings: Settings, actor: Actor, ticket: Ticket, body: str) -> Message:
    """Send a reply to the centre through the outbox, threaded on the latest inbound message."""
    if not body.strip():
        raise TicketError("a reply needs some text")
    if ticket.status == "resolved":
        raise TicketError("reopen the ticket before replying")
    if problem := unanswerable(ticket.centre_email):
        raise TicketError(f"the centre's address cannot take a reply: {problem}")
    last_inbound = next((m for m in reversed(ticket.messages) if m.direction == "inbound"), None)
    # quote what the centre last wrote (not an out-of-office or a receipt that came after it)
    quoted = next(
        (
            m
            for m in reversed(ticket.messages)
            if m.direction == "inbound" and not m.auto_submitted_reason
        ),
        last_inbound,
    )
    text = compose.staff_reply_text(
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
    message = enqueue(
        session,
        settings,
        ticket,
        kind="staff_reply",
        subject=compose.reply_subject(ticket.id, ticket.subject),
        body=text,
        reply_to=last_inbound,
        auto_submitted=None,
        author_id=actor.user_id,
    )
    ticket.status = "pending"
    ticket.first_response_at = ticket.first_response_at or utcnow()
    _audit(session, actor, ticket, "ticket.replied", message_id=message.message_id)
    return message


def _sender_label(message: Message) -> str:
    return (
        f"{message.from_name} <{message.from_address}>"
        if message.from_name
        else message.from_address
    )


def resolve(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Resolve a ticket; it needs a staff-confirmed category first (that is what retraining learns from)."""
    if ticket.confirmed_category is None:
        raise TicketError("confirm the category before resolving")
    ticket.status, ticket.resolved_at = "resolved", utcnow()
    _audit(session, actor, ticket, "ticket.resolved", category=ticket.confirmed_category)


def reopen(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Reopen a resolved or auto-replied ticket."""
    if ticket.status in OPEN_STATUSES:
        raise TicketError("the ticket is already open")
    ticket.status, ticket.resolved_at, ticket.resolution = "open", None, None
    _audit(session, actor, ticket, "ticket.reopened")


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
        "ticket.urgency_changed",
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
