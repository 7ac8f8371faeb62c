"""Processing stored mail: claim a batch; parse, clean and classify it together, then write it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, defer, sessionmaker

from triage.classifier.decision import Decision
from triage.classifier.model import TrainedModel
from triage.classifier.registry import ModelLoadError, ModelProvider
from triage.config import Settings
from triage.database import statement_session
from triage.mail.inbound.new_tickets import NewTicket, clean_text
from triage.mail.inbound.store import (
    MAX_PROCESS_ATTEMPTS,
    Received,
    count_failure,
    note_failure,
    store,
)
from triage.mail.inbound.writer import BatchWriter
from triage.mail.parse import NotAnEmail, ParsedEmail, UnparseableEmail, parse
from triage.mail.recipients import choose_recipient
from triage.orm import InboundEmail, Message, Ticket, utcnow
from triage.outage import watch
from triage.states import InboundSource, InboundStatus, MessageDirection

log = logging.getLogger(__name__)
BATCH_SIZE = 50  # emails a worker claims, classifies and writes together


@dataclass
class InboundContext:
    """What processing needs: settings and the live model."""

    settings: Settings
    models: ModelProvider


@dataclass
class BatchOutcome:
    """What one batch did: ticket id per processed inbound id, and the ids that failed or were
    rejected."""

    tickets: dict[int, int | None] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    # seconds per stage, for the load benchmark
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Prepared:
    """One claimed email, parsed, cleaned and classified (or the error that stopped it)."""

    inbound_id: int
    parsed: ParsedEmail | None = None
    decision: Decision | None = None
    # preparing it failed: unparseable (rejected), or anything else (a failed attempt)
    error: Exception | None = None


def receive(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    raw: bytes,
    source: InboundSource,
    keep_unparseable: bool = False,
    channel: str | None = None,
) -> Received:
    """Store then process one raw email now (JSON API, IMAP, ingest); a failure leaves it pending
    for the worker."""
    try:
        parsed: ParsedEmail | None = parse(raw)
    except UnparseableEmail as exc:
        if isinstance(exc, NotAnEmail) and not keep_unparseable:
            raise
        parsed = None
    with statement_session(sessions) as session:
        row, duplicate = store(session, raw, source, keep_unparseable, parsed, channel)
    status, ticket_id = row.status, row.ticket_id
    if status == InboundStatus.PENDING:
        given = {row.id: parsed} if parsed else None
        outcome = process_batch(sessions, ctx, ids=[row.id], parsed=given)
        if row.id in outcome.tickets:
            status, ticket_id = InboundStatus.PROCESSED, outcome.tickets[row.id]
    return Received(row.id, row.message_id, ticket_id, duplicate, status, reason=row.last_error)


def process_pending(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    limit: int = BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Worker task: claim one batch of stored mail still pending and process it; returns how many
    were processed. `should_stop` is checked before claiming: a batch once claimed is finished."""
    if should_stop():
        return 0
    return len(process_batch(sessions, ctx, limit).tickets)


def process_batch(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    limit: int = BATCH_SIZE,
    ids: list[int] | None = None,
    parsed: dict[int, ParsedEmail] | None = None,
) -> BatchOutcome:
    """Claim up to `limit` pending emails (or just `ids`), then parse, clean and classify them
    together and write them in one transaction.

    PostgreSQL: the claim is `FOR UPDATE SKIP LOCKED`, so workers on any host take disjoint
    batches; its row locks are held until the batch's commit (the mail is read, parsed and
    classified meanwhile, writing nothing). SQLite: the batch is read and prepared with no
    transaction open (no lock held), and each row's status is checked again once the write lock is
    taken. Either way an email already processed is skipped, and the unique Message-ID of the
    inbound message stops a second ticket. A failure in the batch write is retried email by email,
    so one bad email fails only itself.
    """
    outcome = BatchOutcome()
    clock = time.perf_counter()
    model = _current_model(ctx)
    with sessions() as session:
        rows = _claim(session, limit, ids)
        if not rows:
            return outcome
        outcome.timings["claim"] = _lap(clock)
        items = _prepare(rows, parsed or {}, model, outcome.timings)
        clock = time.perf_counter()
        outcome = _write_all_or_each(sessions, session, ctx.settings, model, items, outcome)
        outcome.timings["write"] = _lap(clock)
    return outcome


def _claim(session: Session, limit: int, ids: list[int] | None) -> Sequence[Any]:
    """The (id, raw) of up to `limit` pending emails still worth trying and due.

    Mail never tried comes first, oldest first; mail that failed waits out its backoff and then
    comes after it (fewest failures first), so failing mail never holds up the mail behind it.
    PostgreSQL keeps the transaction (and its row locks) open; SQLite ends it at once.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    query = (
        select(InboundEmail.id, InboundEmail.raw)
        .where(
            InboundEmail.status == InboundStatus.PENDING,
            InboundEmail.attempts < MAX_PROCESS_ATTEMPTS,
            or_(InboundEmail.next_attempt_at.is_(None), InboundEmail.next_attempt_at <= utcnow()),
        )
        .order_by(InboundEmail.attempts, InboundEmail.id)
        .limit(limit)
    )
    if ids is not None:
        query = query.where(InboundEmail.id.in_(ids))
    if postgres:
        query = query.with_for_update(skip_locked=True)
    rows = session.execute(query).all()
    if not postgres or not rows:
        session.commit()
    return rows


def _write_all_or_each(
    sessions: sessionmaker[Session],
    session: Session,
    settings: Settings,
    model: TrainedModel | None,
    items: list[Prepared],
    outcome: BatchOutcome,
) -> BatchOutcome:
    """Write the batch in one transaction; if that fails, each email in a transaction of its own."""
    try:
        _write(session, settings, model, items, outcome)
        session.commit()
        return outcome
    except Exception as exc:
        session.rollback()
        if len(items) > 1:  # one bounded line: each failing email logs its own failure below
            log.warning(
                "writing a batch of %s failed (%s); writing them one by one",
                len(items),
                type(exc).__name__,
            )
    outcome = BatchOutcome(timings=outcome.timings)
    for item in items:
        try:
            _write(session, settings, model, [item], outcome)
            session.commit()
        except Exception as exc:
            session.rollback()
            note_failure(sessions, item.inbound_id, exc)
            outcome.failed.append(item.inbound_id)
    return outcome


def _lap(start: float) -> float:
    return time.perf_counter() - start


def _prepare(
    rows: Sequence[Any],
    given: dict[int, ParsedEmail],
    model: TrainedModel | None,
    timings: dict[str, float],
) -> list[Prepared]:
    """Parse and clean each email once, then classify the batch in one call (no transaction)."""
    clock = time.perf_counter()
    items = [_parsed(inbound_id, raw, given) for inbound_id, raw in rows]
    timings["parse"] = _lap(clock)
    clock = time.perf_counter()
    emails: list[tuple[str, str, str]] = []
    for item in items:
        if item.parsed is None:
            continue
        try:
            emails.append((item.parsed.subject, clean_text(item.parsed), item.parsed.text))
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


def _parsed(inbound_id: int, raw: bytes, given: dict[int, ParsedEmail]) -> Prepared:
    """An email parsed (or as parsed already by the caller), or the error parsing it raised."""
    item = Prepared(inbound_id)
    try:
        item.parsed = given.get(inbound_id) or parse(raw)
    except Exception as exc:  # UnparseableEmail: rejected at the write; else: a failed attempt
        item.error = exc
    return item


def _write(
    session: Session,
    settings: Settings,
    model: TrainedModel | None,
    items: list[Prepared],
    outcome: BatchOutcome,
) -> None:
    """Thread or open a ticket for each prepared email still pending, with its replies, in the
    open transaction."""
    rows = _locked_rows(session, [item.inbound_id for item in items])
    known = _known_message_ids(session, items)
    senders = {choose_recipient(item.parsed).address for item in items if item.parsed is not None}
    writer = BatchWriter(session, settings, model.version if model else "unavailable", senders)
    handled: list[tuple[InboundEmail, int | Ticket | NewTicket]] = []
    for item in items:
        row = rows.get(item.inbound_id)
        if row is None or row.status != InboundStatus.PENDING:
            continue  # another worker (or an earlier attempt) finished it
        if item.parsed is None:
            _note_unprepared(row, item.error, outcome)
            continue
        # our own outbound mail copied back in adds nothing new; another email reusing an
        # inbound Message-ID is an email of its own
        ticket = known.get(item.parsed.message_id)
        if ticket is None:
            ticket = writer.handle(item.parsed, item.decision, row.channel)
        handled.append((row, ticket))
    writer.write_new_tickets()
    now = utcnow()
    for row, ticket in handled:  # once every ticket has its id: one UPDATE per row
        row.status, row.processed_at = InboundStatus.PROCESSED, now
        row.ticket_id = ticket if isinstance(ticket, int) else ticket.id
        outcome.tickets[row.id] = row.ticket_id
    session.flush()


def _locked_rows(session: Session, ids: list[int]) -> dict[int, InboundEmail]:
    """The claimed rows, locked for the write (without the raw bytes: they are in hand already)."""
    query = (
        select(InboundEmail)
        .options(defer(InboundEmail.raw))
        .where(InboundEmail.id.in_(ids))
        .with_for_update()
    )
    return {row.id: row for row in session.scalars(query)}


def _known_message_ids(
    session: Session, items: list[Prepared]
) -> dict[str, int | Ticket | NewTicket]:
    """The ticket of each of the batch's Message-IDs we sent ourselves (stored as outbound)."""
    message_ids = [item.parsed.message_id for item in items if item.parsed is not None]
    query = select(Message.message_id, Message.ticket_id).where(
        Message.message_id.in_(message_ids), Message.direction == MessageDirection.OUTBOUND
    )
    return {row.message_id: row.ticket_id for row in session.execute(query)}


def _note_unprepared(row: InboundEmail, error: Exception | None, outcome: BatchOutcome) -> None:
    """An email that could not be prepared: unparseable is rejected, else a failed attempt."""
    if isinstance(error, UnparseableEmail):
        row.status, row.last_error = InboundStatus.REJECTED, str(error)[:2000]
        outcome.rejected.append(row.id)
        return
    count_failure(row, error)
    outcome.failed.append(row.id)


MODEL_WATCH = "the classifier (no usable model, new mail goes to triage)"


def _current_model(ctx: InboundContext) -> TrainedModel | None:
    """The live model, or None when none is usable: then new mail goes to triage (logged when it
    starts, as a warning from the next batch on, then every OUTAGE_REMIND_SECONDS, not per batch)."""
    outage = watch(MODEL_WATCH, 0, ctx.settings.outage_remind_seconds)
    try:
        model = ctx.models.current()
    except ModelLoadError as exc:
        outage.failed(str(exc))
        return None
    outage.succeeded()
    return model
