"""Urgency rules, business-hours due times and readable history: plain functions, no database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from triage import catalogue
from triage.classifier.urgency import assess
from triage.helpdesk import due
from triage.helpdesk.history import describe
from triage.orm import AuditEvent, Queue, Ticket


@pytest.mark.parametrize(
    ("category", "subject", "text"),
    [
        ("exam_frozen", "help", "The candidate's exam has frozen and he is still in the room."),
        (
            "exam_locked_after_keycode",
            "Locked",
            "Exam started at 10:30 and the learner put in the keycode, says locked",
        ),
        ("cannot_unlock_exam", "URGENT", "we cannot unlock the exam for our learner"),
        (
            "exam_not_in_invigilate",
            "exam missing",
            "Candidate sat there waiting, exam not in Invigilate",
        ),
        (
            "exam_access_secureclient",
            "asap please",
            "Where does the candidate go to get into the exam? She is waiting.",
        ),
        (
            "exam_frozen",
            "Frozen screen",
            "this morning the exam froze half way, clock still running",
        ),
        # the model was unsure (or wrong) but the words describe a live exam
        ("other", "Help!!", "Screen has frozen mid-exam, learner is sitting there"),
        (None, "urgent", "candidate locked out of the exam right now"),
    ],
)
def test_live_exams_described_in_the_present_are_urgent(
    category: str | None, subject: str, text: str
) -> None:
    urgent, reason = assess(category, subject, text)
    assert urgent and reason


@pytest.mark.parametrize(
    ("category", "subject", "text"),
    [
        (
            "exam_frozen",
            "Question",
            "Yesterday an exam froze; what should we do if it happens again?",
        ),
        (
            "exam_frozen",
            "For next week",
            "What do we do if an exam freezes? We have exams next week.",
        ),
        ("cannot_unlock_exam", "query", "How does an invigilator unlock an exam in SecureAssess?"),
        (
            "invoice_query",
            "URGENT invoice",
            "Please send the invoice now, our finance team is waiting.",
        ),
        ("other", "Hello", "Can we change our centre contact details?"),
        ("exam_frozen", "", ""),
    ],
)
def test_questions_past_events_and_other_topics_are_not_urgent(
    category: str, subject: str, text: str
) -> None:
    assert assess(category, subject, text) == (False, None)


def test_strong_present_cue_wins_over_another_day() -> None:
    urgent, reason = assess(
        "exam_frozen",
        "frozen",
        "Same as yesterday: the exam has frozen and the candidate is waiting",
    )
    assert urgent and "waiting" in (reason or "")


def test_live_exam_categories_are_the_ones_the_catalogue_marks() -> None:
    """A live-exam category is urgent by its category alone; any other needs live-exam words."""
    assert {
        "exam_frozen",
        "exam_locked_after_keycode",
        "cannot_unlock_exam",
        "exam_not_in_invigilate",
        "exam_access_secureclient",
    } == catalogue.LIVE_EXAM_SLUGS
    for category in catalogue.CATEGORIES:
        urgent, reason = assess(category.slug, "", "The candidate is waiting.")
        assert urgent == category.live_exam, category.slug
        assert not urgent or (reason or "").startswith(category.title), reason


def test_rules_take_linear_time_on_hostile_text() -> None:
    hostile = ("now " * 50_000) + ("a" * 200_000) + (" 1" * 50_000) + ("-" * 100_000)
    started = time.process_time()
    for category in ("exam_frozen", "other"):
        assess(category, hostile[:1000], hostile)
    assert (
        time.process_time() - started < 2.0
    )  # generous: the text is capped before any pattern runs


# --- due times ---------------------------------------------------------------------------------------------


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "minutes", "expected"),
    [
        (_utc(2026, 12, 2, 10, 0), 60, _utc(2026, 12, 2, 11, 0)),  # Wednesday, winter (UK = UTC)
        (
            _utc(2026, 12, 2, 16, 30),
            60,
            _utc(2026, 12, 3, 9, 30),
        ),  # runs past closing into the next morning
        (_utc(2026, 12, 4, 16, 0), 120, _utc(2026, 12, 7, 10, 0)),  # Friday afternoon to Monday
        (_utc(2026, 12, 5, 12, 0), 30, _utc(2026, 12, 7, 9, 30)),  # arriving on Saturday
        (_utc(2026, 12, 2, 6, 0), 30, _utc(2026, 12, 2, 9, 30)),  # before opening
        (
            _utc(2026, 12, 24, 16, 0),
            120,
            _utc(2026, 12, 29, 10, 0),
        ),  # Christmas, Boxing Day substitute on Monday 28th
        (
            _utc(2026, 7, 3, 15, 30),
            60,
            _utc(2026, 7, 6, 8, 30),
        ),  # summer time: 16:30 BST Friday -> 09:30 BST Monday
        (
            _utc(2027, 3, 25, 15, 0),
            180,
            _utc(2027, 3, 30, 9, 0),
        ),  # Good Friday, Easter Monday; clocks go forward
    ],
)
def test_business_minutes_skip_nights_weekends_and_bank_holidays(
    start: datetime, minutes: int, expected: datetime
) -> None:
    assert due.add_business_minutes(start, minutes) == expected


def test_due_at_depends_on_state_urgency_and_first_response() -> None:
    queue = Queue(
        slug="q",
        name="q",
        first_response_minutes=240,
        next_response_minutes=60,
        urgent_response_minutes=15,
    )
    created = _utc(2026, 12, 5, 11, 0)  # a Saturday
    ticket = Ticket(
        centre_email="a@b.example", status="open", created_at=created, urgent=False, queue=queue
    )
    assert due.due_at(ticket) == _utc(2026, 12, 7, 13, 0)  # four business hours from Monday 09:00
    ticket.urgent = True
    assert due.due_at(ticket) == created + timedelta(minutes=15)  # exams run on Saturdays too
    ticket.urgent, ticket.first_response_at = False, _utc(2026, 12, 7, 10, 0)
    ticket.centre_replied_at = _utc(2026, 12, 7, 12, 0)
    assert due.due_at(ticket) == _utc(
        2026, 12, 7, 13, 0
    )  # the next-response target from the centre's reply
    ticket.status = "pending"
    assert due.due_at(ticket) is None  # waiting on the centre
    ticket.status = "resolved"
    assert due.due_at(ticket) is None


def test_target_validation() -> None:
    assert due.validate_minutes(" 30 ", "first") == 30
    for bad in ("0", "-5", "abc", "1e9", str(due.MAX_TARGET_MINUTES + 1), ""):
        with pytest.raises(ValueError, match="minutes"):
            due.validate_minutes(bad, "first")


# --- history as sentences ----------------------------------------------------------------------------------


def test_history_reads_as_sentences() -> None:
    created = AuditEvent(
        actor="model:v20261201",
        action="ticket.created",
        details={
            "category": "exam_frozen",
            "confidence": 0.9795622739641195,
            "action": "auto_reply",
            "queue": "triage",
            "reply_suppressed": None,
        },
    )
    assert describe(created) == "Model v20261201 chose Exam has frozen (98%) and auto-replied."
    assigned = AuditEvent(
        actor="user:jo@imi.test", action="ticket.assigned", details={"assignee": "jo@imi.test"}
    )
    assert describe(assigned) == "jo@imi.test took it."
    moved = AuditEvent(
        actor="token:gateway",
        action="ticket.moved",
        details={"queue": "technical", "previous": "triage"},
    )
    assert describe(moved) == "API token gateway moved it from triage to technical."
    urgent = AuditEvent(
        actor="user:jo@imi.test",
        action="ticket.urgency_changed",
        details={"urgent": False, "reason": "exam is next week"},
    )
    assert describe(urgent) == "jo@imi.test marked it not urgent: exam is next week."
    unknown = AuditEvent(
        actor="system", action="ticket.archived", details={"into": 5, "empty": None}
    )
    assert describe(unknown) == "The system: archived (into 5)."
