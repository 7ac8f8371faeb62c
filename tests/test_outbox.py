"""Outbox delivery against a real SMTP server: backoff on 4xx, permanent failure on 5xx, no double sends."""

from __future__ import annotations

import threading
from datetime import timedelta

from flask import Flask
from sqlalchemy import func, select, update

from tests.mailutil import deliver, make_email, outbox_rows, post_email
from triage.mail.outbox import backoff
from triage.orm import OutboxItem, utcnow


def _make_due(app: Flask) -> None:
    with app.extensions["triage.sessions"]() as s:
        s.execute(update(OutboxItem).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def test_temporary_failure_backs_off_then_delivers_once(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    recorder = smtp_server[0]
    recorder.answers = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    post_email(mail_app.test_client(), api_token, make_email())
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.status == "pending" and row.attempts == 1 and "451" in (row.last_error or "")
    assert row.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert deliver(mail_app) == 0  # not due yet
    _make_due(mail_app)
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.attempts == 2 and row.status == "pending"
    _make_due(mail_app)
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.status == "sent" and row.attempts == 3 and row.last_error is None
    assert len(recorder.messages) == 1


def test_permanent_failure_is_kept_for_staff(mail_app: Flask, api_token: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    smtp_server[0].answers = ["550 5.1.1 mailbox unavailable"]
    post_email(mail_app.test_client(), api_token, make_email())
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.status == "failed" and "550" in (row.last_error or "")
    assert deliver(mail_app) == 0
    from triage.mail.outbox import retry_failed

    with mail_app.extensions["triage.sessions"]() as s:
        retry_failed(s, row.id)
        s.commit()
    deliver(mail_app)
    assert outbox_rows(mail_app)[0].status == "sent"


def test_too_many_temporary_failures_become_permanent(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    mail_app.extensions["triage.settings"].outbox_max_attempts = 2
    smtp_server[0].answers = ["451 later"] * 5
    post_email(mail_app.test_client(), api_token, make_email())
    deliver(mail_app)
    _make_due(mail_app)
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.status == "failed" and row.attempts == 2


def test_smtp_server_down_then_back(mail_app: Flask, api_token: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    settings = mail_app.extensions["triage.settings"]
    real_port = settings.smtp_port
    settings.smtp_port = 1  # nothing listens there
    post_email(mail_app.test_client(), api_token, make_email())
    deliver(mail_app)
    [row] = outbox_rows(mail_app)
    assert row.status == "pending" and "Error" in (row.last_error or "")
    settings.smtp_port = real_port
    _make_due(mail_app)
    deliver(mail_app)
    assert outbox_rows(mail_app)[0].status == "sent" and len(smtp_server[0].messages) == 1


def test_two_workers_never_send_the_same_row(mail_app: Flask, api_token: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    for i in range(12):
        post_email(
            client,
            api_token,
            make_email(
                subject=f"q{i}",
                body="when will the results be released?",
                sender=f"c{i}@centre{i}.example",
            ),
        )
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        barrier.wait()
        deliver(mail_app, name)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = outbox_rows(mail_app)
    assert all(r.status == "sent" for r in rows) and len(rows) == 12
    ids = [m["Message-ID"] for m in smtp_server[0].parsed()]
    assert len(ids) == 12 == len(set(ids))


def test_each_send_is_recorded_before_the_next_message_goes_out(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    """A worker that dies between two sends can only ever send the message in hand twice, never the earlier ones."""
    client = mail_app.test_client()
    for i in range(4):
        post_email(
            client,
            api_token,
            make_email(
                subject=f"q{i}",
                body="when will the results be released?",
                sender=f"c{i}@centre{i}.example",
            ),
        )
    engine = mail_app.extensions["triage.engine"]
    recorded_before: list[int] = []

    def count_recorded() -> None:  # another connection: it sees only what is committed
        with engine.connect() as conn:
            recorded_before.append(
                conn.scalar(select(func.count()).where(OutboxItem.status == "sent")) or 0
            )

    smtp_server[0].on_data = count_recorded
    mail_app.extensions["triage.settings"].outbox_connections = 1  # one connection: in order
    assert deliver(mail_app) == 4
    assert recorded_before == [0, 1, 2, 3]
    assert [row.status for row in outbox_rows(mail_app)] == ["sent"] * 4


def test_one_smtp_connection_serves_a_delivery_round_and_a_dropped_one_is_opened_again(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    for i in range(6):
        post_email(
            client,
            api_token,
            make_email(
                subject=f"q{i}",
                body="when will the results be released?",
                sender=f"c{i}@centre{i}.example",
            ),
        )
    recorder = smtp_server[0]
    recorder.drop_after = 3  # the server hangs up between the third and fourth message
    mail_app.extensions["triage.settings"].outbox_connections = 1
    assert deliver(mail_app) == 6
    assert [row.status for row in outbox_rows(mail_app)] == ["sent"] * 6 and len(
        recorder.messages
    ) == 6
    peers = recorder.peers
    assert len(set(peers[:3])) == 1 and len(set(peers[3:])) == 1 and peers[0] != peers[3], peers


def test_crashed_worker_lease_expires_and_resends_with_same_message_id(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    from triage.mail.outbox import LEASE, claim

    post_email(mail_app.test_client(), api_token, make_email())
    sessions = mail_app.extensions["triage.sessions"]
    assert len(claim(sessions, "dead-worker")) == 1  # claimed, then the worker "dies"
    assert deliver(mail_app) == 0  # still leased
    with sessions() as s:
        s.execute(update(OutboxItem).values(claimed_at=utcnow() - LEASE - timedelta(seconds=1)))
        s.commit()
    assert deliver(mail_app) == 1
    [row] = outbox_rows(mail_app)
    [sent] = smtp_server[0].parsed()
    assert row.status == "sent"
    with sessions() as s:
        assert s.get(OutboxItem, row.id).message.message_id == sent["Message-ID"]  # type: ignore[union-attr]


def test_a_message_that_crashes_every_worker_ends_failed(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    from triage.mail.outbox import LEASE, claim

    post_email(mail_app.test_client(), api_token, make_email())
    sessions = mail_app.extensions["triage.sessions"]
    limit = mail_app.extensions["triage.settings"].outbox_max_attempts
    claims = 0
    for _ in range(limit + 2):  # each worker claims the row and dies before recording anything
        claimed = claim(sessions, f"doomed-{claims}", max_attempts=limit)
        claims += len(claimed)
        with sessions() as s:
            s.execute(update(OutboxItem).values(claimed_at=utcnow() - LEASE - timedelta(seconds=1)))
            s.commit()
    [row] = outbox_rows(mail_app)
    assert (
        claims == limit
    )  # the first claim plus limit - 1 retries; the crash that reaches the limit fails it
    assert row.status == "failed" and row.attempts == limit and row.claimed_by is None
    assert "stopped before recording the outcome" in (row.last_error or "")
    assert deliver(mail_app) == 0 and smtp_server[0].messages == []


def test_without_smtp_mail_is_written_to_the_instance_outbox(
    model_app_config, active_model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from triage import create_app
    from triage.helpdesk import tokens as tokens_mod

    app = create_app(model_app_config)
    with app.extensions["triage.sessions"]() as s:
        _row, token = tokens_mod.create_token(s, "t")
        s.commit()
    post_email(app.test_client(), token, make_email())
    deliver(app)
    folder = app.extensions["triage.settings"].outbox_dir
    files = list(folder.glob("*.eml"))
    assert len(files) == 1 and b"Auto-Submitted: auto-replied" in files[0].read_bytes()


def test_backoff_grows_and_is_capped() -> None:
    assert backoff(1) < backoff(2) < backoff(3)
    assert backoff(50) == timedelta(hours=1)
