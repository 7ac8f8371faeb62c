"""Everything an email holds is shown or kept (issue 25, items 3 and 8): attached messages read under
the forwarder's note and kept as .eml files, unnamed parts named from their type, inline HTML
shown, uuencoded data decoded, long HTML converted or its cut said, a missing boundary read as
text."""

from __future__ import annotations

import base64

import pytest
from flask import Flask

from tests.mailutil import post_email, ticket
from tests.webutil import login, make_user
from triage.classifier.cleaning import clean_body, is_forward
from triage.mail.forwards import split_forward
from triage.mail.names import greeting_name
from triage.mail.parse import MAX_SHOWN_HTML_TAGS, parse
from triage.mail.parts import ATTACHED_MARK, uudecode

LEARNER_MAIL = (
    b"From: Learner One <l1@mail.example>\r\n"
    b"To: admin@centre.example\r\n"
    b"Date: Mon, 7 Dec 2026 09:00:00 +0000\r\n"
    b"Subject: =?iso-8859-1?q?R=E9sultats?= missing\r\n"
    b"Message-ID: <l1@mail.example>\r\n"
    b'Content-Type: multipart/mixed; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"My r=E9sults for the MOT qualification are not showing on the portal.\r\n"
    b"--inner\r\n"
    b'Content-Type: application/pdf; name="certificate.pdf"\r\n'
    b'Content-Disposition: attachment; filename="certificate.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--inner--\r\n"
)
HTML_MAIL = (
    b"From: sam.jones@mail.example (Sam Jones)\r\n"
    b"Subject: exam locked\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<html><head><style>p{color:red}</style></head>"
    b"<body><p>My exam is <b>locked</b> &mdash; please send the PIN</p></body></html>\r\n"
)


def _forward(
    *parts: bytes, note: bytes = b"Please see the two emails below from our learners."
) -> bytes:
    body = b"".join(b"--outer\r\n" + part + b"\r\n" for part in parts)
    return (
        b"From: Centre Admin <admin@centre.example>\r\n"
        b"To: support@imi.example\r\n"
        b"Subject: Fwd: two emails about the exam\r\n"
        b"Message-ID: <fw1@centre.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n'
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + note
        + b"\r\n"
        + body
        + b"--outer--\r\n"
    )


def _attached(message: bytes, headers: bytes = b"Content-Type: message/rfc822\r\n") -> bytes:
    return headers + b"\r\n" + message


def test_attached_messages_are_shown_under_the_note_and_kept_as_eml_files() -> None:
    email = parse(
        _forward(
            _attached(
                LEARNER_MAIL, b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n"
            ),
            _attached(HTML_MAIL),
        )
    )
    text = email.text
    assert text.startswith("Please see the two emails below")
    first = text.index(ATTACHED_MARK)
    second = text.index(ATTACHED_MARK, first + 1)
    assert "From: Learner One <l1@mail.example>" in text[first:second]
    assert "Date: Mon, 7 Dec 2026 09:00:00 +0000" in text[first:second]
    assert "Subject: Résultats missing" in text[first:second]
    assert "To: admin@centre.example" in text[first:second]
    assert "My résults for the MOT qualification are not showing" in text[first:second]
    assert "From: sam.jones@mail.example (Sam Jones)" in text[second:]
    assert "My exam is locked — please send the PIN" in text[second:] and "color" not in text
    # each attached message is a download, and its own attachments are listed too
    assert [(a.filename, a.content_type) for a in email.attachments] == [
        ("Résultats missing.eml", "message/rfc822"),
        ("certificate.pdf", "application/pdf"),
        ("exam locked.eml", "message/rfc822"),
    ]
    assert email.attachments[0].data == LEARNER_MAIL
    assert parse(email.attachments[0].data).message_id == "<l1@mail.example>"
    # the staff view shows the note, then the attached messages in full
    forward = split_forward(text)
    assert forward is not None and forward.note.startswith("Please see")
    assert forward.forwarded.startswith(ATTACHED_MARK)
    # the classifier reads the note and what the attached messages say
    cleaned = clean_body(email.text, email.html, forwarded=is_forward(email.subject))
    assert "Please see the two emails" in cleaned
    assert "not showing on the portal" in cleaned and "send the PIN" in cleaned


def test_a_groupwise_forward_with_no_note_shows_the_attached_message() -> None:
    # GroupWise: an empty text part, then the message, a blank line before its headers, base64
    inner = base64.encodebytes(b"\r\n" + LEARNER_MAIL).replace(b"\n", b"\r\n")
    raw = _forward(
        _attached(
            inner,
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: inline; filename="Mime.822"\r\n',
        ),
        note=b"",
    )
    email = parse(raw)
    assert email.text.lstrip().startswith(ATTACHED_MARK)
    assert "not showing on the portal" in email.text
    assert email.attachments[0].filename == "Mime.822"
    assert email.attachments[0].data == b"\r\n" + LEARNER_MAIL


@pytest.mark.parametrize("name", ["fw.eml", "Mime.822"])
def test_a_message_attached_as_an_eml_file_is_read_too(name: str) -> None:
    email = parse(
        _forward(
            _attached(
                base64.encodebytes(LEARNER_MAIL),
                f'Content-Type: application/octet-stream; name="{name}"\r\n'.encode()
                + f'Content-Disposition: attachment; filename="{name}"\r\n'.encode()
                + b"Content-Transfer-Encoding: base64\r\n",
            )
        )
    )
    assert "not showing on the portal" in email.text
    assert [a.filename for a in email.attachments] == [name, "certificate.pdf"]


def test_attached_messages_nest_a_bounded_depth_and_stay_files_below_it() -> None:
    message = LEARNER_MAIL
    for level in range(6):
        message = (
            f"From: level{level}@centre.example\r\nSubject: level {level}\r\n".encode()
            + b"Content-Type: multipart/mixed; boundary=b"
            + str(level).encode()
            + b"\r\n\r\n--b"
            + str(level).encode()
            + b"\r\nContent-Type: message/rfc822\r\n\r\n"
            + message
            + b"\r\n--b"
            + str(level).encode()
            + b"--\r\n"
        )
    email = parse(message)
    assert email.text.count(ATTACHED_MARK) == 3  # MAX_ATTACHED_DEPTH
    assert [a.filename for a in email.attachments] == [
        "level 4.eml",
        "level 3.eml",
        "level 2.eml",
        "level 1.eml",
    ]


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ("Content-Type: image/png", "attachment.png"),
        ("Content-Type: application/pdf", "attachment.pdf"),
        ("Content-Type: text/calendar; method=REQUEST", "attachment.ics"),
        (
            "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "attachment.docx",
        ),
        ("Content-Type: application/x-no-such-type", "attachment.bin"),
        ("Content-Type: text/plain\r\nContent-Disposition: attachment", "attachment.txt"),
    ],
)
def test_unnamed_parts_get_a_name_and_extension_from_their_type(headers: str, name: str) -> None:
    email = parse(_forward(headers.encode() + b"\r\n\r\ndata"))
    assert [a.filename for a in email.attachments] == [name]


def test_inline_html_beside_text_is_shown_and_alternatives_show_once() -> None:
    raw = _forward(
        b"Content-Type: text/html\r\n\r\n<p>The <b>second</b> paragraph, in HTML.</p>",
        b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n"
        b"--alt\r\nContent-Type: text/plain\r\n\r\nplain version\r\n"
        b"--alt\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--alt--",
        b"Content-Type: multipart/alternative; boundary=alt2\r\n\r\n"
        b"--alt2\r\nContent-Type: text/plain\r\n\r\n \r\n"
        b"--alt2\r\nContent-Type: text/html\r\n\r\n<p>only the html says this</p>\r\n--alt2--",
    )
    text = parse(raw).text
    assert "The second paragraph, in HTML." in text
    assert "plain version" in text and "html version" not in text
    assert "only the html says this" in text


UU_DATA = bytes(range(256)) * 3


def _uu(data: bytes) -> bytes:
    import binascii

    return b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))


@pytest.mark.parametrize("with_begin", [True, False])
def test_x_uuencode_parts_are_decoded_with_or_without_a_begin_line(with_begin: bool) -> None:
    body = _uu(UU_DATA) + b"`\nend\n"
    if with_begin:
        body = b"begin 644 results.xls\n" + body
    raw = _forward(
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )
    [attachment] = parse(raw).attachments
    assert attachment.data == UU_DATA
    assert attachment.filename == ("results.xls" if with_begin else "attachment.bin")


def test_text_that_is_not_uuencoded_is_kept_as_it_came() -> None:
    assert uudecode(b"this is not\nuuencoded at all\n") is None
    raw = _forward(
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        b"plain words, not uuencoding\r\n"
    )
    assert parse(raw).attachments[0].data == b"plain words, not uuencoding\r\n"


def test_a_uuencoded_file_inside_a_plain_text_body_becomes_an_attachment() -> None:
    block = (b"begin 600 log.txt\n" + _uu(b"exam log line\n" * 20) + b"`\nend\n").replace(
        b"\n", b"\r\n"
    )
    raw = _forward(b"Content-Type: text/plain\r\n\r\nThe log is below.\r\n" + block + b"Thanks")
    email = parse(raw)
    assert "The log is below." in email.text and "begin 600" not in email.text
    assert "[uuencoded file log.txt: kept as an attachment]" in email.text
    assert [(a.filename, a.data) for a in email.attachments] == [
        ("log.txt", b"exam log line\n" * 20)
    ]


def _html_mail(html: str) -> bytes:
    return (
        b"From: jo@centre.example\r\nSubject: newsletter\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html.encode()
    )


def test_long_html_is_converted_in_full_up_to_the_bound() -> None:
    paragraphs = "".join(f"<p>Paragraph {i} about the MOT exam booking.</p>" for i in range(4000))
    assert len(paragraphs) > 64_000 * 2  # the old cut
    email = parse(_html_mail(f"<html><body>{paragraphs}<p>THE LAST WORDS</p></body></html>"))
    assert "Paragraph 3999 about" in email.text and "THE LAST WORDS" in email.text
    assert email.attachments == [] and "[This HTML part" not in email.text


def test_html_past_the_bound_is_cut_said_and_kept() -> None:
    rows = "".join(f"<tr><td>row {i}</td></tr>" for i in range(MAX_SHOWN_HTML_TAGS))
    html = f"<html><body><p>FIRST WORDS</p><table>{rows}</table><p>LAST WORDS</p></body></html>"
    email = parse(_html_mail(html))
    assert "FIRST WORDS" in email.text and "LAST WORDS" not in email.text
    assert "[This HTML part is" in email.text and "attachment message-1.html" in email.text
    [kept] = email.attachments
    assert (kept.filename, kept.content_type, kept.data) == (
        "message-1.html",
        "text/html",
        html.encode(),
    )


def test_a_multipart_whose_boundary_never_appears_shows_its_text() -> None:
    raw = (
        b"From: jo@centre.example\r\nSubject: help\r\n"
        b'Content-Type: multipart/mixed; boundary="never-used"\r\n\r\n'
        b"Our learner cannot log in to the exam.\r\n"
    )
    email = parse(raw)
    assert (
        email.text.strip() == "Our learner cannot log in to the exam." and email.attachments == []
    )


def test_a_digest_shows_its_messages() -> None:
    raw = (
        b"From: list@lists.example\r\nSubject: digest\r\n"
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nFrom: a@x.example\r\nSubject: one\r\n\r\nfirst message\r\n"
        b"--d\r\n\r\nFrom: b@x.example\r\nSubject: two\r\n\r\nsecond message\r\n--d--\r\n"
    )
    email = parse(raw)
    assert email.text.count(ATTACHED_MARK) == 2 and "second message" in email.text
    assert [a.filename for a in email.attachments] == ["one.eml", "two.eml"]


def test_a_comment_style_name_is_the_greeting_name() -> None:
    email = parse(b"From: marc@example.com (Marc Smith)\r\nSubject: x\r\n\r\nhello")
    assert (email.from_address, email.from_name) == ("marc@example.com", "Marc Smith")
    assert greeting_name(email.from_name, email.from_address) == "Marc Smith"


def test_staff_see_the_attached_message_and_download_it(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    posted = post_email(client, api_token, _forward(_attached(LEARNER_MAIL), _attached(HTML_MAIL)))
    t = ticket(mail_app, posted.get_json()["reference"])
    make_user(mail_app)
    login(client)
    page = client.get(f"/tickets/{t.id}").get_data(as_text=True)
    assert "Please see the two emails below" in page
    assert "Subject: Résultats missing" in page and "send the PIN" in page
    files = {a.filename: a for a in t.messages[0].attachments}
    assert set(files) == {"Résultats missing.eml", "certificate.pdf", "exam locked.eml"}
    download = client.get(f"/attachments/{files['Résultats missing.eml'].id}")
    assert download.status_code == 200 and download.data == LEARNER_MAIL
    assert ".eml" in download.headers["Content-Disposition"]


def test_named_text_parts_not_marked_as_attachments_are_read_when_nothing_else_is() -> None:
    part = (
        b'Content-Type: text/plain; name="booking.txt"\r\n\r\n'
        b"Please book two learners onto the MOT exam on Friday.\r\n"
    )
    email = parse(_forward(part, note=b""))
    assert "book two learners" in email.text
    assert [a.filename for a in email.attachments] == ["booking.txt"]
    with_note = parse(_forward(part, note=b"Booking attached."))
    assert with_note.text.strip() == "Booking attached."
