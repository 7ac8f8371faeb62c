"""Helpers for mail tests: building raw emails and running the worker's delivery."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from triage.mail.delivery import deliver_due
from triage.mail.inbound import InboundContext, process_pending
from triage.orm import Message, OutboxItem, Ticket


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


def email_with_attachment(
    filename: str,
    data: bytes,
    subject: str = "form",
    message_id: str = "<att@centre.example>",
    body: str = "please see the attached form 45",
) -> bytes:
    """Raw bytes of a centre's email with one PDF attachment."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = (
        "a@centre.example",
        "s@imi.test",
        subject,
        message_id,
    )
    msg.set_content(body)
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes()


class Posted:
    """The webhook's answer to a POST, and what the API says about that email after the worker's processing step.

    `status_code`, `headers` and `post` are the POST's; `get_json()` is the POST's JSON updated with
    GET /api/v1/inbound/<id> (status, reference, ...), asked when first needed, after `process_all` has
    run as a worker would.
    """

    def __init__(self, post: Any, client: Any, token: str) -> None:
        self.post = post
        self.status_code = post.status_code
        self.headers = post.headers
        self._client, self._token, self._after = client, token, None

    def get_json(self) -> Any:
        """The answer's JSON with the email's processed state."""
        if self._after is None:
            url = f"/api/v1/inbound/{self.post.get_json()['id']}"
            after = self._client.get(url, headers={"Authorization": f"Bearer {self._token}"})
            assert after.status_code == 200, after.get_data(as_text=True)
            self._after = after.get_json()
        return {**self.post.get_json(), **self._after}

    def get_data(self, as_text: bool = False) -> Any:
        """The POST's raw body."""
        return self.post.get_data(as_text=as_text)


def post_email(client: Any, token: str, raw: bytes, process: bool = True) -> Any:
    """POST raw bytes to the inbound webhook (202: stored); with `process`, then run the worker's processing step."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
    response = client.post("/api/v1/inbound", data=raw, headers=headers)
    if not process or response.status_code != 202:
        return response
    process_all(client.application)
    return Posted(response, client, token)


def process_all(app: Flask) -> int:
    """Run the worker's processing step until no stored mail is pending; returns how many emails it processed."""
    ctx = InboundContext(app.extensions["triage.settings"], app.extensions["triage.model_provider"])
    total = 0
    while done := process_pending(app.extensions["triage.sessions"], ctx):
        total += done
    return total


def deliver(app: Flask, worker: str = "test-worker") -> int:
    """Run the worker's outbox delivery once."""
    return deliver_due(app.extensions["triage.sessions"], app.extensions["triage.settings"], worker)


def count(app: Flask, model: type) -> int:
    """Rows in a table."""
    with app.extensions["triage.sessions"]() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def ticket(app: Flask, reference: str) -> Ticket:
    """A ticket with its messages loaded, by reference."""
    from triage.orm import parse_reference

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


__all__ = [
    "Message",
    "count",
    "deliver",
    "email_with_attachment",
    "make_email",
    "outbox_rows",
    "post_email",
    "process_all",
    "ticket",
]
