"""The decision for a new ticket: a pure function from what is known of an email to what to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from triage import catalogue
from triage.classifier import urgency
from triage.classifier.decision import Decision
from triage.helpdesk import lifecycle
from triage.states import Action, MessageKind, TicketStatus

NO_ACTION_NEEDED = "no action needed"  # the resolution of automatic mail (receipts, bounces, ...)


@dataclass(frozen=True)
class Circumstances:
    """What the decision depends on, gathered from the email, the model and the reply caps."""

    decision: Decision | None  # None when no model is usable
    automatic: str | None  # why a machine wrote the email (then nobody waits for an answer)
    held: str | None  # why an automatic answer would be unsafe (a person still waits)
    rate_limited: str | None  # why the reply caps hold back the answer this email would get
    subject: str
    clean_text: str


@dataclass(frozen=True)
class NewTicketPlan:
    """What to do with an email that starts a ticket."""

    category: str
    action: Action  # the model's action, turned to route or triage when no answer may go
    queue: str  # the slug of the queue the ticket goes to
    reply: MessageKind | None  # the answer or an acknowledgement; None when suppressed
    suppressed: str | None  # why no reply goes out
    automatic: bool
    urgent: bool
    urgent_reason: str | None
    family: catalogue.Family | None = None  # the family whose combined answer or queue was chosen

    @property
    def answering(self) -> bool:
        """Whether the FAQ answer goes out at once."""
        return self.reply == MessageKind.AUTO_REPLY

    @property
    def recorded_action(self) -> Action:
        """The action stored on the ticket: `none` when no reply goes out."""
        return Action.NONE if self.suppressed else self.action

    @property
    def status(self) -> TicketStatus:
        """The new ticket's status, by the lifecycle's rule for new tickets."""
        return lifecycle.new_ticket_status(self.urgent, self.answering, self.automatic)


def answer_category(decision: Decision | None) -> str | None:
    """The category whose answer the email would get, for the reply caps; None if no answer."""
    return decision.category if decision and decision.action == Action.AUTO_REPLY else None


def plan_new_ticket(facts: Circumstances, routing: Mapping[str, str]) -> NewTicketPlan:
    """Decide category, action, queue, reply and urgency of a new ticket."""
    decision = facts.decision
    action = decision.action if decision else Action.TRIAGE
    category = decision.category if decision else catalogue.OTHER
    suppressed = facts.automatic or facts.held or facts.rate_limited
    if suppressed and action == Action.AUTO_REPLY:  # a person looks at it instead
        action = Action.ROUTE if category in routing else Action.TRIAGE
    automatic = facts.automatic is not None
    urgent, urgent_reason = (
        (False, None) if automatic else urgency.assess(category, facts.subject, facts.clean_text)
    )
    return NewTicketPlan(
        category=category,
        action=action,
        queue=_queue(facts, routing, decision),
        reply=None if suppressed else _reply_kind(action),
        suppressed=suppressed,
        automatic=automatic,
        urgent=urgent,
        urgent_reason=urgent_reason,
        family=_family(facts, action),
    )


def _queue(facts: Circumstances, routing: Mapping[str, str], decision: Decision | None) -> str:
    """Automatic mail and mail held for a person go to triage; confident mail to its category's."""
    confident = decision is not None and decision.action in {Action.AUTO_REPLY, Action.ROUTE}
    if facts.automatic is not None or facts.held or not confident:
        return catalogue.TRIAGE_QUEUE
    assert decision is not None  # confident
    return routing.get(decision.queue_category, catalogue.TRIAGE_QUEUE)


def _family(facts: Circumstances, action: Action) -> catalogue.Family | None:
    """The family that decided the ticket's answer or queue, if it still does (None when a rule
    sent the email to triage or held its answer back)."""
    decision = facts.decision
    if decision is None or action != decision.action or facts.automatic or facts.held:
        return None
    return decision.family


def _reply_kind(action: Action) -> MessageKind:
    """The answer when the model is confident of a self-serve category, else an acknowledgement."""
    return MessageKind.AUTO_REPLY if action == Action.AUTO_REPLY else MessageKind.ACK
