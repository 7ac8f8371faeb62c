"""The outbox: outgoing mail written with the ticket change, then delivered by the worker over
SMTP."""

from __future__ import annotations

import functools
import logging
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Dialect, Select, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.database import statement_session
from triage.mail import channel_delivery, channels
from triage.mail.compose import build, new_message_id, to_bytes
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
Login = Callable[[smtplib.SMTP], None]  # logs an open SMTP session in (a channel's credentials)


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


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one delivery attempt."""

    sent: bool
    permanent: bool = False
    error: str = ""


class Transport:
    """Sends raw bytes to one recipient: over SMTP, or into a folder of .eml files when no SMTP is
    set.

    One SMTP connection (connect, STARTTLS, login) serves every message of a delivery round: it is
    checked with NOOP before each reuse and opened again when the server has dropped it. Close it
    when the round ends (`with Transport(settings) as transport:`).
    """

    def __init__(self, settings: Settings, login: Login | None = None) -> None:
        self.settings = settings
        self.login = login  # a channel's login (password or OAuth 2.0); else SMTP_USER's
        self._folder_made: Path | None = None
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, sender: str, recipient: str, raw: bytes, name: str) -> DeliveryOutcome:
        """Deliver one message; temporary failures are not permanent, 5xx answers are."""
        if not self.settings.smtp_host:
            return self._write_file(raw, name)
        try:
            self._connected().sendmail(sender, [recipient], raw)
        except (
            smtplib.SMTPRecipientsRefused
        ) as exc:  # the session is still good (smtplib has reset it)
            code, text = next(iter(exc.recipients.values()))
            return DeliveryOutcome(False, code >= 500, f"{code} {text!r}")
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the connection
                self.close()
            return DeliveryOutcome(
                False, exc.smtp_code >= 500, f"{exc.smtp_code} {exc.smtp_error!r}"
            )
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self.close()  # in an unknown state: the next message starts on a new connection
            return DeliveryOutcome(False, False, f"{type(exc).__name__}: {exc}")
        return DeliveryOutcome(True)

    def close(self) -> None:
        """End the SMTP session, if one is open."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def _connected(self) -> smtplib.SMTP:
        """The open SMTP session if the server still answers it, else a new one (STARTTLS and login
        as set)."""
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (OSError, smtplib.SMTPException):
                pass
            self.close()
        s = self.settings
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        try:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.login is not None:
                self.login(smtp)
            elif s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _write_file(self, raw: bytes, name: str) -> DeliveryOutcome:
        folder: Path = self.settings.outbox_dir or self.settings.instance_path / "outbox"
        if folder != self._folder_made:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._folder_made = folder
        target = folder / f"{name}.eml"
        partial = target.with_suffix(".eml.part")
        # centres' mail: owner only
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        partial.replace(target)
        return DeliveryOutcome(True)


def claim(
    sessions: sessionmaker[Session], worker_id: str, limit: int = CLAIM_BATCH, max_attempts: int = 8
) -> list[int]:
    """Claim due rows for this worker; on PostgreSQL, SKIP LOCKED keeps two workers off the same
    row.

    A row whose lease expired was being sent by a worker that died: that counts as a failed attempt,
    so a message that crashes every worker ends as `failed` after `max_attempts` instead of looping
    forever.
    """
    now = utcnow()
    with sessions() as session, session.begin():
        ids = []
        for item_id, status, attempts in session.execute(_due(now, limit)).all():
            crashed = status == OutboxStatus.SENDING  # its lease expired: the worker died
            if not crashed or _count_crash(session, item_id, attempts + 1, max_attempts):
                ids.append(item_id)
        if ids:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids))
                .values(status=OutboxStatus.SENDING, claimed_by=worker_id, claimed_at=now)
            )
    return ids


def _due(now: datetime, limit: int) -> Select[int, OutboxStatus, int]:
    """The rows to claim: pending and due, or sending with an expired lease; oldest due first."""
    return (
        select(OutboxItem.id, OutboxItem.status, OutboxItem.attempts)
        .where(
            or_(
                (OutboxItem.status == OutboxStatus.PENDING) & (OutboxItem.next_attempt_at <= now),
                (OutboxItem.status == OutboxStatus.SENDING) & (OutboxItem.claimed_at < now - LEASE),
            )
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


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


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    worker_id: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Claim and deliver due outbox rows; returns how many were handled (sent or failed for now).

    When `should_stop` turns true (SIGTERM), it finishes the message in hand and hands the rest of
    its claim back, so another worker sends them at once instead of after the lease.
    """
    # one SMTP connection per channel for the whole round
    with channel_delivery.ChannelTransport(sessions, settings) as transport:
        return _deliver_claims(sessions, settings, worker_id, transport, should_stop)


def _deliver_claims(
    sessions: sessionmaker[Session],
    settings: Settings,
    worker_id: str,
    transport: channel_delivery.ChannelTransport,
    should_stop: Callable[[], bool],
) -> int:
    handled = 0
    while True:
        ids = claim(sessions, worker_id, max_attempts=settings.outbox_max_attempts)
        if not ids:
            return handled
        with statement_session(
            sessions
        ) as session:  # reads the whole claim in one query, then records each send
            claimed = {
                item_id: (raw or b"", recipient, f"{item_id:08d}-{ticket_id}", sender)
                for item_id, raw, recipient, ticket_id, sender in session.execute(
                    select(
                        OutboxItem.id,
                        Message.raw,
                        OutboxItem.recipient,
                        OutboxItem.ticket_id,
                        Message.from_address,
                    )
                    .join(Message, Message.id == OutboxItem.message_id)
                    .where(
                        OutboxItem.id.in_(ids),
                        OutboxItem.status == OutboxStatus.SENDING,
                        OutboxItem.claimed_by == worker_id,
                    )
                )
            }
            session.commit()  # nothing is held while sending (SQLite: the writer lock)
            for position, item_id in enumerate(ids):
                if should_stop():
                    release(sessions, ids[position:], worker_id)
                    return handled
                if item_id not in claimed:
                    continue
                raw, recipient, name, sender = claimed[item_id]
                outcome = transport.send(sender or settings.support_address, recipient, raw, name)
                _record(sessions, session, settings, item_id, worker_id, outcome)
                handled += 1


def release(sessions: sessionmaker[Session], ids: list[int], worker_id: str) -> None:
    """Hand claimed rows that were not attempted back to the queue, due now."""
    with sessions() as session, session.begin():
        session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id.in_(ids),
                OutboxItem.claimed_by == worker_id,
                OutboxItem.status == OutboxStatus.SENDING,
            )
            .values(status=OutboxStatus.PENDING, claimed_by=None, claimed_at=None)
        )
    log.info("outbox: handed %s claimed rows back on shutdown", len(ids))


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
    through the session, then committed."""
    connection = recorder.connection()
    if connection.dialect.name == "postgresql":
        sql, fixed = _record_sent_sql(connection.dialect)
        driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
        with driver.cursor() as cursor:
            cursor.execute(sql, {**fixed, **params}, prepare=True)
            changed: int = cursor.rowcount
            return changed
    changed = connection.execute(_RECORD_SENT, params).rowcount
    recorder.commit()
    return changed


def _record(
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
            log.info("outbox %s sent", item_id)
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
            log.info("outbox %s will be retried: %s", item.id, outcome.error)


def retry_failed(session: Session, item_id: int) -> OutboxItem | None:
    """Put a failed row back in the queue for an immediate attempt (the admin retry button)."""
    item = session.get(OutboxItem, item_id)
    if item is not None and item.status == OutboxStatus.FAILED:
        item.status, item.next_attempt_at, item.attempts = OutboxStatus.PENDING, utcnow(), 0
    return item
