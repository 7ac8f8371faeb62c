"""insert_rows: COPY on PostgreSQL, one executemany INSERT on SQLite; either way the rows an INSERT would write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.bulk_insert import insert_rows
from triage.orm import AuditEvent, Message, OutboxItem, Queue, Ticket, utcnow

AWKWARD = "tab\there\nnew line, back\\slash, \\N, \\., é, 🙂, \r carriage, 'quote' \"double\""


def test_insert_rows_writes_what_an_insert_would(session: Session) -> None:
    queue_id = session.scalar(select(Queue.id).order_by(Queue.id))
    before = utcnow()
    tickets = [
        {
            "centre_email": f"c{i}@college.example",
            "centre_name": AWKWARD,
            "subject": f"Exam frozen {i}",
            "queue_id": queue_id,
            "urgent": i == 1,
            "urgent_reason": None if i == 0 else AWKWARD,
        }
        for i in range(2)
    ]
    insert_rows(session, Ticket.__table__, tickets)
    ids = list(session.scalars(select(Ticket.id).order_by(Ticket.id)))
    assert len(ids) == 2
    raw = bytes(range(256)) + b"\\N\t\n"
    insert_rows(
        session,
        Message.__table__,
        [
            {
                "ticket_id": ids[0],
                "direction": "outbound",
                "kind": "auto_reply",
                "message_id": "<m1@imi.example>",
                "body_text": AWKWARD,
                "clean_text": "",
                "raw": raw,
                "in_reply_to": None,
            },
        ],
    )
    message_id = session.scalar(select(Message.id))
    insert_rows(
        session,
        OutboxItem.__table__,
        [{"message_id": message_id, "ticket_id": ids[0], "recipient": "c0@college.example"}],
    )
    details = {"reason": AWKWARD, "nested": {"list": [1, 2.5, None, True]}, "none": None}
    insert_rows(
        session,
        AuditEvent.__table__,
        [{"actor": "system", "ticket_id": ids[1], "action": "x", "details": details}],
    )
    insert_rows(session, AuditEvent.__table__, [])  # nothing to write: nothing written
    session.commit()
    session.expire_all()

    first, second = (session.get(Ticket, i) for i in ids)
    assert first is not None and second is not None
    assert first.centre_name == AWKWARD and second.urgent_reason == AWKWARD
    assert (first.urgent, second.urgent, first.urgent_reason) == (False, True, None)
    # the Python-side defaults were filled in, row by row, as an INSERT fills them
    assert first.status == "open" and first.centre_domain is None
    assert (
        before <= first.created_at <= second.created_at <= utcnow()
        and first.updated_at >= first.created_at
    )
    message = session.scalars(select(Message)).one()
    assert message.raw == raw and message.body_text == AWKWARD and message.in_reply_to is None
    item = session.scalars(select(OutboxItem)).one()
    assert (item.status, item.attempts, item.sent_at) == ("pending", 0, None)
    assert before <= item.next_attempt_at <= utcnow() + timedelta(seconds=1)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "x")).one()
    assert event.details == details and event.created_at >= before
    if (
        session.get_bind().dialect.name == "postgresql"
    ):  # the search triggers fire for COPY as for INSERT
        found = session.scalar(
            text("SELECT count(*) FROM ticket_search WHERE document @@ plainto_tsquery('frozen')")
        )
        assert found == 2


def test_a_row_the_database_refuses_raises_as_sqlalchemy_does_and_writes_none(
    session: Session,
) -> None:
    queue_id = session.scalar(select(Queue.id).order_by(Queue.id))
    insert_rows(
        session, Ticket.__table__, [{"centre_email": "c@college.example", "queue_id": queue_id}]
    )
    ticket_id = session.scalar(select(Ticket.id))
    good = {"ticket_id": ticket_id, "direction": "inbound", "message_id": "<one@college.example>"}
    refused = {**good, "message_id": "<two@college.example>", "direction": "sideways"}  # CHECK
    with pytest.raises(
        IntegrityError
    ):  # not the driver's own exception: callers catch one kind on both databases
        insert_rows(session, Message.__table__, [good, refused])
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert (
        session.scalar(select(func.count()).select_from(Ticket)) == 0
    )  # the whole transaction rolled back
