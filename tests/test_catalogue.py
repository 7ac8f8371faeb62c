"""The catalogue holds exactly the 18 slugs, the FAQ's answers and the starting queues."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import catalogue
from triage.orm import Queue, RoutingRule

FAQ = Path(__file__).resolve().parent.parent / "docs" / "centre-enquiries-faq.txt"

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
    for slug in ("exam_frozen", "candidate_not_on_schedule_list"):
        assert catalogue.BY_SLUG[slug].answer.endswith("reply to this email.")
        assert catalogue.BY_SLUG[slug].invites_reply


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9%]+", text.lower()))


def _faq_entries() -> dict[int, str]:
    entries: dict[int, str] = {}
    number = 0
    for line in FAQ.read_text().splitlines():
        match = re.match(r"(\d+)\. ", line)
        if match:
            number = int(match.group(1))
        if number:
            entries[number] = entries.get(number, "") + " " + line
    return entries


# Words a reply may add to the FAQ wording for grammar or to point at the reply path; nothing factual.
GLUE = {
    "the",
    "a",
    "you",
    "if",
    "are",
    "in",
    "this",
    "does",
    "not",
    "work",
    "reply",
    "to",
    "email",
    "invigilate",
}


def test_answers_are_taken_from_the_faq() -> None:
    entries = _faq_entries()
    assert len(entries) == 17
    for cat in catalogue.CATEGORIES:
        if not cat.self_serve:
            assert cat.answer in {"Contact IMI Awards.", ""}
            continue
        source = _words(entries[cat.number])
        if cat.number == 3:  # the FAQ points question 3 at question 4's PIN answer
            source |= _words(entries[4])
        invented = _words(cat.answer) - source - GLUE
        assert not invented, (cat.slug, invented)


def test_unknown_slug_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown category 'nope'"):
        catalogue.get("nope")


def test_migration_seeds_queues_and_routing_from_the_catalogue(session: Session) -> None:
    assert set(session.scalars(select(Queue.slug))) == set(catalogue.QUEUES)
    routing = {r.category: r.queue.slug for r in session.scalars(select(RoutingRule))}
    assert routing == {c.slug: c.default_queue for c in catalogue.CATEGORIES}
