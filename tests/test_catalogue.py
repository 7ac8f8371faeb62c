"""The catalogue holds exactly the 18 slugs, what is known about each, and the starting queues."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import catalogue
from triage.mail import compose
from triage.orm import Queue, RoutingRule

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT / "docs" / "centre-enquiries-faq.txt"

EXPECTED = [
    "exam_access_secureclient",
    "cannot_unlock_exam",
    "exam_locked_after_keycode",
    "unlock_with_pin",
    "exam_frozen",
    "candidate_not_on_schedule_list",
    "qualification_not_showing",
    "no_exam_for_qualification",
    "how_to_schedule_exam",
    "extra_time",
    "exam_not_in_invigilate",
    "results_release_dates",
    "obtain_results",
    "paper_based_exams",
    "errors_within_exam",
    "candidate_absent",
    "reschedule_missed_exam",
    "other",
]


def test_exactly_the_eighteen_slugs_in_faq_order() -> None:
    assert list(catalogue.SLUGS) == EXPECTED
    assert [c.number for c in catalogue.CATEGORIES[:17]] == list(range(1, 18))


def test_self_serve_and_staff_only_split() -> None:
    assert {catalogue.BY_SLUG[s].number for s in catalogue.SELF_SERVE_SLUGS} == {
        1,
        2,
        3,
        4,
        5,
        6,
        9,
        10,
        11,
        12,
        13,
        14,
        16,
    }
    assert {catalogue.BY_SLUG[s].number for s in catalogue.STAFF_ONLY_SLUGS} == {7, 8, 15, 17}


def test_answers_that_may_not_work_invite_a_reply() -> None:
    """The FAQ's answers 5 and 6 end "if this does not work, contact IMI Awards"."""
    inviting = {c.slug for c in catalogue.CATEGORIES if c.invites_reply}
    assert inviting == {"exam_frozen", "candidate_not_on_schedule_list"}
    for category in catalogue.CATEGORIES:
        if category.self_serve:
            text = compose.auto_reply_text(category, "IMI-000001", "Sam")
            assert ("If this does not work, just reply" in text) == category.invites_reply


def test_confusable_families() -> None:
    assert (
        frozenset({"cannot_unlock_exam", "exam_locked_after_keycode", "unlock_with_pin"}),
        frozenset(
            {
                "candidate_not_on_schedule_list",
                "qualification_not_showing",
                "no_exam_for_qualification",
            }
        ),
        frozenset({"results_release_dates", "obtain_results"}),
        frozenset({"candidate_absent", "reschedule_missed_exam"}),
    ) == catalogue.FAMILIES
    assert catalogue.SIBLINGS["obtain_results"] == {"results_release_dates"}
    assert "extra_time" not in catalogue.SIBLINGS


def test_exactly_the_self_serve_categories_have_an_answer_template() -> None:
    folder = compose.TEMPLATES / catalogue.ANSWERS_FOLDER
    files = {path.relative_to(compose.TEMPLATES).as_posix() for path in folder.iterdir()}
    templates = {c.answer_template for c in catalogue.CATEGORIES}
    families = {f.answer_template for f in catalogue.Family}
    assert files == (templates | families) - {None}
    assert {c.slug for c in catalogue.CATEGORIES if c.answer_template} == catalogue.SELF_SERVE_SLUGS
    with pytest.raises(ValueError, match="no automatic answer"):
        compose.answer_text(catalogue.get("errors_within_exam"))


def test_each_answer_lives_only_in_its_template() -> None:
    """Changing one category's reply is one file: no other file in triage/ repeats its answer."""
    others = [
        path.read_text()
        for path in (ROOT / "triage").rglob("*")
        if path.suffix in {".py", ".txt", ".html"} and path.parent.name != catalogue.ANSWERS_FOLDER
    ]
    for category in catalogue.CATEGORIES:
        if category.self_serve:
            for line in compose.answer_text(category).splitlines():
                if len(line) > 30:
                    assert not any(line in text for text in others), (category.slug, line)


def _faq_answers() -> dict[int, str]:
    """The FAQ's answers by number (the question lines left out)."""
    entries: dict[int, str] = {}
    number = 0
    for line in FAQ.read_text().splitlines():
        match = re.match(r"(\d+)\. ", line)
        if match:
            number = int(match.group(1))
            continue
        if number:
            entries[number] = entries.get(number, "") + " " + line
    return entries


_FACT = re.compile(r"\b\d+%?|\b(?:one|two|three|four|five|six|ten)\b", re.IGNORECASE)
_LIST_NUMBER = re.compile(r"^\d+\. ", re.MULTILINE)
TERMS = (
    "SecureAssess",
    "SecureClient",
    "keycode",
    "Form 45",
    "Web Portal 2",
    "Reasonable Adjustment",
    "Set PIN",
    "Invigilate",
    "Reporting tab",
    "Secure Centre Information",
    "void",
)


def test_answers_say_what_the_faq_says() -> None:
    """Each answer template is the FAQ's answer rewritten: its numbers and terms, none invented."""
    entries = _faq_answers()
    assert len(entries) == 17
    checked = 0
    for category in catalogue.CATEGORIES:
        if category.number is None:
            continue
        if not category.self_serve:
            assert entries[category.number].strip() == "Contact IMI Awards.", category.slug
            continue
        answer = compose.answer_text(category)
        source = re.sub(r"Question \d+", "", entries[category.number])
        if category.number == 3:  # the FAQ sends question 3 to question 4's PIN answer
            source += entries[4]
        facts = {fact.lower() for fact in _FACT.findall(source)}
        assert facts == {fact.lower() for fact in _FACT.findall(_LIST_NUMBER.sub("", answer))}
        checked += len(facts)
        for term in TERMS:
            if term.lower() in source.lower():
                assert term.lower() in answer.lower(), (category.slug, term)
    assert checked >= 10
    joined = " ".join(compose.answer_text(catalogue.get(s)) for s in catalogue.SELF_SERVE_SLUGS)
    for fact in ("48 hours", "25%", "Form 45", "30 days", "four-digit PIN", "Web Portal 2"):
        assert fact in joined, fact


def test_unknown_slug_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown category 'nope'"):
        catalogue.get("nope")


def test_migration_seeds_queues_and_routing_from_the_catalogue(session: Session) -> None:
    assert set(session.scalars(select(Queue.slug))) == set(catalogue.QUEUES)
    routing = {r.category: r.queue.slug for r in session.scalars(select(RoutingRule))}
    assert routing == {c.slug: c.default_queue for c in catalogue.CATEGORIES}
