"""The outbox: outgoing mail written with the ticket change, then delivered by the worker over
SMTP."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Dialect, Select, and_, bindparam, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.mail import channels
from triage.mail.compose import build, new_message_id, to_bytes
from triage.mail.transport import DeliveryOutcome
from triage.orm import Message, OutboxItem, Ticket, utcnow
from triage.states import MessageDirection, MessageKind, OutboxStatus

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CLAIM_BATCH = 50  # rows a delivery round claims at once (each send is still recorded on its own)
LEASE = timedelta(minutes=10)  # a row claimed longer ago than this was left by a crashed worker
CRASHED = "the worker sending it stopped before recording the outcome"
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600


def enqueue(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    *,
    kind: MessageKind,
    subject: str,
    body: str,
    reply_to: Message | None,
    auto_submitted: str | None,
    to: str | None = None,
    author_id: int | None = None,
) -> Message:
    """Add an outbound message and its outbox row to the session (the caller's transaction)."""
    recipient = to or ticket.centre_email
    from_name, from_address = channels.sender(settings, ticket.channel, ticket.reply_from)
    values = outbound_message(
        settings,
        ticket.id,
        recipient,
        kind=kind,
        subject=subject,
        body=body,
        reply_to=(reply_to.message_id, reply_to.references) if reply_to is not None else None,
        auto_submitted=auto_submitted,
        author_id=author_id,
        sender=(from_name, from_address),
    )
    message = Message(ticket=ticket, **values)
    session.add(message)
    session.add(OutboxItem(message=message, ticket_id=ticket.id, recipient=recipient))
    return message


def outbound_message(
    settings: Settings,
    ticket_id: int,
    recipient: str,
    *,
    kind: MessageKind,
    subject: str,
    body: str,
    reply_to: tuple[str, str | None] | None,
    auto_submitted: str | None,
    author_id: int | None = None,
    message_id: str | None = None,
    sender: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The column values of an outbound message, its raw bytes composed (`reply_to`: the Message-ID
    and References of the message it answers; `message_id`: one made beforehand, else a new one;
    `sender`: the name and address it is from, by default SUPPORT_NAME and SUPPORT_ADDRESS). Its
    outbox row is the caller's to add."""
    from_name, from_address = sender or (settings.support_name, settings.support_address)
    message_id = message_id or new_message_id(settings.secret_key, ticket_id, settings.mail_domain)
    answered, answered_references = reply_to if reply_to is not None else (None, None)
    references = [*(answered_references or "").split(), answered] if answered is not None else []
    email = build(
        message_id=message_id,
        from_name=from_name,
        from_address=from_address,
        to=recipient,
        subject=subject,
        body=body,
        in_reply_to=answered,
        references=references,
        auto_submitted=auto_submitted,
    )
    return {
        "ticket_id": ticket_id,
        "direction": MessageDirection.OUTBOUND,
        "kind": kind,
        "message_id": message_id,
        "in_reply_to": str(email["In-Reply-To"]) if email["In-Reply-To"] else None,
        "references": str(email["References"]) if email["References"] else None,
        "from_address": from_address,
        "from_name": from_name,
        "to_addresses": recipient,
        "subject": str(email["Subject"]),
        "body_text": body,
        "clean_text": body,
        "raw": to_bytes(
            email
        ),  # CRLF line ends, msg-ids whole: what goes on the wire, byte for byte
        "author_id": author_id,
    }


def claim(
    sessions: sessionmaker[Session],
    worker_id: str,
    limit: int = CLAIM_BATCH,
    max_attempts: int = 8,
    lease: timedelta = LEASE,
) -> list[int]:
    """Claim due rows for this worker; on PostgreSQL, SKIP LOCKED keeps two workers off the same
    row.

    A row whose lease expired was being sent by a worker that died (a live one renews its leases):
    that counts as a failed attempt, so a message that crashes every worker ends as `failed` after
    `max_attempts` instead of looping forever. It is sent again with the same Message-ID.
    """
    now = utcnow()
    with sessions() as session, session.begin():
        ids = []
        for item_id, status, attempts in session.execute(_due(now, limit, lease)).all():
            crashed = status == OutboxStatus.SENDING  # its lease expired: the worker died
            if not crashed or _count_crash(session, item_id, attempts + 1, max_attempts):
                ids.append(item_id)
                if crashed:
                    log.warning(
                        "outbox %s: taken back from a worker that stopped (no lease renewal for "
                        "%d s); sending it again with the same Message-ID",
                        item_id,
                        lease.total_seconds(),
                    )
        if ids:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids))
                .values(status=OutboxStatus.SENDING, claimed_by=worker_id, claimed_at=now)
            )
    return ids


def _due(now: datetime, limit: int, lease: timedelta) -> Select[int, OutboxStatus, int]:
    """The rows to claim: pending and due, or sending with an expired lease; oldest due first."""
    return (
        select(OutboxItem.id, OutboxItem.status, OutboxItem.attempts)
        .where(
            or_(
                (OutboxItem.status == OutboxStatus.PENDING) & (OutboxItem.next_attempt_at <= now),
                (OutboxItem.status == OutboxStatus.SENDING) & (OutboxItem.claimed_at < now - lease),
            )
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _held_by(worker_id: str) -> ColumnElement[bool]:
    """Rows this worker has claimed and not yet settled."""
    return and_(OutboxItem.claimed_by == worker_id, OutboxItem.status == OutboxStatus.SENDING)


def renew_leases(sessions: sessionmaker[Session], worker_id: str) -> int:
    """Renew the lease of every row this worker holds in `sending`; returns how many it holds."""
    with sessions() as session, session.begin():
        renewed: int = (
            session.connection()
            .execute(update(OutboxItem).where(_held_by(worker_id)).values(claimed_at=utcnow()))
            .rowcount
        )
    return renewed


def _count_crash(session: Session, item_id: int, attempts: int, max_attempts: int) -> bool:
    """Count a send whose worker died as a failed attempt; False when that was the last one."""
    last = attempts >= max_attempts
    changes: dict[str, Any] = {"attempts": attempts, "last_error": CRASHED}
    if last:
        changes |= {"status": OutboxStatus.FAILED, "claimed_by": None}
        log.warning("outbox %s failed permanently: %s %s times", item_id, CRASHED, attempts)
    session.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(changes))
    return not last


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after `attempts` failures: exponential, capped."""
    return timedelta(
        seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    )


def release_held(sessions: sessionmaker[Session], worker_id: str, why: str) -> int:
    """Hand back every row this worker still holds in `sending` (after a lost database, when none
    of them is being sent: a claim whose answer was lost leaves rows the worker never learnt of)."""
    with sessions() as session, session.begin():
        count: int = (
            session.connection()
            .execute(
                update(OutboxItem)
                .where(_held_by(worker_id))
                .values(status=OutboxStatus.PENDING, claimed_by=None, claimed_at=None)
            )
            .rowcount
        )
    if count:
        log.info("outbox: handed %s claimed rows back (%s)", count, why)
    return count


_OUTBOX = OutboxItem.__table__
# built once (no statement building per send): a send is recorded with one UPDATE, committed on its
# own
_RECORD_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("item_id"), _OUTBOX.c.claimed_by == bindparam("worker_id"))
    .values(
        attempts=_OUTBOX.c.attempts + 1,
        claimed_by=None,
        status=OutboxStatus.SENT,
        sent_at=bindparam("now"),
        last_error=None,
    )
)


@functools.cache
def _record_sent_sql(dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The UPDATE that records a send as the driver's own SQL text, with the values it sets
    (compiled once)."""
    compiled = _RECORD_SENT.compile(dialect=dialect)
    given = {"item_id": 0, "worker_id": "", "now": None}
    fixed = {
        name: value for name, value in compiled.construct_params(given).items() if name not in given
    }
    return str(compiled), fixed


def _record_sent(recorder: Session, params: dict[str, Any]) -> int:
    """Record one send and commit it at once; returns the rows changed (0: the claim was no longer
    ours).

    PostgreSQL (`recorder` is an autocommit `statement_session`): the prepared UPDATE goes straight
    to the driver's cursor, a third of the CPU of the same statement through SQLAlchemy's execution
    layer, which has nothing to add to one fixed statement (no result rows, no ORM state). SQLite:
    through the session, then committed. A driver error is raised as SQLAlchemy's, the connection
    thrown away."""
    connection = recorder.connection()
    if connection.dialect.name == "postgresql":
        sql, fixed = _record_sent_sql(connection.dialect)
        driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
        try:
            with driver.cursor() as cursor:
                cursor.execute(sql, {**fixed, **params}, prepare=True)
                changed: int = cursor.rowcount
                return changed
        except connection.dialect.loaded_dbapi.Error as exc:
            connection.invalidate(exc)
            raise OperationalError(sql, None, exc, hide_parameters=True) from exc
    changed = connection.execute(_RECORD_SENT, params).rowcount
    recorder.commit()
    return changed


def record(
    sessions: sessionmaker[Session],
    recorder: Session,
    settings: Settings,
    item_id: int,
    worker_id: str,
    outcome: DeliveryOutcome,
) -> None:
    """Record one delivery attempt and commit it before the next send: a send in `recorder` (a
    `statement_session`: one round trip on PostgreSQL), anything else in a session of its own."""
    now = utcnow()
    if outcome.sent:  # the common case: recorded the moment the server took the message
        if _record_sent(recorder, {"item_id": item_id, "worker_id": worker_id, "now": now}):
            log.debug("outbox %s sent", item_id)
        return
    with sessions() as session, session.begin():
        item = session.get(OutboxItem, item_id)
        if item is None or item.claimed_by != worker_id:
            return
        item.attempts += 1
        item.claimed_by = None
        if outcome.permanent or item.attempts >= settings.outbox_max_attempts:
            item.status, item.last_error = OutboxStatus.FAILED, outcome.error
            log.warning("outbox %s failed permanently: %s", item.id, outcome.error)
        else:
            item.status, item.last_error = OutboxStatus.PENDING, outcome.error
            item.next_attempt_at = now + backoff(item.attempts)
            # one line per row only at DEBUG: the delivery round's outage watch tells operators
            log.debug("outbox %s will be retried: %s", item.id, outcome.error)


def retry_failed(session: Session, item_id: int) -> OutboxItem | None:
    """Put a failed row back in the queue for an immediate attempt (the admin retry button)."""
    item = session.get(OutboxItem, item_id)
    if item is not None and item.status == OutboxStatus.FAILED:
        item.status, item.next_attempt_at, item.attempts = OutboxStatus.PENDING, utcnow(), 0
    return item


def hold_for_send(recorder: Session, item_id: int, worker_id: str) -> bool:
    """Renew one row's lease just before its send; False when the row is no longer this worker's
    (another took it back after a stall longer than the lease), so it must not be sent."""
    held = (
        recorder.connection()
        .execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, _held_by(worker_id))
            .values(claimed_at=utcnow())
        )
        .rowcount
    )
    recorder.commit()
    return bool(held)


def troubled(session: Session, lease: timedelta, limit: int = 200) -> list[OutboxItem]:
    """Rows in trouble, for Admin: `sending` past their lease (their worker stopped, or cannot
    reach the database), or waiting for a retry after a failed attempt; longest waiting first."""
    now = utcnow()
    return list(
        session.scalars(
            select(OutboxItem)
            .where(
                or_(
                    (OutboxItem.status == OutboxStatus.SENDING)
                    & (OutboxItem.claimed_at < now - lease),
                    (OutboxItem.status == OutboxStatus.PENDING) & (OutboxItem.attempts > 0),
                )
            )
            .order_by(OutboxItem.created_at, OutboxItem.id)
            .limit(limit)
        )
    )
