"""The ticket lifecycle: every status change, and one reopen rule whoever reopens the ticket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from tests.workspace_util import ingest, reload
from triage import catalogue
from triage.helpdesk import lifecycle, tickets
from triage.helpdesk.lifecycle import TicketError
from triage.orm import AuditEvent, Queue, Ticket, utcnow
from triage.routing import routing_map
from triage.states import AuditAction, TicketStatus

QUEUES = {slug: Queue(slug=slug, name=slug) for slug in ("triage", "technical", "results")}
ROUTING = {"exam_frozen": "technical", "obtain_results": "results"}


def _ticket(status: TicketStatus, **values: object) -> Ticket:
    """A ticket in memory, in the triage queue, resolved if its status says so."""
    ticket = Ticket(centre_email="jo@college.example", status=status, **values)
    ticket.queue = QUEUES["triage"]
    if status == TicketStatus.RESOLVED:
        ticket.resolved_at, ticket.resolution = utcnow(), "no action needed"
    return ticket


@pytest.mark.parametrize(
    ("urgent", "replying", "automatic", "status"),
    [
        (False, False, False, TicketStatus.OPEN),
        (False, True, False, TicketStatus.AUTO_REPLIED),
        (False, False, True, TicketStatus.RESOLVED),
        (True, True, False, TicketStatus.OPEN),  # answered, but an exam is happening now
        (True, False, False, TicketStatus.OPEN),
    ],
)
def test_new_ticket_status(urgent: bool, replying: bool, automatic: bool, status: str) -> None:
    assert lifecycle.new_ticket_status(urgent, replying, automatic) == status


@pytest.mark.parametrize("status", [TicketStatus.OPEN, TicketStatus.PENDING])
def test_a_staff_reply_waits_on_the_centre_and_keeps_the_first_response_time(
    status: TicketStatus,
) -> None:
    first = utcnow() - timedelta(hours=2)
    ticket = _ticket(status, first_response_at=first if status == TicketStatus.PENDING else None)
    lifecycle.check_can_reply(ticket)
    lifecycle.staff_replied(ticket)
    assert ticket.status == TicketStatus.PENDING
    assert ticket.first_response_at is not None
    assert ticket.first_response_at == first or status == TicketStatus.OPEN


def test_a_resolved_ticket_takes_no_reply_until_reopened() -> None:
    with pytest.raises(TicketError, match="reopen the ticket before replying"):
        lifecycle.check_can_reply(_ticket(TicketStatus.RESOLVED))


def test_resolving_needs_a_confirmed_category() -> None:
    ticket = _ticket(TicketStatus.OPEN, predicted_category="exam_frozen")
    with pytest.raises(TicketError, match="confirm the category"):
        lifecycle.resolve(ticket)
    ticket.confirmed_category = "exam_frozen"
    lifecycle.resolve(ticket)
    assert ticket.status == TicketStatus.RESOLVED and ticket.resolved_at is not None


@pytest.mark.parametrize("status", [TicketStatus.OPEN, TicketStatus.PENDING])
def test_staff_cannot_reopen_an_open_ticket(status: TicketStatus) -> None:
    with pytest.raises(TicketError, match="already open"):
        lifecycle.reopen(_ticket(status), ROUTING, QUEUES)


@pytest.mark.parametrize(
    ("predicted", "confirmed", "queue"),
    [
        ("exam_frozen", None, "technical"),
        ("exam_frozen", "obtain_results", "results"),  # staff's word over the model's
        (None, None, catalogue.TRIAGE_QUEUE),  # `other` has no route here
        ("extra_time", None, catalogue.TRIAGE_QUEUE),  # a category without a route
    ],
)
def test_reopening_puts_the_ticket_in_its_categorys_queue(
    predicted: str | None, confirmed: str | None, queue: str
) -> None:
    ticket = _ticket(
        TicketStatus.RESOLVED, predicted_category=predicted, confirmed_category=confirmed
    )
    assert lifecycle.reopen(ticket, ROUTING, QUEUES).slug == queue
    assert (ticket.status, ticket.queue.slug, ticket.resolved_at, ticket.resolution) == (
        TicketStatus.OPEN,
        queue,
        None,
        None,
    )


@pytest.mark.parametrize("status", [TicketStatus.OPEN, TicketStatus.PENDING])
def test_a_centre_reply_on_an_open_ticket_opens_it_where_it_is(status: TicketStatus) -> None:
    ticket = _ticket(status, predicted_category="exam_frozen")
    assert lifecycle.centre_replied(ticket, ROUTING, QUEUES) == AuditAction.TICKET_CENTRE_REPLIED
    assert ticket.status == TicketStatus.OPEN and ticket.queue.slug == "triage"
    assert ticket.centre_replied_at is not None


@pytest.mark.parametrize("status", [TicketStatus.AUTO_REPLIED, TicketStatus.RESOLVED])
def test_both_reopen_paths_give_the_same_result(status: TicketStatus) -> None:
    by_staff, by_centre = (_ticket(status, predicted_category="exam_frozen") for _ in range(2))
    lifecycle.reopen(by_staff, ROUTING, QUEUES)
    assert lifecycle.centre_replied(by_centre, ROUTING, QUEUES) == AuditAction.TICKET_REOPENED
    assert [
        (t.status, t.queue.slug, t.resolved_at, t.resolution) for t in (by_staff, by_centre)
    ] == [(TicketStatus.OPEN, "technical", None, None)] * 2


def test_reopened_by_staff_and_by_the_centre_alike_through_the_app(app: Flask) -> None:
    """Two tickets resolved alike: the centre's follow-up (inbound) and staff reopen one each."""
    sessions = app.extensions["triage.sessions"]
    made = [ingest(app, subject=f"Exam frozen {n}", body="the exam froze") for n in (1, 2)]
    actor = tickets.Actor.of_token("test")
    with sessions() as session:
        for each in made:
            ticket = tickets.get_ticket(session, each.id)
            tickets.move(session, actor, ticket, catalogue.TRIAGE_QUEUE)
            tickets.set_category(session, actor, ticket, "exam_frozen")
            tickets.resolve(session, actor, ticket)
        tickets.reopen(session, actor, tickets.get_ticket(session, made[0].id))
        session.commit()
        expected = routing_map(session)["exam_frozen"]
    ingest(app, subject=f"Re: [{made[1].reference}] Exam frozen 2", body="still frozen")
    staff, centre = (reload(app, each.id) for each in made)
    assert [
        (t.status, t.queue.slug if t.queue else None, t.resolution) for t in (staff, centre)
    ] == [(TicketStatus.OPEN, expected, None)] * 2
    with sessions() as session:
        reopened = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == AuditAction.TICKET_REOPENED)
            .order_by(AuditEvent.ticket_id)
        ).all()
    assert [(e.ticket_id, e.details["queue"], e.details["previous_status"]) for e in reopened] == [
        (staff.id, expected, TicketStatus.RESOLVED),
        (centre.id, expected, TicketStatus.RESOLVED),
    ]
