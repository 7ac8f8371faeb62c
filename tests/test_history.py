"""Every kind of audit event reads as its own sentence (test_urgency checks a few, on tickets)."""

from __future__ import annotations

from typing import Any

import pytest

from triage.helpdesk.history import describe
from triage.orm import AuditEvent

JO, CENTRE = "user:jo@imi.test", "centre:jo@college.example"


@pytest.mark.parametrize(
    ("actor", "action", "details", "sentence"),
    [
        (
            "model:v3",
            "ticket.created",
            {"confidence": None, "queue": "triage"},
            "No model was available, so the ticket went to the triage queue for a person to sort.",
        ),
        (
            "model:v3",
            "ticket.created",
            {
                "confidence": 0.5,
                "category": "exam_frozen",
                "action": "route",
                "queue": "technical",
                "reply_suppressed": "hourly cap",
            },
            "Model v3 chose Exam has frozen (50%) and routed it to staff (queue technical); "
            "no automatic mail: hourly cap.",
        ),
        (
            "model:v3",
            "ticket.created",
            {"confidence": 0.61, "category": "no_such_slug", "action": "none", "queue": "triage"},
            "Model v3 chose no_such_slug (61%) and held it for staff (no automatic reply) "
            "(queue triage).",
        ),
        (
            "user:al@imi.test",
            "ticket.assigned",
            {"assignee": None, "previous": "jo@imi.test"},
            "al@imi.test unassigned it from jo@imi.test.",
        ),
        ("user:al@imi.test", "ticket.assigned", {"assignee": None}, "al@imi.test unassigned it."),
        (
            "user:al@imi.test",
            "ticket.assigned",
            {"assignee": "jo@imi.test"},
            "al@imi.test assigned it to jo@imi.test.",
        ),
        # "took it" only when the raw actor is that user, not a bare name that reads the same
        (
            "jo@imi.test",
            "ticket.assigned",
            {"assignee": "jo@imi.test"},
            "jo@imi.test assigned it to jo@imi.test.",
        ),
        (
            JO,
            "ticket.category_confirmed",
            {"category": "extra_time", "correction": True},
            "jo@imi.test confirmed the category How can the candidate be given extra time "
            "(correcting the model).",
        ),
        (
            JO,
            "ticket.category_confirmed",
            {"category": None},
            "jo@imi.test confirmed the category none.",
        ),
        (
            JO,
            "ticket.moved",
            {"previous": None, "queue": "technical"},
            "jo@imi.test moved it from no queue to technical.",
        ),
        (JO, "ticket.note_added", {}, "jo@imi.test added an internal note."),
        (JO, "ticket.replied", None, "jo@imi.test replied to the centre."),
        (
            "system",
            "ticket.resolved",
            {"resolution": "no_action_needed", "reason": "read receipt (MDN)"},
            "The system resolved it as no_action_needed: automatic mail (read receipt (MDN)).",
        ),
        (
            JO,
            "ticket.resolved",
            {"category": "extra_time"},
            "jo@imi.test resolved it as How can the candidate be given extra time.",
        ),
        (
            "system",
            "recipient.reply_to_ignored",
            {
                "answer_to": "jo@college.example",
                "reply_to": "x@elsewhere.example",
                "reason": "another organisation",
            },
            "Answers go to jo@college.example, not to the Reply-To x@elsewhere.example: "
            "another organisation.",
        ),
        (
            "system",
            "recipient.flagged",
            {"reason": "From header held a line break"},
            "No automatic answer, the sender's address needs a look: "
            "From header held a line break.",
        ),
        (
            CENTRE,
            "ticket.reopened",
            {"queue": "triage"},
            "The centre (jo@college.example) reopened it in the triage queue.",
        ),
        (JO, "ticket.reopened", {}, "jo@imi.test reopened it."),
        (CENTRE, "ticket.centre_replied", {}, "The centre (jo@college.example) replied."),
        (
            JO,
            "ticket.urgency_changed",
            {"urgent": True, "reason": "exam today"},
            "jo@imi.test marked it urgent: exam today.",
        ),
        (
            "system",
            "message.automatic",
            {"reason": "Auto-Submitted: auto-replied"},
            "Automatic mail arrived on the thread and was kept without an answer "
            "(Auto-Submitted: auto-replied).",
        ),
        (
            "system",
            "notification.sent",
            {"what": "New URGENT ticket"},
            "Staff were notified by email: new urgent ticket.",
        ),
        # an action without its own sentence: its name and the details that are not empty
        (
            "somebody",
            "model.retrained",
            {"version": "v4", "n_train": 1200, "notes": "", "gate_passed": False},
            "somebody: model retrained (version v4, n train 1200, gate passed False).",
        ),
        ("token:gw", "ticket.exported", {}, "API token gw: exported."),
    ],
)
def test_each_action_reads_as_a_sentence(
    actor: str, action: str, details: dict[str, Any] | None, sentence: str
) -> None:
    assert describe(AuditEvent(actor=actor, action=action, details=details)) == sentence
