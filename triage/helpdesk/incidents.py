"""Incidents, links and merges: many centres writing about one cause.

When SecureAssess is down every centre writes at once. Staff gather those tickets into one incident,
answer it once (each centre gets the reply on its own ticket, greeted by name and threaded into its own
conversation) and resolve it once. Two tickets can also be linked (related, or one a duplicate of
the other), and a centre's duplicate merged into its first ticket, thread and history kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from triage import catalogue
from triage.config import Settings
from triage.helpdesk import tickets
from triage.helpdesk.tickets import Actor, TicketError
from triage.orm import AuditEvent, Incident, Message, Note, Ticket, TicketLink, utcnow
from triage.states import (
    OPEN_STATUSES,
    AuditAction,
    IncidentStatus,
    LinkKind,
    MessageDirection,
    TicketStatus,
)

MAX_TITLE = 200
SUGGEST_WINDOW = timedelta(minutes=30)  # tickets of one category arriving within this ...
SUGGEST_MINIMUM = 5  # ... this many or more suggest an incident


@dataclass
class IncidentOutcome:
    """What one action on an incident did to its tickets: those changed, and the others with why."""

    done: list[Ticket] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Suggestion:
    """Open tickets of one category that arrived close together, in no incident yet."""

    category: str
    ticket_ids: list[int]
    first_at: datetime
    last_at: datetime


def get_incident(session: Session, incident_id: int) -> Incident:
    """An incident with its tickets; TicketError when there is none."""
    incident = session.get(
        Incident,
        incident_id,
        options=[selectinload(Incident.tickets).selectinload(Ticket.messages)],
    )
    if incident is None:
        raise TicketError(f"no incident {incident_id}")
    return incident


def open_incidents(session: Session) -> list[Incident]:
    """Incidents still being handled, newest first."""
    return list(
        session.scalars(
            select(Incident)
            .where(Incident.status == IncidentStatus.OPEN)
            .options(selectinload(Incident.tickets))
            .order_by(Incident.id.desc())
        )
    )


def recent_incidents(session: Session, limit: int = 20) -> list[Incident]:
    """The latest incidents, open or resolved, newest first."""
    return list(
        session.scalars(
            select(Incident)
            .options(selectinload(Incident.tickets))
            .order_by(Incident.id.desc())
            .limit(limit)
        )
    )


def create_incident(
    session: Session, actor: Actor, title: str, category: str | None, ticket_ids: list[int]
) -> tuple[Incident, IncidentOutcome]:
    """Open an incident and join the given tickets to it."""
    title = " ".join(title.split())[:MAX_TITLE]
    if not title:
        raise TicketError("an incident needs a title (what is happening, for staff)")
    if category and category not in catalogue.BY_SLUG:
        raise TicketError(f"unknown category {category!r}")
    incident = Incident(title=title, category=category or None, created_by_id=actor.user_id)
    session.add(incident)
    session.flush()
    _record(
        session,
        actor,
        AuditAction.INCIDENT_CREATED,
        incident=incident.id,
        title=title,
        category=category,
    )
    return incident, join(session, actor, incident, ticket_ids)


def _record(session: Session, actor: Actor, action: AuditAction, **details: object) -> None:
    """An incident's event in the audit log (each ticket's own history records its part)."""
    session.add(
        AuditEvent(actor=actor.label, user_id=actor.user_id, action=action, details=details)
    )


def _tickets(session: Session, ticket_ids: list[int]) -> list[Ticket]:
    ids = sorted(set(ticket_ids))
    if len(ids) > 500:
        raise TicketError("at most 500 tickets at a time")
    return list(
        session.scalars(
            select(Ticket).where(Ticket.id.in_(ids)).options(selectinload(Ticket.messages))
        )
    )


def join(
    session: Session, actor: Actor, incident: Incident, ticket_ids: list[int]
) -> IncidentOutcome:
    """Join tickets to an open incident (a ticket in another open incident moves to this one)."""
    if incident.status != IncidentStatus.OPEN:
        raise TicketError("the incident is resolved; open a new one")
    outcome = IncidentOutcome()
    for ticket in _tickets(session, ticket_ids):
        if ticket.incident_id == incident.id:
            outcome.skipped.append(f"{ticket.reference}: already in this incident")
        elif ticket.merged_into_id is not None:
            outcome.skipped.append(f"{ticket.reference}: merged into another ticket")
        else:
            previous = ticket.incident_id
            ticket.incident_id = incident.id
            tickets.audit(
                session,
                actor,
                ticket,
                AuditAction.TICKET_JOINED_INCIDENT,
                incident=incident.id,
                title=incident.title,
                previous=previous,
            )
            outcome.done.append(ticket)
    session.flush()
    session.expire(incident, ["tickets"])
    return outcome


def leave(session: Session, actor: Actor, ticket: Ticket) -> None:
    """Take a ticket out of its incident (it is then answered and resolved on its own)."""
    if ticket.incident_id is None:
        raise TicketError("the ticket is in no incident")
    incident_id, ticket.incident_id = ticket.incident_id, None
    tickets.audit(session, actor, ticket, AuditAction.TICKET_LEFT_INCIDENT, incident=incident_id)


def reply_all(
    session: Session, settings: Settings, actor: Actor, incident: Incident, body: str
) -> IncidentOutcome:
    """One reply to every centre in the incident: each on its own ticket, greeted by name and
    threaded into its own conversation. Resolved tickets and unanswerable addresses are skipped."""
    if not body.strip():
        raise TicketError("a reply needs some text")
    outcome = IncidentOutcome()
    for ticket in incident.tickets:
        if ticket.status == TicketStatus.RESOLVED:
            outcome.skipped.append(f"{ticket.reference}: resolved already")
            continue
        try:
            tickets.reply(session, settings, actor, ticket, body)
        except TicketError as exc:
            outcome.skipped.append(f"{ticket.reference}: {exc}")
            continue
        outcome.done.append(ticket)
    if not outcome.done:
        raise TicketError(
            "no centre in the incident could be answered: " + "; ".join(outcome.skipped)
        )
    _record(
        session,
        actor,
        AuditAction.INCIDENT_REPLIED,
        incident=incident.id,
        tickets=[t.id for t in outcome.done],
    )
    return outcome


def resolve_incident(session: Session, actor: Actor, incident: Incident) -> IncidentOutcome:
    """Resolve the incident and every ticket in it. A ticket with no confirmed category is confirmed
    as the incident's category; without one, such a ticket stays open (and is named)."""
    if incident.status != IncidentStatus.OPEN:
        raise TicketError("the incident is resolved already")
    outcome = IncidentOutcome()
    for ticket in incident.tickets:
        if ticket.status == TicketStatus.RESOLVED:
            continue
        if ticket.confirmed_category is None and incident.category:
            tickets.set_category(session, actor, ticket, incident.category)
        try:
            tickets.resolve(session, actor, ticket)
        except TicketError as exc:
            outcome.skipped.append(f"{ticket.reference}: {exc}")
            continue
        outcome.done.append(ticket)
    if outcome.skipped:
        raise TicketError(
            "the incident stays open until every ticket can be resolved: "
            + "; ".join(outcome.skipped)
            + " (give the incident a category, or confirm theirs)"
        )
    incident.status, incident.resolved_at = IncidentStatus.RESOLVED, utcnow()
    _record(
        session,
        actor,
        AuditAction.INCIDENT_RESOLVED,
        incident=incident.id,
        tickets=[t.id for t in outcome.done],
    )
    return outcome


def link(session: Session, actor: Actor, ticket: Ticket, other: Ticket, kind: LinkKind) -> None:
    """Link two tickets (related, or duplicate); linking again changes the kind."""
    if ticket.id == other.id:
        raise TicketError("a ticket cannot be linked to itself")
    low, high = sorted((ticket.id, other.id))
    row = session.scalars(
        select(TicketLink).where(TicketLink.ticket_id == low, TicketLink.other_id == high)
    ).one_or_none()
    if row is None:
        session.add(
            TicketLink(ticket_id=low, other_id=high, kind=kind, created_by_id=actor.user_id)
        )
    else:
        row.kind = kind
    for one, two in ((ticket, other), (other, ticket)):
        tickets.audit(
            session, actor, one, AuditAction.TICKET_LINKED, other=two.reference, kind=kind.value
        )


def unlink(session: Session, actor: Actor, ticket: Ticket, other: Ticket) -> None:
    """Remove the link between two tickets."""
    low, high = sorted((ticket.id, other.id))
    row = session.scalars(
        select(TicketLink).where(TicketLink.ticket_id == low, TicketLink.other_id == high)
    ).one_or_none()
    if row is None:
        raise TicketError(f"{ticket.reference} and {other.reference} are not linked")
    session.delete(row)
    for one, two in ((ticket, other), (other, ticket)):
        tickets.audit(session, actor, one, AuditAction.TICKET_UNLINKED, other=two.reference)


def links_of(session: Session, ticket: Ticket) -> list[tuple[Ticket, LinkKind]]:
    """The tickets linked to this one, with how, oldest first."""
    rows = session.scalars(
        select(TicketLink).where(
            or_(TicketLink.ticket_id == ticket.id, TicketLink.other_id == ticket.id)
        )
    ).all()
    kinds = {(r.other_id if r.ticket_id == ticket.id else r.ticket_id): r.kind for r in rows}
    linked = session.scalars(select(Ticket).where(Ticket.id.in_(kinds)).order_by(Ticket.id))
    return [(t, kinds[t.id]) for t in linked]


def merge(session: Session, actor: Actor, duplicate: Ticket, into: Ticket) -> None:
    """Merge a centre's duplicate ticket into its other ticket: the duplicate's emails and notes
    move to `into` (so later mail on either thread lands there), both histories say so, and the
    duplicate is resolved as merged."""
    if duplicate.id == into.id:
        raise TicketError("a ticket cannot be merged into itself")
    if duplicate.merged_into_id is not None:
        raise TicketError(f"{duplicate.reference} was merged already")
    if into.merged_into_id is not None:
        raise TicketError(f"{into.reference} was itself merged into another ticket")
    if duplicate.centre_email.lower() != into.centre_email.lower():
        raise TicketError(
            "only one centre's tickets are merged (the other centre would see this thread); "
            "link them instead"
        )
    for message in list(duplicate.messages):
        message.ticket_id = into.id
    for note in session.scalars(select(Note).where(Note.ticket_id == duplicate.id)):
        note.ticket_id = into.id
    session.flush()
    session.expire(duplicate, ["messages"])
    session.expire(into, ["messages"])
    latest = session.scalar(
        select(Message.created_at)
        .where(Message.ticket_id == into.id, Message.direction == MessageDirection.INBOUND)
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    into.last_inbound_at = max(filter(None, (into.last_inbound_at, latest)), default=None)
    if into.status == TicketStatus.RESOLVED and duplicate.status in OPEN_STATUSES:
        tickets.reopen(session, actor, into)
    duplicate.merged_into_id = into.id
    duplicate.status, duplicate.resolved_at = TicketStatus.RESOLVED, utcnow()
    duplicate.resolution = "merged"
    duplicate.incident_id = None
    link(session, actor, duplicate, into, LinkKind.DUPLICATE)
    tickets.audit(session, actor, duplicate, AuditAction.TICKET_MERGED, into=into.reference)
    tickets.audit(session, actor, into, AuditAction.TICKET_MERGED_IN, merged=duplicate.reference)


def suggestions(
    session: Session,
    now: datetime | None = None,
    window: timedelta = SUGGEST_WINDOW,
    minimum: int = SUGGEST_MINIMUM,
) -> list[Suggestion]:
    """Categories with `minimum` or more open tickets, in no incident, that arrived within `window`
    of each other lately (an outage: every centre writing at once)."""
    now = now or utcnow()
    rows = session.execute(
        select(Ticket.id, Ticket.predicted_category, Ticket.created_at)
        .where(
            Ticket.status.in_(OPEN_STATUSES),
            Ticket.incident_id.is_(None),
            Ticket.merged_into_id.is_(None),
            Ticket.predicted_category.is_not(None),
            Ticket.created_at >= now - window,
        )
        .order_by(Ticket.created_at)
    ).all()
    grouped: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for ticket_id, category, created_at in rows:
        grouped[category or catalogue.OTHER].append((ticket_id, created_at))
    found = [
        Suggestion(category, [i for i, _ in members], members[0][1], members[-1][1])
        for category, members in grouped.items()
        if len(members) >= minimum
    ]
    return sorted(found, key=lambda s: -len(s.ticket_ids))
