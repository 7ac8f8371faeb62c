"""Who sent a mail, read as a mail server reads it (issue 25, item 1), and list mail known without
List-* headers (item 5): real-world-shaped messages in tests/data/mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.mail.loops import no_reply_reason
from triage.mail.mailbox import read_mailboxes
from triage.mail.parse import parse
from triage.mail.recipients import choose_recipient
from triage.orm import parse_reference

MAIL = Path(__file__).parent / "data" / "mail"


def load(name: str):  # type: ignore[no-untyped-def]
    return parse((MAIL / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "address", "display", "problem"),
    [
        # an unquoted display name holding an address is a name, and a spoofing sign
        ("phish-address-as-name.eml", "do-not-reply@agency.example", "purchasing@", "spoofing"),
        # words before an address are never joined into an invented quoted local part
        ("words-before-address.eml", "test@example.com", "Test", "leniently"),
        ("no-from-reply-to.eml", "exams@riverside-college.example", "Exams Office", "Reply-To"),
        ("two-from-headers.eml", "exams-office@northgate.example", "Exams Office", "From"),
        ("trailing-dot-domain.eml", "exams@hillside.example", "Hillside Exams", ""),
        ("unfolded-header-line.eml", "p.shah@lakeside-academy.example", "Priya Shah", ""),
        # From had a line break injected: not believed; a Reply-To in another domain is not used
        ("injected-name-foreign-reply-to.eml", "", "", "line break"),
        ("bounce-without-from.eml", "", "", "no From header"),
        # several authors: Sender names who sent it (RFC 5322 3.6.2)
        ("two-authors-with-sender.eml", "office@ashfield.example", "Centre Office", ""),
        ("comment-name.eml", "marc.smith@elm-college.example", "Marc Smith", ""),
    ],
)
def test_the_sender_is_who_the_rfc_says(
    name: str, address: str, display: str, problem: str
) -> None:
    email = load(name)
    assert email.from_address == address
    assert display in email.from_name
    if problem:
        assert problem in email.address_problem
    else:
        assert email.address_problem == ""
    assert '"' not in email.from_address  # never an address made of quoted words


def test_the_injected_address_is_never_recorded() -> None:
    email = load("injected-name-foreign-reply-to.eml")
    recorded = {email.from_address, choose_recipient(email).address}
    assert not {"victim@elsewhere.example", "collector@attacker.example"} & recorded
    assert "\n" not in email.from_name and "\r" not in email.from_name


def test_the_unfolded_line_stays_in_its_header() -> None:
    email = load("unfolded-header-line.eml")
    assert email.subject.endswith("which opens next week")
    assert email.text.strip() == "When does the assessment window close?"


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ("Jo <jo@c.example>", ["jo@c.example"]),
        ('"Smith, Jo" <jo@c.example>', ["jo@c.example"]),
        ('"john smith"@c.example', ['"john smith"@c.example']),
        ("<@relay.example:jo@c.example>", ["jo@c.example"]),  # obsolete source route
        ("Team: a@c.example, b@c.example;", ["a@c.example", "b@c.example"]),
        ("JO@C.EXAMPLE.", ["jo@c.example"]),
        ("boss@bank.example <boss@bank.example>", ["boss@bank.example"]),
        ("Two Words two@c.example", ["two@c.example"]),
        ("a@c.example b@c.example", [""]),  # two bare addresses: neither is the sender
        ("=?utf-8?q?x=40evil.example?=", [""]),  # an address only inside an encoded word
        ("jo@c..example", [""]),
    ],
)
def test_mailboxes_read_like_a_server(value: str, addresses: list[str]) -> None:
    assert [m.address for m in read_mailboxes(value, "From")] == addresses


def test_a_display_name_equal_to_the_address_is_no_spoofing_sign() -> None:
    [mailbox] = read_mailboxes("boss@bank.example <boss@bank.example>", "From")
    assert mailbox.problem == ""
    [other] = read_mailboxes('"boss@bank.example" <x@free-mail.example>', "From")
    assert "spoofing" in other.problem and other.address == "x@free-mail.example"


@pytest.mark.parametrize("name", ["mailman-digest-no-list-headers.eml", "listserv-message.eml"])
def test_list_mail_without_list_headers_is_never_answered(name: str) -> None:
    email = load(name)
    assert not any(header.startswith("list-") for header in email.headers)
    reason = no_reply_reason(email, {"support@imi-awards.example"}, "imi-awards.example")
    assert reason is not None and ("list" in reason.lower() or "listserv" in reason.lower())


@pytest.mark.parametrize(
    ("sender", "listy"),
    [
        ("exam-officers-request@lists.example", True),
        ("exam-officers-bounces+jo=c.example@lists.example", True),
        ("owner-exam-officers@lists.example", True),
        ("majordomo@lists.example", True),
        ("jo.request@college.example", False),
        ("bounce.office@college.example", False),
        ("owner@college.example", False),
    ],
)
def test_list_robot_senders(sender: str, listy: bool) -> None:
    raw = (
        f"From: {sender}\r\nTo: support@imi-awards.example\r\nSubject: hello\r\n"
        "Message-ID: <l.1@lists.example>\r\n\r\nA question about keycodes.\r\n"
    ).encode()
    reason = no_reply_reason(parse(raw), set(), "imi-awards.example")
    assert (reason is not None and "list" in reason) is listy


def test_a_person_writing_is_not_list_mail() -> None:
    email = load("comment-name.eml")
    assert no_reply_reason(email, set(), "imi-awards.example") is None


@pytest.mark.parametrize(
    ("subject", "reference"),
    [
        ("[IMI-000123] more", 123),
        ("[IMI-99999999999] poison", None),  # no key can hold it: treated as absent
        ("[IMI-18446744073709551616]", None),  # past a 64-bit integer (SQLite)
        ("[IMI-" + "9" * 5000 + "]", None),  # past Python's int() digit limit
        ("[IMI-000000]", None),
        ("[IMI-99999999999] Re: [IMI-000042]", 42),
    ],
)
def test_out_of_range_references_are_absent(subject: str, reference: int | None) -> None:
    assert parse_reference(subject) == reference
