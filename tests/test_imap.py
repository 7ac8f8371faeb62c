"""The IMAP poller against a real Dovecot server: store first, then flag; a checkpoint that survives restarts."""

from __future__ import annotations

import imaplib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.mailutil import count, deliver, make_email
from triage.mail import imap
from triage.mail.inbound import InboundContext, receive
from triage.orm import ImapCheckpoint, OutboxItem, Ticket
from triage.worker.loop import Worker
from triage.worker.tasks import main_loop_tasks, task_context


@pytest.fixture
def imap_app(mail_app_config: dict[str, Any], active_model, dovecot: int) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    """The mail app pointed at a fresh mailbox (its own user) on the Dovecot server."""
    from triage import create_app

    user = f"u{uuid.uuid4().hex[:10]}"
    config = {
        **mail_app_config,
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": dovecot,
        "IMAP_USER": user,
        "IMAP_PASSWORD": "secret",
        "IMAP_TLS": False,
    }
    app = create_app(config)
    yield app
    app.extensions["triage.engine"].dispose()


def _imap(app: Flask) -> imaplib.IMAP4:
    settings = app.extensions["triage.settings"]
    conn = imaplib.IMAP4("127.0.0.1", settings.imap_port)
    conn.login(settings.imap_user, "secret")
    conn.select("INBOX")
    return conn


def _append(app: Flask, *raws: bytes) -> None:
    conn = _imap(app)
    for raw in raws:
        assert conn.append("INBOX", None, imaplib.Time2Internaldate(time.time()), raw)[0] == "OK"
    conn.logout()


def _seen_uids(app: Flask) -> set[int]:
    conn = _imap(app)
    data = conn.uid("SEARCH", None, "SEEN")[1][0] or b""
    conn.logout()
    return {int(x) for x in data.split()}


def _poll(app: Flask, fail_on: int | None = None) -> int:
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    ctx = InboundContext(settings, app.extensions["triage.model_provider"])
    calls = {"n": 0}

    def store_one(raw: bytes) -> object:
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise RuntimeError("simulated crash before storing")
        return receive(sessions, ctx, raw, "imap", keep_unparseable=True)

    return imap.poll(sessions, settings, store_one)


def _emails(n: int) -> list[bytes]:
    bodies = [
        "the exam has frozen on pc 2, screen stuck",
        "when will the june results be released?",
        "learner is absent today, what do we do with his exam",
        "how do I set a PIN for the exams?",
    ]
    return [
        make_email(
            subject=f"enquiry {i}", body=bodies[i % len(bodies)], sender=f"c{i}@centre{i}.example"
        )
        for i in range(n)
    ]


def test_poll_stores_then_flags_and_checkpoints(imap_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    _append(imap_app, *_emails(3))
    assert _poll(imap_app) == 3
    assert count(imap_app, Ticket) == 3
    assert _seen_uids(imap_app) == {1, 2, 3}
    assert _poll(imap_app) == 0
    _append(imap_app, *_emails(4)[3:])
    assert _poll(imap_app) == 1
    assert count(imap_app, Ticket) == 4
    with imap_app.extensions["triage.sessions"]() as s:
        checkpoint = s.scalars(select(ImapCheckpoint)).one()
        assert checkpoint.last_uid == 4
    deliver(imap_app)
    assert len(smtp_server[0].messages) == count(imap_app, OutboxItem) == 4


def test_crash_midway_neither_skips_nor_repeats(imap_app: Flask) -> None:
    _append(imap_app, *_emails(3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _poll(imap_app, fail_on=2)
    assert count(imap_app, Ticket) == 1
    assert _seen_uids(imap_app) == {1}  # the unstored message was not flagged
    assert _poll(imap_app) == 2  # the restart picks up from the checkpoint
    assert count(imap_app, Ticket) == 3
    assert _seen_uids(imap_app) == {1, 2, 3}


def test_a_stop_request_ends_the_poll_between_two_messages(imap_app: Flask) -> None:
    """SIGTERM reaches the poll as should_stop: it stops after the message in hand; the next poll resumes."""
    sessions, settings = (
        imap_app.extensions["triage.sessions"],
        imap_app.extensions["triage.settings"],
    )
    ctx = InboundContext(settings, imap_app.extensions["triage.model_provider"])
    _append(imap_app, *_emails(4))
    stored: list[object] = []

    def store_one(raw: bytes) -> object:
        stored.append(receive(sessions, ctx, raw, "imap", keep_unparseable=True))
        return stored[-1]

    assert imap.poll(sessions, settings, store_one, should_stop=lambda: len(stored) >= 2) == 2
    assert count(imap_app, Ticket) == 2 and _seen_uids(imap_app) == {1, 2}
    assert _poll(imap_app) == 2
    assert count(imap_app, Ticket) == 4 and _seen_uids(imap_app) == {1, 2, 3, 4}


def test_stored_but_not_checkpointed_is_not_duplicated(imap_app: Flask) -> None:
    _append(imap_app, *_emails(2))
    assert _poll(imap_app) == 2
    with imap_app.extensions[
        "triage.sessions"
    ]() as s:  # as if the process died before moving the checkpoint
        s.scalars(select(ImapCheckpoint)).one().last_uid = 0
        s.commit()
    assert _poll(imap_app) == 2
    assert count(imap_app, Ticket) == 2 and count(imap_app, OutboxItem) == 2


def test_uidvalidity_change_rescans_without_duplicates(imap_app: Flask) -> None:
    _append(imap_app, *_emails(2))
    _poll(imap_app)
    with imap_app.extensions["triage.sessions"]() as s:
        s.scalars(select(ImapCheckpoint)).one().uidvalidity = 1
        s.commit()
    assert _poll(imap_app) == 2
    assert count(imap_app, Ticket) == 2


def test_worker_polls_and_delivers_one_reply(imap_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    _append(imap_app, make_email(message_id="<imap-e2e@college.example>"))
    settings, sessions = (
        imap_app.extensions["triage.settings"],
        imap_app.extensions["triage.sessions"],
    )
    worker = Worker(main_loop_tasks(task_context(settings, sessions)), sessions, settings)
    done = worker.run_once()
    assert done["poll-imap"] == 1 and done["deliver-outbox"] == 1
    assert worker.run_once()["poll-imap"] == 0
    [reply] = smtp_server[0].parsed()
    assert reply["In-Reply-To"] == "<imap-e2e@college.example>"


def test_unparseable_mail_in_the_inbox_is_kept_not_lost(imap_app: Flask) -> None:
    from triage.orm import InboundEmail

    _append(imap_app, b"Note: no email header at all\r\n\r\nhello\r\n")
    assert _poll(imap_app) == 1
    with imap_app.extensions["triage.sessions"]() as s:
        row = s.scalars(select(InboundEmail)).one()
        assert row.status == "rejected" and "From" in (row.last_error or "")


def test_mail_with_no_sender_in_the_inbox_goes_to_a_person(imap_app: Flask) -> None:
    from triage.orm import InboundEmail, Ticket

    _append(imap_app, b"Subject: no sender at all\r\n\r\nhello\r\n")
    assert _poll(imap_app) == 1
    with imap_app.extensions["triage.sessions"]() as s:
        row = s.scalars(select(InboundEmail)).one()
        ticket = s.get(Ticket, row.ticket_id)
        assert row.status == "processed" and ticket is not None
        assert ticket.centre_email == "" and ticket.queue.slug == "triage"


def test_wrong_password_is_a_clear_cli_error(imap_app: Flask, tmp_path: Path) -> None:
    imap_app.extensions["triage.settings"].imap_password = "wrong"
    result = imap_app.test_cli_runner().invoke(args=["triage", "poll-imap"])
    assert result.exit_code != 0 and "IMAP poll failed" in result.output
