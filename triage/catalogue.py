"""The enquiry catalogue: the 17 FAQ categories plus `other`, as data used by every other module."""

from __future__ import annotations

from dataclasses import dataclass

OTHER = "other"
TRIAGE_QUEUE = "triage"


@dataclass(frozen=True)
class Category:
    """One enquiry category: FAQ number, stable slug, title, self-serve flag, reply text and default queue."""

    number: int | None
    slug: str
    title: str
    self_serve: bool
    answer: str
    default_queue: str
    invites_reply: bool = False  # the answer asks the centre to reply if it did not work


_CONTACT = "Contact IMI Awards."

CATEGORIES: tuple[Category, ...] = (
    Category(
        1,
        "exam_access_secureclient",
        "Where does the candidate go to get into their exam",
        True,
        "SecureClient needs to be installed on the computers that the exams are to be sat on. "
        "The link for SecureClient can be found under the Centres area of the IMI Awards website, "
        "under Secure Centre Information.",
        TRIAGE_QUEUE,
    ),
    Category(
        2,
        "cannot_unlock_exam",
        "Cannot unlock exam",
        True,
        "Ensure candidate has entered their keycode.",
        TRIAGE_QUEUE,
    ),
    Category(
        3,
        "exam_locked_after_keycode",
        "Candidate has put in their keycode and it shows that exam is locked",
        True,
        "Invigilator needs to unlock the exam in SecureAssess. To avoid this, you can unlock exams "
        "with a PIN code: a PIN code can be used instead of the invigilator unlocking individual "
        "exams for the candidates. You can set a PIN 48 hours before the exam by highlighting the "
        "relevant exams and clicking Set PIN.",
        TRIAGE_QUEUE,
    ),
    Category(
        4,
        "unlock_with_pin",
        "Unlocking exams with a PIN code",
        True,
        "A PIN code can be used instead of the invigilator unlocking individual exams for the "
        "candidates.\n\n"
        "You can set a PIN 48 hours before the exam by highlighting the relevant exams and clicking "
        "Set PIN. When you click on Set PIN a box appears and asks you to enter a PIN. You can choose "
        "any combination of four numbers and you can have the same PIN for every exam and use the "
        "same PIN every time.\n\n"
        "On the day of the exam, after the candidates have put in their keycodes, they will be asked "
        "to enter a PIN. This is when the invigilator can tell the candidates the PIN and the "
        "candidates will unlock their own exams by inputting the PIN.",
        TRIAGE_QUEUE,
    ),
    Category(
        5,
        "exam_frozen",
        "Exam has frozen",
        True,
        "Should be resolved by turning off machine (without voiding or pausing or completing the "
        "exam) and then turning on again and re-entering the keycode.\n\n"
        "The Invigilator has the option to pause the assessment in SecureAssess to prevent the time "
        "expiring.\n\n"
        "If this does not work, reply to this email.",
        "technical",
        invites_reply=True,
    ),
    Category(
        6,
        "candidate_not_on_schedule_list",
        "Candidate not showing on scheduling list",
        True,
        "Check you are in SecureAssess and not the IMI Awards on-line assessment area.\n\n"
        "If you are in the correct area and this does not work, reply to this email.",
        "technical",
        invites_reply=True,
    ),
    Category(
        7,
        "qualification_not_showing",
        "Qualification not showing for centre",
        False,
        _CONTACT,
        "centre-admin",
    ),
    Category(
        8,
        "no_exam_for_qualification",
        "Qualification is showing but there is no exam showing",
        False,
        _CONTACT,
        "centre-admin",
    ),
    Category(
        9,
        "how_to_schedule_exam",
        "How to schedule an exam",
        True,
        "The FS Centre Coordinator uses SecureAssess to schedule assessments. Guidance can be found "
        "under the Secure Centre Information navigation button in the Centres area of the IMI Awards "
        "website.",
        TRIAGE_QUEUE,
    ),
    Category(
        10,
        "extra_time",
        "How can the candidate be given extra time",
        True,
        "25% can be added when scheduling without seeking prior permission; anything greater than "
        "25% must be applied for as a Reasonable Adjustment. Centres are required to keep records "
        "for inspection.",
        TRIAGE_QUEUE,
    ),
    Category(
        11,
        "exam_not_in_invigilate",
        "Centre has scheduled an exam but it is not showing in Invigilate section of SecureAssess",
        True,
        "The exam will only show in the Invigilate section 48 hours before the exam.",
        TRIAGE_QUEUE,
    ),
    Category(
        12,
        "results_release_dates",
        "When will the exam results be released",
        True,
        "See results release dates.",
        TRIAGE_QUEUE,
    ),
    Category(
        13,
        "obtain_results",
        "Where can the Centre obtain their results",
        True,
        "Results can be found under the Reporting tab in SecureAssess. Click on Reports and results "
        "can be viewed/printed by candidate or exam. Certificates can be applied for using Web "
        "Portal 2 as normal.",
        TRIAGE_QUEUE,
    ),
    Category(
        14,
        "paper_based_exams",
        "How can the Centre apply for paper based exams",
        True,
        "Complete Form 45 'Paper Assessment Request Form' and return it to IMI Awards. 30 days "
        "notice is required for assessment papers.",
        TRIAGE_QUEUE,
    ),
    Category(
        15,
        "errors_within_exam",
        "Errors within exam, e.g. question not showing, duplicate questions/answers",
        False,
        _CONTACT,
        "assessment-content",
    ),
    Category(
        16,
        "candidate_absent",
        "Candidate is absent",
        True,
        "Nothing needs to be done if a candidate is absent. The exam will just overrun and cancel "
        "itself out and will be available the next day to re-schedule. Centres can cancel/delete "
        "exams up to 48 hours before the exam. It is NOT advisable to void exams at any time.",
        TRIAGE_QUEUE,
    ),
    Category(
        17,
        "reschedule_missed_exam",
        "Candidate missed scheduled exam and is greyed out in 'Create Exam'",
        False,
        _CONTACT,
        "scheduling",
    ),
    Category(None, OTHER, "Other enquiry", False, "", TRIAGE_QUEUE),
)

BY_SLUG: dict[str, Category] = {c.slug: c for c in CATEGORIES}
SLUGS: tuple[str, ...] = tuple(c.slug for c in CATEGORIES)
SELF_SERVE_SLUGS: frozenset[str] = frozenset(c.slug for c in CATEGORIES if c.self_serve)
STAFF_ONLY_SLUGS: frozenset[str] = frozenset(
    c.slug for c in CATEGORIES if not c.self_serve and c.slug != OTHER
)

# Confusable families: categories whose emails read alike. Inside a family the model must be clearly surer of
# its answer than of every sibling before it answers alone (see classifier/decision.py).
FAMILIES: tuple[frozenset[str], ...] = (
    frozenset({"cannot_unlock_exam", "exam_locked_after_keycode", "unlock_with_pin"}),
    frozenset(
        {"candidate_not_on_schedule_list", "qualification_not_showing", "no_exam_for_qualification"}
    ),
    frozenset({"results_release_dates", "obtain_results"}),
    frozenset({"candidate_absent", "reschedule_missed_exam"}),
)
SIBLINGS: dict[str, frozenset[str]] = {
    slug: family - {slug} for family in FAMILIES for slug in family
}

QUEUES: dict[str, str] = {
    "triage": "Triage: unclassified and uncertain mail",
    "technical": "Technical: follow-ups on frozen exams and scheduling lists",
    "centre-admin": "Centre admin: qualifications and exams not showing",
    "assessment-content": "Assessment content: errors within exams",
    "scheduling": "Scheduling: rescheduling missed exams",
}


def get(slug: str) -> Category:
    """Return the category for a slug, raising KeyError with the known slugs if it is unknown."""
    try:
        return BY_SLUG[slug]
    except KeyError:
        raise KeyError(f"unknown category {slug!r}; known: {', '.join(SLUGS)}") from None
