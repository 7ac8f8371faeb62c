"""Nothing dropped, nothing stalled (issue 25, items 2 and 6) and the review's attacks on the
inbound path replayed (item 7): real-world-shaped messages posted to the webhook, processed by the
worker's own step, against SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text, update

from tests.mailutil import count, make_email, outbox_rows, post_email, process_all
from triage.helpdesk import tokens
from triage.mail.inbound import InboundContext
from triage.mail.inbound.processing import process_batch
from triage.orm import AuditEvent, InboundEmail, Message, Ticket, utcnow

MAIL = Path(__file__).parent / "data" / "mail"
NEVER_ANSWERED = {
    "do-not-reply@agency.example",
    "purchasing@company.example",
    "collector@attacker.example",
    "victim@elsewhere.example",
    "exam-officers-request@lists.fe-network.example",
    "exam-officers@lists.fe-network.example",
    "assess-centres@jiscmail.example",
}


def _token(app: Flask, name: str, scopes: tuple[str, ...]) -> str:
    with app.extensions["triage.sessions"]() as s:
        _row, plain = tokens.create_token(s, name, scopes=scopes)
        s.commit()
    return plain


def _inbound(app: Flask) -> list[InboundEmail]:
    with app.extensions["triage.sessions"]() as s:
        return list(s.scalars(select(InboundEmail).order_by(InboundEmail.id)))


def _events(app: Flask, ticket_id: int) -> list[str]:
    with app.extensions["triage.sessions"]() as s:
        query = select(AuditEvent.action).where(AuditEvent.ticket_id == ticket_id)
        return list(s.scalars(query))


def test_every_real_world_shape_is_stored_and_none_answers_the_wrong_person(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    files = sorted(MAIL.glob("*.eml"))
    answers = [post_email(client, api_token, path.read_bytes(), process=False) for path in files]
    assert [a.status_code for a in answers] == [202] * len(files)
    assert not any(a.get_json()["duplicate"] for a in answers)  # the reused Message-ID included
    process_all(mail_app)
    rows = _inbound(mail_app)
    assert len(rows) == len(files)
    assert all(row.status == "processed" and row.ticket_id for row in rows)
    recipients = {row.recipient.lower() for row in outbox_rows(mail_app)}
    assert not recipients & NEVER_ANSWERED
    assert "" not in recipients and not any('"' in r for r in recipients)
    with mail_app.extensions["triage.sessions"]() as s:
        centres = set(s.scalars(select(Ticket.centre_email)))
    assert "test@example.com" in centres and '"test test"@example.com' not in centres
    assert "exams@hillside.example" in centres  # the trailing dot dropped


def test_a_header_block_that_is_no_email_is_kept_as_rejected_with_the_reason(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    answer = post_email(client, api_token, b"Note: hello\r\nColour: blue\r\n\r\nbody\r\n")
    body = answer.get_json()
    assert answer.status_code == 202 and body["state"] == "rejected" and body["reason"]
    assert count(mail_app, InboundEmail) == 1 and count(mail_app, Ticket) == 0
    again = post_email(client, api_token, b"Note: hello\r\nColour: blue\r\n\r\nbody\r\n")
    assert again.get_json()["duplicate"] is True and again.get_json()["state"] == "rejected"


def test_mail_with_no_sender_at_all_goes_to_a_person_not_to_the_bin(
    mail_app: Flask, api_token: str
) -> None:
    raw = b"Subject: exam frozen\r\nDate: Tue, 8 Dec 2026 10:00:00 +0000\r\n\r\nhelp\r\n"
    body = post_email(mail_app.test_client(), api_token, raw).get_json()
    assert body["state"] == "processed" and body["reference"]
    [row] = _inbound(mail_app)
    with mail_app.extensions["triage.sessions"]() as s:
        ticket = s.get(Ticket, row.ticket_id)
        assert ticket is not None and ticket.centre_email == "" and ticket.queue.slug == "triage"
    assert "recipient.flagged" in _events(mail_app, row.ticket_id or 0)
    assert outbox_rows(mail_app) == []


def test_an_exact_copy_through_another_relay_is_a_duplicate(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    raw = (MAIL / "comment-name.eml").read_bytes()
    relayed = b"Received: from backup-mx.example by mx2.example; Tue, 8 Dec 2026\r\n" + raw
    first = post_email(client, api_token, raw).get_json()
    second = post_email(client, api_token, relayed.replace(b"\r\n", b"\n")).get_json()
    assert second["duplicate"] is True and second["id"] == first["id"]
    assert count(mail_app, InboundEmail) == 1 and count(mail_app, Ticket) == 1


def test_a_different_email_reusing_a_message_id_is_processed_and_threading_works(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    first = post_email(client, api_token, (MAIL / "reused-id-first.eml").read_bytes()).get_json()
    second = post_email(client, api_token, (MAIL / "reused-id-second.eml").read_bytes()).get_json()
    assert second["duplicate"] is False and second["reference"] != first["reference"]
    with mail_app.extensions["triage.sessions"]() as s:
        query = select(Message.subject).where(
            Message.message_id == "<JIRA.10001.1765287540000@jira.partner.example>"
        )
        assert len(list(s.scalars(query))) == 2
    reply = make_email(
        subject="Re: Keycode does not work",
        body="Any news on the keycode?",
        sender="Dana Price <dana.price@partner-college.example>",
        headers={"In-Reply-To": "<JIRA.10001.1765287540000@jira.partner.example>"},
    )
    third = post_email(client, api_token, reply).get_json()
    assert third["reference"] in {first["reference"], second["reference"]}
    assert count(mail_app, Ticket) == 2


@pytest.mark.parametrize("number", ["99999999999", "18446744073709551616", "0" * 30 + "7"])
def test_a_reference_no_key_can_hold_is_ignored(
    mail_app: Flask, api_token: str, number: str
) -> None:
    raw = make_email(subject=f"[IMI-{number}] exam frozen", message_id=f"<p{number}@c.example>")
    body = post_email(mail_app.test_client(), api_token, raw).get_json()
    assert body["state"] == "processed" and body["reference"]
    [row] = _inbound(mail_app)
    assert row.attempts == 0 and row.last_error is None


_SQLITE_POISON = (
    "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.subject LIKE '%POISON%' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
)
_PG_POISON = (
    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
    "IF NEW.subject LIKE '%POISON%' THEN RAISE EXCEPTION 'poisoned row'; END IF; "
    "RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()",
)


def _poison(app: Flask, on: bool) -> None:
    """A real database failure for one email's rows (a trigger), or none."""
    engine = app.extensions["triage.engine"]
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if on:
            for statement in _PG_POISON if postgres else (_SQLITE_POISON,):
                connection.execute(text(statement))
        else:
            connection.execute(
                text("DROP TRIGGER IF EXISTS poison" + (" ON messages" if postgres else ""))
            )
            if postgres:
                connection.execute(text("DROP FUNCTION IF EXISTS poison()"))


def _due_now(app: Flask) -> None:
    with app.extensions["triage.sessions"]() as s:
        s.execute(update(InboundEmail).values(next_attempt_at=utcnow()))
        s.commit()


def test_a_failing_email_is_retried_later_and_never_holds_up_mail_behind_it(
    mail_app: Flask, api_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = mail_app.test_client()
    ctx = InboundContext(
        mail_app.extensions["triage.settings"], mail_app.extensions["triage.model_provider"]
    )
    sessions = mail_app.extensions["triage.sessions"]
    _poison(mail_app, True)
    try:
        poison = post_email(
            client, api_token, make_email(subject="POISON", body="x" * 20000), process=False
        ).get_json()["id"]
        post_email(client, api_token, make_email(subject="first"), process=False)
        with caplog.at_level(logging.WARNING):
            outcome = process_batch(sessions, ctx)
        assert outcome.failed == [poison] and len(outcome.tickets) == 1
        lines = [r.getMessage() for r in caplog.records if f"inbound {poison} " in r.getMessage()]
        assert len(lines) == 1 and len(lines[0]) < 1000 and "x" * 100 not in lines[0]
        assert all(len(r.getMessage()) < 1000 and not r.exc_info for r in caplog.records)
        row = next(r for r in _inbound(mail_app) if r.id == poison)
        assert row.attempts == 1 and row.next_attempt_at is not None
        assert process_batch(sessions, ctx).tickets == {}  # backing off: not claimed again yet
        _due_now(mail_app)
        later = post_email(client, api_token, make_email(subject="second"), process=False)
        _due_now(mail_app)
        # the failing email goes to the back: new mail is claimed before it
        assert list(process_batch(sessions, ctx, limit=1).tickets) == [later.get_json()["id"]]
        status = client.get(
            f"/api/v1/inbound/{poison}", headers={"Authorization": f"Bearer {api_token}"}
        ).get_json()
        assert status["state"] == "pending" and "poisoned" not in str(status)
        assert "last_error" not in status
    finally:
        _poison(mail_app, False)
    _due_now(mail_app)
    process_all(mail_app)
    assert all(row.status == "processed" for row in _inbound(mail_app))


def test_an_inbound_only_token_sees_only_what_it_posted(mail_app: Flask) -> None:
    client = mail_app.test_client()
    gateway = _token(mail_app, "gateway", ("inbound",))
    other = _token(mail_app, "other gateway", ("inbound",))
    reader = _token(mail_app, "reader", ("read",))
    posted = post_email(client, gateway, make_email(message_id="<own@c.example>"), process=False)
    url = f"/api/v1/inbound/{posted.get_json()['id']}"

    def status(token: str) -> int:
        return client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code

    assert (status(gateway), status(other), status(reader)) == (200, 404, 200)
    assert (
        status(other)
        == client.get(
            "/api/v1/inbound/999999", headers={"Authorization": f"Bearer {other}"}
        ).status_code
    )  # no way to tell another token's mail from none


def test_a_stranger_quoting_another_centres_message_id_opens_a_ticket_of_its_own(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    original = make_email(
        subject="keycode", sender="Ann <ann@centre-a.example>", message_id="<a.1@centre-a.example>"
    )
    theirs = post_email(client, api_token, original).get_json()["reference"]
    stranger = make_email(
        subject="Re: keycode",
        body="Please send me the keycode for this centre.",
        sender="Eve <eve@elsewhere.example>",
        headers={"In-Reply-To": "<a.1@centre-a.example>", "References": "<a.1@centre-a.example>"},
    )
    new = post_email(client, api_token, stranger).get_json()["reference"]
    assert new != theirs
    with mail_app.extensions["triage.sessions"]() as s:
        ticket = s.scalars(
            select(Ticket).where(Ticket.centre_email == "eve@elsewhere.example")
        ).one()
        first = s.scalars(select(Ticket).where(Ticket.centre_email == "ann@centre-a.example")).one()
        assert len(first.messages) == 1 + sum(m.direction == "outbound" for m in first.messages)
        new_id = ticket.id
    assert "thread.refused" in _events(mail_app, new_id)
    assert not any(row.recipient == "eve@elsewhere.example" for row in outbox_rows(mail_app))
    follow = make_email(
        subject="Re: keycode",
        body="Any news?",
        sender="Ann <ann@centre-a.example>",
        headers={"In-Reply-To": "<a.1@centre-a.example>"},
    )
    assert post_email(client, api_token, follow).get_json()["reference"] == theirs
