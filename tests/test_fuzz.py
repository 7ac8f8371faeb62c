"""Property-based fuzzing (hypothesis) of the email parser and the inbound webhook: never a crash or a 500."""

from __future__ import annotations

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.mailutil import process_all
from triage.mail.contact_form import message_from_form
from triage.mail.parse import MAX_DEPTH, MAX_PARTS, UnparseableEmail, parse
from triage.orm import InboundEmail, Message, OutboxItem, Ticket

HEADER_NAMES = [
    "From",
    "To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Auto-Submitted",
    "List-Id",
    "Return-Path",
    "X-Weird",
]
CHARSETS = [
    "utf-8",
    "iso-8859-1",
    "windows-1252",
    "koi8-r",
    "x-unknown",
    "utf-16",
    "",
    "us-ascii\x00",
]
TYPES = [
    "text/plain",
    "text/html",
    "multipart/mixed",
    "multipart/alternative",
    "message/rfc822",
    "application/octet-stream",
    "multipart/report; report-type=delivery-status",
    "text/x-odd",
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
# header values of the shapes that once made header parsing quadratic (long display names, folds, encoded words)
HOSTILE_VALUES = [
    '"' + "A " * 6_000 + '" <jo@centre.example>',
    "B" * 20_000 + " <jo@centre.example>",
    "word\r\n " * 5_000,
    "=?utf-8?b?w6k=?= " * 1_000,
    '"A B" <a@b.example>, ' * 600,
]
# units that, repeated, made reply stripping and its regexes quadratic (blank lines, "On ", quotes, headers)
HOSTILE_UNITS = [
    "\r\n",
    "\n",
    "On ",
    "> ",
    ">",
    "\n>",
    " \n",
    "On x\nwrote:\n",
    "From: a\nSent: b\n",
    "-- \n",
    "Thanks,\n",
    "Sent from my phone\n",
    "<div>",
    "<br>",
    "<table><tr><td>",
    "=?utf-8?q?a?= ",
    "\t",
    "---------- Forwarded message ---------\n",
    "-----Original Message-----\n",
    "\u00a0",
    "_" * 40 + "\n",
]


@st.composite
def emails(draw: st.DrawFn) -> bytes:
    """Raw messages: real-looking headers with hostile values, odd MIME structure, odd charsets, random bytes."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = draw(
            st.one_of(
                text,
                st.sampled_from(
                    [
                        "jo@centre.example",
                        "<a@b>",
                        "=?utf-8?q?=0D=0ABcc:_x@y?=",
                        '"Evil\r\nBcc: x@y" <e@x.example>',
                        "a" * 5000,
                        *HOSTILE_VALUES,
                    ]
                ),
            )
        )
        lines.append(f"{name}: {value}".encode("utf-8", "surrogatepass"))
    boundary = draw(st.sampled_from(["b1", "", "==", "x" * 80]))
    ctype = draw(st.sampled_from(TYPES))
    lines.append(
        f'Content-Type: {ctype}; charset="{draw(st.sampled_from(CHARSETS))}"; boundary="{boundary}"'.encode()
    )
    body = [b""]
    for _ in range(draw(st.integers(0, 30))):
        body.append(f"--{boundary}".encode())
        body.append(f"Content-Type: {draw(st.sampled_from(TYPES))}".encode())
        body.append(
            draw(
                st.sampled_from(
                    [
                        b"Content-Transfer-Encoding: base64",
                        b"Content-Transfer-Encoding: quoted-printable",
                        b"",
                    ]
                )
            )
        )
        body.append(b"")
        body.append(draw(st.binary(max_size=300)))
    body.append(draw(st.binary(max_size=500)))
    return b"\r\n".join(lines + body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(emails(), st.binary(max_size=3000)))
def test_parser_never_crashes_and_is_bounded(raw: bytes) -> None:
    try:
        email = parse(raw)
    except UnparseableEmail:
        return
    assert len(email.attachments) <= MAX_PARTS
    for value in (email.subject, email.from_address, email.from_name, *email.headers.values()):
        assert (
            len(value.splitlines()) <= 1
        )  # no CR, LF, NEL, U+2028 ... anywhere a header could carry it
    assert email.message_id.startswith("<")


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    """Bodies built from a few units repeated thousands of times (the shapes of quadratic-time inputs)."""
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        pieces.append(draw(st.sampled_from(HOSTILE_UNITS)) * draw(st.integers(1, 30_000)))
        pieces.append(draw(text))
    return "".join(pieces)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=hostile_bodies(),
    subject=st.one_of(text, st.sampled_from(HOSTILE_VALUES)),
    html=st.booleans(),
)
def test_h1_hostile_repetitions_are_parsed_and_cleaned_within_the_budget(
    body: str, subject: str, html: bool
) -> None:
    """Parsing and cleaning any repetition-built email takes a small part of the 1 s CPU budget."""
    import time

    from triage.classifier.cleaning import MAX_BODY_CHARS, clean_body, model_text

    ctype = "text/html" if html else "text/plain"
    raw = (
        f"From: jo@centre.example\r\nSubject: {subject}\r\nContent-Type: {ctype}; charset=utf-8\r\n\r\n"
        f"{body}"
    ).encode("utf-8", "surrogatepass")

    def parse_and_clean() -> tuple[float, str | None]:
        start = time.process_time()
        try:
            email = parse(raw)
        except UnparseableEmail:
            return time.process_time() - start, None
        cleaned = clean_body(email.text, email.html)
        model_text(email.subject, email.text)
        return time.process_time() - start, cleaned

    spent, cleaned = parse_and_clean()
    if (
        spent >= 0.5
    ):  # CPU time inflates on a busy machine: the best of three runs decides, as in test_hostile_mail
        spent = min(spent, *(parse_and_clean()[0] for _ in range(2)))
    assert spent < 0.5
    assert cleaned is None or len(cleaned) <= MAX_BODY_CHARS


@settings(max_examples=200, deadline=None)
@given(
    sender_name=st.text(max_size=60),
    subject=st.text(max_size=120),
    body=st.text(min_size=1, max_size=500),
)
def test_json_tickets_always_make_a_parseable_single_line_email(
    sender_name: str, subject: str, body: str
) -> None:
    """The JSON API builds an RFC 822 message from any text: it never raises, and its headers stay one line."""
    raw = message_from_form("jo@college.example", sender_name, subject, body, "imi.test")
    email = parse(raw)
    assert email.from_address == "jo@college.example"
    assert len(email.subject.splitlines()) <= 1 and len(email.from_name.splitlines()) <= 1


def test_inbound_endpoint_never_answers_500(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    sessions = mail_app.extensions["triage.sessions"]
    seen = {"n": 0}

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(raw=st.one_of(emails(), st.binary(max_size=2000)))
    def check(raw: bytes) -> None:
        seen["n"] += 1
        response = client.post(
            "/api/v1/inbound",
            data=raw,
            headers={"Authorization": f"Bearer {api_token}", "Content-Type": "message/rfc822"},
        )
        assert response.status_code in {202, 400}, (
            response.status_code,
            response.get_data(as_text=True)[:300],
        )
        assert response.is_json
        if response.status_code == 202:
            process_all(mail_app)  # the worker's processing step, as a worker runs it
        with sessions() as s:
            if response.status_code == 400:
                assert (
                    s.scalars(select(InboundEmail.id).where(InboundEmail.raw == raw)).all() == []
                )  # nothing kept
                return
            body = response.get_json()
        process_all(mail_app)  # the webhook only stores; a worker makes the ticket
        with sessions() as s:
            row = s.get(InboundEmail, body["id"])  # a Message-ID may be reused by another email
            assert row is not None and row.message_id == body["message_id"]
            if not body["duplicate"]:
                assert row.raw == raw  # kept whole, byte for byte
            if row.status == "rejected":  # kept, with the reason, though it makes no ticket
                assert row.ticket_id is None and body.get("reason")
                return
            assert row.status == "processed" and row.ticket_id is not None
            assert s.get(Ticket, row.ticket_id) is not None

    check()
    assert seen["n"] >= 50
    with (
        sessions() as s
    ):  # nothing half-written anywhere: every ticket has its email, every reply its outbox row
        bare = select(Ticket.id).where(
            ~select(Message.id).where(Message.ticket_id == Ticket.id).exists()
        )
        assert s.scalars(bare).all() == []
        outbound = s.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "outbound")
        )
        assert outbound == s.scalar(select(func.count()).select_from(OutboxItem))
        assert (
            s.scalar(
                select(func.count())
                .select_from(InboundEmail)
                .where(InboundEmail.status == "pending")
            )
            == 0
        )


def _nested(depth: int) -> bytes:
    head = b"From: jo@college.example\r\nSubject: nested\r\nMessage-ID: <deep@college.example>\r\n"
    opening = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(depth)
    )
    closing = b"".join(f"\r\n--b{i}--\r\n".encode() for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nhello\r\n" + closing


def _many_parts(n: int) -> bytes:
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(n)
    )
    return (
        b"From: jo@college.example\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" + parts + b"--b--\r\n"
    )


def test_pathological_shapes_are_cut_to_the_parser_limits() -> None:
    """Deep nesting, thousands of parts and megabyte headers parse, within the part and depth limits."""
    deep = parse(_nested(1000))
    # the parts below the depth limit are not walked: kept as one opaque, bounded block of text
    assert deep.subject == "nested" and "hello" not in deep.text[:1000] and len(deep.text) < 200_000
    assert parse(_nested(MAX_DEPTH - 2)).text.strip() == "hello"
    many = parse(_many_parts(5000))
    assert len(many.attachments) < MAX_PARTS and many.text.strip() == "see attached"
    huge = parse(b"From: jo@college.example\r\nSubject: " + b"A" * 1_000_000 + b"\r\n\r\nbody\r\n")
    assert len(huge.subject) <= 998 and huge.text.strip() == "body"
    long_line = parse(b"From: jo@college.example\r\nSubject: x\r\n\r\n" + b"word " * 400_000)
    assert long_line.text.startswith("word word")
