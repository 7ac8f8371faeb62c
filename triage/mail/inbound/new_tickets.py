"""A batch's new tickets as column values, and the rows that follow from each once it has an id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from triage import catalogue
from triage.bulk_insert import insert_rows
from triage.classifier.cleaning import clean_body, is_forward
from triage.classifier.decision import Decision
from triage.config import Settings
from triage.mail import channels, compose
from triage.mail.feedback_links import feedback_links
from triage.mail.inbound.policy import NO_ACTION_NEEDED, NewTicketPlan
from triage.mail.outbox import outbound_message
from triage.mail.parse import ParsedEmail, single_line
from triage.mail.recipients import Recipient
from triage.orm import AuditEvent, Classification, format_reference
from triage.states import AuditAction, MessageDirection, MessageKind

Row = dict[str, Any]


@dataclass
class NewTicket:
    """A new ticket of the batch: its rows as plain column values (no ORM objects), written with the
    batch's other new tickets, one INSERT per table, once they all have ids."""

    ticket: Row
    message: Row
    attachments: list[Row]
    parsed: ParsedEmail
    recipient: Recipient
    decision: Decision | None
    plan: NewTicketPlan
    automatic_reason: str | None  # why a machine wrote it (no_reply_reason)
    model_version: str
    mentioned: int | None = None  # a ticket it answers, not continued: a stranger to it wrote

    @property
    def id(self) -> int:
        """The new ticket's id (given when the batch's new rows are numbered)."""
        ticket_id: int = self.ticket["id"]
        return ticket_id


def clean_text(parsed: ParsedEmail) -> str:
    """The cleaned body, computed once per email (the model and the stored message both use it)."""
    if parsed.clean_text is None:
        forwarded = is_forward(parsed.subject)
        parsed.clean_text = clean_body(parsed.text, parsed.html, forwarded=forwarded)
    return parsed.clean_text


def message_kind(parsed: ParsedEmail) -> MessageKind:
    """How an inbound message is stored: a bounce (delivery report) or an email."""
    return MessageKind.BOUNCE if parsed.is_delivery_report else MessageKind.EMAIL


def message_values(
    settings: Settings, parsed: ParsedEmail, reason: str | None
) -> tuple[Row, list[Row]]:
    """The column values of an inbound message and of its attachments (links to ticket aside)."""
    message = {
        "direction": MessageDirection.INBOUND,
        "kind": message_kind(parsed),
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": " ".join(parsed.references) or None,
        "from_address": parsed.from_address,
        "from_name": parsed.from_name,
        "to_addresses": ", ".join(parsed.to_addresses)[:5000],
        "subject": parsed.subject,
        "body_text": parsed.text,
        "clean_text": clean_text(parsed),
        "auto_submitted_reason": reason[:200] if reason else None,
    }
    attachments = [
        _attachment_values(settings, att.filename, att.content_type, att.data)
        for att in parsed.attachments
    ]
    return message, attachments


def _attachment_values(settings: Settings, filename: str, content_type: str, data: bytes) -> Row:
    """An attachment's columns; its bytes are kept only up to the configured size."""
    keep = len(data) <= settings.attachment_max_bytes
    return {
        "filename": filename,
        "content_type": single_line(content_type, 255),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": data if keep else None,
        "truncated": not keep,
    }


def ticket_values(
    recipient: Recipient,
    domain: str,
    parsed: ParsedEmail,
    decision: Decision | None,
    plan: NewTicketPlan,
    queue_id: int,
    now: datetime,
) -> Row:
    """The column values of a new ticket."""
    return {
        "centre_email": recipient.address,
        "centre_name": single_line(recipient.name, 200),
        "centre_domain": domain[:253] or None,
        "subject": parsed.subject,
        "predicted_category": decision.category if decision else None,
        "predicted_confidence": decision.confidence if decision else None,
        "status": plan.status,
        "action": plan.recorded_action,
        "queue_id": queue_id,
        "first_response_at": now if plan.answering else None,
        "last_inbound_at": now,
        "resolved_at": now if plan.automatic else None,
        "resolution": NO_ACTION_NEEDED if plan.automatic else None,
        "urgent": plan.urgent,
        "urgent_reason": plan.urgent_reason,
    }


@dataclass
class FollowingRows:
    """The rows that follow new tickets once they have ids: classification, history, replies."""

    classifications: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    reply_messages: list[Row] = field(default_factory=list)
    outbox: list[Row] = field(default_factory=list)  # in the order of reply_messages

    def add(self, settings: Settings, new: NewTicket) -> None:
        """Add a new ticket's classification, history and reply (acknowledgement or answer)."""
        if new.decision is not None:
            self.classifications.append(_classification(new, new.decision))
        self._event(f"model:{new.model_version}", new.id, AuditAction.TICKET_CREATED, _created(new))
        self._recipient_notes(new)
        if new.mentioned is not None:
            details = {"ticket": format_reference(new.mentioned)}
            self._event("system", new.id, AuditAction.THREAD_REFUSED, details)
        if new.automatic_reason is not None:
            details = {"resolution": NO_ACTION_NEEDED, "reason": new.automatic_reason}
            self._event("system", new.id, AuditAction.TICKET_RESOLVED, details)
        if new.plan.reply is not None:
            self.reply_messages.append(_reply(settings, new, new.plan.reply))
            self.outbox.append({"ticket_id": new.id, "recipient": new.recipient.address})

    def write_history(self, session: Session) -> None:
        """Insert the classification and history rows, one statement per table."""
        insert_rows(session, Classification.__table__, self.classifications)
        insert_rows(session, AuditEvent.__table__, self.events)

    def _event(
        self, actor: str, ticket_id: int, action: AuditAction, details: dict[str, Any]
    ) -> None:
        self.events.append(
            {"actor": actor, "ticket_id": ticket_id, "action": action, "details": details}
        )

    def _recipient_notes(self, new: NewTicket) -> None:
        """Why answers do not go where the email asked (Reply-To), or why none can."""
        parsed, recipient = new.parsed, new.recipient
        if recipient.note:
            details = {
                "reply_to": parsed.reply_to_address,
                "answer_to": recipient.address,
                "reason": recipient.note,
            }
            self._event("system", new.id, AuditAction.RECIPIENT_REPLY_TO_IGNORED, details)
        if parsed.address_problem:
            details = {"reason": parsed.address_problem, "answer_to": recipient.address}
            self._event("system", new.id, AuditAction.RECIPIENT_FLAGGED, details)


def _classification(new: NewTicket, decision: Decision) -> Row:
    """The classification row of a new ticket's first message."""
    return {
        "ticket_id": new.id,
        "message_id": new.message["id"],
        "model_version": new.model_version,
        "category": decision.category,
        "confidence": decision.confidence,
        "margin": decision.margin,
        "action": decision.action,
        "alternatives": [list(a) for a in decision.alternatives],
    }


def _created(new: NewTicket) -> dict[str, Any]:
    """The details of a new ticket's `ticket.created` history row."""
    decision = new.decision
    return {
        "category": new.plan.category,
        "confidence": decision.confidence if decision else None,
        "action": new.plan.action,
        "queue": new.plan.queue,
        "reply_suppressed": new.plan.suppressed,
        **({"reason": decision.reason} if decision and decision.reason else {}),
        **(
            {"family": new.plan.family.value, "family_reason": decision.explanation()}
            if decision and new.plan.family
            else {}
        ),
    }


def _reply(settings: Settings, new: NewTicket, kind: MessageKind) -> Row:
    """The outbound message answering a new ticket: the FAQ answer or an acknowledgement."""
    reference, recipient = format_reference(new.id), new.recipient
    message_id = compose.new_message_id(settings.secret_key, new.id, settings.mail_domain)
    if new.plan.answering:
        category = catalogue.get(new.plan.category)
        links = feedback_links(settings.external_url, settings.secret_key, new.id, message_id)
        body = compose.auto_reply_text(
            category,
            reference,
            recipient.name,
            recipient.address,
            new.plan.family,
            feedback=links,
        )
    else:
        response_time = settings.response_time_text
        body = compose.acknowledgement_text(
            reference, recipient.name, recipient.address, response_time
        )
    return outbound_message(
        settings,
        new.id,
        recipient.address,
        kind=kind,
        subject=compose.reply_subject(new.id, new.parsed.subject),
        body=body,
        reply_to=(new.message["message_id"], new.message["references"]),
        auto_submitted=compose.AUTO_REPLIED,
        message_id=message_id,
        sender=channels.sender(settings, new.ticket["channel"], new.ticket["reply_from"]),
    )
