"""The inbound webhook and JSON API end to end: store, classify, reply through a real SMTP server, thread."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.mailutil import count, deliver, make_email, outbox_rows, post_email, ticket
from triage.orm import InboundEmail, Message, OutboxItem, Ticket


def test_self_serve_email_gets_exactly_one_auto_reply(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    raw = make_email(message_id="<frozen-1@college.example>")
    response = post_email(client, api_token, raw)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "processed" and body["reference"].startswith("IMI-")
    t = ticket(mail_app, body["reference"])
    assert (
        (t.status, t.predicted_category, t.action, t.queue.slug)
        == (
            "open",  # answered, and still open for staff: "frozen half way ... clock still going" is an exam happening now
            "exam_frozen",
            "auto_reply",
            "technical",
        )
    )
    assert deliver(mail_app) == 1
    recorder, _port = smtp_server
    [sent] = recorder.parsed()
    assert sent["Auto-Submitted"] == "auto-replied"
    assert sent["X-Auto-Response-Suppress"] == "All"
    assert sent["In-Reply-To"] == "<frozen-1@college.example>"
    assert "<frozen-1@college.example>" in sent["References"]
    assert sent["Subject"].startswith(f"[{body['reference']}] Re: ")
    assert sent["Message-ID"].endswith("@imi.test>")
    assert sent["To"] == "jo@college.example"
    text = sent.get_body(("plain",)).get_content()
    assert (
        "Turn the computer off" in text
        and body["reference"] in text
        and "reply to this email" in text
    )
    assert recorder.messages[0].rcpt_tos == ["jo@college.example"]
    assert deliver(mail_app) == 0  # nothing twice


def test_same_email_twice_makes_one_ticket_and_one_reply(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    raw = make_email(message_id="<dup@college.example>")
    first = post_email(client, api_token, raw).get_json()
    second = post_email(client, api_token, raw).get_json()
    assert second["reference"] == first["reference"] and second["duplicate"] is True
    assert (
        count(mail_app, Ticket) == 1
        and count(mail_app, OutboxItem) == 1
        and count(mail_app, InboundEmail) == 1
    )


def test_email_without_message_id_is_deduplicated_by_its_bytes(
    mail_app: Flask, api_token: str
) -> None:
    raw = b"From: a@centre.example\r\nSubject: results\r\n\r\nwhen are the results released for june?\r\n"
    client = mail_app.test_client()
    a = post_email(client, api_token, raw).get_json()
    b = post_email(client, api_token, raw).get_json()
    assert a["reference"] == b["reference"] and count(mail_app, Ticket) == 1


def test_staff_only_email_is_routed_with_an_acknowledgement(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raw = make_email(
        subject="Qualification missing",
        body="We cannot see the Level 3 Light Vehicle qualification for our centre at all when we try to book.",
    )
    body = post_email(mail_app.test_client(), api_token, raw).get_json()
    t = ticket(mail_app, body["reference"])
    assert t.predicted_category == "qualification_not_showing"
    assert t.status == "open" and t.queue.slug in {"centre-admin", "triage"}
    deliver(mail_app)
    [ack] = smtp_server[0].parsed()
    text = ack.get_body(("plain",)).get_content()
    assert (
        f"given it the reference {body['reference']}" in text
        and "will reply within one working day" in text
    )


def test_reply_to_auto_reply_reopens_into_technical_and_threads(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    first = post_email(client, api_token, make_email(message_id="<q1@college.example>")).get_json()
    deliver(mail_app)
    [auto] = smtp_server[0].parsed()
    reply = make_email(
        subject="Re: " + auto["Subject"],
        body="Tried that, still frozen. Please help.",
        headers={"In-Reply-To": auto["Message-ID"], "References": auto["Message-ID"]},
    )
    second = post_email(client, api_token, reply).get_json()
    assert second["reference"] == first["reference"]
    t = ticket(mail_app, first["reference"])
    assert t.status == "open" and t.queue.slug == "technical"
    assert [m.direction for m in t.messages] == ["inbound", "outbound", "inbound"]
    assert count(mail_app, Ticket) == 1


def test_out_of_office_reply_to_our_auto_reply_gets_no_answer(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    first = post_email(client, api_token, make_email()).get_json()
    deliver(mail_app)
    [auto] = smtp_server[0].parsed()
    ooo = make_email(
        subject="Automatic reply: " + auto["Subject"],
        body="I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied", "In-Reply-To": auto["Message-ID"]},
    )
    post_email(client, api_token, ooo)
    assert deliver(mail_app) == 0
    t = ticket(mail_app, first["reference"])
    assert (
        t.status == "open" and t.urgent
    )  # unchanged by the out-of-office (urgent, so left open after the answer)
    assert t.messages[-1].auto_submitted_reason == "Auto-Submitted: auto-replied"


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        ("jo@college.example", {"Auto-Submitted": "auto-generated"}),
        ("jo@college.example", {"Precedence": "bulk"}),
        ("jo@college.example", {"Precedence": "junk"}),
        ("jo@college.example", {"List-Id": "<exams.lists.example>"}),
        ("jo@college.example", {"List-Unsubscribe": "<mailto:u@lists.example>"}),
        ("jo@college.example", {"X-Auto-Response-Suppress": "OOF, AutoReply"}),
        ("jo@college.example", {"X-Autoreply": "yes"}),
        ("jo@college.example", {"X-Autorespond": "yes"}),
        ("jo@college.example", {"Return-Path": "<>"}),
        ("MAILER-DAEMON@mx.college.example", {}),
        ("postmaster@college.example", {}),
        ("noreply@college.example", {}),
        ("no-reply@college.example", {}),
        ("support@imi.test", {}),
        (
            "jo@college.example",
            {"Reply-To": "support@imi.test"},
        ),  # an answer would come straight back to us
        ("jo@college.example", {"Reply-To": "Exams <no-reply@college.example>"}),
    ],
)
def test_loop_risk_mail_is_stored_but_never_answered(
    mail_app: Flask, api_token: str, sender: str, headers: dict[str, str]
) -> None:
    body = post_email(
        mail_app.test_client(), api_token, make_email(sender=sender, headers=headers)
    ).get_json()
    assert body["status"] == "processed"
    t = ticket(mail_app, body["reference"])
    assert t.messages[0].auto_submitted_reason
    assert t.action == "none"
    assert count(mail_app, OutboxItem) == 0


def test_message_id_from_our_own_domain_is_not_answered(mail_app: Flask, api_token: str) -> None:
    post_email(mail_app.test_client(), api_token, make_email(message_id="<looped@imi.test>"))
    assert count(mail_app, OutboxItem) == 0


def test_auto_reply_not_sent_twice_in_a_day_for_the_same_category(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    post_email(client, api_token, make_email())
    second = post_email(
        client,
        api_token,
        make_email(
            body="exam frozen again on another pc, screen stuck and the timer still running"
        ),
    ).get_json()
    assert count(mail_app, OutboxItem) == 1
    t = ticket(mail_app, second["reference"])
    assert t.status == "open" and t.action == "none"


def test_hourly_cap_per_sender(mail_app: Flask, api_token: str) -> None:
    mail_app.extensions["triage.settings"].sender_hourly_cap = 2
    client = mail_app.test_client()
    for i in range(4):
        post_email(
            client,
            api_token,
            make_email(subject=f"question {i}", body=f"random question number {i} about something"),
        )
    assert count(mail_app, OutboxItem) == 2


def test_subject_reference_threads_only_for_participants(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    first = post_email(client, api_token, make_email()).get_json()
    ref = first["reference"]
    same = post_email(
        client, api_token, make_email(subject=f"more on [{ref}]", body="any update?")
    ).get_json()
    assert same["reference"] == ref
    stranger = make_email(
        subject=f"[{ref}] hello", body="any update?", sender="eve@elsewhere.example"
    )
    other = post_email(client, api_token, stranger).get_json()
    assert other["reference"] != ref


def test_forged_message_id_token_does_not_thread(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    first = post_email(client, api_token, make_email()).get_json()
    ticket_id = int(first["reference"].split("-")[1])
    forged = f"<imi.{ticket_id}.0123456789abcdef.00000000000000000000@imi.test>"
    reply = make_email(
        subject="hello",
        body="where are the results?",
        sender="eve@elsewhere.example",
        headers={"In-Reply-To": forged},
    )
    assert post_email(client, api_token, reply).get_json()["reference"] != first["reference"]


def test_header_injection_never_reaches_outgoing_headers(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raw = (
        b"From: jo@college.example\r\nMessage-ID: <inj@college.example>\r\n"
        b"Subject: exam frozen =?utf-8?q?=0D=0ABcc:_evil@attacker.example?=\r\n\r\n"
        b"the learners exam has frozen, screen stuck\r\n"
    )
    post_email(mail_app.test_client(), api_token, raw)
    deliver(mail_app)
    [sent] = smtp_server[0].messages
    headers = sent.content.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers and b"\r\nBcc" not in headers
    assert sent.rcpt_tos == ["jo@college.example"]


@pytest.mark.parametrize(
    "reply_to",
    [
        b"=?utf-8?q?jo@college.example=0D=0ABcc:_evil@attacker.example?=",
        b'"jo\r\nBcc: evil@attacker.example" <jo@college.example>',
        b"jo@college.example, evil@attacker.example",
    ],
)
def test_reply_to_cannot_add_recipients_or_headers(
    mail_app: Flask, api_token: str, smtp_server, reply_to: bytes
) -> None:  # type: ignore[no-untyped-def]
    raw = (
        b"From: jo@college.example\r\nMessage-ID: <inj-rt@college.example>\r\nReply-To: "
        + reply_to
        + b"\r\nSubject: exam frozen\r\n\r\nthe learners exam has frozen, screen stuck\r\n"
    )
    response = post_email(mail_app.test_client(), api_token, raw)
    assert response.status_code == 202
    deliver(mail_app)
    for sent in smtp_server[
        0
    ].messages:  # a Reply-To that hid a line break or did not parse gets no answer at all
        headers = sent.content.split(b"\r\n\r\n", 1)[0]
        assert b"Bcc" not in headers and b"evil@attacker.example" not in headers
        assert sent.rcpt_tos == ["jo@college.example"]
    assert ticket(mail_app, response.get_json()["reference"]).centre_email == "jo@college.example"


# --- HTTP errors -------------------------------------------------------------------------------------------


def test_inbound_needs_a_valid_token(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    assert client.post("/api/v1/inbound", data=make_email()).status_code == 401
    bad = client.post(
        "/api/v1/inbound", data=make_email(), headers={"Authorization": "Bearer imi_nope"}
    )
    assert bad.status_code == 401 and "invalid" in bad.get_json()["error"]
    assert count(mail_app, InboundEmail) == 0


def test_revoked_token_is_refused(mail_app: Flask, api_token: str) -> None:
    from triage.helpdesk import tokens
    from triage.orm import ApiToken

    with mail_app.extensions["triage.sessions"]() as s:
        tokens.revoke(s, s.query(ApiToken).one().id)
        s.commit()
    assert post_email(mail_app.test_client(), api_token, make_email()).status_code == 401


def test_oversized_email_is_413_json(mail_app_config, active_model, api_token: str) -> None:  # type: ignore[no-untyped-def]
    from triage import create_app

    app = create_app({**mail_app_config, "INBOUND_MAX_BYTES": 2000})
    response = post_email(app.test_client(), api_token, make_email(body="x" * 5000))
    assert response.status_code == 413 and "error" in response.get_json()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n",
        b"just some text with no headers",
        b"\xff\xfe\x00garbage",
    ],
)
def test_what_is_not_an_email_is_400_json_and_nothing_stored(
    mail_app: Flask, api_token: str, raw: bytes
) -> None:
    response = post_email(mail_app.test_client(), api_token, raw)
    assert response.status_code == 400
    assert "not an email" in response.get_json()["error"]
    assert count(mail_app, InboundEmail) == 0 and count(mail_app, Ticket) == 0


def test_wrong_content_type_is_415(mail_app: Flask, api_token: str) -> None:
    response = mail_app.test_client().post(
        "/api/v1/inbound", json={"a": 1}, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert response.status_code == 415


# --- JSON tickets -------------------------------------------------------------------------------------------


def test_json_ticket_goes_through_the_same_path(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    payload = {
        "from": "coordinator@centre.example",
        "name": "Sam",
        "subject": "Extra time",
        "body": "How do I give a dyslexic learner extra time on the online test?",
    }
    client = mail_app.test_client()
    response = client.post(
        "/api/v1/tickets", json=payload, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert response.status_code == 202
    ref = response.get_json()["reference"]
    again = client.post(
        "/api/v1/tickets", json=payload, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert again.get_json()["reference"] == ref
    deliver(mail_app)
    [sent] = smtp_server[0].parsed()
    assert (
        sent["To"] == "coordinator@centre.example"
        and "25%" in sent.get_body(("plain",)).get_content()
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "a", "body": "b"}, "from"),
        ({"from": "not-an-address", "subject": "a", "body": "b"}, "from"),
        ({"from": "a@b.example", "subject": "", "body": "b"}, "subject"),
        ({"from": "a@b.example", "subject": "a", "body": 5}, "body"),
        ({"from": "a@b.example", "subject": "a", "body": "x" * 100_001}, "body"),
        ({"from": "a@b.example\r\nBcc: x@y.example", "subject": "a", "body": "b"}, "from"),
    ],
)
def test_json_ticket_validation_names_the_field(
    mail_app: Flask, api_token: str, payload: dict, field: str
) -> None:  # type: ignore[type-arg]
    response = mail_app.test_client().post(
        "/api/v1/tickets", json=payload, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert count(mail_app, Ticket) == 0


def test_json_ticket_rejects_non_objects(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    response = client.post(
        "/api/v1/tickets",
        data="[1]",
        headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_model_unavailable_still_makes_a_triage_ticket(
    mail_app_config, api_token: str, session
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from triage import create_app
    from triage.orm import ModelVersion

    session.execute(update(ModelVersion).values(status="retired"))
    session.commit()
    app = create_app(mail_app_config)
    body = post_email(app.test_client(), api_token, make_email()).get_json()
    t = ticket(app, body["reference"])
    assert t.queue.slug == "triage" and t.status == "open" and t.predicted_category is None
    assert len(outbox_rows(app)) == 1  # the acknowledgement
    assert count(app, Message) == 2


def test_centre_reply_on_a_routed_ticket_notifies_its_queue(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    from triage.orm import Queue

    client = mail_app.test_client()
    first = post_email(
        client, api_token, make_email(subject="zebra", body="please send a copy of invoice 4471")
    ).get_json()
    t = ticket(mail_app, first["reference"])
    with mail_app.extensions["triage.sessions"]() as s:
        s.get(Queue, t.queue_id).notify_address = "queue-team@imi.test"  # type: ignore[union-attr]
        s.commit()
    deliver(mail_app)
    [ack] = smtp_server[0].parsed()
    reply = make_email(
        subject="Re: " + ack["Subject"],
        body="Any news on this?",
        headers={"In-Reply-To": ack["Message-ID"]},
    )
    assert post_email(client, api_token, reply).get_json()["reference"] == first["reference"]
    deliver(mail_app)
    note = smtp_server[0].parsed()[-1]
    assert note["To"] == "queue-team@imi.test" and note["Auto-Submitted"] == "auto-generated"
    assert (
        first["reference"] in note["Subject"]
        and "Any news on this?" in note.get_body(("plain",)).get_content()
    )
    assert ticket(mail_app, first["reference"]).status == "open"


def test_database_down_is_503_then_the_retry_succeeds(
    mail_app_config, api_token: str, mail_app: Flask, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A webhook POST while the database is unreachable gets 503 JSON (retry later); the retry then stores it once."""
    from triage import create_app

    down = create_app(
        {
            **mail_app_config,
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "INSTANCE_PATH": tmp_path / "down",
        }
    )
    raw = make_email(message_id="<during-outage@college.example>")
    response = post_email(down.test_client(), api_token, raw)
    assert response.status_code == 503
    assert (
        response.get_json()["error"].startswith("database unavailable")
        and response.headers["Retry-After"]
    )
    assert count(mail_app, InboundEmail) == 0 and count(mail_app, Ticket) == 0
    retry = post_email(mail_app.test_client(), api_token, raw)
    assert retry.status_code == 202 and retry.get_json()["duplicate"] is False
    assert count(mail_app, Ticket) == 1


def test_replies_go_to_the_reply_to_address(mail_app: Flask, api_token: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    """A centre system sending on a coordinator's behalf: the answer goes where Reply-To says, and threads."""
    client = mail_app.test_client()
    raw = make_email(
        sender="SecureAssess <alerts@systems.college.example>",
        headers={"Reply-To": "Jo Coordinator <Jo.Coordinator@College.example>"},
    )
    body = post_email(client, api_token, raw).get_json()
    t = ticket(mail_app, body["reference"])
    assert t.centre_email == "jo.coordinator@college.example"
    assert t.messages[0].from_address == "alerts@systems.college.example"
    assert deliver(mail_app) == 1
    [sent] = smtp_server[0].messages
    assert sent.rcpt_tos == ["jo.coordinator@college.example"]
    # the coordinator answers with the reference in the subject only (no In-Reply-To): it threads
    follow = make_email(
        sender="jo.coordinator@college.example", subject=f"Re: [{body['reference']}] still frozen"
    )
    assert post_email(client, api_token, follow).get_json()["reference"] == body["reference"]


def test_a_broken_reply_to_falls_back_to_the_sender(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raw = make_email(headers={"Reply-To": "not an address at all"})
    t = ticket(mail_app, post_email(mail_app.test_client(), api_token, raw).get_json()["reference"])
    assert t.centre_email == "jo@college.example"


def test_long_loop_reason_and_sender_still_make_a_ticket(mail_app: Flask, api_token: str) -> None:
    """A 230-character no-reply sender gives a long reason and audit actor: they are cut, never a failure.

    (Found by the fuzz test on PostgreSQL, which enforces VARCHAR(200): the mail stayed pending for good.)
    """
    sender = "noreply-" + "x" * 200 + "@college.example"
    body = post_email(mail_app.test_client(), api_token, make_email(sender=sender)).get_json()
    assert body["status"] == "processed"
    t = ticket(mail_app, body["reference"])
    assert t.action == "none" and len(t.messages[0].auto_submitted_reason or "") <= 200
    follow = make_email(
        sender=sender, subject=f"Re: [{body['reference']}] more", headers={"Auto-Submitted": "no"}
    )
    assert post_email(mail_app.test_client(), api_token, follow).get_json()["status"] == "processed"
