"""The batch writer: threads each email of a batch onto a ticket or opens a new one, then writes
the batch's new tickets together."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.catalogue import TRIAGE_QUEUE
from triage.classifier.decision import Decision
from triage.config import Settings
from triage.mail import channels
from triage.mail.domains import address_domain
from triage.mail.inbound.caps import ReplyCaps
from triage.mail.inbound.follow_up import add_follow_up
from triage.mail.inbound.new_tickets import (
    FollowingRows,
    NewTicket,
    clean_text,
    message_values,
    ticket_values,
)
from triage.mail.inbound.policy import Circumstances, answer_category, plan_new_ticket
from triage.mail.inbound.rows import insert_tables, number_new
from triage.mail.inbound.threads import ThreadKeys, find_thread, mentioned_ticket
from triage.mail.loops import no_reply_reason
from triage.mail.parse import ParsedEmail
from triage.mail.recipients import Recipient, choose_recipient, dmarc_failure, unanswerable
from triage.orm import Attachment, Message, OutboxItem, Queue, Ticket, format_reference, utcnow
from triage.routing import routing_map


class BatchWriter:
    """One batch's writing, in the caller's open transaction.

    It owns the batch's state: the routing map and queues as read when the batch began, the reply
    caps (counting the replies the batch itself writes), and the new tickets not yet written.
    One rule keeps threads whole: the waiting new tickets are written before any threading lookup
    (`continued_ticket`), so an email can continue a ticket opened earlier in the same batch and
    every history stays in order.
    """

    def __init__(
        self, session: Session, settings: Settings, model_version: str, senders: set[str]
    ) -> None:
        # all read before anything is added, so no query mid-batch flushes the batch early
        self.session = session
        self.settings = settings
        self.model_version = model_version
        self.routing = routing_map(session)
        self.queues = {queue.slug: queue for queue in session.scalars(select(Queue))}
        self.caps = ReplyCaps.load(session, settings, senders)
        self.waiting: list[NewTicket] = []
        self.channels = channels.load(settings)
        self._own_addresses = {settings.support_address.lower(), *self.channels.own_addresses()}

    def handle(
        self, parsed: ParsedEmail, decision: Decision | None, channel: str | None = None
    ) -> Ticket | NewTicket:
        """Add the email to the ticket it continues, or open a new ticket for it (`channel`: the
        one it came in on, None for the default)."""
        reason = no_reply_reason(parsed, self._own_addresses, self.settings.mail_domain)
        ticket = self.continued_ticket(parsed)
        if ticket is None:
            keys = ThreadKeys.of(parsed)
            mentioned = mentioned_ticket(self.session, keys) if keys.present else None
            return self.open_ticket(parsed, decision, reason, channel, mentioned)
        add_follow_up(
            self.session, self.settings, ticket, parsed, reason, self.routing, self.queues
        )
        return ticket

    def continued_ticket(self, parsed: ParsedEmail) -> Ticket | None:
        """The ticket the email continues, if any; the waiting new tickets are written first."""
        keys = ThreadKeys.of(parsed)
        if not keys.present:
            return None
        self.write_new_tickets()
        return find_thread(self.session, parsed, self.settings.secret_key, keys)

    def open_ticket(
        self,
        parsed: ParsedEmail,
        decision: Decision | None,
        automatic_reason: str | None,
        channel: str | None = None,
        mentioned: int | None = None,
    ) -> NewTicket:
        """Decide a new ticket and its message; they wait to be written with the batch's others.

        `mentioned`: a ticket the email answers though its sender takes no part in it (then a
        person looks at it, and its history names that ticket).
        """
        recipient = choose_recipient(parsed)
        domain = address_domain(recipient.address)
        stranger = (
            f"it answers {format_reference(mentioned)}, whose centre is someone else"
            if mentioned
            else None
        )
        facts = Circumstances(
            decision=decision,
            automatic=automatic_reason,
            held=self._held(parsed, recipient) or stranger,
            rate_limited=self.caps.limit_reason(
                recipient.address, domain, answer_category(decision)
            ),
            subject=parsed.subject,
            clean_text=clean_text(parsed),
        )
        plan = plan_new_ticket(facts, self.routing)
        message, attachments = message_values(self.settings, parsed, automatic_reason)
        came_in_on = self.channels.get(channel)
        queue = plan.queue
        if queue == TRIAGE_QUEUE and came_in_on.default_queue in self.queues:
            queue = (
                came_in_on.default_queue
            )  # the channel's own queue for mail the model cannot place
        queue_id = self.queues[queue].id
        ticket = ticket_values(recipient, domain, parsed, decision, plan, queue_id, utcnow())
        ticket["channel"] = came_in_on.name if came_in_on.name != channels.DEFAULT else None
        ticket["reply_from"] = channels.answer_from(came_in_on, parsed.to_addresses)
        if plan.reply is not None:  # counted now: the caps of the batch's next emails include it
            self.caps.note(recipient.address, domain, plan.reply, ticket["predicted_category"])
        new = NewTicket(
            ticket=ticket,
            message=message,
            attachments=attachments,
            parsed=parsed,
            recipient=recipient,
            decision=decision,
            plan=plan,
            automatic_reason=automatic_reason,
            model_version=self.model_version,
            mentioned=mentioned,
        )
        self.waiting.append(new)
        return new

    def _held(self, parsed: ParsedEmail, recipient: Recipient) -> str | None:
        """Why an automatic answer would be unsafe though a person may be waiting, or None."""
        return (
            parsed.address_problem
            or unanswerable(recipient.address)
            or dmarc_failure(parsed, self.settings.trusted_authserv_id)
        )

    def write_new_tickets(self) -> None:
        """Write the waiting new tickets, their messages and attachments, then history and replies.

        One statement per table (COPY on PostgreSQL, an executemany INSERT on SQLite), with no ORM
        objects to build, track and flush, and no ids to read back (`number_new` gives them).
        """
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        tickets = [new.ticket for new in waiting]
        messages = [new.message for new in waiting]
        attachments = [attachment for new in waiting for attachment in new.attachments]
        number_new(self.session, {Ticket: tickets, Message: messages, Attachment: attachments})
        for new in waiting:
            new.message["ticket_id"] = new.id
            for attachment in new.attachments:
                attachment["message_id"] = new.message["id"]
        tables = (Ticket, tickets), (Message, messages), (Attachment, attachments)
        insert_tables(self.session, *tables)
        following = FollowingRows()
        for new in waiting:
            following.add(self.settings, new)
        replies, outbox = following.reply_messages, following.outbox
        number_new(
            self.session, {Message: replies, OutboxItem: outbox}
        )  # SQLite: after those above
        for message, row in zip(replies, outbox, strict=True):
            row["message_id"] = message["id"]
        insert_tables(self.session, (Message, replies), (OutboxItem, outbox))
        following.write_history(self.session)
