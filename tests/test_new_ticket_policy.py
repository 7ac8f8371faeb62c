"""The new-ticket decision as a pure function: each circumstance and what it does to the plan."""

from __future__ import annotations

import dataclasses

import pytest

from triage import catalogue
from triage.classifier.decision import Decision
from triage.mail.inbound.policy import Circumstances, answer_category, plan_new_ticket
from triage.states import Action, MessageKind

ROUTING = {"exam_frozen": "secureassess", "candidate_absent": "centre-support"}


def decision(category: str, action: Action) -> Decision:
    """A model decision for one category."""
    return Decision(category, 0.97, 0.5, action, ROUTING.get(category, "triage"), [])


def facts(model: Decision | None, **changes: object) -> Circumstances:
    """A calm email about yesterday's exam (never urgent), with the changes given."""
    calm = Circumstances(model, None, None, None, "Question", "How did it go yesterday?")
    return dataclasses.replace(calm, **changes)  # type: ignore[arg-type]


def test_a_confident_self_serve_email_is_answered_in_its_categorys_queue() -> None:
    plan = plan_new_ticket(facts(decision("exam_frozen", Action.AUTO_REPLY)), ROUTING)
    assert (plan.category, plan.action, plan.queue) == (
        "exam_frozen",
        Action.AUTO_REPLY,
        "secureassess",
    )
    assert (plan.reply, plan.suppressed, plan.status) == (
        MessageKind.AUTO_REPLY,
        None,
        "auto_replied",
    )
    assert plan.answering and plan.recorded_action == Action.AUTO_REPLY


def test_a_staff_only_category_is_routed_with_an_acknowledgement() -> None:
    plan = plan_new_ticket(facts(decision("candidate_absent", Action.ROUTE)), ROUTING)
    assert (plan.action, plan.queue, plan.reply, plan.status) == (
        Action.ROUTE,
        "centre-support",
        MessageKind.ACK,
        "open",
    )


@pytest.mark.parametrize(
    "model", [None, decision("other", Action.TRIAGE), decision("exam_frozen", Action.TRIAGE)]
)
def test_unsure_or_no_model_goes_to_triage_with_an_acknowledgement(model: Decision | None) -> None:
    plan = plan_new_ticket(facts(model), ROUTING)
    assert (plan.queue, plan.action, plan.reply) == (catalogue.TRIAGE_QUEUE, Action.TRIAGE, "ack")
    assert plan.category == (model.category if model else catalogue.OTHER)


@pytest.mark.parametrize(
    ("category", "instead"), [("exam_frozen", Action.ROUTE), ("cannot_unlock_exam", Action.TRIAGE)]
)
def test_a_capped_answer_goes_to_a_person_instead(category: str, instead: Action) -> None:
    limit = "more than 10 automatic replies to jo@college.example in an hour"
    plan = plan_new_ticket(
        facts(decision(category, Action.AUTO_REPLY), rate_limited=limit), ROUTING
    )
    assert (plan.action, plan.reply, plan.suppressed) == (instead, None, limit)
    assert plan.recorded_action == "none" and plan.status == "open" and not plan.answering
    assert plan.queue == ROUTING.get(category, catalogue.TRIAGE_QUEUE)


def test_mail_held_for_a_person_goes_to_triage_unanswered() -> None:
    held = "the From header could only be read leniently"
    plan = plan_new_ticket(facts(decision("exam_frozen", Action.AUTO_REPLY), held=held), ROUTING)
    assert (plan.queue, plan.reply, plan.suppressed, plan.status) == ("triage", None, held, "open")
    assert not plan.automatic


def test_automatic_mail_is_resolved_in_triage_never_urgent_never_answered() -> None:
    urgent_words = {"subject": "URGENT exam frozen now", "clean_text": "candidates waiting now"}
    why = "Auto-Submitted: auto-replied"
    plan = plan_new_ticket(
        facts(decision("exam_frozen", Action.AUTO_REPLY), automatic=why, **urgent_words), ROUTING
    )
    assert (plan.queue, plan.reply, plan.suppressed, plan.status) == (
        "triage",
        None,
        why,
        "resolved",
    )
    assert plan.automatic and not plan.urgent and plan.urgent_reason is None


def test_an_urgent_answered_ticket_stays_open_for_staff() -> None:
    live = {"subject": "Exam frozen", "clean_text": "The candidate is in the room now, exam frozen"}
    plan = plan_new_ticket(facts(decision("exam_frozen", Action.AUTO_REPLY), **live), ROUTING)
    assert plan.urgent and plan.urgent_reason
    assert plan.answering and plan.status == "open"


def test_only_an_answer_counts_towards_the_same_answer_cap() -> None:
    assert answer_category(decision("exam_frozen", Action.AUTO_REPLY)) == "exam_frozen"
    assert answer_category(decision("candidate_absent", Action.ROUTE)) is None
    assert answer_category(None) is None
