"""Accept fast, process in workers: the webhook only stores; batches, failures inside a batch, real worker
processes racing on PostgreSQL, and a worker stopped (SIGTERM) and killed (SIGKILL) in the middle of a burst.

Nothing is mocked: the workers are real `flask triage worker` processes, replies go to a real SMTP server
(aiosmtpd), and the failing email is made to fail by a real trigger in the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tests.mailutil import count, deliver, make_email, post_email, process_all
from triage.classifier.registry import ModelProvider
from triage.config import Settings
from triage.mail.inbound import BATCH_SIZE, InboundContext, process_batch
from triage.mail.outbox import LEASE
from triage.orm import Attachment, InboundEmail, Message, OutboxItem, Ticket, utcnow
from triage.worker.supervisor import Helpers
from triage.worker.tasks import (
    TASKS,
    Role,
    RoundState,
    TaskContext,
    bind,
    delivery_loop_specs,
    main_loop_specs,
)

REPO = Path(__file__).resolve().parent.parent
PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgresql)]


def _emails(n: int, tag: str) -> list[bytes]:
    bodies = [
        "the exam has frozen on pc 2, screen stuck",
        "when will the june results be released?",
        "learner is absent today, what do we do with his exam",
        "how do I set a PIN for the exams?",
    ]
    return [
        make_email(
            subject=f"enquiry {i}",
            body=bodies[i % len(bodies)],
            sender=f"c{i}@centre{i}.example",
            message_id=f"<{tag}-{i}@centre{i}.example>",
        )
        for i in range(n)
    ]


def test_the_webhook_only_stores_and_a_worker_makes_the_ticket(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}
    posted = post_email(
        client, api_token, make_email(message_id="<async-1@college.example>"), process=False
    )
    assert posted.status_code == 202
    body = posted.get_json()
    assert (body["status"], body["reference"], body["duplicate"]) == ("pending", None, False)
    assert isinstance(body["id"], int) and f"/api/v1/inbound/{body['id']}" in body["note"]
    assert (
        count(mail_app, InboundEmail) == 1
        and count(mail_app, Ticket) == 0
        and count(mail_app, OutboxItem) == 0
    )
    status = client.get(f"/api/v1/inbound/{body['id']}", headers=auth).get_json()
    assert (status["status"], status["reference"], status["message_id"]) == (
        "pending",
        None,
        "<async-1@college.example>",
    )
    again = post_email(
        client, api_token, make_email(message_id="<async-1@college.example>"), process=False
    )
    assert again.get_json()["id"] == body["id"] and again.get_json()["duplicate"] is True

    assert process_all(mail_app) == 1
    status = client.get(f"/api/v1/inbound/{body['id']}", headers=auth).get_json()
    assert (
        status["status"] == "processed"
        and status["reference"].startswith("IMI-")
        and status["processed_at"]
    )
    assert count(mail_app, Ticket) == 1 and count(mail_app, OutboxItem) == 1
    third = post_email(
        client, api_token, make_email(message_id="<async-1@college.example>"), process=False
    )
    assert (
        third.get_json()["reference"] == status["reference"]
        and third.get_json()["status"] == "processed"
    )
    assert process_all(mail_app) == 0 and count(mail_app, Ticket) == 1
    assert client.get("/api/v1/inbound/999999", headers=auth).status_code == 404
    assert client.get(f"/api/v1/inbound/{body['id']}").status_code == 401


def test_a_batch_classifies_and_writes_many_emails_at_once(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    for raw in _emails(BATCH_SIZE + 5, "batch"):
        assert post_email(client, api_token, raw, process=False).status_code == 202
    ctx = InboundContext(
        mail_app.extensions["triage.settings"], mail_app.extensions["triage.model_provider"]
    )
    first = process_batch(mail_app.extensions["triage.sessions"], ctx)
    assert len(first.tickets) == BATCH_SIZE and not first.failed
    assert set(first.timings) >= {"claim", "parse", "clean", "classify", "write"}
    assert count(mail_app, Ticket) == BATCH_SIZE
    assert process_all(mail_app) == 5
    with mail_app.extensions["triage.sessions"]() as s:
        categories = Counter(s.scalars(select(Ticket.predicted_category)))
        assert (
            categories["exam_frozen"] >= 10 and len(categories) >= 3
        )  # each email its own decision
        assert (
            s.scalar(
                select(func.count()).select_from(Message).where(Message.direction == "outbound")
            )
            == 55
        )
    assert deliver(mail_app) == BATCH_SIZE + 5


def test_a_batch_numbers_its_tickets_in_arrival_order_and_reads_no_ids_back(
    mail_app: Flask, api_token: str
) -> None:
    """New tickets get consecutive references in the order their mail arrived; the ids of tickets, messages,
    attachments and outbox rows are given in one query first, so each table is written with one statement
    that reads nothing back."""
    client = mail_app.test_client()
    raws = _emails(12, "numbered")
    with_file = EmailMessage()
    for name in ("From", "To", "Subject", "Message-ID"):
        with_file[name] = message_from_bytes(raws[5])[name]
    with_file.set_content("the exam froze, screenshot attached")
    with_file.add_attachment(
        b"\x89PNG not really", maintype="image", subtype="png", filename="screen.png"
    )
    raws[5] = with_file.as_bytes()
    for raw in raws:
        assert post_email(client, api_token, raw, process=False).status_code == 202
    engine = mail_app.extensions["triage.engine"]
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert process_all(mail_app) == 12
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with mail_app.extensions["triage.sessions"]() as s:
        tickets = list(s.scalars(select(InboundEmail.ticket_id).order_by(InboundEmail.id)))
        outbound = s.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .join(Message)
            .where(Message.ticket_id.in_(tickets))
        )
        files = s.scalars(
            select(Attachment.filename).join(Message).where(Message.ticket_id == tickets[5])
        ).all()
    assert tickets == list(range(tickets[0], tickets[0] + 12))  # no gaps, no reordering
    assert outbound == 12 and files == ["screen.png"]
    inserts = [q.removeprefix("INSERT INTO ") for q in statements if q.startswith("INSERT INTO")]
    written = Counter(q.split()[0] for q in inserts)
    tables = ("tickets", "messages", "attachments", "outbox")
    if (
        engine.dialect.name == "postgresql"
    ):  # each table by COPY, which goes past SQLAlchemy (tests/test_bulk.py)
        assert [written[table] for table in tables] == [0, 0, 0, 0], inserts
    else:  # one INSERT per table: the inbound messages, then the replies
        assert [written[table] for table in tables] == [1, 2, 1, 1], inserts
    assert not [q for q in inserts if "RETURNING" in q], inserts


def test_a_batch_reads_the_reply_caps_with_one_query(mail_app: Flask, api_token: str) -> None:
    """The automatic-reply caps of a whole batch come from one query, not one per email; they still hold."""
    client = mail_app.test_client()
    for raw in _emails(20, "caps"):
        post_email(client, api_token, raw, process=False)
    engine = mail_app.extensions["triage.engine"]
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert process_all(mail_app) == 20
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    cap_queries = [
        q for q in statements if q.lstrip().startswith("SELECT") and "messages.kind IN" in q
    ]
    assert len(cap_queries) == 1, cap_queries
    assert count(mail_app, OutboxItem) == 20  # 20 distinct senders: nobody capped


def test_a_reply_in_the_same_batch_threads_after_its_ticket_is_complete(
    mail_app: Flask, api_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """New tickets of a batch are written together; a follow-up in the same batch still finds its ticket, and
    the ticket's history reads in order: created (with its reply) before the centre's follow-up."""
    from triage.orm import AuditEvent

    client = mail_app.test_client()
    first = make_email(subject="exam frozen", message_id="<thread-1@college.example>")
    follow = make_email(
        subject="Re: exam frozen",
        body="still stuck, the restart did not help",
        message_id="<thread-2@college.example>",
        headers={"In-Reply-To": "<thread-1@college.example>"},
    )
    # new tickets after the follow-up too: their ids are given with the follow-up's rows still unwritten
    for raw in [*_emails(3, "before"), first, *_emails(2, "between"), follow, *_emails(2, "after")]:
        post_email(client, api_token, raw, process=False)
    ctx = InboundContext(
        mail_app.extensions["triage.settings"], mail_app.extensions["triage.model_provider"]
    )
    outcome = process_batch(mail_app.extensions["triage.sessions"], ctx)
    assert len(outcome.tickets) == 9 and not outcome.failed
    assert "one by one" not in caplog.text  # written as one batch
    with mail_app.extensions["triage.sessions"]() as s:
        ticket_id = s.scalar(
            select(Message.ticket_id).where(Message.message_id == "<thread-1@college.example>")
        )
        assert (
            s.scalar(
                select(Message.ticket_id).where(Message.message_id == "<thread-2@college.example>")
            )
            == ticket_id
        )
        actions = list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.ticket_id == ticket_id)
                .order_by(AuditEvent.id)
            )
        )
        kinds = list(
            s.scalars(
                select(Message.kind).where(Message.ticket_id == ticket_id).order_by(Message.id)
            )
        )
    assert actions[0] == "ticket.created" and actions[-1] in {
        "ticket.reopened",
        "ticket.centre_replied",
    }
    assert kinds[:2] == ["email", "auto_reply"] and kinds[-1] == "email"
    assert count(mail_app, Ticket) == 8  # the follow-up made no ticket of its own


def test_caps_per_sender_hold_inside_one_batch(mail_app: Flask, api_token: str) -> None:
    """One centre's three emails in one batch: one auto-reply, the same answer is not sent twice, the hourly cap holds."""
    mail_app.extensions["triage.settings"].sender_hourly_cap = 1
    client = mail_app.test_client()
    raws = [
        make_email(message_id=f"<same-{i}@college.example>") for i in range(2)
    ]  # the same frozen-exam question
    raws.append(
        make_email(
            subject="results",
            body="when will the june results be released?",
            message_id="<same-2@college.example>",
        )
    )
    raws += _emails(3, "others")  # other senders in the same batch
    for raw in raws:
        post_email(client, api_token, raw, process=False)
    assert process_all(mail_app) == 6
    with mail_app.extensions["triage.sessions"]() as s:
        outbound = Counter(
            s.execute(
                select(Ticket.centre_email, Message.kind)
                .join(Message, Message.ticket_id == Ticket.id)
                .where(Message.direction == "outbound")
            ).all()
        )
        actions = list(
            s.scalars(
                select(Ticket.action)
                .where(Ticket.centre_email == "jo@college.example")
                .order_by(Ticket.id)
            )
        )
    assert outbound[("jo@college.example", "auto_reply")] == 1
    assert sum(n for (sender, _kind), n in outbound.items() if sender == "jo@college.example") == 1
    assert actions == [
        "auto_reply",
        "none",
        "none",
    ]  # the second and third were held back by the caps
    assert sum(n for (sender, _kind), n in outbound.items() if sender != "jo@college.example") == 3


def _poison(engine: Engine, on: bool) -> None:
    """A real database fault: a trigger that refuses any ticket whose subject is 'poison'."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            if on:
                conn.execute(
                    text(
                        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                        "IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poisoned ticket'; END IF; "
                        "RETURN NEW; END $$ LANGUAGE plpgsql"
                    )
                )
                conn.execute(
                    text(
                        "CREATE TRIGGER poison BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION poison()"
                    )
                )
            else:
                conn.execute(text("DROP TRIGGER poison ON tickets"))
                conn.execute(text("DROP FUNCTION poison()"))
        elif on:
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON tickets WHEN NEW.subject = 'poison' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned ticket'); END"
                )
            )
        else:
            conn.execute(text("DROP TRIGGER poison"))


def test_a_failing_email_fails_alone_and_is_retried(
    mail_app: Flask, api_token: str, engine: Engine
) -> None:
    client = mail_app.test_client()
    raws = _emails(6, "poison")
    raws[3] = make_email(
        subject="poison", body="this one cannot be written", message_id="<poison@centre.example>"
    )
    for raw in raws:
        post_email(client, api_token, raw, process=False)
    ctx = InboundContext(
        mail_app.extensions["triage.settings"], mail_app.extensions["triage.model_provider"]
    )
    sessions = mail_app.extensions["triage.sessions"]
    _poison(engine, True)
    try:
        outcome = process_batch(sessions, ctx)  # one batch of six
        assert len(outcome.tickets) == 5  # the other five are processed in spite of it
        with mail_app.extensions["triage.sessions"]() as s:
            row = s.scalars(
                select(InboundEmail).where(InboundEmail.message_id == "<poison@centre.example>")
            ).one()
            assert (row.status, row.attempts) == ("pending", 1) and "poisoned ticket" in (
                row.last_error or ""
            )
        assert outcome.failed == [row.id]
        assert count(mail_app, Ticket) == 5 and count(mail_app, OutboxItem) == 5
        assert process_all(mail_app) == 0  # backing off: not tried again at once
        _retry_due_now(mail_app)
        assert (
            process_all(mail_app) == 0
        )  # it fails again: one more attempt counted, nothing else written
        with mail_app.extensions["triage.sessions"]() as s:
            assert (
                s.scalar(
                    select(InboundEmail.attempts).where(
                        InboundEmail.message_id == "<poison@centre.example>"
                    )
                )
                == 2
            )
    finally:
        _poison(engine, False)
    _retry_due_now(mail_app)
    assert process_all(mail_app) == 1
    assert count(mail_app, Ticket) == 6  # the follow-up made no ticket of its own


def _retry_due_now(app: Flask) -> None:
    """Let mail that failed be tried again now (as when its backoff has passed)."""
    with app.extensions["triage.sessions"]() as s:
        s.execute(update(InboundEmail).values(next_attempt_at=None))
        s.commit()


def test_the_batch_cleans_once_and_the_model_reads_what_it_was_trained_on() -> None:
    """The batch feeds the model its cleaned text directly: it must equal `model_text` of the same email."""
    from triage.classifier.cleaning import cleaned_text, model_text
    from triage.mail.inbound.new_tickets import clean_text
    from triage.mail.parse import parse

    corpus = sorted((REPO / "tests" / "corpus").glob("*.eml"))
    raws = (
        [p.read_bytes() for p in corpus]
        + _emails(4, "clean")
        + [
            make_email(
                subject="Re: [IMI-000123] frozen",
                body="still frozen\n\n> On Monday you wrote:\n> restart it",
            ),
            make_email(body="<html><body><p>exam <b>frozen</b></p></body></html>"),
            make_email(
                subject="Fwd: exam frozen",
                body="Can you help with this?\n\n---------- Forwarded message "
                "---------\nFrom: Sam <sam@college.example>\nSubject: exam frozen\n\nThe screen froze on question 4.",
            ),
        ]
    )
    assert len(corpus) >= 10
    for raw in raws:
        parsed = parse(raw)
        assert cleaned_text(parsed.subject, clean_text(parsed)) == model_text(
            parsed.subject, parsed.text
        )
        assert (
            parsed.clean_text is not None
        )  # kept for the stored message: not cleaned a second time


def test_the_webhook_header_check_stores_mail_under_the_message_id_the_parser_gives() -> None:
    from triage.mail.parse import UnparseableEmail, identify, parse

    raws = [p.read_bytes() for p in sorted((REPO / "tests" / "corpus").glob("*.eml"))]
    raws += [
        make_email(message_id="<a@b.example> <second@b.example>"),
        b"From: a@centre.example\r\nSubject: no id\r\n\r\nbody\r\n",
        b"From: a@centre.example\nMessage-ID: <" + b"x" * 20000 + b"@long.example>\n\nbody\n",
    ]
    for raw in raws:
        assert identify(raw) == parse(raw).message_id
    for bad in [
        b"",
        b"  \r\n",
        b"just some text with no headers",
    ]:
        with pytest.raises(UnparseableEmail):
            identify(bad)
        with pytest.raises(UnparseableEmail):
            parse(bad)


# --- real worker processes ----------------------------------------------------------------------------------


_CONFIG_PREFIXES = (
    "DATABASE_URL",
    "SECRET_KEY",
    "TRIAGE_INSTANCE_PATH",
    "MODELS_DIR",
    "TRAINING_DATA_DIR",
    "SMTP_",
    "IMAP_",
    "OUTBOX_",
    "SUPPORT_",
    "MAIL_DOMAIN",
    "LOG_FORMAT",
    "WORKER_",
)


def _worker_env(app: Flask, instance: Path) -> dict[str, str]:
    s = app.extensions["triage.settings"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    env.update(
        DATABASE_URL=s.database_url,
        SECRET_KEY=s.secret_key,
        TRIAGE_INSTANCE_PATH=str(instance),
        MODELS_DIR=str(s.models_dir),
        SMTP_HOST=s.smtp_host,
        SMTP_PORT=str(s.smtp_port),
        SUPPORT_ADDRESS=s.support_address,
        PYTHONUNBUFFERED="1",
    )
    return env


class Workers:
    """Real `flask triage worker` processes, each in its own process group, all stopped at the end."""

    def __init__(self, app: Flask, tmp_path: Path) -> None:
        self.env = _worker_env(app, tmp_path / "worker-instance")
        self.logs = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "triage", "worker", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("worker*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def workers(mail_app: Flask, tmp_path: Path) -> Iterator[Workers]:
    """Starts real worker processes on the mail app's database, SMTP server and model."""
    group = Workers(mail_app, tmp_path)
    yield group
    group.stop_all()


def _processed(engine: Engine) -> int:
    with engine.connect() as conn:
        return (
            conn.scalar(
                select(func.count())
                .select_from(InboundEmail)
                .where(InboundEmail.status == "processed")
            )
            or 0
        )


def _sent(engine: Engine) -> int:
    with engine.connect() as conn:
        return (
            conn.scalar(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "sent")
            )
            or 0
        )


def _wait(condition, what: str, workers: Workers, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{workers.output()[-4000:]}")
        time.sleep(0.05)


def _assert_each_once(
    engine: Engine, smtp_server, message_ids: list[str], in_flight: frozenset[str] = frozenset()
) -> None:  # type: ignore[no-untyped-def]
    """Every Message-ID has exactly one ticket, one outbox row, and one reply that reached the SMTP server.

    `in_flight`: replies a SIGKILLed worker may have handed to the server without recording it; like any
    at-least-once delivery, those may arrive twice (tests/test_faults.py covers that window).
    """
    with engine.connect() as conn:
        tickets = Counter(
            conn.scalars(select(Message.message_id).where(Message.direction == "inbound"))
        )
        replies = Counter(
            conn.scalars(
                select(Message.in_reply_to).join(OutboxItem, OutboxItem.message_id == Message.id)
            )
        )
        assert conn.scalar(select(func.count()).select_from(Ticket)) == len(message_ids)
        statuses = Counter(conn.scalars(select(OutboxItem.status)))
    assert tickets == Counter(message_ids)
    assert replies == Counter(message_ids)
    assert statuses == {"sent": len(message_ids)}
    delivered = Counter(
        message_from_bytes(m.content)["In-Reply-To"] for m in smtp_server[0].messages
    )
    assert set(delivered) == set(message_ids)
    assert {mid: n for mid, n in delivered.items() if n > 1 and mid not in in_flight} == {}
    assert all(n <= 2 for n in delivered.values())


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_workers_on_two_hosts_racing_on_postgresql_make_each_ticket_and_reply_once(
    mail_app: Flask, api_token: str, engine: Engine, workers: Workers, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raws = _emails(150, "race")
    client = mail_app.test_client()
    for raw in raws:
        assert post_email(client, api_token, raw, process=False).status_code == 202
    # three processes claim from the same pending mail at once: `--processes 2` on one host, one more elsewhere
    workers.start("--processes", "2")
    workers.start()
    _wait(lambda: _processed(engine) == len(raws), "every email processed", workers)
    _wait(lambda: _sent(engine) == len(raws), "every reply sent", workers)
    time.sleep(0.5)  # a duplicate, if any worker were to make one, would have arrived by now
    try:
        _assert_each_once(
            engine, smtp_server, [str(message_from_bytes(r)["Message-ID"]) for r in raws]
        )
    except AssertionError as exc:  # it failed once in a combined run: keep what the workers said
        raise AssertionError(f"{exc}\nworker output:\n{workers.output()[-6000:]}") from exc
    assert "(2 processes)" in workers.output()


@pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)
def test_a_worker_stopped_and_killed_mid_burst_loses_nothing_and_doubles_nothing(
    mail_app: Flask, api_token: str, engine: Engine, workers: Workers, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raws = _emails(120, "burst")
    args = ("--processes", "2") if engine.dialect.name == "postgresql" else ()
    client = mail_app.test_client()
    first = workers.start(*args)
    for raw in raws[:60]:
        assert post_email(client, api_token, raw, process=False).status_code == 202
    _wait(lambda: _processed(engine) >= 1, "the first worker to start processing", workers)
    first.send_signal(
        signal.SIGTERM
    )  # mid-burst: it finishes the batch in hand and stops its helpers
    assert first.wait(timeout=60) == 0, workers.output()
    for raw in raws[60:90]:  # mail keeps arriving while no worker runs: stored, waiting
        assert post_email(client, api_token, raw, process=False).status_code == 202
    second = workers.start(*args)
    for raw in raws[90:]:
        assert post_email(client, api_token, raw, process=False).status_code == 202
    _wait(lambda: _processed(engine) >= 100, "the second worker to get going", workers)
    os.killpg(
        second.pid, signal.SIGKILL
    )  # no chance to finish anything: its open batch is rolled back
    second.wait()
    with (
        engine.begin() as conn
    ):  # replies it was sending: their lease runs out (10 min), as if time had passed
        in_flight = frozenset(
            conn.scalars(
                select(Message.in_reply_to)
                .join(OutboxItem, OutboxItem.message_id == Message.id)
                .where(OutboxItem.status == "sending")
            )
        )
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.status == "sending")
            .values(claimed_at=utcnow() - LEASE)
        )
    workers.start(*args)
    _wait(lambda: _processed(engine) == len(raws), "every email processed", workers)
    _wait(lambda: _sent(engine) == len(raws), "every reply sent", workers)
    time.sleep(0.5)
    _assert_each_once(
        engine, smtp_server, [str(message_from_bytes(r)["Message-ID"]) for r in raws], in_flight
    )


@pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)
def test_an_idle_worker_is_woken_by_new_mail_not_by_its_timer(
    mail_app: Flask, api_token: str, engine: Engine, workers: Workers
) -> None:
    """PostgreSQL: the webhook's NOTIFY; SQLite (embedded mode): another process's commit. The timer is 10 min."""
    workers.env["WORKER_INTERVAL"] = "600"
    workers.start()
    _wait(lambda: "worker started" in workers.output(), "the worker to start", workers)
    time.sleep(2)  # its first round found nothing: it is asleep now
    client = mail_app.test_client()
    for i, raw in enumerate(_emails(3, "wake")):
        assert post_email(client, api_token, raw, process=False).status_code == 202
        _wait(
            lambda i=i: _processed(engine) == i + 1,
            f"email {i + 1} to be processed",
            workers,
            seconds=60,
        )
        time.sleep(1)  # asleep again before the next one


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_a_slow_smtp_server_does_not_hold_up_processing(
    mail_app: Flask, api_token: str, engine: Engine, workers: Workers, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: each worker process sends replies from a loop of its own, so mail keeps being processed
    while a send waits on the SMTP server."""
    recorder = smtp_server[0]
    recorder.open.clear()  # the server takes each message, then says nothing until it is opened again
    client = mail_app.test_client()
    workers.start()
    first, *later = _emails(6, "slow-smtp")
    assert post_email(client, api_token, first, process=False).status_code == 202
    _wait(lambda: _processed(engine) == 1, "the first email to be processed", workers)
    with engine.connect() as conn:  # its reply is being sent: the send is waiting on the server
        _wait(
            lambda: (
                conn.scalar(
                    select(func.count())
                    .select_from(OutboxItem)
                    .where(OutboxItem.status == "sending")
                )
                == 1
            ),
            "the first reply's send to start",
            workers,
        )
    for raw in later:
        assert post_email(client, api_token, raw, process=False).status_code == 202
    _wait(
        lambda: _processed(engine) == 6,
        "mail that came in during the send to be processed",
        workers,
        seconds=20,
    )
    assert _sent(engine) == 0 and recorder.messages == []  # the first send is still waiting
    recorder.open.set()
    _wait(lambda: _sent(engine) == 6, "every reply sent once the server answers", workers)
    _assert_each_once(
        engine, smtp_server, [str(message_from_bytes(r)["Message-ID"]) for r in [first, *later]]
    )


def test_a_helper_that_dies_is_restarted_and_all_are_stopped_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The supervisor's helper thread with real child processes (a stand-in program, not a worker:
    a worker's start-up takes seconds; `--processes 2` is run for real in the racing test)."""
    stopping = threading.Event()
    helpers = Helpers(2, stopping, command=(sys.executable, "-c", "import time; time.sleep(120)"))
    helpers.start()
    try:
        first = list(helpers.procs)
        first[0].kill()
        deadline = time.monotonic() + 30
        while helpers.procs[0] is first[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        with helpers.lock:
            assert helpers.procs[0] is not first[0] and helpers.procs[1] is first[1]
            assert all(proc.poll() is None for proc in helpers.procs)
        assert f"worker helper {first[0].pid} exited (-9); starting another" in caplog.text
    finally:
        stopping.set()
        helpers.stop()
    assert [proc.returncode for proc in helpers.procs] == [-signal.SIGTERM] * 2


def test_a_long_running_worker_leaves_what_it_loaded_out_of_garbage_collection() -> None:
    """After start-up the worker freezes what it loaded and collects young objects less often (run in a
    process of its own: the setting is process-wide)."""
    script = (
        "import gc; from triage.worker.loop import GC_YOUNG_THRESHOLD, tune_garbage_collector; "
        "before = gc.get_threshold(); tune_garbage_collector(); "
        "print(before[0], gc.get_threshold()[0] == GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["700", "True", "True"]


def test_staff_notifications_are_looked_for_once_a_second_while_mail_streams_in() -> None:
    [notify] = [spec for spec in TASKS if spec.name == "notify-staff"]
    state = RoundState(last_batch=BATCH_SIZE)  # the last round had a full batch: mail streams in
    assert state.take_turn(notify.name, notify.interval, now=100.0)  # the first round: at once
    # the next batch, within the second
    assert not state.take_turn(notify.name, notify.interval, now=100.5)
    assert state.take_turn(notify.name, notify.interval, now=101.0)  # a second later
    state.last_batch = 0
    # the stream has stopped: at once, before idling
    assert state.take_turn(notify.name, notify.interval, now=101.1)


def test_a_bound_task_skips_rounds_within_its_interval_and_the_others_run_every_round() -> None:
    """A table row bound to a process's context runs when its interval allows; the stand-in for
    the notification queries counts how often they are asked."""
    [notify] = [spec for spec in TASKS if spec.name == "notify-staff"]
    looked: list[int] = []

    def look(_ctx: TaskContext, _sessions: sessionmaker[Session], _settings: Settings) -> int:
        looked.append(1)
        return len(looked)

    settings = Settings()
    ctx = TaskContext(
        InboundContext(settings, ModelProvider(sessionmaker(), settings.models_dir)),
        threading.Event(),
        "test-worker",
        delivery=None,
    )
    task = bind(replace(notify, run=look), ctx)
    ctx.state.last_batch = BATCH_SIZE
    assert task.run(sessionmaker(), settings) == 1
    assert task.run(sessionmaker(), settings) == 0 and looked == [1]  # within the second
    ctx.state.last_batch = 0
    assert task.run(sessionmaker(), settings) == 2  # about to idle: at once
    assert [spec.name for spec in TASKS if spec.interval is not None] == [
        "notify-staff",
        "alert-channels",
    ]


_EVERY_PROCESS = ["process-inbound", "notify-staff"]


@pytest.mark.parametrize(
    ("role", "delivery_apart", "expected"),
    [
        (
            Role.MAIN,
            False,
            ["poll-imap", *_EVERY_PROCESS, "deliver-outbox", "run-jobs", "alert-channels"],
        ),
        (Role.MAIN, True, ["poll-imap", *_EVERY_PROCESS, "run-jobs", "alert-channels"]),
        (Role.HELPER, False, [*_EVERY_PROCESS, "deliver-outbox"]),
        (Role.HELPER, True, _EVERY_PROCESS),
    ],
)
def test_the_task_table_gives_each_process_its_tasks_in_order(
    role: Role, delivery_apart: bool, expected: list[str]
) -> None:
    """Only the main process polls the inbox (when IMAP is set) and runs jobs; delivery runs in a
    loop of its own when the process has one (PostgreSQL), else in the main loop."""
    with_imap = Settings(imap_host="imap.example")
    assert [spec.name for spec in main_loop_specs(with_imap, role, delivery_apart)] == expected
    without_imap = [spec.name for spec in main_loop_specs(Settings(), role, delivery_apart)]
    # without a mail server there is no channel to watch either
    assert without_imap == [n for n in expected if n not in ("poll-imap", "alert-channels")]
    assert [spec.name for spec in delivery_loop_specs(with_imap)] == ["deliver-outbox"]


def test_a_helper_worker_run_once_leaves_the_jobs_to_the_main_process(app: Flask) -> None:
    runner = app.test_cli_runner()
    helper = runner.invoke(args=["triage", "worker", "--once", "--helper"])
    assert helper.exit_code == 0, helper.output
    assert helper.output.split() == ["process-inbound=0", "notify-staff=0", "deliver-outbox=0"]
    main = runner.invoke(args=["triage", "worker", "--once"])
    assert main.exit_code == 0, main.output
    assert main.output.split() == [
        "process-inbound=0",
        "notify-staff=0",
        "deliver-outbox=0",
        "run-jobs=0",
    ]


def test_a_retrain_runs_beside_the_worker_and_is_handed_back_when_it_stops(
    mail_app: Flask, api_token: str, engine: Engine, workers: Workers
) -> None:
    """The real `flask triage worker`: a queued retrain runs in a process of its own while mail
    keeps being processed; SIGTERM to the worker ends that process and queues the job again."""
    import re

    from triage.orm import Job
    from triage.worker.jobs import request_retrain

    with mail_app.extensions["triage.sessions"]() as s:
        job_id = request_retrain(s, "user:boss@imi.test").id
        s.commit()

    def status() -> tuple[str, str]:
        with engine.connect() as conn:
            row = conn.execute(select(Job.status, Job.progress).where(Job.id == job_id)).one()
            return row[0], row[1]

    worker = workers.start()
    started = f"job {job_id} started in process"
    _wait(lambda: started in workers.output(), "the job to start", workers)
    found = re.search(started + r" (\d+)", workers.output())
    assert found is not None
    child = int(found.group(1))
    assert child != worker.pid and status()[0] == "running"

    post_email(mail_app.test_client(), api_token, make_email(), process=False)
    _wait(lambda: _processed(engine) == 1, "the email to be processed", workers)
    assert status()[0] == "running"  # processed while the model trains (the full training file)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, workers.output()[-3000:]
    assert status() == ("queued", "queued again: the worker running it was stopped")
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the job's process ended with the worker
