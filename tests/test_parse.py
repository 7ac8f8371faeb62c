"""What parse reads from a message's headers and parts, field by field (test_hostile_mail covers
hostile input and its cost; test_corpus covers real mail clients)."""

from __future__ import annotations

import pytest

from triage.mail.parse import NotAnEmail, identify, parse

LONG_LOCAL = "y" * 260


def _email(headers: str, body: str = "\r\nhello") -> bytes:
    return f"{headers}Subject: x\r\n{body}".encode()


@pytest.mark.parametrize(
    ("from_header", "name", "address", "problem"),
    [
        ("Jo Bloggs <jo@centre.example>", "Jo Bloggs", "jo@centre.example", ""),
        ("=?utf-8?q?=C3=89lodie?= <E@X.example>", "Élodie", "e@x.example", ""),
        # an unquoted directory name reads as a bare word, then the mailbox: the word is kept
        ("Okafor, Chidi <c.okafor@x.example>", "Okafor, Chidi", "c.okafor@x.example", ""),
        # a real address before the first one that can be answered is not part of the name
        ("a@b.example\x01, Jo <jo@c.example>", "Jo", "jo@c.example", ""),
        (  # a cut address would be an invented one: none is recorded
            f"Jo <{LONG_LOCAL}@example.com>",
            "Jo",
            "",
            "From address is longer than 254 characters; no Sender or Reply-To address to use "
            "instead",
        ),
        (
            "Jo\x01Bloggs <jo@c.example>",
            "Jo Bloggs",
            "jo@c.example",
            "From display name held a control character",
        ),
    ],
)
def test_sender(from_header: str, name: str, address: str, problem: str) -> None:
    email = parse(_email(f"From: {from_header}\r\n"))
    assert (email.from_name, email.from_address, email.address_problem) == (name, address, problem)


def test_a_line_break_hidden_in_an_encoded_from_makes_from_unusable() -> None:
    email = parse(_email("From: =?utf-8?q?Jo=0D=0ABcc:_x@y?= <jo@c.example>\r\n"))
    assert email.from_address == ""
    assert email.address_problem.startswith("From header held a line break")


@pytest.mark.parametrize("from_header", ["jo@", "", "no address here"])
def test_no_usable_sender_is_kept_with_the_reason(from_header: str) -> None:
    raw = _email(f"From: {from_header}\r\n")
    email = parse(raw)
    assert email.from_address == "" and "no Sender or Reply-To" in email.address_problem
    assert identify(raw) == email.message_id


@pytest.mark.parametrize("raw", [b"", b"  \r\n", b"hello world\r\nnot mail\r\n"])
def test_what_has_no_header_block_is_not_an_email(raw: bytes) -> None:
    with pytest.raises(NotAnEmail):
        parse(raw)
    with pytest.raises(NotAnEmail):
        identify(raw)


@pytest.mark.parametrize(
    ("reply_to", "name", "address", "problem"),
    [
        ("Desk <desk@centre.example>", "Desk", "desk@centre.example", ""),
        (
            "not an address",
            "not an address",
            "",
            "Reply-To header has no address",
        ),
    ],
)
def test_reply_to(reply_to: str, name: str, address: str, problem: str) -> None:
    email = parse(_email(f"From: jo@c.example\r\nReply-To: {reply_to}\r\n"))
    assert (email.reply_to_name, email.reply_to_address, email.address_problem) == (
        name,
        address,
        problem,
    )
    assert email.reply_address == (address or "jo@c.example")


def test_message_ids_and_threading_headers() -> None:
    raw = _email(
        "From: jo@c.example\r\nMessage-ID: junk <a@x> <b@x>\r\n"
        "In-Reply-To: =?utf-8?q?<long-id@x>?=\r\nReferences: <r0@x> =?utf-8?q?<r1@x>?=\r\n"
    )
    email = parse(raw)
    assert (email.message_id, email.generated_message_id) == ("<a@x>", False)
    assert email.in_reply_to == "<long-id@x>" and email.references == ["<r0@x>", "<r1@x>"]
    assert identify(raw) == "<a@x>"
    bare = _email("From: jo@c.example\r\n")
    made_up = parse(bare)
    assert made_up.generated_message_id and made_up.message_id == identify(bare)
    assert made_up.message_id.startswith("<sha256.")
    assert made_up.message_id.endswith("@no-message-id.invalid>")


def test_parts_become_text_html_and_attachments() -> None:
    body = (
        "Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\n   \r\n"
        "--B\r\nContent-Type: text/html\r\n\r\n<p>html part</p>\r\n"
        "--B\r\nContent-Type: text/plain; name=notes.txt\r\n"
        "Content-Disposition: inline; filename=notes.txt\r\n\r\nnotes\r\n"
        "--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "JVBERi0=\r\n"
        "--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nlog\r\n"
        "--B--\r\n"
    )
    email = parse(_email("From: jo@c.example\r\n", body))
    # every inline text part is shown in order, an inline HTML part as its text
    assert email.text == "first\nhtml part\n" and email.html == "<p>html part</p>"
    # unnamed parts are named from their type
    assert [(a.filename, a.content_type, a.data) for a in email.attachments] == [
        ("notes.txt", "text/plain", b"notes"),
        ("attachment.pdf", "application/pdf", b"%PDF-"),
        ("attachment.txt", "text/plain", b"log"),
    ]


def test_html_only_mail_gives_its_text() -> None:
    body = "Content-Type: text/html\r\n\r\n<html><body><p>Hello <b>there</b></p></body></html>"
    email = parse(_email("From: jo@c.example\r\n", body))
    assert email.html is not None and "Hello" in email.text and "<" not in email.text


def _report(report_type: str, parts: str) -> bytes:
    body = (
        f"Content-Type: multipart/report; report-type={report_type}; boundary=B\r\n\r\n"
        f"--B\r\nContent-Type: text/plain\r\n\r\nabout your mail\r\n{parts}--B--\r\n"
    )
    return _email("From: postmaster@mx.example\r\n", body)


@pytest.mark.parametrize(
    ("report_type", "parts", "is_delivery_report", "about", "attached"),
    [
        (
            "delivery-status",
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.0.0\r\n"
            "--B\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <ours@imi.example>\r\n"
            "From: a@b\r\n\r\nhi\r\n",
            True,
            ["<ours@imi.example>"],
            ["message/delivery-status"],
        ),
        (
            "disposition-notification",
            "--B\r\nContent-Type: message/disposition-notification\r\n\r\n"
            "Original-Message-ID: <read@imi.example>\r\nDisposition: manual\r\n",
            False,
            ["<read@imi.example>"],
            [],
        ),
        (
            "feedback-report",
            "--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
            "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <spam@imi.example>\r\n",
            False,
            ["<spam@imi.example>"],
            [],
        ),
    ],
)
def test_reports_say_what_they_are_about(
    report_type: str, parts: str, is_delivery_report: bool, about: list[str], attached: list[str]
) -> None:
    email = parse(_report(report_type, parts))
    assert email.report_type == report_type
    assert email.is_delivery_report is is_delivery_report
    assert email.bounced_message_ids == about
    assert [a.content_type for a in email.attachments] == attached  # the rest is not an attachment


def test_a_delivery_status_part_alone_is_a_delivery_report() -> None:
    body = "Content-Type: message/delivery-status\r\n\r\nStatus: 5.0.0\r\n"
    email = parse(_email("From: postmaster@mx.example\r\n", body))
    assert email.is_delivery_report and email.report_type == ""


def test_headers_keep_their_first_value_and_decode_what_people_read() -> None:
    raw = (
        b"From: jo@c.example\r\nSubject: =?utf-8?b?w6k=?= test\r\nX-Thing: one\r\nx-thing: two\r\n"
        b"To: a@b.example, Jo <jo@c.example>\r\nCc: bad, =?utf-8?q?Caf=C3=A9?= <cafe@x.example>\r\n"
        b"Authentication-Results: mx; dmarc=pass\r\nAuthentication-Results: mx2; spf=fail\r\n"
        b"\r\nhello"
    )
    email = parse(raw)
    assert email.subject == "é test" and email.header("X-THING") == "one"
    assert email.to_addresses == ["a@b.example", "jo@c.example", "cafe@x.example"]
    assert email.authentication_results == ["mx; dmarc=pass", "mx2; spf=fail"]


@pytest.mark.parametrize("charset", ["us-ascii\x00", "idna", "punycode", "x-unknown"])
def test_a_charset_no_codec_decodes_with_reads_as_utf8(charset: str) -> None:
    """Mail the webhook accepts (identify) is mail parse reads: a body in a charset that is unknown,
    or whose codec refuses bytes, is read as UTF-8 rather than refusing the whole email."""
    raw = _email(
        "From: jo@c.example\r\n", f'Content-Type: text/plain; charset="{charset}"\r\n\r\ncaf\xe9 ok'
    )
    email = parse(raw)
    assert email.text == "café ok" and email.message_id == identify(raw)
