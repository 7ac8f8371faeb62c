"""The inbound decision path shared by the webhook, the JSON API, IMAP and file ingest.

Raw mail is committed first (nothing is lost): that is all the webhook does (`accept`). Workers then
claim pending mail in batches, parse, clean and classify each batch together, and in one transaction
thread each email onto an existing ticket or make a new one, writing any reply to the outbox with it.
The JSON API, IMAP and file ingest store and process one email at once (`receive`), on the same path.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, defer, sessionmaker
from sqlalchemy.sql import Executable

from triage import catalogue
from triage.bulk_insert import insert_rows
from triage.classifier import urgency
from triage.classifier.cleaning import clean_body, is_forward
from triage.classifier.decision import AUTO_REPLY, ROUTE, TRIAGE, Decision
from triage.classifier.model import TrainedModel
from triage.classifier.registry import ModelLoadError, ModelProvider
from triage.config import Settings
from triage.database import statement_session
from triage.mail import compose
from triage.mail.loops import no_reply_reason
from triage.mail.outbox import enqueue, outbound_message
from triage.mail.parse import ParsedEmail, UnparseableEmail, identify, parse, single_line
from triage.mail.recipients import (
    Recipient,
    address_domain,
    choose_recipient,
    dmarc_failure,
    unanswerable,
)
from triage.orm import (
    Attachment,
    AuditEvent,
    Classification,
    InboundEmail,
    Message,
    OutboxItem,
    Queue,
    Ticket,
    format_reference,
    parse_reference,
    utcnow,
)
from triage.routing import routing_map
from triage.worker.wakeup import notify_workers

log = logging.getLogger(__name__)
MAX_PROCESS_ATTEMPTS = (
    20  # after this many failures the worker stops retrying; staff see it under Admin > Inbound
)
NO_ACTION_NEEDED = (
    "no action needed"  # the resolution of automatic mail (receipts, bounces, out-of-office...)
)
BATCH_SIZE = 50  # emails a worker claims, classifies and writes together


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


@dataclass(frozen=True)
class Stored:
    """A stored raw email, as the store saw it."""

    id: int
    message_id: str
    status: str  # pending | processed | rejected
    ticket_id: int | None


def store(
    session: Session,
    raw: bytes,
    source: str,
    keep_unparseable: bool,
    parsed: ParsedEmail | None = None,
) -> tuple[Stored, bool]:
    """Commit the raw email (once per Message-ID, or per raw bytes without one); returns (row, was_duplicate).

    Only the header block is read (`identify`): the body is parsed later, by a worker. Headers that are
    not an email raise UnparseableEmail, unless `keep_unparseable`, when the bytes are kept as `rejected`.
    New mail is one statement (in a `statement_session` on PostgreSQL: one round trip), then on PostgreSQL a
    second wakes idle workers (`notify_workers`); only a duplicate takes a second, to read what is held.
    The session is committed.
    """
    error = None
    try:
        message_id = parsed.message_id if parsed is not None else identify(raw)
    except UnparseableEmail as exc:
        if not keep_unparseable:
            raise
        error, message_id = (
            str(exc),
            f"<sha256.{hashlib.sha256(raw).hexdigest()}@unparseable.invalid>",
        )
    status = "rejected" if error else "pending"
    values = {
        "new_message_id": message_id,
        "new_raw": raw,
        "new_source": source,
        "new_status": status,
        "new_last_error": error,
    }
    new_id = session.connection().scalar(_insert_new(session.get_bind().dialect.name), values)
    if new_id is not None:
        session.commit()
        if not error:
            notify_workers(session)
        return Stored(new_id, message_id, status, None), False
    held = session.execute(  # held already (a retry, or the same mail by another path)
        select(
            InboundEmail.id, InboundEmail.message_id, InboundEmail.status, InboundEmail.ticket_id
        ).where(InboundEmail.message_id == message_id)
    ).one()
    session.commit()
    return Stored(*held), True


_STORED_COLUMNS = ("message_id", "raw", "source", "status", "last_error")


@functools.cache
def _insert_new(dialect: str) -> Executable:
    """INSERT one raw email unless its Message-ID is held (then no row), returning the new id. Built once per
    dialect (no per-email statement building)."""
    table = InboundEmail.__table__
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    return (
        insert.values({name: bindparam(f"new_{name}") for name in _STORED_COLUMNS})
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(table.c.id)
    )


def accept(session: Session, raw: bytes, source: str, keep_unparseable: bool = False) -> Received:
    """Store one raw email for the workers to process (the webhook's whole job); a duplicate answers as before.

    Best in a `statement_session`: then storing is one round trip on PostgreSQL (and one more to wake workers)."""
    row, duplicate = store(session, raw, source, keep_unparseable)
    return Received(row.id, row.message_id, row.ticket_id, duplicate, row.status)


def receive(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    raw: bytes,
    source: str,
    keep_unparseable: bool = False,
) -> Received:
    """Store then process one raw email now (JSON API, IMAP, ingest); failures leave it pending for the worker."""
    try:
        parsed: ParsedEmail | None = parse(raw)
    except UnparseableEmail:
        if not keep_unparseable:
            raise
        parsed = None
    with statement_session(sessions) as session:
        row, duplicate = store(session, raw, source, keep_unparseable, parsed)
    status, ticket_id = row.status, row.ticket_id
    if status == "pending":
        outcome = process_batch(
            sessions, ctx, ids=[row.id], parsed={row.id: parsed} if parsed else None
        )
        if row.id in outcome.tickets:
            status, ticket_id = "processed", outcome.tickets[row.id]
    return Received(row.id, row.message_id, ticket_id, duplicate, status)


def _note_failure(sessions: sessionmaker[Session], inbound_id: int, exc: Exception) -> None:
    with sessions() as session, session.begin():
        row = session.get(InboundEmail, inbound_id)
        if row is not None:
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]


def process_pending(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    limit: int = BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Worker task: claim one batch of stored mail still pending and process it; returns how many were processed.

    `should_stop` is checked before claiming: a batch once claimed is short, and is finished.
    """
    if should_stop():
        return 0
    return len(process_batch(sessions, ctx, limit).tickets)


def problem_mail(session: Session, limit: int = 200) -> list[InboundEmail]:
    """Stored mail that did not become a ticket: unparseable (rejected) or failing to process, newest first."""
    query = (
        select(InboundEmail)
        .where(
            or_(
                InboundEmail.status == "rejected",
                and_(InboundEmail.status == "pending", InboundEmail.attempts > 0),
            )
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


@dataclass
class BatchOutcome:
    """What one batch did: ticket id per processed inbound id, and the ids that failed or were rejected."""

    tickets: dict[int, int | None] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(
        default_factory=dict
    )  # seconds per stage, for the load benchmark


@dataclass
class _Item:
    inbound_id: int
    parsed: ParsedEmail | None = None
    decision: Decision | None = None
    error: Exception | None = (
        None  # preparing it failed (parse, cleaning): counted as a failed attempt
    )


def process_batch(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    limit: int = BATCH_SIZE,
    ids: list[int] | None = None,
    parsed: dict[int, ParsedEmail] | None = None,
) -> BatchOutcome:
    """Claim up to `limit` pending emails (or just `ids`), then parse, clean and classify them together
    and write them in one transaction.

    PostgreSQL: the claim is `FOR UPDATE SKIP LOCKED`, so workers on any host take disjoint batches; its row
    locks are held until the batch's commit (the mail is read, parsed and classified meanwhile, writing
    nothing). SQLite: the batch is read and prepared with no transaction open (no lock held), and each
    row's status is checked again once the write lock is taken. Either way an email already processed is
    skipped, and the unique Message-ID of the inbound message stops a second ticket.
    A failure in the batch write is retried email by email, so one bad email fails only itself.
    """
    outcome = BatchOutcome()
    clock = time.perf_counter()
    model = _current_model(ctx)
    with sessions() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        query = (
            select(InboundEmail.id, InboundEmail.raw)
            .where(InboundEmail.status == "pending", InboundEmail.attempts < MAX_PROCESS_ATTEMPTS)
            .order_by(InboundEmail.id)
            .limit(limit)
        )
        if ids is not None:
            query = query.where(InboundEmail.id.in_(ids))
        if postgres:
            query = query.with_for_update(skip_locked=True)
        rows = session.execute(query).all()
        if not postgres or not rows:
            session.commit()
        if not rows:
            return outcome
        outcome.timings["claim"] = _lap(clock)
        items = _prepare(rows, parsed or {}, model, outcome.timings)
        clock = time.perf_counter()
        try:
            _write(session, ctx.settings, model, items, outcome)
            session.commit()
        except Exception:
            session.rollback()
            if len(items) > 1:
                log.warning(
                    "writing a batch of %s failed; writing them one by one",
                    len(items),
                    exc_info=True,
                )
            outcome = BatchOutcome(timings=outcome.timings)
            for item in items:
                try:
                    _write(session, ctx.settings, model, [item], outcome)
                    session.commit()
                except Exception as exc:
                    session.rollback()
                    log.exception("processing inbound %s failed; it stays pending", item.inbound_id)
                    _note_failure(sessions, item.inbound_id, exc)
                    outcome.failed.append(item.inbound_id)
        outcome.timings["write"] = _lap(clock)
    return outcome


def _lap(start: float) -> float:
    return time.perf_counter() - start


def _prepare(
    rows: list[Any],
    given: dict[int, ParsedEmail],
    model: TrainedModel | None,
    timings: dict[str, float],
) -> list[_Item]:
    """Parse and clean each email once, then classify the batch in one call (no transaction involved)."""
    clock = time.perf_counter()
    items = []
    for inbound_id, raw in rows:
        item = _Item(inbound_id)
        try:
            item.parsed = given.get(inbound_id) or parse(raw)
        except (
            Exception
        ) as exc:  # UnparseableEmail: rejected at the write; anything else: a failed attempt
            item.error = exc
        items.append(item)
    timings["parse"] = _lap(clock)
    clock = time.perf_counter()
    emails: list[tuple[str, str, str]] = []
    for item in items:
        if item.parsed is None:
            continue
        try:
            emails.append((item.parsed.subject, _clean(item.parsed), item.parsed.text))
        except Exception as exc:
            item.error, item.parsed = exc, None
    timings["clean"] = _lap(clock)
    clock = time.perf_counter()
    if model is not None and emails:
        decisions = iter(model.decide_cleaned(emails))
        for item in items:
            if item.parsed is not None:
                item.decision = next(decisions)
    timings["classify"] = _lap(clock)
    return items


def _clean(parsed: ParsedEmail) -> str:
    """The cleaned body, computed once per email (the model and the stored message both use it)."""
    if parsed.clean_text is None:
        parsed.clean_text = clean_body(
            parsed.text, parsed.html, forwarded=is_forward(parsed.subject)
        )
    return parsed.clean_text


def _write(
    session: Session,
    settings: Settings,
    model: TrainedModel | None,
    items: list[_Item],
    outcome: BatchOutcome,
) -> None:
    """Thread or create a ticket for each prepared email still pending, with its replies, in the open transaction."""
    by_id = {item.inbound_id: item for item in items}
    rows = {
        row.id: row
        for row in session.scalars(  # the raw bytes are in hand already: not read twice
            select(InboundEmail)
            .options(defer(InboundEmail.raw))
            .where(InboundEmail.id.in_(by_id))
            .with_for_update()
        )
    }
    message_ids = [item.parsed.message_id for item in items if item.parsed is not None]
    known: dict[str, int | Ticket | _Opened] = dict(
        session.execute(
            select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(message_ids))
        ).all()
    )
    senders = {choose_recipient(item.parsed).address for item in items if item.parsed is not None}
    domains = {address_domain(address) for address in senders} - {""}
    session.info[
        _CACHE
    ] = {  # read before anything is added, so no query mid-batch flushes the batch early
        "automatic": _recent_automatic(session, senders, domains),
        "opened": [],
        "routing": routing_map(session),
        "queues": {queue.slug: queue for queue in session.scalars(select(Queue))},
    }
    try:
        now = utcnow()
        handled: list[tuple[InboundEmail, int | Ticket | _Opened]] = []
        for item in items:
            row = rows.get(item.inbound_id)
            if row is None or row.status != "pending":
                continue  # another worker (or an earlier attempt) finished it
            if isinstance(item.error, UnparseableEmail):
                row.status, row.last_error = "rejected", str(item.error)[:2000]
                outcome.rejected.append(row.id)
                continue
            if item.error is not None or item.parsed is None:
                log.error("processing inbound %s failed; it stays pending: %r", row.id, item.error)
                row.attempts += 1
                row.last_error = f"{type(item.error).__name__}: {item.error}"[:2000]
                outcome.failed.append(row.id)
                continue
            parsed = item.parsed
            # a Message-ID we already hold (e.g. our own outbound mail copied back in) adds nothing new
            ticket = known.get(parsed.message_id)
            if ticket is None:
                ticket = _handle(session, settings, model, item.decision, parsed)
                known[parsed.message_id] = ticket
            handled.append((row, ticket))
        _complete_opened(session, settings)
        for row, ticket in handled:  # once every ticket has its id: one UPDATE per row
            row.status, row.processed_at = "processed", now
            row.ticket_id = ticket if isinstance(ticket, int) else ticket.id
            outcome.tickets[row.id] = row.ticket_id
        session.flush()
    finally:
        session.info.pop(_CACHE, None)


_CACHE = "triage.inbound.batch"


def _routing(session: Session) -> dict[str, str]:
    """The routing map, as read when the batch began."""
    return session.info[_CACHE]["routing"]


def _queue(session: Session, slug: str) -> Queue:
    """A queue by slug, from the queues read when the batch began."""
    return session.info[_CACHE]["queues"][slug]


def _handle(
    session: Session,
    settings: Settings,
    model: TrainedModel | None,
    decision: Decision | None,
    parsed: ParsedEmail,
) -> Ticket | _Opened:
    own = {settings.support_address.lower()}
    reason = no_reply_reason(parsed, own, settings.mail_domain)
    candidates, reference = _thread_candidates(parsed), parse_reference(parsed.subject)
    if candidates or reference is not None:
        # it may continue a ticket this batch has just opened: those are written first (and every history
        # stays in order)
        _complete_opened(session, settings)
        ticket = find_thread(session, parsed, settings.secret_key, candidates, reference)
        if ticket is not None:
            _add_follow_up(session, settings, ticket, parsed, reason)
            return ticket
    return _open_ticket(session, settings, model, decision, parsed, reason)


def _thread_candidates(parsed: ParsedEmail) -> list[str]:
    """The Message-IDs an email answers: In-Reply-To, References (latest first), and those a bounce reports."""
    return [
        i
        for i in [parsed.in_reply_to, *reversed(parsed.references), *parsed.bounced_message_ids]
        if i
    ]


def find_thread(
    session: Session, parsed: ParsedEmail, secret: str, candidates: list[str], reference: int | None
) -> Ticket | None:
    """The ticket this email continues: by the Message-IDs it answers (`_thread_candidates`), then by the
    ticket reference in its subject (from a participant only)."""
    for message_id in candidates:
        ticket_id = compose.ticket_from_message_id(secret, message_id)
        if ticket_id is not None and (ticket := session.get(Ticket, ticket_id)) is not None:
            return ticket
    if candidates:
        known = session.scalars(
            select(Message.ticket_id).where(Message.message_id.in_(candidates))
        ).first()
        if known is not None:
            return session.get(Ticket, known)
    ticket = session.get(Ticket, reference) if reference is not None else None
    addresses = {parsed.from_address, choose_recipient(parsed).address}
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


def _message_values(
    settings: Settings, parsed: ParsedEmail, reason: str | None, kind: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The column values of an inbound message and of its attachments (the links to ticket and message aside)."""
    message = {
        "direction": "inbound",
        "kind": kind,
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": " ".join(parsed.references) or None,
        "from_address": parsed.from_address,
        "from_name": parsed.from_name,
        "to_addresses": ", ".join(parsed.to_addresses)[:5000],
        "subject": parsed.subject,
        "body_text": parsed.text,
        "clean_text": _clean(parsed),
        "auto_submitted_reason": reason[:200] if reason else None,
    }
    attachments = []
    for att in parsed.attachments:
        keep = len(att.data) <= settings.attachment_max_bytes
        attachments.append(
            {
                "filename": att.filename,
                "content_type": single_line(att.content_type, 255),
                "size": len(att.data),
                "sha256": hashlib.sha256(att.data).hexdigest(),
                "data": att.data if keep else None,
                "truncated": not keep,
            }
        )
    return message, attachments


def _store_message(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    parsed: ParsedEmail,
    reason: str | None,
    kind: str,
) -> Message:
    values, attachments = _message_values(settings, parsed, reason, kind)
    message = Message(ticket=ticket, **values)
    message.attachments.extend(Attachment(**attachment) for attachment in attachments)
    session.add(message)
    ticket.last_inbound_at = utcnow()
    return message


def _add_follow_up(
    session: Session, settings: Settings, ticket: Ticket, parsed: ParsedEmail, reason: str | None
) -> None:
    kind = "bounce" if parsed.is_delivery_report else "email"
    message = _store_message(session, settings, ticket, parsed, reason, kind)
    if reason is not None:  # an out-of-office or a bounce on the thread: keep it, change nothing
        session.add(
            AuditEvent(
                actor="system",
                ticket_id=ticket.id,
                action="message.automatic",
                details={"message_id": message.message_id, "reason": reason},
            )
        )
        return
    details: dict[str, object] = {
        "message_id": message.message_id,
        "previous_status": ticket.status,
    }
    if ticket.status in {"auto_replied", "resolved"}:
        category = ticket.confirmed_category or ticket.predicted_category or catalogue.OTHER
        queue_slug = _routing(session).get(category, catalogue.TRIAGE_QUEUE)
        ticket.queue = _queue(session, queue_slug)
        ticket.resolved_at, ticket.resolution = None, None
        details["queue"] = queue_slug
        action = "ticket.reopened"
    else:
        action = "ticket.centre_replied"
    ticket.status, ticket.centre_replied_at = "open", utcnow()
    session.add(
        AuditEvent(
            actor=f"centre:{parsed.from_address}"[:200],
            ticket_id=ticket.id,
            action=action,
            details=details,
        )
    )
    if (
        ticket.queue is not None
        and ticket.queue.notify_address
        and not unanswerable(ticket.queue.notify_address)
    ):
        body = compose.render(
            "queue_notification.txt",
            reference=ticket.reference,
            subject=ticket.subject,
            queue=ticket.queue.slug,
            sender=parsed.from_address,
            excerpt=message.clean_text[:1500],
        )
        enqueue(
            session,
            settings,
            ticket,
            kind="notification",
            subject=f"[{ticket.reference}] Centre replied",
            body=body,
            reply_to=None,
            auto_submitted=compose.AUTO_GENERATED,
            to=ticket.queue.notify_address,
        )


def _current_model(ctx: InboundContext) -> TrainedModel | None:
    try:
        return ctx.models.current()
    except ModelLoadError as exc:
        log.error("no usable model, new mail goes to triage: %s", exc)
        return None


@dataclass
class _Opened:
    """A new ticket of the batch as plain column values (no ORM objects): its rows, history and reply are
    written with the batch's others, one INSERT per table, once they all have ids (`_complete_opened`)."""

    ticket: dict[str, Any]
    message: dict[str, Any]
    attachments: list[dict[str, Any]]
    parsed: ParsedEmail
    recipient: Recipient
    decision: Decision | None
    version: str
    category: str
    action: str
    queue_slug: str  # the queue the ticket is in
    reason: str | None
    suppressed: str | None
    replying: bool

    @property
    def id(self) -> int:
        """The new ticket's id (given when the batch's new rows are written)."""
        ticket_id: int = self.ticket["id"]
        return ticket_id


def _open_ticket(
    session: Session,
    settings: Settings,
    model: TrainedModel | None,
    decision: Decision | None,
    parsed: ParsedEmail,
    reason: str | None,
) -> _Opened:
    """Decide a new ticket and its message; they are written with the batch's other new tickets."""
    routing = _routing(session)
    action = decision.action if decision else TRIAGE
    category = decision.category if decision else catalogue.OTHER
    queue_slug = (
        routing.get(category, catalogue.TRIAGE_QUEUE)
        if action in {AUTO_REPLY, ROUTE}
        else catalogue.TRIAGE_QUEUE
    )
    recipient = choose_recipient(parsed)
    domain = address_domain(recipient.address)
    # a person may be waiting, but an automatic answer would be unsafe: staff in triage see why
    held = (
        parsed.address_problem
        or unanswerable(recipient.address)
        or dmarc_failure(parsed, settings.trusted_authserv_id)
    )
    if reason is None and held:
        queue_slug = catalogue.TRIAGE_QUEUE
    suppressed = (
        reason
        or held
        or _rate_limited(
            session, settings, recipient.address, domain, category if action == AUTO_REPLY else None
        )
    )
    if suppressed and action == AUTO_REPLY:
        action = TRIAGE if category not in routing else ROUTE  # a human looks at it instead
    replying = not suppressed and action == AUTO_REPLY
    now = utcnow()
    automatic = reason is not None  # a machine wrote it: nobody is waiting for an answer
    message, attachments = _message_values(
        settings, parsed, reason, "bounce" if parsed.is_delivery_report else "email"
    )
    # automatic mail is never urgent; an urgent ticket stays open for staff even when answered
    urgent, urgent_reason = (
        (False, None)
        if automatic
        else urgency.assess(category, parsed.subject, message["clean_text"])
    )
    queue = _queue(session, catalogue.TRIAGE_QUEUE if automatic else queue_slug)
    ticket = {
        "centre_email": recipient.address,
        "centre_name": single_line(recipient.name, 200),
        "centre_domain": domain[:253] or None,
        "subject": parsed.subject,
        "predicted_category": decision.category if decision else None,
        "predicted_confidence": decision.confidence if decision else None,
        "status": "open"
        if urgent
        else "auto_replied"
        if replying
        else "resolved"
        if automatic
        else "open",
        "action": action if not suppressed else "none",
        "queue_id": queue.id,
        "first_response_at": now if replying else None,
        "last_inbound_at": now,
        "resolved_at": now if automatic else None,
        "resolution": NO_ACTION_NEEDED if automatic else None,
        "urgent": urgent,
        "urgent_reason": urgent_reason,
    }
    if not suppressed:  # counted now: the caps of the batch's next emails include this reply
        _note_automatic(
            session,
            recipient.address,
            domain,
            "auto_reply" if replying else "ack",
            ticket["predicted_category"],
        )
    opened = _Opened(
        ticket,
        message,
        attachments,
        parsed,
        recipient,
        decision,
        model.version if model else "unavailable",
        category,
        action,
        queue.slug,
        reason,
        suppressed,
        replying,
    )
    session.info[_CACHE]["opened"].append(opened)
    return opened


def _complete_opened(session: Session, settings: Settings) -> None:
    """Write the batch's new tickets, their messages and attachments, then their history and replies: one
    statement per table (`insert_rows`: COPY on PostgreSQL, an executemany INSERT on SQLite), with no ORM
    objects to build, track and flush, and no ids to read back (`_number_new` gives them first)."""
    cache = session.info[_CACHE]
    if not cache["opened"]:
        return
    opened, cache["opened"] = cache["opened"], []
    tickets = [each.ticket for each in opened]
    messages = [each.message for each in opened]
    attachments = [attachment for each in opened for attachment in each.attachments]
    _number_new(session, {Ticket: tickets, Message: messages, Attachment: attachments})
    for each in opened:
        each.message["ticket_id"] = each.ticket["id"]
        for attachment in each.attachments:
            attachment["message_id"] = each.message["id"]
    _insert(session, (Ticket, tickets), (Message, messages), (Attachment, attachments))
    history, replies = _History(), _Replies()
    for each in opened:
        _complete(settings, each, history, replies)
    _number_new(
        session, {Message: replies.messages, OutboxItem: replies.outbox}
    )  # SQLite: after those above
    for message, row in zip(replies.messages, replies.outbox, strict=True):
        row["message_id"] = message["id"]
    _insert(session, (Message, replies.messages), (OutboxItem, replies.outbox))
    history.write(session)


def _insert(
    session: Session,
    *tables: tuple[type[Ticket | Message | Attachment | OutboxItem], list[dict[str, Any]]],
) -> None:
    """Insert numbered rows, one statement per table, in the order given (parents first)."""
    for kind, rows in tables:
        insert_rows(session, kind.__table__, rows)


_NUMBERED: tuple[type[Ticket | Message | Attachment | OutboxItem], ...] = (
    Ticket,
    Message,
    Attachment,
    OutboxItem,
)


def _number_new(session: Session, rows: dict[type, list[dict[str, Any]]]) -> None:
    """Give new rows (and the session's new tickets, messages, attachments and outbox objects, such as a
    follow-up's) their ids, in the order they were added, with one query.

    PostgreSQL: from the tables' own sequences. SQLite: the ids after each table's highest, which is what
    SQLite itself would give (no AUTOINCREMENT); the batch holds the one write lock, so no other writer can
    take them meanwhile.
    """
    waiting: dict[type, list[Any]] = {kind: [] for kind in _NUMBERED}
    for obj in session.new:
        bucket = waiting.get(type(obj))
        if bucket is not None and obj.id is None:
            bucket.append(obj)
    for kind, values in rows.items():
        waiting[kind].extend(values)
    kinds = [kind for kind in _NUMBERED if waiting[kind]]
    if not kinds:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    columns = ", ".join(
        f"ARRAY(SELECT nextval(pg_get_serial_sequence('{kind.__tablename__}', 'id')) "
        f"FROM generate_series(1, :n{i}) ORDER BY 1)"
        if postgres
        else f"(SELECT coalesce(max(id), 0) FROM {kind.__tablename__})"
        for i, kind in enumerate(kinds)
    )
    counts = {f"n{i}": len(waiting[kind]) for i, kind in enumerate(kinds)} if postgres else {}
    numbers = (
        session.connection().execute(text(f"SELECT {columns}"), counts).one()
    )  # no autoflush: nothing written
    for kind, given in zip(kinds, numbers, strict=True):
        ids = given if postgres else range(given + 1, given + 1 + len(waiting[kind]))
        for item, new_id in zip(waiting[kind], ids, strict=True):
            if isinstance(item, dict):
                item["id"] = new_id
            else:
                item.id = new_id


@dataclass
class _Replies:
    """The outbound messages of a batch's new tickets, with their outbox rows (the same order)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _History:
    """The classification and history rows of a batch's new tickets, written with one INSERT per table."""

    classifications: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, actor: str, ticket_id: int, action: str, details: dict[str, Any]) -> None:
        """Add one history row."""
        self.events.append(
            {"actor": actor, "ticket_id": ticket_id, "action": action, "details": details}
        )

    def write(self, session: Session) -> None:
        """Insert the rows, one statement per table (no ORM objects to track, nothing read back)."""
        insert_rows(session, Classification.__table__, self.classifications)
        insert_rows(session, AuditEvent.__table__, self.events)


def _complete(settings: Settings, opened: _Opened, history: _History, replies: _Replies) -> None:
    """A new ticket's classification, history and reply (acknowledgement or answer), once it has an id."""
    ticket_id, message, decision, parsed, recipient = (
        opened.id,
        opened.message,
        opened.decision,
        opened.parsed,
        opened.recipient,
    )
    if decision is not None:
        history.classifications.append(
            {
                "ticket_id": ticket_id,
                "message_id": message["id"],
                "model_version": opened.version,
                "category": decision.category,
                "confidence": decision.confidence,
                "margin": decision.margin,
                "action": decision.action,
                "alternatives": [list(a) for a in decision.alternatives],
            }
        )
    history.event(
        f"model:{opened.version}",
        ticket_id,
        "ticket.created",
        {
            "category": opened.category,
            "confidence": decision.confidence if decision else None,
            "action": opened.action,
            "queue": opened.queue_slug,
            "reply_suppressed": opened.suppressed,
            **({"reason": decision.reason} if decision and decision.reason else {}),
        },
    )
    _note_recipient(ticket_id, parsed, recipient, history)
    if opened.reason is not None:
        history.event(
            "system",
            ticket_id,
            "ticket.resolved",
            {"resolution": NO_ACTION_NEEDED, "reason": opened.reason},
        )
    if opened.suppressed:
        return
    reference = format_reference(ticket_id)
    if opened.replying:
        body = compose.auto_reply_text(
            catalogue.get(opened.category), reference, recipient.name, recipient.address
        )
        kind = "auto_reply"
    else:
        body = compose.acknowledgement_text(
            reference, recipient.name, recipient.address, settings.response_time_text
        )
        kind = "ack"
    replies.messages.append(
        outbound_message(
            settings,
            ticket_id,
            recipient.address,
            kind=kind,
            subject=compose.reply_subject(ticket_id, parsed.subject),
            body=body,
            reply_to=(message["message_id"], message["references"]),
            auto_submitted=compose.AUTO_REPLIED,
        )
    )
    replies.outbox.append({"ticket_id": ticket_id, "recipient": recipient.address})


def _note_recipient(
    ticket_id: int, parsed: ParsedEmail, recipient: Recipient, history: _History
) -> None:
    """Record in the ticket's history why answers do not go where the email asked (Reply-To), or why none can."""
    if recipient.note:
        history.event(
            "system",
            ticket_id,
            "recipient.reply_to_ignored",
            {
                "reply_to": parsed.reply_to_address,
                "answer_to": recipient.address,
                "reason": recipient.note,
            },
        )
    if parsed.address_problem:
        history.event(
            "system",
            ticket_id,
            "recipient.flagged",
            {"reason": parsed.address_problem, "answer_to": recipient.address},
        )


_Automatic = tuple[
    str, str, str, str | None, datetime
]  # centre address, domain, kind, category, sent (naive UTC)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


_NO_SEQSCAN = text(
    "SELECT set_config('enable_seqscan', 'off', true)"
)  # until _SEQSCAN or the transaction's end
_SEQSCAN = text("SELECT set_config('enable_seqscan', 'on', true)")


def _recent_automatic(session: Session, addresses: set[str], domains: set[str]) -> list[_Automatic]:
    """The automatic replies of the last 24 hours to a batch's senders or their domains, in one query.

    The batch's own replies are added as they are written (_note_automatic), so the caps hold inside it.
    """
    if not addresses:
        return []
    since = utcnow() - timedelta(hours=24)
    senders = or_(Ticket.centre_email.in_(addresses), Ticket.centre_domain.in_(domains))
    automatic = and_(
        Message.direction == "outbound",
        Message.kind.in_(("auto_reply", "ack")),
        Message.created_at >= since,
    )
    if session.get_bind().dialect.name == "postgresql":
        rows = _by_sender_tickets_first(session, senders, automatic)
    else:
        rows = session.execute(
            select(
                Ticket.centre_email,
                Ticket.centre_domain,
                Message.kind,
                Ticket.predicted_category,
                Message.created_at,
            )
            .join(Ticket, Message.ticket_id == Ticket.id)
            .where(senders, automatic)
        ).all()
    return [
        (email, domain or "", kind, category, _naive_utc(sent))
        for email, domain, kind, category, sent in rows
    ]


def _by_sender_tickets_first(
    session: Session, senders: ColumnElement[bool], automatic: ColumnElement[bool]
) -> Any:
    """PostgreSQL: the senders' tickets by their indexes, then each one's recent messages by (ticket_id, created_at).

    As a plain join, the generic plan PostgreSQL caches for a repeated statement, when it was made before the
    tables had statistics (a new database's first burst), read every message (35 ms a batch at 10,000 messages)
    or every ticket. The lateral subquery (fenced by OFFSET 0, so it is not folded back into a join) fixes the
    order, and for this statement no sequential scan is allowed.
    """
    recent = (
        select(Message.kind, Message.created_at)
        .where(Message.ticket_id == Ticket.id, automatic)
        .offset(literal_column("0"))
        .lateral()
    )
    query = (
        select(
            Ticket.centre_email,
            Ticket.centre_domain,
            recent.c.kind,
            Ticket.predicted_category,
            recent.c.created_at,
        )
        .select_from(Ticket)
        .join(recent, true())
        .where(senders)
    )
    session.execute(_NO_SEQSCAN)
    rows = session.execute(query).all()
    session.execute(_SEQSCAN)
    return rows


def _note_automatic(
    session: Session, address: str, domain: str, kind: str, category: str | None
) -> None:
    """Count an automatic reply this batch has just written towards the caps of the emails after it."""
    session.info[_CACHE]["automatic"].append(
        (address, domain, kind, category, _naive_utc(utcnow()))
    )


def _cap_counts(
    session: Session, address: str, domain: str, category: str | None
) -> tuple[int, int, int]:
    """(replies to the sender in the last hour, same answer to the sender today, replies to sender or domain
    in the last hour), counted in the batch's prefetched list of automatic replies."""
    hour_ago = _naive_utc(utcnow() - timedelta(hours=1))
    hourly = same_today = domain_hourly = 0
    for email, email_domain, kind, answered, sent in session.info[_CACHE]["automatic"]:
        is_sender = email == address
        if not is_sender and not (domain and email_domain == domain):
            continue
        recent = sent >= hour_ago
        hourly += is_sender and recent
        same_today += bool(category) and is_sender and kind == "auto_reply" and answered == category
        domain_hourly += recent
    return hourly, same_today, domain_hourly


def _rate_limited(
    session: Session, settings: Settings, address: str, domain: str, category: str | None
) -> str | None:
    """Why automatic mail to this sender must wait, or None: one auto-reply per category a day, caps an hour."""
    hourly, same_today, domain_hourly = _cap_counts(session, address, domain, category)
    if hourly >= settings.sender_hourly_cap:
        return f"more than {settings.sender_hourly_cap} automatic replies to {address} in an hour"
    if same_today:
        return f"{address} already had the {category} answer in the last 24 hours"
    if settings.domain_hourly_cap and domain and domain_hourly >= settings.domain_hourly_cap:
        return f"more than {settings.domain_hourly_cap} automatic replies to {domain} addresses in an hour"
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
