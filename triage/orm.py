"""SQLAlchemy 2 typed models: tickets, messages, queues, users, tokens, outbox, models, audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from triage.states import (
    OPEN_STATUSES,
    Action,
    InboundSource,
    InboundStatus,
    IncidentStatus,
    JobKind,
    JobStatus,
    LinkKind,
    MessageDirection,
    MessageKind,
    ModelStatus,
    OutboxStatus,
    Role,
    TicketStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

REFERENCE_PREFIX = "IMI-"
API_SCOPES = (
    "inbound read write metrics"  # a token's scopes, space-separated; tokens get all by default
)
_REFERENCE_RE = re.compile(r"\bIMI-(\d{6,})\b", re.IGNORECASE)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert to UTC; SQLite gets a naive value since it cannot store the zone."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Return an aware UTC datetime whatever the backend gave back."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumType(TypeDecorator[E]):
    """A closed set of strings stored as VARCHAR: enum members or their values in, members out."""

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[E], length: int) -> None:
        super().__init__(length)
        self.enum_class = enum_class
        self.length = length

    def process_bind_param(self, value: E | str | None, dialect: Any) -> str | None:
        """The plain value (the column's CHECK constraint refuses a string outside the set)."""
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Any) -> E | None:
        """The enum member for a stored value."""
        return None if value is None else self.enum_class(value)


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK constraint (named ck_<table>_<column>): the column holds one of the enum's values."""
    listed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}

    if TYPE_CHECKING:
        # every model here is mapped to a Table (SQLAlchemy types it as any FromClause)
        __table__: ClassVar[Table]


class Queue(Base):
    """A staff queue that tickets are routed to."""

    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # told when a centre replies on a ticket
    notify_address: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # response targets in business minutes (urgent tickets: wall-clock minutes)
    first_response_minutes: Mapped[int] = mapped_column(Integer, default=480, server_default="480")
    next_response_minutes: Mapped[int] = mapped_column(Integer, default=480, server_default="480")
    urgent_response_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")


class RoutingRule(Base):
    """Which queue a category's tickets go to; seeded from the catalogue, editable by an admin."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(64), unique=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    queue: Mapped[Queue] = relationship()


class User(Base):
    """A member of staff who logs in to the web app."""

    __tablename__ = "users"
    __table_args__ = (one_of("role", Role),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(StrEnumType(Role, 16), default=Role.AGENT)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # email notifications this person wants (Preferences page)
    notify_centre_replies: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    notify_urgent: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_overdue: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # raised by logout, a password change or deactivation: sessions signed before are void
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # the TOTP second factor for password logins (base32 secret; None: not enrolled), and the last
    # 30-second time step a code was accepted for (a code is never taken twice)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class ApiToken(Base):
    """A bearer token for the API and the inbound webhook; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # fixed-window request counter for the per-token rate limit (the row is shared by every process)
    rate_window: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rate_count: Mapped[int] = mapped_column(default=0, server_default="0")
    scopes: Mapped[str] = mapped_column(String(100), default=API_SCOPES, server_default=API_SCOPES)

    created_by: Mapped[User | None] = relationship()

    @property
    def scope_list(self) -> list[str]:
        """The token's scopes (inbound, read, write, metrics)."""
        return self.scopes.split()


class Ticket(Base):
    """One centre enquiry: the thread of messages, its classification, queue and status."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_queue_status_created", "queue_id", "status", "created_at"),
        Index("ix_tickets_assignee_status", "assignee_id", "status"),
        Index("ix_tickets_status_updated", "status", "updated_at"),
        Index("ix_tickets_centre_email", "centre_email"),
        Index("ix_tickets_predicted_category", "predicted_category"),
        Index("ix_tickets_centre_domain", "centre_domain"),
        Index("ix_tickets_status_urgent", "status", "urgent"),
        one_of("status", TicketStatus),
        one_of("action", Action),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    centre_email: Mapped[str] = mapped_column(String(254))
    centre_name: Mapped[str] = mapped_column(String(200), default="")
    # registrable domain, for the per-domain cap
    centre_domain: Mapped[str | None] = mapped_column(String(253))
    subject: Mapped[str] = mapped_column(String(998), default="")
    status: Mapped[TicketStatus] = mapped_column(
        StrEnumType(TicketStatus, 20), default=TicketStatus.OPEN
    )
    action: Mapped[Action | None] = mapped_column(StrEnumType(Action, 20))
    predicted_category: Mapped[str | None] = mapped_column(String(64))
    predicted_confidence: Mapped[float | None] = mapped_column(Float)
    confirmed_category: Mapped[str | None] = mapped_column(String(64))
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_inbound_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # e.g. "no action needed" (automatic mail)
    resolution: Mapped[str | None] = mapped_column(String(64))
    # an exam happening now
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    urgent_reason: Mapped[str | None] = mapped_column(String(300))
    centre_replied_at: Mapped[datetime | None]  # the centre's latest follow-up (not automatic mail)
    # the latest change by staff (person or API token)
    last_staff_action_at: Mapped[datetime | None]
    urgent_notified_at: Mapped[datetime | None]
    reply_notified_at: Mapped[datetime | None]  # the centre reply the assignee was last told of
    overdue_notified_due: Mapped[datetime | None]  # the due time whose passing was last notified
    # one cause, many centres: the incident this ticket is part of (answered and resolved together)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    # a duplicate merged away: the ticket that now holds its thread
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    # the centre said the automatic answer did not help: top of its queue until staff answer
    answer_rejected_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(64))  # came in on (None: the default)
    reply_from: Mapped[str | None] = mapped_column(String(254))  # the address the centre wrote to

    queue: Mapped[Queue | None] = relationship()
    incident: Mapped[Incident | None] = relationship(foreign_keys=[incident_id])
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    confirmed_by: Mapped[User | None] = relationship(foreign_keys=[confirmed_by_id])
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", cascade="all, delete-orphan"
    )

    @property
    def reference(self) -> str:
        """The public reference quoted to centres, e.g. IMI-000123."""
        return format_reference(self.id)

    @property
    def centre_replied(self) -> bool:
        """True when the centre wrote again since staff last acted on an open ticket."""
        if self.centre_replied_at is None or self.status not in OPEN_STATUSES:
            return False
        return (
            self.last_staff_action_at is None or self.centre_replied_at > self.last_staff_action_at
        )


class Incident(Base):
    """One cause behind many centres' tickets (SecureAssess down, say): one reply reaches every joined
    centre, and resolving it resolves them all."""

    __tablename__ = "incidents"
    __table_args__ = (one_of("status", IncidentStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # the category its tickets are confirmed as when it is resolved (None: each keeps its own)
    category: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[IncidentStatus] = mapped_column(
        StrEnumType(IncidentStatus, 16), default=IncidentStatus.OPEN
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]

    tickets: Mapped[list[Ticket]] = relationship(order_by="Ticket.id", viewonly=True)
    created_by: Mapped[User | None] = relationship()


class TicketLink(Base):
    """Two tickets staff linked: related, or one a duplicate of the other. Stored once, lower id first."""

    __tablename__ = "ticket_links"
    __table_args__ = (
        UniqueConstraint("ticket_id", "other_id"),
        Index("ix_ticket_links_other", "other_id"),
        one_of("kind", LinkKind),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    other_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    kind: Mapped[LinkKind] = mapped_column(StrEnumType(LinkKind, 16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def format_reference(ticket_id: int) -> str:
    """Format a ticket id as its public reference."""
    return f"{REFERENCE_PREFIX}{ticket_id:06d}"


MAX_KEY = 2**31 - 1  # the largest id an Integer key holds (PostgreSQL int4)


def parse_reference(text: str) -> int | None:
    """Find the first IMI-000123 style reference in text and return its ticket id.

    A number no ticket id can be (zero, or past MAX_KEY) is no reference: it is ignored.
    """
    for match in _REFERENCE_RE.finditer(text or ""):
        digits = match.group(1).lstrip("0")
        if digits and len(digits) <= 10 and int(digits) <= MAX_KEY:
            return int(digits)
    return None


class Message(Base):
    """An inbound or outbound email on a ticket, with its raw source kept."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_ticket_created", "ticket_id", "created_at"),
        one_of("direction", MessageDirection),
        one_of("kind", MessageKind),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    direction: Mapped[MessageDirection] = mapped_column(StrEnumType(MessageDirection, 10))
    kind: Mapped[MessageKind] = mapped_column(
        StrEnumType(MessageKind, 20), default=MessageKind.EMAIL
    )
    # not unique: another email may reuse a Message-ID (broken mailers, ticket systems)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str] = mapped_column(String(254), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    clean_text: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    auto_submitted_reason: Mapped[str | None] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", cascade="all, delete-orphan"
    )


class InboundEmail(Base):
    """Raw inbound mail as received, stored and committed before anything else is done with it."""

    __tablename__ = "inbound_emails"
    __table_args__ = (
        Index("ix_inbound_emails_status_received", "status", "received_at"),
        # one row per email: an exact copy is a duplicate, another email reusing its id is not
        UniqueConstraint(
            "message_id", "content_hash", name="uq_inbound_emails_message_id_content_hash"
        ),
        one_of("source", InboundSource),
        one_of("status", InboundStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998))
    content_hash: Mapped[str] = mapped_column(String(64), default="")  # mail/fingerprint.py
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[InboundSource] = mapped_column(StrEnumType(InboundSource, 20))
    status: Mapped[InboundStatus] = mapped_column(
        StrEnumType(InboundStatus, 16), default=InboundStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(64))  # None: the default channel
    next_attempt_at: Mapped[datetime | None]  # after a failed attempt: not claimed before then
    # the token that posted it (the webhook): an inbound-only token sees only its own mail
    api_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL")
    )


class Attachment(Base):
    """A file attached to a message: metadata and bytes (size-capped), never opened here."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # None when over the size cap
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)

    message: Mapped[Message] = relationship(back_populates="attachments")


class AnswerFeedback(Base):
    """A centre's answer to "Did this answer your question?" on one automatic answer (once each)."""

    __tablename__ = "answer_feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # the automatic answer asked about; unique: a second answer is refused
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    solved: Mapped[bool] = mapped_column(
        Boolean
    )  # "Yes, that solved it" or "No, I still need help"
    comment: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(64))  # the category the answer was for
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PublicRateLimit(Base):
    """A fixed-window request counter per client address for public pages (shared by processes)."""

    __tablename__ = "public_rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)


class Classification(Base):
    """What one model version said about one inbound message."""

    __tablename__ = "classifications"
    __table_args__ = (one_of("action", Action),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float, default=0.0)
    action: Mapped[Action] = mapped_column(StrEnumType(Action, 20))
    alternatives: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """An outgoing email waiting for or done with SMTP delivery; written with the ticket change."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        one_of("status", OutboxStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[OutboxStatus] = mapped_column(
        StrEnumType(OutboxStatus, 16), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship()


class ModelVersion(Base):
    """A trained classifier version in the registry; at most one is active."""

    __tablename__ = "model_versions"
    __table_args__ = (one_of("status", ModelStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[ModelStatus] = mapped_column(
        StrEnumType(ModelStatus, 16), default=ModelStatus.CANDIDATE
    )
    data_sha256: Mapped[str] = mapped_column(String(64))
    sklearn_version: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    trained_by: Mapped[str] = mapped_column(String(200), default="")
    promoted_by: Mapped[str | None] = mapped_column(String(200))
    gate_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    gate_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]


class Job(Base):
    """Background work asked for in the web app (e.g. a retrain), run by a worker, with progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        one_of("kind", JobKind),
        one_of("status", JobStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(StrEnumType(JobKind, 32))
    status: Mapped[JobStatus] = mapped_column(StrEnumType(JobStatus, 16), default=JobStatus.QUEUED)
    progress: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # beaten by the worker while the job runs
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # times started


class ImapCheckpoint(Base):
    """The last IMAP UID stored per mailbox and UIDVALIDITY: polling neither skips nor repeats."""

    __tablename__ = "imap_checkpoints"
    __table_args__ = (UniqueConstraint("mailbox", name="uq_imap_checkpoints_mailbox"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookToken(Base):
    """A signed token a mail provider's webhook call carried (Mailgun): each is taken once."""

    __tablename__ = "webhook_tokens"
    __table_args__ = (
        UniqueConstraint("provider", "token", name="uq_webhook_tokens_provider_token"),
        Index("ix_webhook_tokens_seen_at", "seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(200))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Note(Base):
    """An internal note by a member of staff on a ticket; never sent to the centre."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    author: Mapped[User | None] = relationship()


class TicketPresence(Base):
    """A member of staff with a ticket open (and when they last typed a reply), refreshed while the
    page is open; rows older than a minute mean nobody. Kept in the database so every web process
    sees every viewer."""

    __tablename__ = "ticket_presence"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    typing_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class Macro(Base):
    """A saved answer staff start a reply from; seeded per category, edited by admins."""

    __tablename__ = "macros"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # offered first on tickets of it
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    body: Mapped[str] = mapped_column(Text)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """Who changed what and when: staff actions, automatic decisions, model promotions."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_ticket_created", "ticket_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "user:<email>", "system", "model:<version>", "token:<name>"
    actor: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OAuthToken(Base):
    """A cached OAuth 2.0 access token, shared by every process; the value is encrypted."""

    __tablename__ = "oauth_tokens"

    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    token: Mapped[str] = mapped_column(Text, default="")  # Fernet-encrypted with SECRET_KEY
    expires_at: Mapped[datetime | None]
    refreshed_at: Mapped[datetime | None]


class MailChannel(Base):
    """One mail channel's health as last seen: its successes, failures and token expiry."""

    __tablename__ = "mail_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]  # the first failure after the last success
    alerted_at: Mapped[datetime | None]  # admins last told it is failing
    token_expires_at: Mapped[datetime | None]
