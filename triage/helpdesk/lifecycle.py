"""Every change of a ticket's status, and the one reopen rule.

    new ticket ──> open            (urgent: always open, even when answered)
               ──> auto_replied    (answered from the FAQ)
               ──> resolved        (automatic mail: nobody is waiting for an answer)
    open/pending ── staff reply ──> pending ── centre follow-up ──> open
    any ── resolve (category confirmed) ──> resolved
    auto_replied/resolved ── reopen (staff) or centre follow-up ──> open, in its category's queue
    any ── centre: "Yes, that solved it" ──> resolved (the centre's word; no staff category)
    any ── centre: "No, I still need help" ──> open, reopened by the rule, top of its queue

The reopen rule: a reopened ticket goes to the queue its category routes to (the staff-confirmed
category, else the predicted one, else `other`; the triage queue when the category has no route),
whoever reopens it. These functions change the ticket in memory and return what to record; the
caller writes the audit event and commits. No Flask and no session: the routing map and the queues
are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from triage import catalogue
from triage.orm import Queue, Ticket, utcnow
from triage.states import OPEN_STATUSES, AuditAction, TicketStatus

REOPENABLE = (TicketStatus.AUTO_REPLIED, TicketStatus.RESOLVED)


class TicketError(ValueError):
    """A staff action that cannot be done, with a message saying why."""


def new_ticket_status(urgent: bool, replying: bool, automatic: bool) -> TicketStatus:
    """A new ticket's status: urgent stays open, answered is auto_replied, automatic is resolved."""
    if urgent:
        return TicketStatus.OPEN
    if replying:
        return TicketStatus.AUTO_REPLIED
    if automatic:
        return TicketStatus.RESOLVED
    return TicketStatus.OPEN


def check_can_reply(ticket: Ticket) -> None:
    """Refuse a staff reply on a resolved ticket (it is reopened first)."""
    if ticket.status == TicketStatus.RESOLVED:
        raise TicketError("reopen the ticket before replying")


def staff_replied(ticket: Ticket) -> None:
    """After a staff reply the ticket waits on the centre; the first response time is kept."""
    ticket.status = TicketStatus.PENDING
    ticket.first_response_at = ticket.first_response_at or utcnow()
    ticket.answer_rejected_at = None  # answered by a person: back to its ordinary place


def resolve(ticket: Ticket) -> None:
    """Resolve a ticket; it needs a staff-confirmed category (what retraining learns from)."""
    if ticket.confirmed_category is None:
        raise TicketError("confirm the category before resolving")
    ticket.status, ticket.resolved_at = TicketStatus.RESOLVED, utcnow()
    ticket.answer_rejected_at = None


SOLVED_BY_ANSWER = "solved by the automatic answer"  # the resolution a centre's "Yes" records


def centre_confirmed_answer(ticket: Ticket) -> None:
    """The centre says the automatic answer solved it: resolved on its word (no staff category;
    a ticket staff resolved already stays as staff left it)."""
    if ticket.status != TicketStatus.RESOLVED:
        ticket.status, ticket.resolved_at = TicketStatus.RESOLVED, utcnow()
        ticket.resolution = SOLVED_BY_ANSWER
    ticket.answer_rejected_at = None


def centre_rejected_answer(
    ticket: Ticket, routing: Mapping[str, str], queues: Mapping[str, Queue]
) -> Queue | None:
    """The centre says the automatic answer did not help: open for staff at the top of its queue,
    reopened by the rule when it was auto-replied or resolved; returns the queue it was reopened
    in (None when it was open already and stays where it is)."""
    queue = _reopen(ticket, routing, queues) if ticket.status in REOPENABLE else None
    now = utcnow()
    ticket.status, ticket.centre_replied_at, ticket.answer_rejected_at = (
        TicketStatus.OPEN,
        now,
        now,
    )
    return queue


def reopen_queue(ticket: Ticket, routing: Mapping[str, str]) -> str:
    """The slug of the queue a reopened ticket goes to: where its category routes (the rule)."""
    category = ticket.confirmed_category or ticket.predicted_category or catalogue.OTHER
    return routing.get(category, catalogue.TRIAGE_QUEUE)


def _reopen(ticket: Ticket, routing: Mapping[str, str], queues: Mapping[str, Queue]) -> Queue:
    """Open the ticket again in its category's queue, its resolution cleared."""
    ticket.queue = queues[reopen_queue(ticket, routing)]
    ticket.status, ticket.resolved_at, ticket.resolution = TicketStatus.OPEN, None, None
    return ticket.queue


def reopen(ticket: Ticket, routing: Mapping[str, str], queues: Mapping[str, Queue]) -> Queue:
    """Staff reopen an auto-replied or resolved ticket; returns the queue it is now in."""
    if ticket.status in OPEN_STATUSES:
        raise TicketError("the ticket is already open")
    return _reopen(ticket, routing, queues)


def centre_replied(
    ticket: Ticket, routing: Mapping[str, str], queues: Mapping[str, Queue]
) -> AuditAction:
    """A centre's follow-up (not automatic mail): the ticket is open again, reopened by the rule
    when it was auto-replied or resolved; returns the audit action to record."""
    action = AuditAction.TICKET_CENTRE_REPLIED
    if ticket.status in REOPENABLE:
        _reopen(ticket, routing, queues)
        action = AuditAction.TICKET_REOPENED
    ticket.status, ticket.centre_replied_at = TicketStatus.OPEN, utcnow()
    return action
