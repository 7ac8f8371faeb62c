"""Bulk actions on many tickets at once: assign, move, confirm the category, resolve (and undo
that resolve for a moment), join an incident."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from triage.helpdesk import incidents, tickets
from triage.orm import Ticket, User
from triage.states import TicketStatus

OPERATIONS = ("assign", "move", "confirm", "resolve", "undo", "incident")
MAX_TICKETS = 200
NOBODY = "none"  # the explicit choice to unassign (an empty choice is refused, never "nobody")


@dataclass
class BulkOutcome:
    """How many tickets changed, and why the others did not (reference: reason)."""

    done: int = 0
    refused: list[str] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)  # the ids of the tickets changed


def apply(
    session: Session, actor: tickets.Actor, ticket_ids: list[int], operation: str, value: str
) -> BulkOutcome:
    """Apply one operation to each ticket; a ticket it cannot apply to is skipped with the
    reason."""
    if operation not in OPERATIONS:
        raise tickets.TicketError(f"unknown bulk action {operation!r}")
    ids = _checked_ids(ticket_ids)
    if operation == "incident":
        return _join_incident(session, actor, ids, value)
    assignee = _assignee(session, value) if operation == "assign" else None
    if operation == "move" and not value:
        raise tickets.TicketError("choose the queue to move the ticked tickets to")
    rows = session.scalars(
        select(Ticket)
        .where(Ticket.id.in_(ids))
        .options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
    ).all()
    outcome = BulkOutcome()
    for ticket in sorted(rows, key=lambda t: t.id):
        try:
            _apply_one(session, actor, ticket, operation, value, assignee)
            outcome.done += 1
            outcome.changed.append(ticket.id)
        except tickets.TicketError as exc:
            outcome.refused.append(f"{ticket.reference}: {exc}")
    return outcome


def _join_incident(
    session: Session, actor: tickets.Actor, ids: list[int], value: str
) -> BulkOutcome:
    """Join the tickets to the open incident whose id is `value`."""
    if not (value.isascii() and value.isdigit() and len(value) < 10):
        raise tickets.TicketError("choose an incident")
    joined = incidents.join(session, actor, incidents.get_incident(session, int(value)), ids)
    return BulkOutcome(len(joined.done), joined.skipped)


def _checked_ids(ticket_ids: list[int]) -> list[int]:
    """The distinct ids, sorted; at least one and at most MAX_TICKETS."""
    ids = sorted(set(ticket_ids))
    if not ids:
        raise tickets.TicketError("select at least one ticket")
    if len(ids) > MAX_TICKETS:
        raise tickets.TicketError(f"at most {MAX_TICKETS} tickets at a time")
    return ids


def _assignee(session: Session, value: str) -> User | None:
    """The person to assign to, by id ("none": nobody; empty: refused, a target must be
    chosen)."""
    if value == NOBODY:
        return None
    if not value:
        raise tickets.TicketError("choose who to assign the ticked tickets to (or nobody)")
    is_id = value.isascii() and value.isdigit() and len(value) < 10
    assignee = session.get(User, int(value)) if is_id else None
    if assignee is None:
        raise tickets.TicketError("choose someone to assign to")
    return assignee


def _apply_one(
    session: Session,
    actor: tickets.Actor,
    ticket: Ticket,
    operation: str,
    value: str,
    assignee: User | None,
) -> None:
    """The operation on one ticket (TicketError when it cannot be done to it)."""
    if operation == "assign":
        tickets.assign(session, actor, ticket, assignee)
    elif operation == "move":
        tickets.move(session, actor, ticket, value)
    elif operation == "confirm":
        tickets.set_category(session, actor, ticket, value or ticket.predicted_category or "")
    elif operation == "undo":
        tickets.undo_resolve(session, actor, ticket)
    elif ticket.status == TicketStatus.RESOLVED:
        raise tickets.TicketError("already resolved")
    else:
        tickets.resolve(session, actor, ticket)
