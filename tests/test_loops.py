"""Machine-written mail is never answered: each mark, the exact reason it gives, which mark wins."""

from __future__ import annotations

import pytest

from triage.mail.loops import no_reply_reason
from triage.mail.parse import parse

OWN = (["help@imi.example", "Exams@IMI.example"], "imi.example")


def _reason(headers: str, body: str = "Hello", own: tuple[list[str], str] = OWN) -> str | None:
    """The no-reply reason of a mail with these header lines (a From line unless they give one)."""
    if "From:" not in headers:
        headers = "From: Jo Bloggs <jo@college.example>\r\n" + headers
    raw = f"{headers}Subject: x\r\nMessage-ID: <m1@college.example>\r\n\r\n{body}".encode()
    return no_reply_reason(parse(raw), *own)


REPORT = (
    "Content-Type: multipart/report; report-type={kind}; boundary=B\r\n",
    "--B\r\nContent-Type: text/plain\r\n\r\nreport\r\n--B--\r\n",
)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("", None),
        ("Auto-Submitted: no\r\nPrecedence: first-class\r\n", None),
        ("Content-Class: urn:content-classes:message\r\n", None),
        ("X-Auto-Response-Suppress: DR, RN\r\n", None),
        ("Return-Path: <jo@college.example>\r\n", None),
        ("Content-Class: URN:Content-Classes:MDN \r\n", "receipt (urn:content-classes:mdn)"),
        ("Auto-Submitted: Auto-Replied; owner=x\r\n", "Auto-Submitted: auto-replied"),
        ("Precedence:  Junk\r\n", "Precedence: junk"),
        ("List-Unsubscribe: <mailto:u@x>\r\nList-Id: <a.list>\r\n", "mailing list (list-id)"),
        ("X-Auto-Response-Suppress: DR, OOF\r\n", "X-Auto-Response-Suppress: DR, OOF"),
        ("X-Failed-Recipients: a@b\r\nX-Autoreply: yes\r\n", "x-autoreply header"),
        ("Return-Path: <>\r\n", "empty Return-Path (a bounce or notification)"),
        ("Return-Path: \r\n", "empty Return-Path (a bounce or notification)"),
        (
            "From: MAILER-DAEMON@mx.example\r\n",
            "sender mailer-daemon@mx.example does not take replies",
        ),
        ("From: no-reply+abc@x.example\r\n", "sender no-reply+abc@x.example does not take replies"),
        ("From: noreplyer@x.example\r\n", None),
        ("From: exams@imi.example\r\n", "sent from one of our own addresses"),
        (
            "Reply-To: bounces-7@list.example\r\n",
            "Reply-To bounces-7@list.example does not take replies",
        ),
        ("Reply-To: help@imi.example\r\n", "Reply-To is one of our own addresses"),
        # the earlier mark wins: a report before its headers, headers before addresses
        (
            "Precedence: bulk\r\nAuto-Submitted: auto-generated\r\n",
            "Auto-Submitted: auto-generated",
        ),
        ("From: noreply@x.example\r\nList-Id: <l>\r\n", "mailing list (list-id)"),
        (
            "From: noreply@x.example\r\nReply-To: help@imi.example\r\n",
            ("sender noreply@x.example does not take replies"),
        ),
    ],
)
def test_each_mark_gives_its_reason(headers: str, reason: str | None) -> None:
    assert _reason(headers) == reason


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("delivery-status", "delivery status report (bounce)"),
        ("disposition-notification", "read receipt (MDN)"),
        ("feedback-report", "abuse feedback report (ARF)"),
        ("something-new", "automatic report (something-new)"),
    ],
)
def test_reports_are_named_by_their_type(kind: str, reason: str) -> None:
    head, body = REPORT
    assert _reason(head.format(kind=kind) + "Auto-Submitted: auto-replied\r\n", body) == reason


@pytest.mark.parametrize(
    ("subject", "machine"),
    [
        ("Read: Exam booking", True),
        ("Undeliverable: results", True),
        ("Delivery Status Notification (Failure)", True),
        ("Gelesen: Prüfung", True),
        ("Re: read: the manual", False),
        ("Results not showing", False),
    ],
)
def test_receipts_are_known_by_their_subject(subject: str, machine: bool) -> None:
    raw = f"From: jo@college.example\r\nSubject: {subject}\r\n\r\nHello".encode()
    reason = no_reply_reason(parse(raw), *OWN)
    expected = f"receipt or delivery notice (subject: {subject})" if machine else None
    assert reason == expected


def test_our_own_mail_come_back_is_known_by_its_message_id() -> None:
    raw = b"From: jo@college.example\r\nMessage-ID: <abc@IMI.Example>\r\n\r\nHello"
    assert no_reply_reason(parse(raw), [], "imi.example") == (
        "Message-ID from our own domain (our own mail came back)"
    )
    assert no_reply_reason(parse(raw), [], "") is None
    assert no_reply_reason(parse(raw), [], "other.example") is None
