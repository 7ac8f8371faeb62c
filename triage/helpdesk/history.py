"""A ticket's audit trail as sentences a person reads.

For example: "Model v3 chose Exam has frozen (98 %) and auto-replied."
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triage import catalogue
from triage.orm import AuditEvent
from triage.states import Action, AuditAction

_ACTIONS: dict[str, str] = {
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


def who(actor: str) -> str:
    """A readable name for an audit actor ("user:jo@x" -> "jo@x", "model:v3" -> "Model v3")."""
    kind, _, name = actor.partition(":")
    return {
        "user": name,
        "model": f"Model {name}",
        "token": f"API token {name}",
        "centre": f"The centre ({name})",
        "system": "The system",
    }.get(kind, actor)


def describe(event: AuditEvent) -> str:
    """One sentence saying what happened (the actor included)."""
    details: dict[str, Any] = event.details or {}
    sentence = _SENTENCES.get(event.action)
    if sentence is not None:
        return sentence(who(event.actor), details, event.actor)
    readable = event.action.replace("ticket.", "").replace("_", " ").replace(".", " ")
    extra = ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in details.items() if v not in (None, "", [], {})
    )
    return f"{who(event.actor)}: {readable}" + (f" ({extra})" if extra else "") + "."


def _created(actor: str, d: dict[str, Any], _actor_label: str) -> str:
    if d.get("confidence") is None:
        return (
            f"No model was available, so the ticket went to the {d.get('queue')} queue for a "
            "person to sort."
        )
    action = _ACTIONS.get(str(d.get("action")), d.get("action"))
    sentence = f"{actor} chose {_title(d.get('category'))} ({d['confidence']:.0%}) and {action}"
    if d.get("action") != Action.AUTO_REPLY:
        sentence += f" (queue {d.get('queue')})"
    if d.get("reply_suppressed"):
        sentence += f"; no automatic mail: {d['reply_suppressed']}"
    return sentence + "."


def _assigned(actor: str, d: dict[str, Any], actor_label: str) -> str:
    if d.get("assignee") is None:
        return f"{actor} unassigned it" + (f" from {d['previous']}." if d.get("previous") else ".")
    if actor_label == f"user:{d.get('assignee')}":
        return f"{actor} took it."
    return f"{actor} assigned it to {d['assignee']}."


def _resolved(actor: str, d: dict[str, Any], _actor_label: str) -> str:
    if d.get("resolution"):
        return f"{actor} resolved it as {d['resolution']}: automatic mail ({d.get('reason')})."
    return f"{actor} resolved it as {_title(d.get('category'))}."


def _reopened(actor: str, d: dict[str, Any], _actor_label: str) -> str:
    queue = f" in the {d['queue']} queue" if d.get("queue") else ""
    return f"{actor} reopened it{queue}."


_Sentence = Callable[[str, dict[str, Any], str], str]  # (readable actor, details, actor label)
_SENTENCES: dict[str, _Sentence] = {
    AuditAction.TICKET_CREATED: _created,
    AuditAction.TICKET_ASSIGNED: _assigned,
    AuditAction.TICKET_CATEGORY_CONFIRMED: lambda actor, d, _: (
        f"{actor} confirmed the category {_title(d.get('category'))}"
        + (" (correcting the model)." if d.get("correction") else ".")
    ),
    AuditAction.TICKET_MOVED: lambda actor, d, _: (
        f"{actor} moved it from {d.get('previous') or 'no queue'} to {d.get('queue')}."
    ),
    AuditAction.TICKET_NOTE_ADDED: lambda actor, _d, _: f"{actor} added an internal note.",
    AuditAction.TICKET_REPLIED: lambda actor, _d, _: f"{actor} replied to the centre.",
    AuditAction.TICKET_RESOLVED: _resolved,
    AuditAction.RECIPIENT_REPLY_TO_IGNORED: lambda _a, d, _: (
        f"Answers go to {d.get('answer_to')}, not to the Reply-To {d.get('reply_to')}: "
        f"{d.get('reason')}."
    ),
    AuditAction.RECIPIENT_FLAGGED: lambda _a, d, _: (
        f"No automatic answer, the sender's address needs a look: {d.get('reason')}."
    ),
    AuditAction.TICKET_REOPENED: _reopened,
    AuditAction.TICKET_CENTRE_REPLIED: lambda actor, _d, _: f"{actor} replied.",
    AuditAction.TICKET_URGENCY_CHANGED: lambda actor, d, _: (
        f"{actor} marked it {'urgent' if d.get('urgent') else 'not urgent'}: {d.get('reason')}."
    ),
    AuditAction.MESSAGE_AUTOMATIC: lambda _a, d, _: (
        f"Automatic mail arrived on the thread and was kept without an answer ({d.get('reason')})."
    ),
    AuditAction.NOTIFICATION_SENT: lambda _a, d, _: (
        f"Staff were notified by email: {str(d.get('what', '')).lower()}."
    ),
}
