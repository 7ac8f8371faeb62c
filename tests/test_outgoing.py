"""What centres receive, checked on a real SMTP server (aiosmtpd) after the webhook and the worker.

Threading headers, machines never answered, who gets the answer, greetings, readable text with an HTML
alternative, staff replies with macros, and forwarded mail shown whole to staff.
"""

from __future__ import annotations

import base64
import itertools
import re
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests import factories
from tests.mailutil import count, deliver, make_email, outbox_rows, post_email, ticket
from tests.webutil import login, make_user, post_form
from triage import catalogue
from triage.mail import compose
from triage.mail.names import person_name
from triage.mail.recipients import PLAIN_ADDRESS, registrable_domain, valid_recipient
from triage.orm import AuditEvent, Macro, OutboxItem, Ticket

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
MSGID = re.compile(r"^<[^<>@\s\"]+@[^<>@\s\"]+>$")


# --- helpers ---------------------------------------------------------------------------------------------


def header_block(raw: bytes) -> bytes:
    """The top-level header block of a raw message as received."""
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]


def raw_headers(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of every top-level header, exactly as written on the wire."""
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", header_block(raw)).decode("ascii")
    return [
        (line.split(":", 1)[0], line.split(":", 1)[1].strip())
        for line in re.split(r"\r?\n", unfolded)
        if line
    ]


def raw_header(raw: bytes, name: str) -> str | None:
    """One header's unfolded value as written on the wire (None when absent)."""
    return next((v for k, v in raw_headers(raw) if k.lower() == name.lower()), None)


def assert_msgid_list(raw: bytes, name: str) -> list[str]:
    """The header is a list of whole <left@right> tokens: never encoded, never folded inside an id."""
    value = raw_header(raw, name)
    assert value is not None, f"no {name}"
    assert "=?" not in value, (name, value)
    tokens = value.split()
    assert tokens and all(MSGID.match(t) for t in tokens), (name, value)
    for line in header_block(raw).split(b"\r\n"):
        assert len(line) <= 998
        assert not re.search(rb"<[^>\s]*$", line) or line.lower().startswith(b"content-type"), (
            line
        )  # no id cut
    return tokens


def plain(msg: EmailMessage) -> str:
    """The text/plain part of a received message."""
    body = msg.get_body(("plain",))
    assert body is not None
    return body.get_content().replace(
        "\r\n", "\n"
    )  # the wire's CRLF line ends, as a client shows them


def html(msg: EmailMessage) -> str:
    """The text/html part of a received message."""
    body = msg.get_body(("html",))
    assert body is not None
    return body.get_content().replace("\r\n", "\n")


def received(smtp_server: Any) -> list[tuple[Any, EmailMessage]]:
    """(envelope, parsed message) for everything the SMTP server accepted."""
    return [
        (e, message_from_bytes(e.content, policy=policy.default)) for e in smtp_server[0].messages
    ]


def long_id(length: int, tag: str = "A") -> str:
    """A msg-id of exactly `length` characters, Exchange style."""
    right = "@EX01.college.example>"
    return "<" + (tag * length)[: length - 1 - len(right)] + right


def wire_email(headers: str, sender: str = "Jo Bloggs <jo@college.example>") -> bytes:
    """A plain email with msg-id headers written exactly as given (the email package would encode long ones)."""
    return (
        f"From: {sender}\r\nTo: support@imi.test\r\nSubject: learner's exam has frozen\r\n{headers}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "learner's exam has frozen half way, screen stuck and the clock still going\r\n"
    ).encode()


def mdn(
    original_id: str, subject: str, sender: str = "Jo Bloggs <jo@college.example>", extra: str = ""
) -> bytes:
    """A read receipt (RFC 8098 disposition notification) naming one message only by Original-Message-ID."""
    return (
        f"From: {sender}\r\nTo: support@imi.test\r\nSubject: Read: {subject}\r\n"
        f"Message-ID: <mdn.{abs(hash(original_id + subject))}@college.example>\r\n{extra}MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message was read on Tuesday 24 November.\r\n"
        "--b1\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Reporting-UA: college.example; Microsoft Outlook 16.0\r\nFinal-Recipient: rfc822;jo@college.example\r\n"
        f"Original-Message-ID: {original_id}\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n"
        "--b1--\r\n"
    ).encode()


def dsn(original_id: str) -> bytes:
    """A delivery status notification (RFC 3464) whose returned headers carry `original_id`."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.college.example>\r\nTo: support@imi.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn.1@mx.college.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b2\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.college.example\r\n\r\n"
        "Final-Recipient: rfc822; jo@college.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--b2\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@imi.test\r\nTo: jo@college.example\r\nMessage-ID: {original_id}\r\nSubject: hello\r\n"
        "--b2--\r\n"
    ).encode()


def arf() -> bytes:
    """An abuse feedback report (RFC 5965) about a message that is not ours."""
    return (
        b"From: abuse@bigmail.example\r\nTo: support@imi.test\r\nSubject: Abuse report\r\n"
        b"Message-ID: <arf.1@bigmail.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b3"\r\n\r\n'
        b"--b3\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        b"--b3\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: fbl/1.0\r\n"
        b"Version: 1\r\n\r\n"
        b"--b3\r\nContent-Type: message/rfc822\r\n\r\nFrom: someone@else.example\r\n"
        b"Message-ID: <spam.1@else.example>\r\nSubject: buy now\r\n\r\nbuy now\r\n"
        b"--b3--\r\n"
    )


def forward(style: str) -> bytes:
    """A centre forwarding a learner's email to us, in one client's forward style."""
    markers = {
        "gmail": "---------- Forwarded message ---------\nFrom: Jordan Price <jordan@learner.example>\n"
        "Date: Mon, 23 Nov 2026 at 08:01\nSubject: exam\nTo: <exams@college.example>\n",
        "outlook": "-----Original Message-----\nFrom: Jordan Price <jordan@learner.example>\n"
        "Sent: 23 November 2026 08:01\nTo: Exams <exams@college.example>\nSubject: exam\n",
        "apple": "Begin forwarded message:\n\nFrom: Jordan Price <jordan@learner.example>\n"
        "Subject: exam\nDate: 23 November 2026 at 08:01:00 GMT\n",
    }
    body = (
        "Hi, please see below from one of our learners, can you advise?\n\nThanks\nKim\n\n"
        + markers[style]
        + "\nHello, my exam froze halfway through <b>question 12</b> & the timer kept going. What happens now?\n"
    )
    return make_email(
        subject=f"Fwd: exam ({style})",
        body=body,
        sender="Kim Wallace <kim@college.example>",
        message_id=f"<fwd.{style}@college.example>",
    )


def _session(app: Flask) -> Any:
    return app.extensions["triage.sessions"]()


def history(app: Flask, ticket_id: int) -> list[AuditEvent]:
    """The audit trail of one ticket."""
    with _session(app) as s:
        return list(
            s.scalars(
                select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.id)
            )
        )


# --- 1. msg-id headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [70, 90, 100])
def test_long_msgids_are_never_encoded_or_folded_inside(
    mail_app: Flask, api_token: str, smtp_server, length: int
) -> None:  # type: ignore[no-untyped-def]
    own, parent, root = long_id(length, "M"), long_id(length, "P"), long_id(length, "R")
    raw = wire_email(
        f"Message-ID: {own}\r\nIn-Reply-To: {parent}\r\nReferences: {root}\r\n {parent}\r\n"
    )
    assert post_email(mail_app.test_client(), api_token, raw).status_code == 202
    assert deliver(mail_app) == 1
    [(envelope, sent)] = received(smtp_server)
    [message_id] = assert_msgid_list(envelope.content, "Message-ID")
    assert assert_msgid_list(envelope.content, "In-Reply-To") == [own]
    assert assert_msgid_list(envelope.content, "References") == [root, parent, own]
    assert sent["In-Reply-To"] == own and sent["Message-ID"] == message_id
    assert message_id.endswith("@imi.test>")


def test_ids_that_cannot_be_written_as_they_are_are_left_out() -> None:
    msg = compose.build(
        message_id="<imi.1.x@imi.test>",
        from_name="IMI",
        from_address="support@imi.test",
        to="jo@college.example",
        subject="s",
        body="b",
        in_reply_to="<no at sign>",
        references=[
            "<a b@c>",
            "<ok@college.example>",
            "<é@x.example>",
            "<sha256.1@no-message-id.invalid>",
            "<=?utf-8?q?x?=@y.example>",
        ],
        auto_submitted=None,
    )
    raw = compose.to_bytes(msg)
    assert raw_header(raw, "In-Reply-To") is None
    assert assert_msgid_list(raw, "References") == ["<ok@college.example>"]


def test_a_long_reference_chain_keeps_the_first_and_the_newest() -> None:
    chain = [f"<{i:03d}.{'x' * 60}@college.example>" for i in range(40)]
    msg = compose.build(
        message_id="<imi.1.x@imi.test>",
        from_name="IMI",
        from_address="support@imi.test",
        to="jo@college.example",
        subject="s",
        body="b",
        in_reply_to=chain[-1],
        references=chain,
        auto_submitted=None,
    )
    refs = assert_msgid_list(compose.to_bytes(msg), "References")
    assert len(refs) == compose.MAX_REFERENCES and refs[0] == chain[0] and refs[-1] == chain[-1]


# --- 2. machines are never answered ------------------------------------------------------------------------


def _answered_ticket(app: Flask, api_token: str, smtp_server: Any) -> tuple[str, EmailMessage]:
    first = post_email(
        app.test_client(), api_token, make_email(message_id="<q.1@college.example>")
    ).get_json()
    assert deliver(app) == 1
    return first["reference"], received(smtp_server)[-1][1]


@pytest.mark.parametrize("shape", ["mdn", "read-subject", "dsn", "delivered-subject"])
def test_reports_about_our_mail_attach_silently(
    mail_app: Flask, api_token: str, smtp_server, shape: str
) -> None:  # type: ignore[no-untyped-def]
    reference, ours = _answered_ticket(mail_app, api_token, smtp_server)
    our_id, subject = ours["Message-ID"], ours["Subject"]
    status = ticket(mail_app, reference).status
    read = make_email(
        subject="Read: " + subject, body="Your message was read.", headers={"In-Reply-To": our_id}
    )
    delivered = make_email(
        subject="Delivered: " + subject, body="Delivered.", headers={"References": our_id}
    )
    # the MDN and the DSN name our message only inside their report parts
    raw = {
        "mdn": mdn(our_id, subject),
        "read-subject": read,
        "dsn": dsn(our_id),
        "delivered-subject": delivered,
    }[shape]
    assert post_email(mail_app.test_client(), api_token, raw).get_json()["reference"] == reference
    t = ticket(mail_app, reference)
    assert t.status == status and count(mail_app, Ticket) == 1  # no new ticket, nothing changed
    assert t.messages[-1].auto_submitted_reason and t.messages[-1].direction == "inbound"
    assert deliver(mail_app) == 0 and len(smtp_server[0].messages) == 1


def test_a_receipt_never_reopens_a_resolved_ticket(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    reference, ours = _answered_ticket(mail_app, api_token, smtp_server)
    with _session(mail_app) as s:
        t = s.get(Ticket, ticket(mail_app, reference).id)
        t.status, t.confirmed_category = "resolved", "exam_frozen"
        s.commit()
    post_email(mail_app.test_client(), api_token, mdn(ours["Message-ID"], ours["Subject"]))
    assert ticket(mail_app, reference).status == "resolved" and count(mail_app, OutboxItem) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (arf(), "ARF"),
        (mdn("<unknown.1@elsewhere.example>", "exam frozen"), "MDN"),
        (
            make_email(
                subject="Not read: exam booking",
                body="Your message was deleted without being read.",
            ),
            "receipt",
        ),
        ((SAMPLES / "12-out-of-office.eml").read_bytes(), "Auto-Submitted"),
        (make_email(subject="I am away", headers={"X-Autoreply": "yes"}), "x-autoreply"),
        (dsn("<unknown.2@elsewhere.example>"), "bounce"),
    ],
)
def test_automatic_mail_is_stored_and_resolved_no_action_needed(
    mail_app: Flask, api_token: str, smtp_server, raw: bytes, reason: str
) -> None:  # type: ignore[no-untyped-def]
    body = post_email(mail_app.test_client(), api_token, raw).get_json()
    t = ticket(mail_app, body["reference"])
    assert (t.status, t.resolution, t.queue.slug, t.action) == (
        "resolved",
        "no action needed",
        "triage",
        "none",
    )
    assert reason.lower() in (t.messages[0].auto_submitted_reason or "").lower()
    assert t.resolved_at is not None and t.confirmed_category is None  # never trained on
    assert deliver(mail_app) == 0 and smtp_server[0].messages == []
    make_user(mail_app)
    client = mail_app.test_client()
    login(client)
    listing = client.get("/queues/triage", query_string={"status": "resolved"}).get_data(
        as_text=True
    )
    assert f"/tickets/{t.id}" in listing  # still listable
    assert "no action needed" in client.get(f"/tickets/{t.id}").get_data(as_text=True)


# --- 3. who gets the answer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "registrable"),
    [
        ("mail.college.ac.uk", "college.ac.uk"),
        ("college.ac.uk", "college.ac.uk"),
        ("exams.trust.nhs.uk", "trust.nhs.uk"),
        ("a.b.co.uk", "b.co.uk"),
        ("council.gov.uk", "council.gov.uk"),
        ("mail.charity.org.uk", "charity.org.uk"),
        ("office.school1.lancs.sch.uk", "school1.lancs.sch.uk"),
        ("Mail.College.Example.", "college.example"),
        ("gmail.com", "gmail.com"),
        ("co.uk", "co.uk"),
    ],
)
def test_registrable_domain_uses_the_public_suffix_list(domain: str, registrable: str) -> None:
    assert registrable_domain(domain) == registrable


@pytest.mark.parametrize(
    ("sender", "reply_to", "expected"),
    [
        (
            "jo@college.ac.uk",
            "exams@mail.college.ac.uk",
            "exams@mail.college.ac.uk",
        ),  # a subdomain: same org
        ("alerts@systems.centre.co.uk", "Exams <exams@centre.co.uk>", "exams@centre.co.uk"),
        (
            "jo@alpha.ac.uk",
            "x@beta.ac.uk",
            "jo@alpha.ac.uk",
        ),  # same public suffix, different organisations
        ("a@school1.lancs.sch.uk", "b@school2.lancs.sch.uk", "a@school1.lancs.sch.uk"),
        ("jo@college.example", "victim@elsewhere.example", "jo@college.example"),
    ],
)
def test_reply_to_only_within_the_senders_organisation(
    mail_app: Flask, api_token: str, smtp_server, sender: str, reply_to: str, expected: str
) -> None:  # type: ignore[no-untyped-def]
    raw = make_email(sender=sender, headers={"Reply-To": reply_to})
    ref = post_email(mail_app.test_client(), api_token, raw).get_json()["reference"]
    assert deliver(mail_app) == 1
    [(envelope, sent)] = received(smtp_server)
    assert envelope.rcpt_tos == [expected] and sent["To"] == expected
    t = ticket(mail_app, ref)
    ignored = [e for e in history(mail_app, t.id) if e.action == "recipient.reply_to_ignored"]
    if expected == sender:
        assert ignored and "outside the sender's domain" in ignored[0].details["reason"]
    else:
        assert not ignored


def test_domain_hourly_cap_counts_every_address_of_a_domain(
    mail_app: Flask, api_token: str
) -> None:
    mail_app.extensions["triage.settings"].domain_hourly_cap = 2
    client = mail_app.test_client()
    for i, host in enumerate(
        ["college.ac.uk", "mail.college.ac.uk", "staff.college.ac.uk", "other.ac.uk"]
    ):
        post_email(
            client,
            api_token,
            make_email(
                subject=f"q{i}",
                sender=f"user{i}@{host}",
                body=f"random question number {i} about something",
            ),
        )
    rows = outbox_rows(mail_app)
    assert sorted(r.recipient for r in rows) == [
        "user0@college.ac.uk",
        "user1@mail.college.ac.uk",
        "user3@other.ac.uk",
    ]
    with _session(mail_app) as s:
        capped = s.scalars(
            select(Ticket).where(Ticket.centre_email == "user2@staff.college.ac.uk")
        ).one()
        assert capped.status == "open" and capped.action == "none"
    assert any(
        "college.ac.uk" in str(e.details.get("reply_suppressed"))
        for e in history(mail_app, capped.id)
    )


def test_domain_cap_holds_inside_one_worker_batch(mail_app: Flask, api_token: str) -> None:
    """Three addresses of one organisation in one batch with a cap of 2: the third gets no automatic mail."""
    from tests.mailutil import process_all

    mail_app.extensions["triage.settings"].domain_hourly_cap = 2
    client = mail_app.test_client()
    senders = ["a@college.ac.uk", "b@mail.college.ac.uk", "c@staff.college.ac.uk", "d@other.ac.uk"]
    for i, sender in enumerate(senders):
        raw = make_email(
            subject=f"q{i}",
            sender=sender,
            body=f"random question number {i} about something",
            message_id=f"<batch-{i}@college.ac.uk>",
        )
        post_email(client, api_token, raw, process=False)
    assert process_all(mail_app) == 4
    assert sorted(r.recipient for r in outbox_rows(mail_app)) == [
        "a@college.ac.uk",
        "b@mail.college.ac.uk",
        "d@other.ac.uk",
    ]


@pytest.mark.parametrize(
    ("results", "answered"),
    [
        (
            [
                "mx.imi.test; spf=pass smtp.mailfrom=college.example; dmarc=fail (p=reject) header.from=college.example"
            ],
            False,
        ),
        (["mx.imi.test 1; dkim=none; DMARC=FAIL header.from=college.example"], False),
        (
            ["evil.example; dmarc=fail header.from=college.example"],
            True,
        ),  # someone else's header: not believed
        (
            [
                "mx.imi.test; dkim=pass (dmarc=fail in a comment) header.d=college.example; dmarc=pass"
            ],
            True,
        ),
        (["mx.imi.test; dmarc=pass header.from=college.example", "mx.imi.test; dmarc=fail"], False),
    ],
)
def test_dmarc_failure_from_our_server_sends_no_automatic_answer(
    mail_app: Flask, api_token: str, smtp_server, results: list[str], answered: bool
) -> None:  # type: ignore[no-untyped-def]
    mail_app.extensions["triage.settings"].trusted_authserv_id = "mx.imi.test"
    msg = message_from_bytes(make_email(), policy=policy.default)
    for value in results:
        msg["Authentication-Results"] = value
    ref = post_email(mail_app.test_client(), api_token, msg.as_bytes()).get_json()["reference"]
    assert deliver(mail_app) == (1 if answered else 0)
    t = ticket(mail_app, ref)
    if not answered:
        assert (t.queue.slug, t.status, t.action) == ("triage", "open", "none")
        make_user(mail_app)
        client = mail_app.test_client()
        login(client)
        assert "No automatic answer: DMARC fail" in client.get(f"/tickets/{t.id}").get_data(
            as_text=True
        )


def test_without_a_trusted_authserv_id_no_authentication_results_is_believed(
    mail_app: Flask, api_token: str
) -> None:
    raw = make_email(
        headers={"Authentication-Results": "mx.imi.test; dmarc=fail header.from=college.example"}
    )
    post_email(mail_app.test_client(), api_token, raw)
    assert count(mail_app, OutboxItem) == 1


def test_crlf_in_an_encoded_from_name_never_reaches_a_recipient(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    name = base64.b64encode(b"Name X\r\nBcc: injected@evil.example").decode()
    raw = (
        f"From: =?utf-8?b?{name}?= <crlf@centre.example>\r\nTo: support@imi.test\r\n"
        "Subject: learner's exam has frozen\r\nMessage-ID: <crlf.1@centre.example>\r\n\r\n"
        "learner's exam has frozen half way, screen stuck and the clock still going\r\n"
    ).encode()
    ref = post_email(mail_app.test_client(), api_token, raw).get_json()["reference"]
    t = ticket(mail_app, ref)
    # a From with an injected line break is not believed: no address is recorded at all
    assert t.centre_email == "" and t.action == "none" and t.queue.slug == "triage"
    assert any(e.action == "recipient.flagged" for e in history(mail_app, t.id))
    assert count(mail_app, OutboxItem) == 0  # flagged: no automatic answer
    make_user(mail_app)
    client = mail_app.test_client()
    login(client)
    page = f"/tickets/{t.id}"
    assert "From header held a line break" in client.get(page).get_data(as_text=True)
    answer = post_form(client, page, f"{page}/reply", {"body": "We have looked into this."})
    assert answer.status_code == 400  # refused: there is no address to answer (the text kept)
    assert "cannot take a reply" in answer.get_data(as_text=True)
    deliver(mail_app)
    assert received(smtp_server) == []


def test_an_outgoing_recipient_must_be_one_parsed_address() -> None:
    for bad in [
        "a@b.example, c@d.example",
        "a@b.example\r\nBcc: c@d.example",
        "Name <a@b.example>",
        "",
        "nope",
    ]:
        with pytest.raises(ValueError, match="address"):
            valid_recipient(bad)
    assert valid_recipient("jo.bloggs+exams@college.ac.uk") == "jo.bloggs+exams@college.ac.uk"


@settings(max_examples=500, deadline=None)
@given(st.from_regex(PLAIN_ADDRESS, fullmatch=True))
def test_the_plain_address_shortcut_accepts_only_what_the_full_parser_takes_as_it_is(
    address: str,
) -> None:
    parsed = Address(addr_spec=address)  # the check valid_recipient skips for these
    assert parsed.addr_spec == address and parsed.username and parsed.domain


# --- 4. names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Okafor, Chidi", "Chidi Okafor"),
        ('"Shah, Priya"', "Priya Shah"),
        ("OKAFOR, CHIDI", "Chidi Okafor"),
        ("kayleigh fox", "Kayleigh Fox"),
        ("SEAN MCDONALD", "Sean McDonald"),
        ("mary o'brien", "Mary O'Brien"),
        ("anne-marie smith-jones", "Anne-Marie Smith-Jones"),
        ("ZOË ØDEGAARD", "Zoë Ødegaard"),
        ("Gareth Lloyd", "Gareth Lloyd"),
        ("DeShawn McKay", "DeShawn McKay"),
        ("Priya Shah (Harrowfield College)", "Priya Shah"),
        ("'Jo Bloggs' via Exams Team", "Jo Bloggs"),
        ("王伟", "王伟"),
        ("Exams Office", None),
        ("exams officer", None),
        ("Admin", None),
        ("Reception", None),
        ("noreply", None),
        ("IMI Awards Support", None),
        ("jo@college.example", None),
        ("", None),
        ("   ", None),
        ("Name X Bcc: injected@evil.example", None),
    ],
)
def test_display_names_become_a_persons_name(display: str, expected: str | None) -> None:
    assert person_name(display, "someone@college.example") == expected


# --- 5. text that reads well --------------------------------------------------------------------------------


def test_answers_with_steps_are_numbered_lists() -> None:
    for slug in (
        "unlock_with_pin",
        "exam_frozen",
        "obtain_results",
        "paper_based_exams",
        "exam_access_secureclient",
    ):
        blocks = compose.blocks(compose.answer_text(catalogue.get(slug)))
        assert any(b["kind"] == "ol" and len(b["items"]) >= 2 for b in blocks), slug


_LINES = st.sampled_from(
    [
        "Dear Sam,",
        "1. Open SecureAssess.",
        "2) Enter the PIN.",
        "- a bullet",
        "* another",
        "> quoted",
        ">",
        "On Monday Sam wrote:",
        "See https://imi.example/a?b=1&c=2.",
        "<b>&amp;",
        "",
        " ",
        "\t",
        "\r",
        "text",
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_LINES | st.text(max_size=30), max_size=30).map("\n".join))
def test_html_rendered_chunk_by_chunk_is_the_whole_body_rendered_at_once(text: str) -> None:
    """The HTML alternative caches each blank-line-separated chunk; together they must be the body's blocks."""
    whole = compose._HTML_ENV.get_template("blocks.html").module.render(compose.blocks(text))  # type: ignore[attr-defined]
    page = compose.html_body(text, "Title")
    start = page.index('color:#1f1f1f;">\n') + len('color:#1f1f1f;">\n')
    assert page[start : page.index("\n</div>\n</body>")] == whole


def _assert_reads_well(sent: EmailMessage) -> None:
    """Unwrapped paragraphs, an HTML alternative with the same words, no internal FAQ wording."""
    assert sent.get_content_type() == "multipart/alternative"
    text = plain(sent)
    lines = text.splitlines()
    for above, below in itertools.pairwise(lines):  # no line broken in the middle of a sentence
        if above.strip() and below.strip() and not below.lstrip().startswith((">", "-")):
            assert re.search(
                r"[.,:;!?)]$|^\s*\d+\.|^(Kind regards|IMI Awards)", above.strip()
            ) or re.match(r"^(\d+\.|IMI Awards|[A-Z][a-z]+ [A-Z])", below.strip()), (above, below)
    assert (
        "Thank you for contacting IMI Awards about" not in text and "Should be resolved" not in text
    )
    assert "Contact IMI Awards." not in text
    page = html(sent)
    assert re.search(r'<html lang="en', page) and "<title>" in page and 'style="' in page
    assert not re.search(r"<img|<link|<script|src=|url\(|@import", page, re.IGNORECASE)
    words = lambda s: re.findall(r"[\w%'-]+", s)  # noqa: E731
    from html import unescape

    body = re.sub(r"<title>.*?</title>", " ", page, flags=re.S)
    unlisted = re.sub(
        r"^\s*(\d{1,3}[.)]|[-*\u2022])\s+", "", text.replace(">", " "), flags=re.MULTILINE
    )
    assert words(unescape(re.sub(r"<[^>]+>", " ", body))) == words(unlisted)


def test_answers_read_well_and_acknowledgements_say_when(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    mail_app.extensions["triage.settings"].response_time_text = "within two working days"
    client = mail_app.test_client()
    post_email(
        client, api_token, make_email(sender="Okafor, Chidi <c.okafor@college.example>")
    )  # exam frozen
    post_email(
        client,
        api_token,
        make_email(
            subject="zebra",
            body="please send a copy of invoice 4471",
            sender="kayleigh fox <k.fox@dunmore.example>",
        ),
    )
    deliver(mail_app)
    # sent over several connections at once: told apart by recipient, not by order
    sent_to = {sent["To"].addresses[0].addr_spec: sent for _e, sent in received(smtp_server)}
    answer, ack = sent_to["c.okafor@college.example"], sent_to["k.fox@dunmore.example"]
    for sent in (answer, ack):
        _assert_reads_well(sent)
    assert plain(answer).startswith("Dear Chidi Okafor,\n") and "1. Turn the computer off" in plain(
        answer
    )
    assert "<ol" in html(answer) and "<li" in html(answer)
    assert plain(ack).startswith(
        "Dear Kayleigh Fox,\n"
    ) and "will reply within two working days." in plain(ack)


# --- 6. staff replies and macros ----------------------------------------------------------------------------


def test_macros_are_seeded_for_every_category(session) -> None:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(Macro)).all()
    assert sorted(m.category for m in rows) == sorted(catalogue.SLUGS)
    for m in rows:
        assert m.body.strip() and m.title.strip()
        assert "Contact IMI Awards" not in m.body and "Should be resolved" not in m.body
        assert not re.search(
            r"^\s*(dear|hi|hello)\b", m.body, re.IGNORECASE
        )  # the greeting is added when sent


def test_staff_reply_greets_signs_once_and_quotes_the_centre(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    make_user(mail_app)  # "Alex Agent"
    make_user(mail_app, "anon@imi.test", name="")
    ref = post_email(
        mail_app.test_client(),
        api_token,
        make_email(
            subject="zebra",
            body="Our centre needs a copy of invoice 4471 please.",
            sender='"Okafor, Chidi" <c.okafor@college.example>',
        ),
    ).get_json()["reference"]
    deliver(mail_app)
    t = ticket(mail_app, ref)
    page = f"/tickets/{t.id}"
    client = mail_app.test_client()
    login(client)
    html_page = client.get(page).get_data(as_text=True)
    assert "Start from a macro" in html_page and "Contact IMI Awards." not in html_page
    with _session(mail_app) as s:
        macro = s.scalars(select(Macro).where(Macro.category == "errors_within_exam")).one()
        body = macro.body
    assert f'data-macro-id="{macro.id}"' in html_page
    post_form(client, page, f"{page}/reply", {"body": body})
    anon = mail_app.test_client()
    login(anon, "anon@imi.test")
    post_form(anon, page, f"{page}/reply", {"body": "Hi Chidi,\n\nAll sorted now.\n\nThanks,\nSam"})
    deliver(mail_app)
    _e1, _ack = received(smtp_server)[0]
    (_env, first), (_env2, second) = received(smtp_server)[1:]
    text = plain(first)
    assert text.startswith("Dear Chidi Okafor,\n\n" + body.splitlines()[0])
    assert text.count("Alex Agent") == 1 and text.count("IMI Awards Centre Support") == 1
    assert "Kind regards,\nAlex Agent\nIMI Awards Centre Support" in text
    assert "> Our centre needs a copy of invoice 4471 please." in text and "wrote:" in text
    assert first["In-Reply-To"] == t.messages[0].message_id and first["Auto-Submitted"] is None
    _assert_reads_well(first)
    assert "<blockquote" in html(first)
    other = plain(second)
    assert other.startswith("Hi Chidi,") and "Dear" not in other.split("\n\n")[0]
    assert other.count("IMI Awards Centre Support") == 1 and "Kind regards" not in other
    assert "Thanks,\nSam\nIMI Awards Centre Support" in other


def test_admins_edit_macros_and_staff_see_them(app: Flask) -> None:
    make_user(app)
    make_user(app, "boss@imi.test", "admin")
    agent = app.test_client()
    login(agent)
    assert agent.get("/admin/macros").status_code == 403
    admin = app.test_client()
    login(admin, "boss@imi.test")
    with _session(app) as s:
        macro = s.scalars(select(Macro).where(Macro.category == "exam_frozen")).one()
        macro_id = macro.id
    assert (
        admin.post(
            "/admin/macros", data={"macro_id": str(macro_id), "title": "x", "body": "y"}
        ).status_code
        == 400
    )
    new_body = "Please restart the PC <now> & re-enter the keycode."
    post_form(
        admin,
        "/admin/macros",
        "/admin/macros",
        {
            "macro_id": str(macro_id),
            "title": "Frozen exam",
            "body": new_body,
            "category": "exam_frozen",
        },
    )
    post_form(
        admin,
        "/admin/macros",
        "/admin/macros",
        {"title": "Chasing", "body": "Any news?", "category": ""},
    )
    refused = post_form(admin, "/admin/macros", "/admin/macros", {"title": "", "body": "x"})
    assert "needs a title" in admin.get(refused.headers["Location"]).get_data(as_text=True)
    with _session(app) as s:
        assert s.get(Macro, macro_id).body == new_body  # type: ignore[union-attr]
        chasing = s.scalars(select(Macro).where(Macro.title == "Chasing")).one()
        actions = {e.action for e in s.scalars(select(AuditEvent))}
    assert {"macro.changed", "macro.created"} <= actions
    with factories.session_of(app) as s:
        frozen = factories.ticket(s, category="exam_frozen")
    page = agent.get(f"/tickets/{frozen.id}").get_data(as_text=True)
    assert "Please restart the PC &lt;now&gt; &amp; re-enter the keycode." in page
    assert page.index("Frozen exam") < page.index("Chasing")  # the ticket's category first
    post_form(
        admin, "/admin/macros", "/admin/macros", {"macro_id": str(chasing.id), "op": "delete"}
    )
    with _session(app) as s:
        assert s.get(Macro, chasing.id) is None


# --- 7. forwarded mail -------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["gmail", "outlook", "apple"])
def test_forwarded_mail_is_shown_whole_to_staff(
    mail_app: Flask, api_token: str, style: str
) -> None:
    ref = post_email(mail_app.test_client(), api_token, forward(style)).get_json()["reference"]
    make_user(mail_app)
    client = mail_app.test_client()
    login(client)
    page = client.get(f"/tickets/{ticket(mail_app, ref).id}").get_data(as_text=True)
    assert "Forwarded or original message, in full" in page
    assert "please see below from one of our learners" in page
    assert "Jordan Price &lt;jordan@learner.example&gt;" in page
    assert "halfway through &lt;b&gt;question 12&lt;/b&gt; &amp; the timer kept going" in page


# --- done when: every client shape, header by header ---------------------------------------------------------

SAMPLE_NAMES = {
    "01": "Gareth Lloyd",
    "02": "Priya Shah",
    "03": "Sue Haines",
    "04": "Martin Okafor",
    "05": "Helen Brannigan",
    "06": "Tomasz Nowicki",
    "07": "Jennifer Marsh",
    "08": "Rob Tennant",
    "09": "Angela Birtwistle",
    "10": "Kayleigh Fox",
    "11": "Paul Ashcroft",
}
EXPECTED_HEADERS = {
    "Message-ID",
    "Date",
    "From",
    "To",
    "Subject",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
}


def _extra_cases() -> list[tuple[str, bytes, str | None, str]]:
    """(name, raw, expected recipient or None for no answer, expected greeting name)."""
    long_ids = wire_email(
        f"Message-ID: {long_id(100)}\r\nReferences: {long_id(90, 'R')}\r\n"
        f"In-Reply-To: {long_id(90, 'R')}\r\n",
        "Jo Bloggs <jo@longid.example>",
    )
    last_first = make_email(
        sender='"Okafor, Chidi" <c.okafor@eastbourne.example>', subject="exam frozen"
    )
    forwarded = forward("gmail").replace(b"kim@college.example", b"kim@fwd.example")
    foreign = make_email(
        sender="Dana Cole <dana@centre-a.example>", headers={"Reply-To": "victim@elsewhere.example"}
    )
    receipt = mdn("<someone.else@centre-b.example>", "hello", sender="Lee <lee@centre-b.example>")
    qp = (
        b"From: =?utf-8?q?Zo=C3=AB_=C3=98degaard?= <zoe@centre-c.example>\r\nTo: support@imi.test\r\n"
        b"Subject: =?utf-8?q?Exam_fr=C3=B6zen?=\r\nMessage-ID: <qp.1@centre-c.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"The learner=E2=80=99s exam has frozen half way, screen stuck and the clock still go=\r\ning.\r\n"
    )
    return [
        ("long-id", long_ids, "jo@longid.example", "Jo Bloggs"),
        ("last-first", last_first, "c.okafor@eastbourne.example", "Chidi Okafor"),
        ("forward", forwarded, "kim@fwd.example", "Kim Wallace"),
        ("foreign-reply-to", foreign, "dana@centre-a.example", "Dana Cole"),
        ("read-receipt", receipt, None, ""),
        ("non-ascii-qp", qp, "zoe@centre-c.example", "Zoë Ødegaard"),
    ]


def test_every_client_shape_through_webhook_and_worker_header_by_header(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    from triage.mail.parse import parse

    cases: list[tuple[str, bytes, str | None, str]] = []
    for path in sorted(SAMPLES.glob("*.eml")):
        raw = path.read_bytes()
        prefix = path.name[:2]
        expected = None if prefix == "12" else parse(raw).from_address
        cases.append((path.name, raw, expected, SAMPLE_NAMES.get(prefix, "")))
    cases += _extra_cases()
    client = mail_app.test_client()
    for name, raw, expected, greeting in cases:
        before = len(smtp_server[0].messages)
        response = post_email(client, api_token, raw)
        assert response.status_code == 202, (name, response.get_json())
        deliver(mail_app)
        got = received(smtp_server)[before:]
        if expected is None:
            assert got == [], name
            t = ticket(mail_app, response.get_json()["reference"])
            assert (t.status, t.resolution) == ("resolved", "no action needed"), name
            continue
        [(envelope, sent)] = got
        inbound = parse(raw)
        wire = envelope.content
        assert {k for k, _v in raw_headers(wire)} == EXPECTED_HEADERS, (name, raw_headers(wire))
        assert envelope.mail_from == "support@imi.test" and envelope.rcpt_tos == [expected], name
        assert raw_header(wire, "To") == expected, name
        assert sent["From"].addresses[0].addr_spec == "support@imi.test", name
        [our_id] = assert_msgid_list(wire, "Message-ID")
        assert our_id.endswith("@imi.test>"), name
        assert assert_msgid_list(wire, "In-Reply-To") == [inbound.message_id], name
        refs = assert_msgid_list(wire, "References")
        assert (
            refs[-1] == inbound.message_id
            and refs[:-1] == inbound.references[-(compose.MAX_REFERENCES - 1) :]
        ), name
        reference = response.get_json()["reference"]
        assert sent["Subject"].startswith(f"[{reference}] Re: "), (name, sent["Subject"])
        assert (
            raw_header(wire, "Auto-Submitted") == "auto-replied"
            and raw_header(wire, "X-Auto-Response-Suppress") == "All"
        )
        assert sent["Date"] is not None and raw_header(wire, "MIME-Version") == "1.0"
        assert raw_header(wire, "Content-Type").startswith("multipart/alternative;"), name  # type: ignore[union-attr]
        text = plain(sent)
        assert text.startswith(f"Dear {greeting or 'colleague'},\n\n"), (name, text[:80])
        assert reference in text, name
        t = ticket(mail_app, reference)
        if any(m.kind == "auto_reply" for m in t.messages):
            category = t.predicted_category or ""
            first_line = compose.answer_text(catalogue.get(category)).splitlines()[0]
            assert first_line in text, (name, category)
        else:
            assert "will reply within one working day" in text, name
        _assert_reads_well(sent)


def test_an_address_no_mail_can_go_to_is_refused_clearly(mail_app: Flask, api_token: str) -> None:
    """A staff reply to an unusable address is a clear error, and a bad queue address never stops a centre's reply."""
    from triage.orm import Queue

    ref = post_email(
        mail_app.test_client(), api_token, make_email(subject="zebra", body="invoice 4471 please")
    ).get_json()
    t = ticket(mail_app, ref["reference"])
    with _session(mail_app) as s:
        row = s.get(Ticket, t.id)
        row.centre_email = "two words@college.example"  # type: ignore[union-attr]
        s.get(Queue, t.queue_id).notify_address = "queue team@imi.test"  # type: ignore[union-attr]
        s.commit()
    rows_before = count(mail_app, OutboxItem)
    follow = make_email(
        sender="jo@college.example", subject=f"Re: [{ref['reference']}] any news?", body="any news?"
    )
    assert post_email(mail_app.test_client(), api_token, follow).get_json()["status"] == "processed"
    make_user(mail_app)
    client = mail_app.test_client()
    login(client)
    page = f"/tickets/{t.id}"
    response = post_form(client, page, f"{page}/reply", {"body": "Here it is."})
    said = response.get_data(as_text=True)  # the page again, the reason shown and the text kept
    assert response.status_code == 400 and "cannot take a reply" in said
    assert "Here it is.</textarea>" in said
    assert count(mail_app, OutboxItem) == rows_before


@settings(max_examples=300, deadline=None)
@given(
    subject=st.text(st.characters(codec="utf-8"), max_size=200),
    body=st.text(st.characters(codec="utf-8"), max_size=600)
    | st.sampled_from(
        ["", "\n", "--x\n--", "From here\r\nto there\r", "=" * 200, "line\n" * 40, "é" * 100]
    ),
    name=st.text(max_size=60),
    references=st.lists(
        st.from_regex(r"<[a-z0-9.]{1,80}@[a-z.]{1,20}>", fullmatch=True), max_size=25
    ),
)
def test_our_writer_gives_the_standard_generators_bytes(
    subject: str, body: str, name: str, references: list[str]
) -> None:
    """`to_bytes` writes the messages `build` makes itself: byte for byte what the email package writes."""
    msg = compose.build(
        message_id="<imi.1.x@imi.test>",
        from_name=name,
        from_address="support@imi.test",
        to="jo@college.example",
        subject=subject,
        body=body,
        in_reply_to=(references or [None])[-1],
        references=references,
        auto_submitted=compose.AUTO_REPLIED,
    )
    raw = compose.to_bytes(msg)
    assert raw == msg.as_bytes(policy=compose.POLICY)
    assert raw.isascii() and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert message_from_bytes(raw, policy=policy.default).get_body(("plain",)) is not None


def test_a_message_our_writer_does_not_make_is_written_by_the_standard_generator() -> None:
    msg = compose.build(
        message_id="<imi.1.x@imi.test>",
        from_name="IMI",
        from_address="support@imi.test",
        to="jo@college.example",
        subject="s",
        body="b",
        in_reply_to=None,
        references=[],
        auto_submitted=None,
    )
    msg.epilogue = "the end"
    assert compose.to_bytes(msg) == msg.as_bytes(policy=compose.POLICY) and compose.to_bytes(
        msg
    ).endswith(b"the end")
