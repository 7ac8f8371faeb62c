"""A ticket's audit trail as sentences a person reads ("Model v3 chose Exam has frozen (98 %) and auto-replied")."""

from __future__ import annotations

from typing import Any

from triage import catalogue
from triage.orm import AuditEvent

_ACTIONS = {
    "auto_reply": "auto-replied",
    "route": "routed it to staff",
    "triage": "sent it to triage",
    "none": "held it for staff (no automatic reply)",
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
    d: dict[str, Any] = event.details or {}
    actor = who(event.actor)
    action = event.action
    if action == "ticket.created":
        if d.get("confidence") is None:
            return f"No model was available, so the ticket went to the {d.get('queue')} queue for a person to sort."
        sentence = f"{actor} chose {_title(d.get('category'))} ({d['confidence']:.0%}) and {_ACTIONS.get(d.get('action'), d.get('action'))}"
        if d.get("action") != "auto_reply":
            sentence += f" (queue {d.get('queue')})"
        if d.get("reply_suppressed"):
            sentence += f"; no automatic mail: {d['reply_suppressed']}"
        return sentence + "."
    if action == "ticket.assigned":
        if d.get("assignee") is None:
            return f"{actor} unassigned it" + (
                f" from {d['previous']}." if d.get("previous") else "."
            )
        if event.actor == f"user:{d.get('assignee')}":
            return f"{actor} took it."
        return f"{actor} assigned it to {d['assignee']}."
    if action == "ticket.category_confirmed":
        correction = " (correcting the model)" if d.get("correction") else ""
        return f"{actor} confirmed the category {_title(d.get('category'))}{correction}."
    if action == "ticket.moved":
        return f"{actor} moved it from {d.get('previous') or 'no queue'} to {d.get('queue')}."
    if action == "ticket.note_added":
        return f"{actor} added an internal note."
    if action == "ticket.replied":
        return f"{actor} replied to the centre."
    if action == "ticket.resolved":
        if d.get("resolution"):
            return f"{actor} resolved it as {d['resolution']}: automatic mail ({d.get('reason')})."
        return f"{actor} resolved it as {_title(d.get('category'))}."
    if action == "recipient.reply_to_ignored":
        return f"Answers go to {d.get('answer_to')}, not to the Reply-To {d.get('reply_to')}: {d.get('reason')}."
    if action == "recipient.flagged":
        return f"No automatic answer, the sender's address needs a look: {d.get('reason')}."
    if action == "ticket.reopened":
        queue = f" in the {d['queue']} queue" if d.get("queue") else ""
        return f"{actor} reopened it{queue}."
    if action == "ticket.centre_replied":
        return f"{actor} replied."
    if action == "ticket.urgency_changed":
        state = "urgent" if d.get("urgent") else "not urgent"
        return f"{actor} marked it {state}: {d.get('reason')}."
    if action == "message.automatic":
        return f"Automatic mail arrived on the thread and was kept without an answer ({d.get('reason')})."
    if action == "notification.sent":
        return f"Staff were notified by email: {str(d.get('what', '')).lower()}."
    readable = action.replace("ticket.", "").replace("_", " ").replace(".", " ")
    extra = ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in d.items() if v not in (None, "", [], {})
    )
    return f"{actor}: {readable}" + (f" ({extra})" if extra else "") + "."
