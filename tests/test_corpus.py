"""Awkward real-world messages: every one parses, decodes and is judged for loop safety correctly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from tests.mailutil import count, deliver, make_email, post_email, ticket
from triage.mail.loops import no_reply_reason
from triage.mail.parse import parse
from triage.orm import OutboxItem, Ticket

CORPUS = Path(__file__).resolve().parent / "corpus"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
OWN = ({"support@imi-awards.example"}, "imi-awards.example")


def load(name: str):  # type: ignore[no-untyped-def]
    return parse((CORPUS / name).read_bytes())


def test_every_corpus_and_sample_file_parses() -> None:
    files = sorted(CORPUS.glob("*.eml")) + sorted(SAMPLES.glob("*.eml"))
    assert len(files) >= 28
    for path in files:
        email = parse(path.read_bytes())
        assert email.message_id.startswith("<"), path.name
        # a header injection in From leaves no address to record (a person handles the mail)
        assert "@" in email.from_address or "line break" in email.address_problem, path.name


def test_html_only_is_converted_without_script_or_style() -> None:
    email = load("html-only.eml")
    assert email.text and not re.search(r"</?(p|div|script|style|br|span|b|table)\b", email.text)
    assert "function" not in email.text and "{" not in email.text


def test_multipart_alternative_prefers_the_text_part() -> None:
    email = load("multipart-alternative.eml")
    assert email.html and not re.search(r"</?(p|div|br|span)\b", email.text)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("base64-utf8.eml", "é"),
        ("iso-8859-1.eml", "£"),
        ("windows-1252.eml", "\u2019"),
        ("quoted-printable.eml", "\u2019"),
    ],
)
def test_transfer_encodings_and_charsets_decode(name: str, needle: str) -> None:
    assert needle in load(name).text


def test_unknown_charset_is_replaced_not_fatal() -> None:
    assert load("unknown-charset.eml").text.strip()


def test_attachments_are_kept_as_bytes() -> None:
    tnef = load("winmail-dat.eml").attachments
    assert [a.filename for a in tnef] == ["winmail.dat"] and tnef[0].data
    assert load("pdf-attachment.eml").attachments[0].content_type == "application/pdf"


def test_missing_message_id_gets_a_stable_one() -> None:
    raw = (CORPUS / "no-message-id.eml").read_bytes()
    assert parse(raw).generated_message_id and parse(raw).message_id == parse(raw).message_id


@pytest.mark.parametrize(
    "name", ["ooo-exchange.eml", "ooo-gmail.eml", "bounce.eml", "mailing-list.eml"]
)
def test_automatic_mail_is_never_answered(name: str) -> None:
    assert no_reply_reason(load(name), *OWN) is not None


def test_bounce_names_the_message_that_bounced_and_not_its_body() -> None:
    email = load("bounce.eml")
    assert email.is_delivery_report
    assert email.bounced_message_ids == [
        "<imi.1.0123456789abcdef.0123456789abcdef0123@imi-awards.example>"
    ]


def test_header_injection_is_flattened() -> None:
    email = load("header-injection.eml")
    assert "\n" not in email.subject and "\r" not in email.subject
    assert all("\n" not in v and "\r" not in v for v in email.headers.values())


def test_deep_nesting_is_bounded() -> None:
    assert load("deep-nesting.eml").subject


def test_ingest_command_takes_folders_and_mbox(mail_app: Flask, tmp_path: Path) -> None:
    import mailbox

    box = mailbox.mbox(tmp_path / "backlog.mbox")
    for i in range(3):
        box.add(make_email(subject=f"backlog {i}", sender=f"b{i}@centre.example"))
    box.flush()
    runner = mail_app.test_cli_runner()
    result = runner.invoke(args=["triage", "ingest", str(SAMPLES), str(tmp_path / "backlog.mbox")])
    assert result.exit_code == 0, result.output
    assert count(mail_app, Ticket) == 12 + 3
    again = runner.invoke(args=["triage", "ingest", str(SAMPLES)])
    assert "12 duplicate" in again.output and count(mail_app, Ticket) == 15
    assert count(mail_app, OutboxItem) == 14  # every sample but the out-of-office gets one reply


def test_ingest_corpus_keeps_going_and_never_answers_automatic_mail(mail_app: Flask) -> None:
    result = mail_app.test_cli_runner().invoke(args=["triage", "ingest", str(CORPUS)])
    assert result.exit_code == 0, result.output
    assert count(mail_app, Ticket) >= 14


def test_bounce_of_our_reply_is_linked_to_its_ticket(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    first = post_email(mail_app.test_client(), api_token, make_email()).get_json()
    deliver(mail_app)
    [auto] = smtp_server[0].parsed()
    bounce = (
        (CORPUS / "bounce.eml")
        .read_bytes()
        .replace(
            b"<imi.1.0123456789abcdef.0123456789abcdef0123@imi-awards.example>",
            auto["Message-ID"].encode(),
        )
    )
    linked = post_email(mail_app.test_client(), api_token, bounce).get_json()
    assert linked["reference"] == first["reference"]
    t = ticket(mail_app, first["reference"])
    assert t.messages[-1].kind == "bounce" and deliver(mail_app) == 0
