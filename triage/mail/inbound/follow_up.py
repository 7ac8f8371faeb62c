"""A centre's email on an existing ticket: stored on the thread, reopening the ticket if need be."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from triage.config import Settings
from triage.helpdesk import lifecycle
from triage.mail import compose
from triage.mail.inbound.new_tickets import message_values
from triage.mail.outbox import enqueue
from triage.mail.parse import ParsedEmail
from triage.mail.recipients import unanswerable
from triage.orm import Attachment, AuditEvent, Message, Queue, Ticket, utcnow
from triage.states import AuditAction, MessageKind


def add_follow_up(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    parsed: ParsedEmail,
    automatic_reason: str | None,
    routing: Mapping[str, str],
    queues: Mapping[str, Queue],
) -> None:
    """Add the email to the ticket's thread; a person's email reopens or flags the ticket.

    Automatic mail (an out-of-office, a bounce) on the thread is kept and changes nothing.
    """
    message = _store_message(session, settings, ticket, parsed, automatic_reason)
    if automatic_reason is not None:
        noted = {"message_id": message.message_id, "reason": automatic_reason}
        session.add(
            AuditEvent(
                actor="system",
                ticket_id=ticket.id,
                action=AuditAction.MESSAGE_AUTOMATIC,
                details=noted,
            )
        )
        return
    details: dict[str, object] = {
        "message_id": message.message_id,
        "previous_status": ticket.status,
    }
    action = lifecycle.centre_replied(ticket, routing, queues)
    if action == AuditAction.TICKET_REOPENED and ticket.queue is not None:
        details["queue"] = ticket.queue.slug
    actor = f"centre:{parsed.from_address}"[:200]
    session.add(AuditEvent(actor=actor, ticket_id=ticket.id, action=action, details=details))
    _notify_queue(session, settings, ticket, parsed, message)


def _store_message(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    parsed: ParsedEmail,
    automatic_reason: str | None,
) -> Message:
    """Add the inbound message and its attachments to the ticket."""
    values, attachments = message_values(settings, parsed, automatic_reason)
    message = Message(ticket=ticket, **values)
    message.attachments.extend(Attachment(**attachment) for attachment in attachments)
    session.add(message)
    ticket.last_inbound_at = utcnow()
    return message


def _notify_queue(
    session: Session, settings: Settings, ticket: Ticket, parsed: ParsedEmail, message: Message
) -> None:
    """Tell the queue's notify address that the centre replied, when it has a usable one."""
    queue = ticket.queue
    if queue is None or not queue.notify_address or unanswerable(queue.notify_address):
        return
    body = compose.render(
        "queue_notification.txt",
        reference=ticket.reference,
        subject=ticket.subject,
        queue=queue.slug,
        sender=parsed.from_address,
        excerpt=message.clean_text[:1500],
        link=f"{settings.external_url.rstrip('/')}/tickets/{ticket.id}",
    )
    enqueue(
        session,
        settings,
        ticket,
        kind=MessageKind.NOTIFICATION,
        subject=f"[{ticket.reference}] Centre replied",
        body=body,
        reply_to=None,
        auto_submitted=compose.AUTO_GENERATED,
        to=queue.notify_address,
    )
