"""Turn an email display name into the name of a person to greet, or nothing when it is not one."""

from __future__ import annotations

import re
import unicodedata

# words that make a display name a mailbox, an office or an organisation rather than a person
_ROLE_TEXT = """
    admin admins administration administrator administrators office offices reception
    receptionist enquiries enquiry inquiries info information noreply no-reply donotreply
    do-not-reply mailer-daemon postmaster support helpdesk help desk team exams exam
    examinations examination officer officers invigilation invigilator invigilators centre
    center centres coordinator co-ordinator coordinators department dept college school academy
    academies university training trainer services service accounts finance bookings booking
    mailbox inbox shared general apprenticeships apprenticeship assessment assessments learning
    skills ltd limited plc llp group motors automotive garage workshop hr payroll sales it ict
    system systems notification notifications alerts alert automated automatic auto robot bot
    daemon securassess secureassess secureclient imi awards staff students student learner
    learners registry registrations admissions quality compliance manager management operations
    ops reply replies contact contacts web website portal
"""
ROLE_WORDS = frozenset(_ROLE_TEXT.split())
# name particles kept lower-case inside a name when fixing an all-lower or all-upper name
_PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "du", "del", "della", "la", "le", "ter", "ten"}
)
_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}")
_VIA = re.compile(r"['\"]?\s+via\s+", re.IGNORECASE)
_ALLOWED = re.compile(r"^[^\W\d_]+(?:['\u2019\-.][^\W\d_]*)*\.?$")
_MAX_WORDS = 5
_MAX_LENGTH = 60


def person_name(display_name: str, address: str = "") -> str | None:
    """The person's name in a display name ("Okafor, Chidi" -> "Chidi Okafor"), else None.

    None for a role or an office ("Exams Office"), an address, the mailbox name or nothing.
    """
    name = _bare_name(display_name)
    if not name or "@" in name or len(name) > _MAX_LENGTH * 2:
        return None
    ordered = _first_name_first(name)
    if ordered is None or not _is_persons_name(ordered, address):
        return None
    if ordered == ordered.lower() or ordered == ordered.upper():
        return " ".join(_title_word(word, i) for i, word in enumerate(ordered.split()))
    return ordered


def _bare_name(display_name: str) -> str:
    """The display name without control or space characters, bracketed notes, quotes or "via"."""
    name = unicodedata.normalize("NFC", display_name or "")
    name = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in name)
    name = _BRACKETS.sub(" ", name).strip().strip("\"'`").strip()
    # "'Jo Bloggs' via Exams" (a mailing list rewrote the sender)
    return _VIA.split(name)[0].strip().strip("\"'`").strip()


def _first_name_first(name: str) -> str | None:
    """Directory style "Last, First" as "First Last", a name with no comma as it is, else None."""
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        return f"{first} {last}" if last and first else None
    return None if "," in name else name


def _is_persons_name(name: str, address: str) -> bool:
    """True for a few words of letters, none of them a role word, that are not the mailbox name."""
    words = name.split()
    if not words or len(words) > _MAX_WORDS or len(name) > _MAX_LENGTH:
        return False
    if not all(_ALLOWED.match(word) for word in words):
        return False
    if _has_role_word(words):
        return False
    # the mailbox name the client filled in ("jbloggs"), not a name someone gave
    mailbox = (address or "").partition("@")[0].lower()
    return not (len(words) == 1 and name == name.lower() and name == mailbox)


def _has_role_word(words: list[str]) -> bool:
    """True if a word, or a part of a hyphenated word, names a role rather than a person."""
    lowered = {word.lower().strip(".'\u2019") for word in words}
    parts = {part for word in words for part in word.lower().split("-")}
    return bool((lowered | parts) & ROLE_WORDS)


def greeting_name(display_name: str, address: str = "") -> str:
    """Who a mail greets: the person's name, or 'colleague'."""
    return person_name(display_name, address) or "colleague"


def _title_word(word: str, position: int) -> str:
    lower = word.lower()
    if position > 0 and lower in _PARTICLES:
        return lower
    return "-".join(_title_part(p) for p in lower.split("-"))


def _title_part(part: str) -> str:
    if not part:
        return part
    for apostrophe in ("'", "\u2019"):
        if apostrophe in part:
            head, _, tail = part.partition(apostrophe)
            if len(head) <= 2 and tail:  # O'Brien, D'Angelo
                return head.capitalize() + apostrophe + _title_part(tail)
            return part.capitalize()
    if part.startswith("mc") and len(part) > 3:
        return "Mc" + part[2:].capitalize()
    return part.capitalize()
