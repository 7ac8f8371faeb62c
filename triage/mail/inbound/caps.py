"""Reply caps: how many automatic replies a sender or a domain had lately, read once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, literal_column, or_, select, text, true
from sqlalchemy.orm import Session

from triage.config import Settings
from triage.mail.domains import address_domain
from triage.orm import Message, Ticket, utcnow
from triage.states import MessageDirection, MessageKind

# the outbound kinds that count towards the caps
AUTOMATIC_KINDS = (MessageKind.AUTO_REPLY, MessageKind.ACK)
# for one statement, until _SEQSCAN or the transaction's end
_NO_SEQSCAN = text("SELECT set_config('enable_seqscan', 'off', true)")
_SEQSCAN = text("SELECT set_config('enable_seqscan', 'on', true)")


class SentAutomatically(NamedTuple):
    """One automatic reply sent lately: to whom, which kind, answering which category, when."""

    address: str
    domain: str
    kind: str
    category: str | None
    sent: datetime  # naive UTC


class ReplyCaps:
    """The automatic replies of the last 24 hours to a batch's senders and their domains.

    Read once before the batch writes anything; each reply the batch writes is noted, so the caps
    hold inside the batch as well.
    """

    def __init__(self, settings: Settings, sent: list[SentAutomatically]) -> None:
        self.settings = settings
        self.sent = sent

    @classmethod
    def load(cls, session: Session, settings: Settings, addresses: set[str]) -> ReplyCaps:
        """Read the recent automatic replies to these senders or their domains, in one query."""
        domains = {address_domain(address) for address in addresses} - {""}
        return cls(settings, recent_automatic(session, addresses, domains))

    def note(self, address: str, domain: str, kind: str, category: str | None) -> None:
        """Count a reply the batch has just written towards the caps of the emails after it."""
        self.sent.append(SentAutomatically(address, domain, kind, category, _naive_utc(utcnow())))

    def limit_reason(self, address: str, domain: str, category: str | None) -> str | None:
        """Why automatic mail to this sender must wait, or None.

        One auto-reply per sender and category a day, and caps per sender and per domain an hour.
        """
        cap, domain_cap = self.settings.sender_hourly_cap, self.settings.domain_hourly_cap
        hourly, same_today, domain_hourly = self.counts(address, domain, category)
        if hourly >= cap:
            return f"more than {cap} automatic replies to {address} in an hour"
        if same_today:
            return f"{address} already had the {category} answer in the last 24 hours"
        if domain_cap and domain and domain_hourly >= domain_cap:
            return f"more than {domain_cap} automatic replies to {domain} addresses in an hour"
        return None

    def counts(self, address: str, domain: str, category: str | None) -> tuple[int, int, int]:
        """(replies to the sender in the last hour, the same answer to the sender today, replies to
        the sender or the domain in the last hour)."""
        hour_ago = _naive_utc(utcnow() - timedelta(hours=1))
        hourly = same_today = domain_hourly = 0
        for sent in self.sent:
            is_sender = sent.address == address
            if not is_sender and not (domain and sent.domain == domain):
                continue
            recent = sent.sent >= hour_ago
            hourly += is_sender and recent
            same_answer = sent.kind == MessageKind.AUTO_REPLY and sent.category == category
            same_today += bool(category) and is_sender and same_answer
            domain_hourly += recent
        return hourly, same_today, domain_hourly


def recent_automatic(
    session: Session, addresses: set[str], domains: set[str]
) -> list[SentAutomatically]:
    """The last 24 hours' automatic replies to these senders or their domains, in one query."""
    if not addresses:
        return []
    since = utcnow() - timedelta(hours=24)
    senders = or_(Ticket.centre_email.in_(addresses), Ticket.centre_domain.in_(domains))
    automatic = and_(
        Message.direction == MessageDirection.OUTBOUND,
        Message.kind.in_(AUTOMATIC_KINDS),
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
        SentAutomatically(email, domain or "", kind, category, _naive_utc(sent))
        for email, domain, kind, category, sent in rows
    ]


def _by_sender_tickets_first(
    session: Session, senders: ColumnElement[bool], automatic: ColumnElement[bool]
) -> Sequence[Any]:
    """PostgreSQL: the senders' tickets by their indexes, then each one's recent messages.

    As a plain join, the generic plan PostgreSQL caches for a repeated statement, when made before
    the tables had statistics (a new database's first burst), read every message (35 ms a batch at
    10,000 messages) or every ticket. The lateral subquery (fenced by OFFSET 0, so it is not folded
    back into a join) fixes the order, and for this statement no sequential scan is allowed.
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


def _naive_utc(moment: datetime) -> datetime:
    """A time as naive UTC (SQLite gives naive times back, PostgreSQL aware ones)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
