"""The inbound decision path shared by the webhook, the JSON API, IMAP and file ingest.

Raw mail is committed first (nothing is lost); then, in a second transaction, it is threaded onto an
existing ticket or classified into a new one, and any reply is written to the outbox with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import and_, case, exists, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage import catalogue
from triage.classifier.cleaning import clean_body
from triage.classifier.decision import AUTO_REPLY, ROUTE, TRIAGE, Decision
from triage.classifier.model import TrainedModel
from triage.classifier.registry import ModelLoadError, ModelProvider
from triage.config import Settings
from triage.mail import compose
from triage.mail.loops import no_reply_reason
from triage.mail.outbox import enqueue
from triage.mail.parse import ParsedEmail, UnparseableEmail, parse, single_line
from triage.models import (
    Attachment,
    AuditEvent,
    Classification,
    InboundEmail,
    Message,
    Ticket,
    format_reference,
    parse_reference,
    utcnow,
)
from triage.routing import queue_by_slug, routing_map

log = logging.getLogger(__name__)
MAX_PROCESS_ATTEMPTS = 20  # after this many failures the worker stops retrying; staff see it under Admin > Inbound


@dataclass(frozen=True)
class Received:
    """The outcome of receiving one email."""

    inbound_id: int
    message_id: str
    ticket_id: int | None
    duplicate: bool
    status: str  # processed | pending | rejected

    @property
    def reference(self) -> str | None:
        """The ticket's public reference, once it has one."""
        return format_reference(self.ticket_id) if self.ticket_id else None


@dataclass
class InboundContext:
    """What processing needs: settings and the live model."""

    settings: Settings
    models: ModelProvider


# --- storing --------------------------------------------------------------------------------------------


def store(
    sessions: sessionmaker[Session], raw: bytes, source: str, keep_unparseable: bool, parsed: ParsedEmail | None = None
) -> tuple[InboundEmail, bool]:
    """Commit the raw email (once per Message-ID, or per raw bytes without one); returns (row, was_duplicate).

    Unparseable bytes raise UnparseableEmail, unless `keep_unparseable`, when they are kept as `rejected`.
    """
    error = None
    try:
        message_id = (parsed or parse(raw)).message_id
    except UnparseableEmail as exc:
        if not keep_unparseable:
            raise
        error, message_id = str(exc), f"<sha256.{hashlib.sha256(raw).hexdigest()}@unparseable.invalid>"
    with sessions() as session:
        row = InboundEmail(message_id=message_id, raw=raw, source=source)
        if error:
            row.status, row.last_error = "rejected", error
        session.add(row)
        try:  # insert first: new mail is the common case, and the unique Message-ID settles any race
            session.commit()
        except IntegrityError:  # held already (a retry, or the same mail by another path)
            session.rollback()
            session.expunge_all()
            return session.scalars(select(InboundEmail).where(InboundEmail.message_id == message_id)).one(), True
        return row, False


def receive(sessions: sessionmaker[Session], ctx: InboundContext, raw: bytes, source: str,
            keep_unparseable: bool = False) -> Received:  # fmt: skip
    """Store then process one raw email; processing errors leave it stored as pending for the worker."""
    try:
        parsed: ParsedEmail | None = parse(raw)
    except UnparseableEmail:
        if not keep_unparseable:
            raise
        parsed = None
    row, duplicate = store(sessions, raw, source, keep_unparseable, parsed)
    status, ticket_id = row.status, row.ticket_id
    if status == "pending":
        try:
            ticket_id = process(sessions, ctx, row.id, parsed)
            status = "processed"
        except Exception as exc:  # stored already: the worker retries; the caller still gets an answer
            log.exception("processing inbound %s failed; it stays pending", row.id)
            _note_failure(sessions, row.id, exc)
    return Received(row.id, row.message_id, ticket_id, duplicate, status)


def _note_failure(sessions: sessionmaker[Session], inbound_id: int, exc: Exception) -> None:
    with sessions() as session, session.begin():
        row = session.get(InboundEmail, inbound_id)
        if row is not None:
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]


def process_pending(sessions: sessionmaker[Session], ctx: InboundContext, limit: int = 50,
                    should_stop: Callable[[], bool] = lambda: False) -> int:  # fmt: skip
    """Worker task: retry processing of stored mail that is still pending; returns how many were processed."""
    with sessions() as session:
        ids = list(
            session.scalars(
                select(InboundEmail.id)
                .where(InboundEmail.status == "pending", InboundEmail.attempts < MAX_PROCESS_ATTEMPTS)
                .order_by(InboundEmail.id)
                .limit(limit)
            )
        )
    done = 0
    for inbound_id in ids:
        if should_stop():
            break
        try:
            process(sessions, ctx, inbound_id)
            done += 1
        except Exception as exc:
            log.exception("processing inbound %s failed again", inbound_id)
            _note_failure(sessions, inbound_id, exc)
    return done


def problem_mail(session: Session, limit: int = 200) -> list[InboundEmail]:
    """Stored mail that did not become a ticket: unparseable (rejected) or failing to process, newest first."""
    query = (
        select(InboundEmail)
        .where(
            or_(InboundEmail.status == "rejected", and_(InboundEmail.status == "pending", InboundEmail.attempts > 0))
        )
        .order_by(InboundEmail.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def retry_processing(session: Session, inbound_id: int) -> InboundEmail | None:
    """Give a pending email that kept failing a fresh set of attempts (the worker picks it up); None if not one."""
    row = session.get(InboundEmail, inbound_id)
    if row is None or row.status != "pending":
        return None
    row.attempts = 0
    return row


# --- processing -----------------------------------------------------------------------------------------


def process(sessions: sessionmaker[Session], ctx: InboundContext, inbound_id: int,
            parsed: ParsedEmail | None = None) -> int | None:  # fmt: skip
    """Thread or classify one stored email, in one transaction with its replies; returns the ticket id.

    The model runs before the transaction opens (SQLite has one writer at a time, so the lock is held
    only for database work); `parsed` saves parsing the same bytes twice when the caller has them.
    """
    model = _current_model(ctx)
    if parsed is None:
        with sessions() as session:
            raw = session.scalar(select(InboundEmail.raw).where(InboundEmail.id == inbound_id))
        if raw is None:
            return None
        parsed = parse(raw)
    decision = model.decide_one(parsed.subject, parsed.text) if model else None
    with sessions() as session, session.begin():
        row = session.get(InboundEmail, inbound_id, with_for_update=True)
        if row is None or row.status != "pending":
            return row.ticket_id if row else None
        already = session.scalars(select(Message).where(Message.message_id == parsed.message_id)).one_or_none()
        # a Message-ID we already hold (e.g. our own outbound mail copied back in) adds nothing new
        ticket_id = (
            already.ticket_id if already is not None else _handle(session, ctx.settings, model, decision, parsed)
        )
        row.status, row.ticket_id, row.processed_at = "processed", ticket_id, utcnow()
        return ticket_id


def _handle(session: Session, settings: Settings, model: TrainedModel | None, decision: Decision | None,
            parsed: ParsedEmail) -> int:  # fmt: skip
    own = {settings.support_address.lower()}
    reason = no_reply_reason(parsed, own, settings.mail_domain)
    ticket = find_thread(session, parsed, settings.secret_key)
    if ticket is not None:
        _add_follow_up(session, settings, ticket, parsed, reason)
        return ticket.id
    return _new_ticket(session, settings, model, decision, parsed, reason).id


def find_thread(session: Session, parsed: ParsedEmail, secret: str) -> Ticket | None:
    """The ticket this email continues: by In-Reply-To/References (and bounced IDs), then by subject reference."""
    candidates = [i for i in [parsed.in_reply_to, *reversed(parsed.references), *parsed.bounced_message_ids] if i]
    for message_id in candidates:
        ticket_id = compose.ticket_from_message_id(secret, message_id)
        if ticket_id is not None and (ticket := session.get(Ticket, ticket_id)) is not None:
            return ticket
    if candidates:
        known = session.scalars(select(Message.ticket_id).where(Message.message_id.in_(candidates))).first()
        if known is not None:
            return session.get(Ticket, known)
    ticket_id = parse_reference(parsed.subject)
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    addresses = {parsed.from_address, parsed.reply_address}
    if ticket is not None and _is_participant(session, ticket, addresses):
        return ticket
    return None


def _is_participant(session: Session, ticket: Ticket, addresses: set[str]) -> bool:
    if ticket.centre_email in addresses:
        return True
    query = select(
        exists().where(
            Message.ticket_id == ticket.id,
            or_(Message.from_address.in_(addresses), Message.to_addresses.in_(addresses)),
        )
    )
    return bool(session.scalar(query))


def _store_message(session: Session, settings: Settings, ticket: Ticket, parsed: ParsedEmail, reason: str | None,
                   kind: str) -> Message:  # fmt: skip
    message = Message(
        ticket=ticket,
        direction="inbound",
        kind=kind,
        message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references) or None,
        from_address=parsed.from_address,
        from_name=parsed.from_name,
        to_addresses=", ".join(parsed.to_addresses)[:5000],
        subject=parsed.subject,
        body_text=parsed.text,
        clean_text=clean_body(parsed.text, parsed.html),
        auto_submitted_reason=reason[:200] if reason else None,
    )
    for att in parsed.attachments:
        keep = len(att.data) <= settings.attachment_max_bytes
        message.attachments.append(
            Attachment(
                filename=att.filename,
                content_type=single_line(att.content_type, 255),
                size=len(att.data),
                sha256=hashlib.sha256(att.data).hexdigest(),
                data=att.data if keep else None,
                truncated=not keep,
            )
        )
    session.add(message)
    ticket.last_inbound_at = utcnow()
    return message


def _add_follow_up(session: Session, settings: Settings, ticket: Ticket, parsed: ParsedEmail,
                   reason: str | None) -> None:  # fmt: skip
    kind = "bounce" if parsed.is_delivery_report else "email"
    message = _store_message(session, settings, ticket, parsed, reason, kind)
    if reason is not None:  # an out-of-office or a bounce on the thread: keep it, change nothing
        session.add(AuditEvent(actor="system", ticket_id=ticket.id, action="message.automatic",
                               details={"message_id": message.message_id, "reason": reason}))  # fmt: skip
        return
    details: dict[str, object] = {"message_id": message.message_id, "previous_status": ticket.status}
    if ticket.status in {"auto_replied", "resolved"}:
        category = ticket.confirmed_category or ticket.predicted_category or catalogue.OTHER
        queue_slug = routing_map(session).get(category, catalogue.TRIAGE_QUEUE)
        ticket.queue = queue_by_slug(session, queue_slug)
        ticket.resolved_at = None
        details["queue"] = queue_slug
        action = "ticket.reopened"
    else:
        action = "ticket.centre_replied"
    ticket.status = "open"
    session.add(
        AuditEvent(actor=f"centre:{parsed.from_address}"[:200], ticket_id=ticket.id, action=action, details=details)
    )
    if ticket.queue is not None and ticket.queue.notify_address:
        body = compose.render("queue_notification.txt", reference=ticket.reference, subject=ticket.subject,
                              queue=ticket.queue.slug, sender=parsed.from_address, excerpt=message.clean_text[:1500])  # fmt: skip
        enqueue(session, settings, ticket, kind="notification", subject=f"[{ticket.reference}] Centre replied",
                body=body, reply_to=None, auto_submitted=compose.AUTO_GENERATED, to=ticket.queue.notify_address)  # fmt: skip


def _current_model(ctx: InboundContext) -> TrainedModel | None:
    try:
        return ctx.models.current()
    except ModelLoadError as exc:
        log.error("no usable model, new mail goes to triage: %s", exc)
        return None


def _new_ticket(session: Session, settings: Settings, model: TrainedModel | None, decision: Decision | None,
                parsed: ParsedEmail, reason: str | None) -> Ticket:  # fmt: skip
    routing = routing_map(session)
    version = model.version if model else "unavailable"
    action = decision.action if decision else TRIAGE
    category = decision.category if decision else catalogue.OTHER
    queue_slug = (
        routing.get(category, catalogue.TRIAGE_QUEUE) if action in {AUTO_REPLY, ROUTE} else catalogue.TRIAGE_QUEUE
    )
    suppressed = reason or _rate_limited(
        session, settings, parsed.reply_address, category if action == AUTO_REPLY else None
    )
    if suppressed and action == AUTO_REPLY:
        action = TRIAGE if category not in routing else ROUTE  # a human looks at it instead
    replying = not suppressed and action == AUTO_REPLY
    now = utcnow()
    ticket = Ticket(  # complete before the INSERT, so it is one statement
        centre_email=parsed.reply_address,
        centre_name=parsed.from_name,
        subject=parsed.subject,
        predicted_category=decision.category if decision else None,
        predicted_confidence=decision.confidence if decision else None,
        status="auto_replied" if replying else "open",
        action=action if not suppressed else "none",
        queue=queue_by_slug(session, queue_slug),
        first_response_at=now if replying else None,
    )
    session.add(ticket)
    message = _store_message(
        session, settings, ticket, parsed, reason, "bounce" if parsed.is_delivery_report else "email"
    )
    session.flush()
    if decision is not None:
        session.add(Classification(ticket_id=ticket.id, message_id=message.id, model_version=version,
                                   category=decision.category, confidence=decision.confidence, margin=decision.margin,
                                   action=decision.action, alternatives=[list(a) for a in decision.alternatives]))  # fmt: skip
    session.add(AuditEvent(actor=f"model:{version}", ticket_id=ticket.id, action="ticket.created",
                           details={"category": category, "confidence": decision.confidence if decision else None,
                                    "action": action, "queue": queue_slug, "reply_suppressed": suppressed,
                                    **({"reason": decision.reason} if decision and decision.reason else {})}))  # fmt: skip
    if suppressed:
        return ticket
    subject = compose.reply_subject(ticket.id, parsed.subject)
    if replying:
        body = compose.auto_reply_text(catalogue.get(category), ticket.reference, parsed.from_name)
        kind = "auto_reply"
    else:
        body = compose.acknowledgement_text(ticket.reference, parsed.from_name)
        kind = "ack"
    enqueue(session, settings, ticket, kind=kind, subject=subject, body=body, reply_to=message,
            auto_submitted=compose.AUTO_REPLIED)  # fmt: skip
    return ticket


def _rate_limited(session: Session, settings: Settings, address: str, category: str | None) -> str | None:
    """Why automatic mail to this sender must wait, or None: one auto-reply per category a day, a cap an hour."""
    now = utcnow()
    last_hour = Message.created_at >= now - timedelta(hours=1)
    same_answer = and_(Message.kind == "auto_reply", Ticket.predicted_category == category) if category else false()
    hourly, same_today = session.execute(  # one query: both counts over the sender's last day of automatic mail
        select(func.count(case((last_hour, 1))), func.count(case((same_answer, 1))))
        .select_from(Message)
        .join(Ticket, Message.ticket_id == Ticket.id)
        .where(
            Ticket.centre_email == address,
            Message.direction == "outbound",
            Message.kind.in_(("auto_reply", "ack")),
            Message.created_at >= now - timedelta(hours=24),
        )
    ).one()
    if hourly >= settings.sender_hourly_cap:
        return f"more than {settings.sender_hourly_cap} automatic replies to {address} in an hour"
    if same_today:
        return f"{address} already had the {category} answer in the last 24 hours"
    return None


# --- building a message from a JSON contact form ---------------------------------------------------------


def message_from_form(sender: str, name: str, subject: str, body: str, domain: str) -> bytes:
    """Raw RFC 822 bytes for a ticket submitted as JSON; identical input gives identical bytes (idempotent)."""
    msg = EmailMessage()
    local, _, domain_part = single_line(sender, 254).rpartition("@")
    msg["From"] = Address(
        display_name=single_line(name, 200), username=local, domain=domain_part
    )  # quotes/encodes the name
    msg["To"] = f"support@{domain}"
    msg["Subject"] = single_line(subject)
    digest = hashlib.sha256("\x1f".join([sender, name, subject, body]).encode()).hexdigest()
    msg["Message-ID"] = f"<form.{digest[:40]}@api.{domain}>"
    msg["Date"] = format_datetime(utcnow().replace(hour=0, minute=0, second=0, microsecond=0))
    msg.set_content(body)
    return msg.as_bytes()
