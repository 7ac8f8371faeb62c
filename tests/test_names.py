"""Display names to greet: the rules test_outgoing's examples leave thin (mailbox names, limits)."""

from __future__ import annotations

import pytest

from triage.mail.names import greeting_name, person_name


@pytest.mark.parametrize(
    ("display", "address", "expected"),
    [
        # the mailbox name a client filled in is no name; the word elsewhere, or capitalised, is
        ("jbloggs", "jbloggs@college.example", None),
        ("jbloggs", "jo@college.example", "Jbloggs"),
        ("JBLOGGS", "jbloggs@college.example", "Jbloggs"),
        ("Jbloggs", "jbloggs@college.example", "Jbloggs"),
        # at most five words and sixty characters
        ("one two three four five", "", "One Two Three Four Five"),
        ("one two three four five six", "", None),
        ("a" * 61, "", None),
        # one comma turns a directory name round; more, or an empty side, is no name
        ("van der berg, anna", "", "Anna van der Berg"),
        ("Bloggs, Jo, Dr", "", None),
        ("Bloggs,", "", None),
        (", Jo", "", None),
        # particles, apostrophes and Mc when fixing the case; mixed case is left alone
        ("ANNA VAN DER BERG", "", "Anna van der Berg"),
        ("d\u2019angelo marco", "", "D\u2019Angelo Marco"),
        ("sean mcdonald", "", "Sean McDonald"),
        ("MCX", "", "Mcx"),
        ("J.R.R. Tolkien", "", "J.R.R. Tolkien"),
        # a role word in a hyphenated part, a digit: not a person
        ("Jo Smith-Admin", "", None),
        ("Jo2 Bloggs", "", None),
        # invisible and control characters separate words; a list's "via" is dropped
        ("Jo\u200bBloggs", "", "Jo Bloggs"),
        ("Jo\tBloggs", "", "Jo Bloggs"),
        ('"Jo Bloggs" via Exams Team', "", "Jo Bloggs"),
    ],
)
def test_person_name_rules(display: str, address: str, expected: str | None) -> None:
    assert person_name(display, address) == expected


def test_greeting_falls_back_to_colleague() -> None:
    assert greeting_name("Exams Office", "exams@college.example") == "colleague"
    assert greeting_name("OKAFOR, CHIDI", "c@college.example") == "Chidi Okafor"
