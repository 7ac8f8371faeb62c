"""Helpers for the staff-workspace tests: mail in through the processing functions, tickets by Message-ID."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from tests.mailutil import make_email
from triage.mail.inbound import InboundContext, process_pending, receive
from triage.orm import Message, Ticket


def ingest(app: Flask, **email: Any) -> Ticket:
    """Store and process one email the way every inbound path does (webhook, IMAP, ingest); return its ticket."""
    raw = make_email(**email)
    sessions = app.extensions["triage.sessions"]
    ctx = InboundContext(app.extensions["triage.settings"], app.extensions["triage.model_provider"])
    receive(sessions, ctx, raw, "ingest")
    process_pending(sessions, ctx)  # nothing to do when receiving processed it already
    from email import message_from_bytes

    message_id = message_from_bytes(raw)["Message-ID"]
    with sessions() as s:
        ticket_id = s.scalar(select(Message.ticket_id).where(Message.message_id == message_id))
        assert ticket_id is not None, "the email did not become a ticket"
        t = s.get(Ticket, ticket_id)
        assert t is not None
        _ = (t.queue, t.assignee, [m.kind for m in t.messages])
        return t


def reload(app: Flask, ticket_id: int) -> Ticket:
    """A fresh copy of a ticket with its queue, assignee and messages loaded."""
    with app.extensions["triage.sessions"]() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        _ = (t.queue, t.assignee, [m.kind for m in t.messages])
        return t
