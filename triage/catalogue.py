"""The enquiry catalogue: the one list of categories, and all that is known about each.

For each of the FAQ's 17 categories and `other`: its FAQ number, slug, title, whether it is answered
automatically, its default queue, its confusable family, whether it is a live-exam problem, and the
seed of its staff macro. The answer a self-serve category sends lives only in its template
(`answer_template`, under templates/mail); that answer is also its macro seed, so changing one
category's reply is one file. Other modules derive what they need from CATEGORIES.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

OTHER = "other"
TRIAGE_QUEUE = "triage"
ANSWERS_FOLDER = "answers"  # under templates/mail: one `<slug>.txt` per self-serve category


class Family(StrEnum):
    """A confusable family: categories whose emails read alike.

    Inside a family the model must be clearly surer of its answer than of every sibling before it
    answers alone (see classifier/decision.py).
    """

    UNLOCKING = "unlocking"
    NOT_SHOWING = "not_showing"
    RESULTS = "results"
    ABSENCE = "absence"

    @property
    def members(self) -> tuple[str, ...]:
        """The family's category slugs in FAQ order."""
        return tuple(c.slug for c in CATEGORIES if c.family is self)

    @property
    def self_serve(self) -> bool:
        """True when every member is answered automatically: the family can get one combined
        answer."""
        return all(BY_SLUG[slug].self_serve for slug in self.members)

    @property
    def answer_template(self) -> str | None:
        """The template (under templates/mail) of the combined answer, for a self-serve family."""
        return f"{ANSWERS_FOLDER}/family_{self.value}.txt" if self.self_serve else None

    @property
    def summary(self) -> str:
        """The family as staff read it: its members' FAQ numbers and what they share."""
        numbers = ", ".join(str(BY_SLUG[slug].number) for slug in self.members)
        return f"{FAMILY_TOPICS[self]} (FAQ {numbers})"


FAMILY_TOPICS: dict[Family, str] = {
    Family.UNLOCKING: "unlocking an exam",
    Family.NOT_SHOWING: "something missing when scheduling",
    Family.RESULTS: "exam results",
    Family.ABSENCE: "an absent candidate",
}


@dataclass(frozen=True)
class Category:
    """One enquiry category, as the FAQ and the staff know it (see the module docstring)."""

    number: int | None
    slug: str
    title: str
    default_queue: str
    self_serve: bool = False
    invites_reply: bool = False  # the answer asks the centre to reply if it did not work
    live_exam: bool = False  # a problem during a sitting: urgent when it is happening now
    family: Family | None = None
    staff_draft: str = ""  # the macro seed's text when there is no automatic answer to start from

    def __post_init__(self) -> None:
        """Check that the macro seed has exactly one source: the answer or the staff draft."""
        if self.self_serve == bool(self.staff_draft):
            raise ValueError(
                f"{self.slug}: a staff draft is for (and only for) staff-only categories"
            )

    @property
    def answer_template(self) -> str | None:
        """The template (under templates/mail) of the answer sent automatically, if self-serve."""
        return f"{ANSWERS_FOLDER}/{self.slug}.txt" if self.self_serve else None

    @property
    def macro_title(self) -> str:
        """The title of the category's seeded staff macro: its FAQ number and title."""
        return self.title if self.number is None else f"{self.number}. {self.title}"


CATEGORIES: tuple[Category, ...] = (
    Category(
        1,
        "exam_access_secureclient",
        "Where does the candidate go to get into their exam",
        TRIAGE_QUEUE,
        self_serve=True,
        live_exam=True,
    ),
    Category(
        2,
        "cannot_unlock_exam",
        "Cannot unlock exam",
        TRIAGE_QUEUE,
        self_serve=True,
        live_exam=True,
        family=Family.UNLOCKING,
    ),
    Category(
        3,
        "exam_locked_after_keycode",
        "Candidate has put in their keycode and it shows that exam is locked",
        TRIAGE_QUEUE,
        self_serve=True,
        live_exam=True,
        family=Family.UNLOCKING,
    ),
    Category(
        4,
        "unlock_with_pin",
        "Unlocking exams with a PIN code",
        TRIAGE_QUEUE,
        self_serve=True,
        family=Family.UNLOCKING,
    ),
    Category(
        5,
        "exam_frozen",
        "Exam has frozen",
        "technical",
        self_serve=True,
        invites_reply=True,
        live_exam=True,
    ),
    Category(
        6,
        "candidate_not_on_schedule_list",
        "Candidate not showing on scheduling list",
        "technical",
        self_serve=True,
        invites_reply=True,
        family=Family.NOT_SHOWING,
    ),
    Category(
        7,
        "qualification_not_showing",
        "Qualification not showing for centre",
        "centre-admin",
        family=Family.NOT_SHOWING,
        staff_draft=(
            "Thank you for letting us know. We have checked your centre's record and the "
            "qualification is now set up for your centre in SecureAssess.\n\n"
            "Please log out of SecureAssess and log back in; the qualification should then be in "
            "the list when you schedule. If it still does not show, reply to this email with your "
            "centre number and the full title of the qualification and we will look into it again."
        ),
    ),
    Category(
        8,
        "no_exam_for_qualification",
        "Qualification is showing but there is no exam showing",
        "centre-admin",
        family=Family.NOT_SHOWING,
        staff_draft=(
            "Thank you for letting us know. We have checked, and the exam for this qualification "
            "is now available to your centre in SecureAssess.\n\n"
            "Please log out of SecureAssess and log back in, then schedule the exam as usual. "
            "If it still does not show, reply to this email with your centre number, the "
            "qualification and the exam you are looking for, and we will look into it again."
        ),
    ),
    Category(9, "how_to_schedule_exam", "How to schedule an exam", TRIAGE_QUEUE, self_serve=True),
    Category(
        10,
        "extra_time",
        "How can the candidate be given extra time",
        TRIAGE_QUEUE,
        self_serve=True,
    ),
    Category(
        11,
        "exam_not_in_invigilate",
        "Centre has scheduled an exam but it is not showing in Invigilate section of SecureAssess",
        TRIAGE_QUEUE,
        self_serve=True,
        live_exam=True,
    ),
    Category(
        12,
        "results_release_dates",
        "When will the exam results be released",
        TRIAGE_QUEUE,
        self_serve=True,
        family=Family.RESULTS,
    ),
    Category(
        13,
        "obtain_results",
        "Where can the Centre obtain their results",
        TRIAGE_QUEUE,
        self_serve=True,
        family=Family.RESULTS,
    ),
    Category(
        14,
        "paper_based_exams",
        "How can the Centre apply for paper based exams",
        TRIAGE_QUEUE,
        self_serve=True,
    ),
    Category(
        15,
        "errors_within_exam",
        "Errors within exam, e.g. question not showing, duplicate questions/answers",
        "assessment-content",
        staff_draft=(
            "Thank you for reporting this, and sorry for the trouble it caused your candidates. "
            "We have passed the details to our assessment team to review the question.\n\n"
            "We will let you know what they find and what it means for the candidates affected. "
            "If you have not already told us, please reply with the exam, the date and time it was "
            "sat, the question number and the names of the candidates affected."
        ),
    ),
    Category(
        16,
        "candidate_absent",
        "Candidate is absent",
        TRIAGE_QUEUE,
        self_serve=True,
        family=Family.ABSENCE,
    ),
    Category(
        17,
        "reschedule_missed_exam",
        "Candidate missed scheduled exam and is greyed out in 'Create Exam'",
        "scheduling",
        family=Family.ABSENCE,
        staff_draft=(
            "Thank you for letting us know. We have reset the candidate's exam, so they are no "
            "longer greyed out in 'Create Exam'.\n\n"
            "You can now schedule the exam for them again in SecureAssess within the current "
            "window, as usual."
        ),
    ),
    Category(
        None,
        OTHER,
        "Other enquiry",
        TRIAGE_QUEUE,
        staff_draft=(
            "Thank you for your email.\n\n"
            "This is not something we can deal with through centre support for on-screen exams, "
            "so we have passed it to the right team at IMI Awards, who will reply to you directly."
        ),
    ),
)

BY_SLUG: dict[str, Category] = {c.slug: c for c in CATEGORIES}
SLUGS: tuple[str, ...] = tuple(c.slug for c in CATEGORIES)
SELF_SERVE_SLUGS: frozenset[str] = frozenset(c.slug for c in CATEGORIES if c.self_serve)
STAFF_ONLY_SLUGS: frozenset[str] = frozenset(
    c.slug for c in CATEGORIES if not c.self_serve and c.slug != OTHER
)
LIVE_EXAM_SLUGS: frozenset[str] = frozenset(c.slug for c in CATEGORIES if c.live_exam)
FAMILIES: tuple[frozenset[str], ...] = tuple(
    frozenset(c.slug for c in CATEGORIES if c.family is family) for family in Family
)
FAMILY_OF: dict[str, Family] = {c.slug: c.family for c in CATEGORIES if c.family is not None}
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
