"""Factories: the rows a helpdesk or web test needs (queues, staff, tickets, their messages and attachments, API
tokens), built directly with the ORM, so those tests need no trained model and no mail to pass through it.

Each factory takes a `Session`, adds its rows, flushes (ids are given) and returns what it made; keyword
arguments override the defaults. Nothing is committed: build inside `session_of(app)`, which commits when its
block ends, before the app reads them. The objects it returns stay readable after the block (their
relationships are set when they are made); ask the app for a fresh copy to see what a request changed.

End-to-end tests of the mail -> classifier -> ticket path still send mail (tests/mailutil.py).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from email.utils import formataddr, make_msgid

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.mailutil import make_email
from triage import catalogue
from triage.config import Settings
from triage.database import transaction
from triage.helpdesk import tokens, users
from triage.mail import compose
from triage.mail.domains import address_domain
from triage.mail.outbox import outbound_message
from triage.orm import Attachment, Message, Queue, Ticket, User, utcnow

PASSWORD = "correct horse battery"  # every factory user's password unless one is given
CENTRE_EMAIL = "jo@college.example"
CENTRE_NAME = "Jo Bloggs"
SUBJECT = "Changing our centre contact"
BODY = "Can we change our centre contact? Our exams officer has left."
# what the support side of a factory's outbound mail is written as (the test apps' own settings may differ:
# a staff reply from the app still threads, by the Message-IDs stored in the database)
SUPPORT = Settings(
    secret_key="factory-secret", support_address="support@imi.test", mail_domain="imi.test"
)

_numbers = itertools.count(1)  # makes default slugs and addresses unique within a test run


@contextmanager
def session_of(app: Flask) -> Iterator[Session]:
    """A session on the app's database for factories: committed when the block ends (rolled back on an
    error) and closed, so the app's own sessions never wait behind it (SQLite has one writer at a time)."""
    with transaction(app.extensions["triage.sessions"]) as session:
        yield session


def queue(
    session: Session,
    slug: str | None = None,
    *,
    name: str | None = None,
    notify_address: str | None = None,
    first_response_minutes: int = 480,
    next_response_minutes: int = 480,
    urgent_response_minutes: int = 15,
) -> Queue:
    """A new staff queue (the seeded ones - triage, technical, ... - are there already: see `seeded_queue`)."""
    slug = slug or f"queue-{next(_numbers)}"
    row = Queue(
        slug=slug,
        name=name or f"Queue {slug}",
        notify_address=notify_address,
        first_response_minutes=first_response_minutes,
        next_response_minutes=next_response_minutes,
        urgent_response_minutes=urgent_response_minutes,
    )
    session.add(row)
    session.flush()
    return row


def seeded_queue(session: Session, slug: str) -> Queue:
    """A queue the migrations seeded (or one made earlier), by slug."""
    return session.scalars(select(Queue).where(Queue.slug == slug)).one()


def user(
    session: Session,
    *,
    email: str | None = None,
    role: str = "agent",
    name: str = "Alex Agent",
    password: str = PASSWORD,
    active: bool = True,
) -> User:
    """A member of staff (`role` agent or admin) who can log in with `password`, made the way the admin
    page and the CLI make one."""
    row = users.create_user(
        session, email or f"{role}{next(_numbers)}@imi.test", password, role, name
    )
    row.is_active = active
    session.flush()
    return row


def api_token(
    session: Session,
    *,
    name: str = "tests",
    scopes: tuple[str, ...] = tokens.SCOPES,
    created_by: User | None = None,
) -> str:
    """A live API token (every scope unless `scopes` says otherwise); returns the plain token to send."""
    _row, plain = tokens.create_token(
        session, name, created_by.id if created_by is not None else None, scopes
    )
    return plain


def ticket(
    session: Session,
    *,
    subject: str = SUBJECT,
    body: str | None = BODY,
    centre_email: str = CENTRE_EMAIL,
    centre_name: str = CENTRE_NAME,
    status: str = "open",
    queue: Queue | str = catalogue.TRIAGE_QUEUE,
    category: str | None = None,
    confidence: float | None = None,
    confirmed_category: str | None = None,
    action: str | None = None,
    urgent: bool = False,
    urgent_reason: str | None = None,
    assignee: User | None = None,
    created_at: datetime | None = None,
    **columns: object,
) -> Ticket:
    """A ticket in `queue` (a Queue or a seeded queue's slug), with the centre's first email holding `body`
    (no message when `body` is None: add them with `inbound` and `outbound`).

    `category` and `confidence` are what the model predicted (the action is `route` with a category,
    `triage` without, unless `action` says); `assignee` a User; other Ticket columns (first_response_at,
    centre_replied_at, resolution ...) may be given by name in `columns`.
    """
    created_at = created_at or utcnow()
    row = Ticket(
        centre_email=centre_email,
        centre_name=centre_name,
        centre_domain=address_domain(centre_email) or None,
        subject=subject,
        status=status,
        queue=queue if isinstance(queue, Queue) else seeded_queue(session, queue),
        predicted_category=category,
        predicted_confidence=confidence,
        confirmed_category=confirmed_category,
        action=action or ("route" if category else "triage"),
        urgent=urgent,
        urgent_reason=urgent_reason,
        assignee=assignee,
        confirmed_by=None,
        created_at=created_at,
        updated_at=created_at,
        last_inbound_at=created_at if body is not None else None,
        messages=[],
        **columns,
    )
    session.add(row)
    session.flush()
    if body is not None:
        inbound(session, row, body=body, created_at=created_at)
    return row


def inbound(
    session: Session,
    ticket: Ticket,
    *,
    body: str = BODY,
    subject: str | None = None,
    sender: str | None = None,
    sender_name: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    auto_submitted_reason: str | None = None,
    attachments: Mapping[str, bytes] | None = None,
    raw: bytes | None = None,
    created_at: datetime | None = None,
) -> Message:
    """An email from the centre on the ticket (subject and sender are the ticket's unless given), with
    `attachments` (file name -> bytes) and its raw source (a plain email of these values unless `raw` is given).

    `auto_submitted_reason` marks it as automatic mail (an out-of-office, a bounce ...), as inbound mail does.
    """
    subject = ticket.subject if subject is None else subject
    sender = sender or ticket.centre_email
    sender_name = ticket.centre_name if sender_name is None else sender_name
    message_id = message_id or make_msgid(domain=sender.rpartition("@")[2] or "centre.example")
    row = Message(
        ticket=ticket,
        direction="inbound",
        kind="email",
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=in_reply_to,
        from_address=sender,
        from_name=sender_name,
        to_addresses=SUPPORT.support_address,
        subject=subject,
        body_text=body,
        clean_text=body,
        raw=raw
        or make_email(
            subject=subject,
            body=body,
            sender=formataddr((sender_name, sender)),
            message_id=message_id,
        ),
        auto_submitted_reason=auto_submitted_reason,
        created_at=created_at or utcnow(),
        attachments=[],
    )
    session.add(row)
    session.flush()
    for filename, data in (attachments or {}).items():
        attachment(session, row, filename=filename, data=data)
    return row


def attachment(
    session: Session,
    message: Message,
    *,
    filename: str = "form45.pdf",
    data: bytes = b"%PDF-1.4 fake",
    content_type: str = "application/pdf",
) -> Attachment:
    """A file attached to a message, kept whole (under the size cap), as inbound mail stores one."""
    row = Attachment(
        message=message,
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        truncated=False,
    )
    session.add(row)
    session.flush()
    return row


def outbound(
    session: Session,
    ticket: Ticket,
    *,
    kind: str = "ack",
    body: str | None = None,
    author: User | None = None,
) -> Message:
    """Mail we sent on the ticket (already sent: no outbox row), threaded on the centre's latest email and
    composed as the service composes it; `kind` is ack, auto_reply, staff_reply or notification. An `ack`
    has the real acknowledgement's text unless `body` is given; the other kinds need a `body`."""
    if body is None:
        if kind != "ack":
            raise ValueError(f"an outbound {kind} needs a body")
        body = compose.acknowledgement_text(
            ticket.reference, ticket.centre_name, ticket.centre_email
        )
    answered = next((m for m in reversed(ticket.messages) if m.direction == "inbound"), None)
    values = outbound_message(
        SUPPORT,
        ticket.id,
        ticket.centre_email,
        kind=kind,
        subject=compose.reply_subject(ticket.id, ticket.subject),
        body=body,
        reply_to=(answered.message_id, answered.references) if answered is not None else None,
        auto_submitted=None if kind == "staff_reply" else compose.AUTO_REPLIED,
        author_id=author.id if author is not None else None,
    )
    values.pop("ticket_id")
    row = Message(ticket=ticket, attachments=[], **values)
    session.add(row)
    session.flush()
    return row
