"""A ticket's audit trail as sentences a person reads.

For example "Model v3 chose Exam has frozen (98 %) and auto-replied".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from triage import catalogue
from triage.orm import AuditEvent
from triage.states import Action, AuditAction

_ACTIONS: dict[object, str] = {
    Action.AUTO_REPLY: "auto-replied",
    Action.ROUTE: "routed it to staff",
    Action.TRIAGE: "sent it to triage",
    Action.NONE: "held it for staff (no automatic reply)",
}


def _title(slug: object) -> str:
    return (
        catalogue.BY_SLUG[slug].title
        if isinstance(slug, str) and slug in catalogue.BY_SLUG
        else str(slug or "none")
    )


def who(actor: str, names: Mapping[str, str] | None = None) -> str:
    """A readable name for an audit actor ("user:jo@x" -> "Jo Bloggs" when `names` knows jo@x, else
    "jo@x"; "model:v3" -> "Model v3")."""
    kind, _, name = actor.partition(":")
    return {
        "user": (names or {}).get(name, name),
        "model": f"Model {name}",
        "token": f"API token {name}",
        "centre": f"The centre ({name})",
        "system": "The system",
    }.get(kind, actor)


class _Entry(NamedTuple):
    """An audit event as its sentence reads it: who (readable), the details and the raw actor."""

    who: str
    details: dict[str, Any]
    actor: str
    names: Mapping[str, str]

    def person(self, email: object) -> str:
        """A member of staff named in the details, by name when known."""
        return self.names.get(str(email), str(email))


def _created(e: _Entry) -> str:
    """The model's choice and what it did, or the queue a ticket went to without a model."""
    d = e.details
    if d.get("confidence") is None:
        return (
            f"No model was available, so the ticket went to the {d.get('queue')} queue "
            "for a person to sort."
        )
    action = d.get("action")
    sentence = (
        f"{e.who} chose {_title(d.get('category'))} ({d['confidence']:.0%}) "
        f"and {_ACTIONS.get(action, action)}"
    )
    if action != Action.AUTO_REPLY:
        sentence += f" (queue {d.get('queue')})"
    if d.get("reply_suppressed"):
        sentence += f"; no automatic mail: {d['reply_suppressed']}"
    return sentence + "."


def _assigned(e: _Entry) -> str:
    """Took it, assigned it to someone, or unassigned it."""
    d = e.details
    if d.get("assignee") is None:
        previous = f" from {e.person(d['previous'])}." if d.get("previous") else "."
        return f"{e.who} unassigned it" + previous
    if e.actor == f"user:{d.get('assignee')}":
        return f"{e.who} took it."
    return f"{e.who} assigned it to {e.person(d['assignee'])}."


def _category_confirmed(e: _Entry) -> str:
    """A person confirmed (or corrected) the category."""
    correction = " (correcting the model)" if e.details.get("correction") else ""
    return f"{e.who} confirmed the category {_title(e.details.get('category'))}{correction}."


def _resolved(e: _Entry) -> str:
    """Resolved as a category, or as automatic mail with the reason."""
    d = e.details
    if d.get("resolution"):
        return f"{e.who} resolved it as {d['resolution']}: automatic mail ({d.get('reason')})."
    return f"{e.who} resolved it as {_title(d.get('category'))}."


def _reply_to_ignored(e: _Entry) -> str:
    """Answers go to the sender rather than the Reply-To address."""
    d = e.details
    return (
        f"Answers go to {d.get('answer_to')}, not to the Reply-To {d.get('reply_to')}: "
        f"{d.get('reason')}."
    )


def _reopened(e: _Entry) -> str:
    """Reopened, in a queue when one is named."""
    queue = f" in the {e.details['queue']} queue" if e.details.get("queue") else ""
    return f"{e.who} reopened it{queue}."


def _answer_rejected(e: _Entry) -> str:
    """The centre said the automatic answer did not help, with its comment."""
    comment = e.details.get("comment")
    queue = f" in the {e.details['queue']} queue" if e.details.get("reopened") else ""
    said = f': "{comment}"' if comment else " (no comment)"
    return f"{e.who} said the automatic answer did not help{said}; open for staff{queue}."


def _urgency_changed(e: _Entry) -> str:
    """Marked urgent or not urgent, with the reason."""
    state = "urgent" if e.details.get("urgent") else "not urgent"
    return f"{e.who} marked it {state}: {e.details.get('reason')}."


def _automatic_mail(e: _Entry) -> str:
    """Automatic mail kept on the thread without an answer."""
    return (
        "Automatic mail arrived on the thread and was kept without an answer "
        f"({e.details.get('reason')})."
    )


def _notified(e: _Entry) -> str:
    """Who was alerted by email, and which addresses were skipped as invalid."""
    d = e.details
    what = str(d.get("what", "")).lower()
    alerted = d.get("alerted")
    sentence = (
        f"Alert ({what}) emailed to {', '.join(map(str, alerted))}"
        if alerted
        else f"Staff were notified by email: {what}"
    )
    if d.get("skipped"):
        sentence += f"; not sent to {', '.join(map(str, d['skipped']))} (not a valid address)"
    return sentence + "."


def _other(action: str, e: _Entry) -> str:
    """Any other action: its name made readable, and the details that are not empty."""
    readable = action.replace("ticket.", "").replace("_", " ").replace(".", " ")
    extra = ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in e.details.items() if v not in (None, "", [], {})
    )
    return f"{e.who}: {readable}" + (f" ({extra})" if extra else "") + "."


_SENTENCES: dict[str, Callable[[_Entry], str]] = {
    AuditAction.TICKET_CREATED: _created,
    AuditAction.TICKET_ASSIGNED: _assigned,
    AuditAction.TICKET_CATEGORY_CONFIRMED: _category_confirmed,
    AuditAction.TICKET_MOVED: lambda e: (
        f"{e.who} moved it from {e.details.get('previous') or 'no queue'} "
        f"to {e.details.get('queue')}."
    ),
    AuditAction.TICKET_NOTE_ADDED: lambda e: f"{e.who} added an internal note.",
    AuditAction.TICKET_REPLIED: lambda e: f"{e.who} replied to the centre.",
    AuditAction.TICKET_RESOLVED: _resolved,
    AuditAction.RECIPIENT_REPLY_TO_IGNORED: _reply_to_ignored,
    AuditAction.RECIPIENT_FLAGGED: lambda e: (
        f"No automatic answer, the sender's address needs a look: {e.details.get('reason')}."
    ),
    AuditAction.THREAD_REFUSED: lambda e: (
        f"This email answers or names {e.details.get('ticket')}, but its sender takes no part in "
        "that ticket, so it opened this one instead (no automatic answer)."
    ),
    AuditAction.TICKET_REOPENED: _reopened,
    AuditAction.TICKET_CENTRE_REPLIED: lambda e: f"{e.who} replied.",
    AuditAction.TICKET_URGENCY_CHANGED: _urgency_changed,
    AuditAction.TICKET_ANSWER_CONFIRMED: lambda e: (
        f"{e.who} said the automatic answer solved it; resolved on the centre's word."
    ),
    AuditAction.TICKET_ANSWER_REJECTED: _answer_rejected,
    AuditAction.MESSAGE_AUTOMATIC: _automatic_mail,
    AuditAction.TICKET_LINKED: lambda e: (
        f"{e.who} linked it to {e.details.get('other')} ({e.details.get('kind')})."
    ),
    AuditAction.TICKET_UNLINKED: lambda e: f"{e.who} unlinked it from {e.details.get('other')}.",
    AuditAction.TICKET_MERGED: lambda e: (
        f"{e.who} merged it into {e.details.get('into')}; its emails and notes are there now."
    ),
    AuditAction.TICKET_MERGED_IN: lambda e: (
        f"{e.who} merged {e.details.get('merged')} into it (its emails and notes are in this thread)."
    ),
    AuditAction.TICKET_JOINED_INCIDENT: lambda e: (
        f"{e.who} added it to incident {e.details.get('incident')}: {e.details.get('title')}."
    ),
    AuditAction.TICKET_LEFT_INCIDENT: lambda e: (
        f"{e.who} took it out of incident {e.details.get('incident')}."
    ),
    AuditAction.TICKET_RESOLVE_UNDONE: lambda e: (
        f"{e.who} undid the resolve: {str(e.details.get('status', 'open')).replace('_', ' ')} again."
    ),
    AuditAction.NOTIFICATION_SENT: _notified,
}


def describe(event: AuditEvent, names: Mapping[str, str] | None = None) -> str:
    """One sentence saying what happened (the actor included); `names` maps staff email addresses
    to the names shown."""
    names = names or {}
    entry = _Entry(who(event.actor, names), event.details or {}, event.actor, names)
    sentence = _SENTENCES.get(event.action)
    return sentence(entry) if sentence is not None else _other(event.action, entry)
