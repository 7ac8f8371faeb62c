"""The closed sets of strings the service stores: statuses, actions, sources, kinds, roles.

Each set is a `StrEnum` defined here once. A member equals its string ("open" == TicketStatus.OPEN),
so rows, JSON and templates hold the plain values. The ORM builds each column's CHECK constraint
from these enums (`triage.orm`); the migration that added the constraints lists the values as they
were then, and a test keeps the two in agreement. This module imports nothing from `triage`.
"""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    """Where a ticket stands: waiting on staff, on the centre, answered automatically, or closed."""

    OPEN = "open"  # waiting on staff
    PENDING = "pending"  # staff replied; waiting on the centre
    AUTO_REPLIED = "auto_replied"  # answered from the FAQ with no person involved
    RESOLVED = "resolved"


OPEN_STATUSES = (TicketStatus.OPEN, TicketStatus.PENDING)  # still in a staff queue's count


class Action(StrEnum):
    """What was done with a classified email (a ticket's `action`, a classification's `action`)."""

    AUTO_REPLY = "auto_reply"  # a confident self-serve category: answered from the FAQ
    ROUTE = "route"  # a confident staff-only category: to its queue
    TRIAGE = "triage"  # not confident: to the triage queue for a person to sort
    NONE = "none"  # a ticket whose automatic answer was held back (caps, automatic mail, address)


class InboundStatus(StrEnum):
    """A stored raw email: waiting for a worker, made into a ticket, or not an email at all."""

    PENDING = "pending"
    PROCESSED = "processed"
    REJECTED = "rejected"


class InboundSource(StrEnum):
    """How a raw email reached the service."""

    WEBHOOK = "webhook"
    API = "api"
    IMAP = "imap"
    INGEST = "ingest"


class OutboxStatus(StrEnum):
    """An outgoing email's delivery state."""

    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # claimed by a worker (leased)
    SENT = "sent"
    FAILED = "failed"  # permanently, or after the last attempt


class ModelStatus(StrEnum):
    """A trained model version in the registry; at most one is active."""

    CANDIDATE = "candidate"  # passed the quality gate, not (yet) active
    ACTIVE = "active"
    RETIRED = "retired"  # was active once
    REJECTED = "rejected"  # failed the quality gate


class JobStatus(StrEnum):
    """A background job's progress."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobKind(StrEnum):
    """The kinds of background job the web app can ask a worker for."""

    RETRAIN = "retrain"


class MessageDirection(StrEnum):
    """Whether a message on a ticket came from outside or was written by the service."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(StrEnum):
    """What a message on a ticket is."""

    EMAIL = "email"  # inbound mail from the centre (or automatic mail on the thread)
    BOUNCE = "bounce"  # an inbound delivery report
    AUTO_REPLY = "auto_reply"  # the FAQ answer
    ACK = "ack"  # the acknowledgement that a person will answer
    STAFF_REPLY = "staff_reply"
    NOTIFICATION = "notification"  # mail to staff about the ticket


class Role(StrEnum):
    """A staff login's role."""

    AGENT = "agent"
    ADMIN = "admin"


class LinkKind(StrEnum):
    """How two tickets are linked by staff."""

    RELATED = "related"  # about the same thing; both stay open
    DUPLICATE = "duplicate"  # the same question asked twice


class IncidentStatus(StrEnum):
    """Whether an incident (one cause, many centres' tickets) is still being handled."""

    OPEN = "open"
    RESOLVED = "resolved"


class AuditAction(StrEnum):
    """What an audit event records. Not checked by the database: old events keep their names."""

    TICKET_CREATED = "ticket.created"
    TICKET_ASSIGNED = "ticket.assigned"
    TICKET_CATEGORY_CONFIRMED = "ticket.category_confirmed"
    TICKET_MOVED = "ticket.moved"
    TICKET_NOTE_ADDED = "ticket.note_added"
    TICKET_REPLIED = "ticket.replied"
    TICKET_RESOLVED = "ticket.resolved"
    TICKET_RESOLVE_UNDONE = "ticket.resolve_undone"
    TICKET_REOPENED = "ticket.reopened"
    TICKET_CENTRE_REPLIED = "ticket.centre_replied"
    TICKET_URGENCY_CHANGED = "ticket.urgency_changed"
    TICKET_LINKED = "ticket.linked"
    TICKET_UNLINKED = "ticket.unlinked"
    TICKET_MERGED = "ticket.merged"  # this ticket was merged into another
    TICKET_MERGED_IN = "ticket.merged_in"  # another ticket was merged into this one
    TICKET_JOINED_INCIDENT = "ticket.joined_incident"
    TICKET_LEFT_INCIDENT = "ticket.left_incident"
    INCIDENT_CREATED = "incident.created"
    INCIDENT_REPLIED = "incident.replied"
    INCIDENT_RESOLVED = "incident.resolved"
    TICKET_ANSWER_CONFIRMED = "ticket.answer_confirmed"  # the centre: "Yes, that solved it"
    TICKET_ANSWER_REJECTED = "ticket.answer_rejected"  # the centre: "No, I still need help"
    MESSAGE_AUTOMATIC = "message.automatic"
    RECIPIENT_REPLY_TO_IGNORED = "recipient.reply_to_ignored"
    RECIPIENT_FLAGGED = "recipient.flagged"
    THREAD_REFUSED = "thread.refused"  # answers another ticket's message, from a stranger to it
    NOTIFICATION_SENT = "notification.sent"
    MODEL_TRAINED = "model.trained"
    MODEL_ACTIVATED = "model.activated"
    MODEL_RETRAINED = "model.retrained"
    MACRO_CREATED = "macro.created"
    MACRO_CHANGED = "macro.changed"
    MACRO_DELETED = "macro.deleted"
    LOGIN_OK = "login.ok"
    LOGIN_FAILED = "login.failed"
    USER_CREATED = "user.created"
    USER_RENAMED = "user.renamed"
    USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105 (an event name, not a secret)
    USER_CHANGED = "user.changed"
    USER_SECOND_FACTOR = "user.second_factor"
    TOKEN_CREATED = "token.created"  # noqa: S105 (likewise)
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 (likewise)
    CHANNEL_CHECKED = "channel.checked"
    QUEUE_SAVED = "queue.saved"
    ROUTING_CHANGED = "routing.changed"
    OUTBOX_RETRIED = "outbox.retried"
    INBOUND_RETRIED = "inbound.retried"
