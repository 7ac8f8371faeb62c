"""Storing raw mail: every email is committed once, before anything else happens to it."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, defer, sessionmaker
from sqlalchemy.sql import Executable

from triage.mail.fingerprint import content_hash
from triage.mail.parse import NotAnEmail, ParsedEmail, UnparseableEmail, identify
from triage.new_mail_signal import notify_workers
from triage.orm import InboundEmail, format_reference, utcnow
from triage.states import InboundSource, InboundStatus

log = logging.getLogger(__name__)
# after this many failures the worker stops retrying; staff see the email under Admin > Inbound
MAX_PROCESS_ATTEMPTS = 20
RETRY_BASE_SECONDS = 5  # the wait after a first failed attempt, doubled after each further one
RETRY_MAX_SECONDS = 3600
_STORED_COLUMNS = (
    "message_id",
    "content_hash",
    "raw",
    "source",
    "status",
    "last_error",
    "api_token_id",
    "channel",
)


@dataclass(frozen=True)
class Stored:
    """A stored raw email, as the store saw it."""

    id: int
    message_id: str
    status: InboundStatus
    ticket_id: int | None
    last_error: str | None = None


@dataclass(frozen=True)
class Received:
    """The outcome of receiving one email."""

    inbound_id: int
    message_id: str
    ticket_id: int | None
    duplicate: bool
    status: InboundStatus
    reason: str | None = None  # why it could not become a ticket (rejected), for the sender

    @property
    def reference(self) -> str | None:
        """The ticket's public reference, once it has one."""
        return format_reference(self.ticket_id) if self.ticket_id else None


def store(
    session: Session,
    raw: bytes,
    source: InboundSource,
    keep_unparseable: bool,
    parsed: ParsedEmail | None = None,
    channel: str | None = None,
    token_id: int | None = None,
) -> tuple[Stored, bool]:
    """Commit the raw email once (per Message-ID and content hash): (row, was_duplicate).

    An exact copy is a duplicate; a different email reusing a Message-ID is stored (and processed)
    as an email of its own. Only the header block is read (`identify`): the body is parsed later,
    by a worker. Headers that make no email are kept as `rejected`; bytes with no header block at
    all raise NotAnEmail, unless `keep_unparseable` (then they are kept as rejected too). New mail
    is one statement (in a `statement_session` on PostgreSQL: one round trip), then on PostgreSQL a
    second wakes idle workers (`notify_workers`); only a duplicate takes a second, to read what is
    held. The session is committed. `channel`: the channel it came in on (None: the default);
    `token_id`: the API token that posted it.
    """
    error = None
    try:
        message_id = parsed.message_id if parsed is not None else identify(raw)
    except UnparseableEmail as exc:
        if isinstance(exc, NotAnEmail) and not keep_unparseable:
            raise
        error, message_id = str(exc)[:2000], unparseable_message_id(raw)
    status = InboundStatus.REJECTED if error else InboundStatus.PENDING
    digest = content_hash(raw)
    values = {
        "new_message_id": message_id,
        "new_content_hash": digest,
        "new_raw": raw,
        "new_source": source,
        "new_status": status,
        "new_last_error": error,
        "new_channel": channel,
        "new_api_token_id": token_id,
    }
    new_id = session.connection().scalar(_insert_new(session.get_bind().dialect.name), values)
    if new_id is not None:
        session.commit()
        if not error:
            notify_workers(session)
        return Stored(new_id, message_id, status, None, error), False
    return _held(session, message_id, digest), True


def unparseable_message_id(raw: bytes) -> str:
    """The key an email whose headers cannot be read is stored under: a hash of its bytes."""
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@unparseable.invalid>"


def _held(session: Session, message_id: str, digest: str) -> Stored:
    """The row already held for this email (a retry, or the same mail by another path)."""
    held = session.execute(
        select(
            InboundEmail.id,
            InboundEmail.message_id,
            InboundEmail.status,
            InboundEmail.ticket_id,
            InboundEmail.last_error,
        ).where(InboundEmail.message_id == message_id, InboundEmail.content_hash == digest)
    ).one()
    session.commit()
    error = held.last_error if held.status == InboundStatus.REJECTED else None
    return Stored(held.id, held.message_id, held.status, held.ticket_id, error)


@functools.cache
def _insert_new(dialect: str) -> Executable:
    """INSERT one raw email unless it is held (then no row), returning the new id.

    Built once per dialect: no statement is built per email.
    """
    table = InboundEmail.__table__
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    return (
        insert.values({name: bindparam(f"new_{name}") for name in _STORED_COLUMNS})
        .on_conflict_do_nothing(index_elements=["message_id", "content_hash"])
        .returning(table.c.id)
    )


def accept(
    session: Session,
    raw: bytes,
    source: InboundSource,
    keep_unparseable: bool = False,
    channel: str | None = None,
    token_id: int | None = None,
) -> Received:
    """Store one raw email for the workers (the webhook's whole job); a duplicate answers as before.

    Best in a `statement_session`: then storing is one round trip on PostgreSQL (and one more to
    wake workers).
    """
    row, duplicate = store(
        session, raw, source, keep_unparseable, channel=channel, token_id=token_id
    )
    return Received(
        row.id, row.message_id, row.ticket_id, duplicate, row.status, reason=row.last_error
    )


def note_failure(sessions: sessionmaker[Session], inbound_id: int, exc: BaseException) -> None:
    """Count a failed processing attempt, in a transaction of its own (see `count_failure`)."""
    with sessions() as session, session.begin():
        row = session.get(InboundEmail, inbound_id, options=[defer(InboundEmail.raw)])
        if row is not None:
            count_failure(row, exc)


def count_failure(row: InboundEmail, exc: BaseException | None) -> None:
    """Count a failed attempt: keep its error, put the email back after a backoff, log one line.

    The backoff doubles from RETRY_BASE_SECONDS up to RETRY_MAX_SECONDS; the log line is bounded
    (no traceback, no SQL parameters), so an email that always fails cannot flood the log.
    """
    row.attempts += 1
    row.last_error = describe_error(exc)
    delay = min(RETRY_BASE_SECONDS * 2 ** (row.attempts - 1), RETRY_MAX_SECONDS)
    row.next_attempt_at = utcnow() + timedelta(seconds=delay)
    log.error(
        "processing inbound %s failed (attempt %s of %s, next in %ss): %s",
        row.id,
        row.attempts,
        MAX_PROCESS_ATTEMPTS,
        delay,
        row.last_error[:300],
    )


def describe_error(exc: BaseException | None) -> str:
    """An error as stored on an inbound row: its type and message, bounded."""
    return f"{type(exc).__name__}: {str(exc)[:2000]}"[:2000]


def problem_mail(session: Session, limit: int = 200) -> list[InboundEmail]:
    """Stored mail that did not become a ticket: unparseable or failing to process, newest first."""
    query = (
        select(InboundEmail)
        .where(
            or_(
                InboundEmail.status == InboundStatus.REJECTED,
                and_(InboundEmail.status == InboundStatus.PENDING, InboundEmail.attempts > 0),
            )
        )
        .order_by(InboundEmail.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def retry_processing(session: Session, inbound_id: int) -> InboundEmail | None:
    """Give a pending email that kept failing a fresh set of attempts; None if it is not one."""
    row = session.get(InboundEmail, inbound_id)
    if row is None or row.status != InboundStatus.PENDING:
        return None
    row.attempts = 0
    row.next_attempt_at = None
    return row
