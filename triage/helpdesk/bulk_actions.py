"""Bulk actions on many tickets at once: assign, move, confirm the category, resolve."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from triage.helpdesk import tickets
from triage.orm import Ticket, User

OPERATIONS = ("assign", "move", "confirm", "resolve")
MAX_TICKETS = 200


@dataclass
class BulkOutcome:
    """How many tickets changed, and why the others did not (reference: reason)."""

    done: int = 0
    refused: list[str] = field(default_factory=list)


def apply(
    session: Session, actor: tickets.Actor, ticket_ids: list[int], operation: str, value: str
) -> BulkOutcome:
    """Apply one operation to each ticket; a ticket it cannot apply to is skipped with the
    reason."""
    if operation not in OPERATIONS:
        raise tickets.TicketError(f"unknown bulk action {operation!r}")
    ids = sorted(set(ticket_ids))
    if not ids:
        raise tickets.TicketError("select at least one ticket")
    if len(ids) > MAX_TICKETS:
        raise tickets.TicketError(f"at most {MAX_TICKETS} tickets at a time")
    assignee = None
    if operation == "assign" and value:
        assignee = (
            session.get(User, int(value))
            if value.isascii() and value.isdigit() and len(value) < 10
            else None
        )
        if assignee is None:
            raise tickets.TicketError("choose someone to assign to")
    rows = session.scalars(
        select(Ticket)
        .where(Ticket.id.in_(ids))
        .options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
    ).all()
    outcome = BulkOutcome()
    for ticket in sorted(rows, key=lambda t: t.id):
        try:
            if operation == "assign":
                tickets.assign(session, actor, ticket, assignee)
            elif operation == "move":
                tickets.move(session, actor, ticket, value)
            elif operation == "confirm":
                category = value or ticket.predicted_category or ""
                tickets.set_category(session, actor, ticket, category)
            elif ticket.status == "resolved":
                raise tickets.TicketError("already resolved")
            else:
                tickets.resolve(session, actor, ticket)
            outcome.done += 1
        except tickets.TicketError as exc:
            outcome.refused.append(f"{ticket.reference}: {exc}")
    return outcome
