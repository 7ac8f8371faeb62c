"""Helpers for mail tests: building raw emails and running the worker's delivery."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from triage.mail.outbox import deliver_due
from triage.models import Message, OutboxItem, Ticket


def make_email(
    subject: str = "URGENT",
    body: str = "learner's exam has frozen half way, screen stuck and the clock still going",
    sender: str = "Jo Bloggs <jo@college.example>",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """Raw bytes of a plain-text email from a centre."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@imi.test"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="college.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def email_with_attachment(filename: str, data: bytes, subject: str = "form", message_id: str = "<att@centre.example>",
                          body: str = "please see the attached form 45") -> bytes:  # fmt: skip
    """Raw bytes of a centre's email with one PDF attachment."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "a@centre.example", "s@imi.test", subject, message_id
    msg.set_content(body)
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes()


def post_email(client: Any, token: str, raw: bytes) -> Any:
    """POST raw bytes to the inbound webhook."""
    return client.post("/api/v1/inbound", data=raw, headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "message/rfc822"})  # fmt: skip


def deliver(app: Flask, worker: str = "test-worker") -> int:
    """Run the worker's outbox delivery once."""
    return deliver_due(app.extensions["triage.sessions"], app.extensions["triage.settings"], worker)


def count(app: Flask, model: type) -> int:
    """Rows in a table."""
    with app.extensions["triage.sessions"]() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def ticket(app: Flask, reference: str) -> Ticket:
    """A ticket with its messages loaded, by reference."""
    from triage.models import parse_reference

    with app.extensions["triage.sessions"]() as s:
        t = s.get(Ticket, parse_reference(reference))
        assert t is not None
        _ = [(m.attachments, m.kind) for m in t.messages]
        _ = (t.queue, t.assignee)
        return t


def outbox_rows(app: Flask) -> list[OutboxItem]:
    """All outbox rows."""
    with app.extensions["triage.sessions"]() as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


__all__ = ["Message", "count", "deliver", "email_with_attachment", "make_email", "outbox_rows", "post_email", "ticket"]
