"""Real faults against real servers: a worker SIGKILLed mid-send, an IMAP connection cut mid-FETCH, and a
PostgreSQL outage during a webhook POST. Nothing under test is mocked; the faults are made with a real
process kill and a real TCP proxy (tests/faultproxy.py) between the service and the server.

On SQLite the real outage is the database file locked by a stuck writer in another process: with
`?timeout=` in the URL the app gives up after that long and answers 503.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import free_port
from tests.faultproxy import TcpProxy
from tests.mailutil import deliver, make_email, outbox_rows, post_email, process_all
from tests.test_imap import _append, _emails, _poll, _seen_uids
from triage import create_app
from triage.mail.outbox import LEASE
from triage.orm import ImapCheckpoint, InboundEmail, Message, OutboxItem, Ticket, utcnow

REPO = Path(__file__).resolve().parent.parent
PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgresql)]


def _token(app: Flask) -> str:
    from triage.helpdesk import tokens

    with app.extensions["triage.sessions"]() as s:
        _row, plain = tokens.create_token(s, "faults")
        s.commit()
    return plain


def _count(engine: Engine, model: type) -> int:
    """Rows in a table, read straight from the database (not through any proxy)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model)) or 0


def _message_id(raw: bytes) -> str:
    return str(message_from_bytes(raw)["Message-ID"])


# --- 1. a worker killed by SIGKILL in the middle of an SMTP transaction ------------------------------------


class HoldingSmtp:
    """aiosmtpd handler that records every message it receives and holds the first one without answering.

    With `keep_held` the server has queued the held message before its 250 reply (a crash of the client
    now makes a duplicate); without, the server drops a transaction whose client vanished.
    """

    def __init__(self, keep_held: bool) -> None:
        self.keep_held = keep_held
        self.received: list[bytes] = []  # every complete DATA, in order
        self.delivered: list[bytes] = []  # what the server took responsibility for
        self.holding = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        self.received.append(content)
        if self.holding.is_set():
            self.delivered.append(content)
            return "250 OK"
        if self.keep_held:
            self.delivered.append(content)
        self.holding.set()
        while not self.release.is_set():  # aiosmtpd cancels this when the client disconnects
            await asyncio.sleep(0.02)
        return "250 OK" if self.keep_held else "451 4.3.0 transaction abandoned"


@pytest.fixture(params=[True, False], ids=["server-kept-it", "server-dropped-it"])
def holding_smtp(request: pytest.FixtureRequest) -> Iterator[tuple[HoldingSmtp, int]]:
    """A real SMTP server (aiosmtpd) whose first DATA is held unanswered."""
    from aiosmtpd.controller import Controller

    handler = HoldingSmtp(request.param)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    handler.release.set()
    controller.stop()


@pytest.fixture
def smtp_app(app_config: dict[str, Any], holding_smtp: tuple[HoldingSmtp, int]) -> Iterator[Flask]:
    """The app (no model: every email gets an acknowledgement) sending through the holding SMTP server."""
    app = create_app(
        {
            **app_config,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": holding_smtp[1],
            "SUPPORT_ADDRESS": "support@imi.test",
        }
    )
    yield app
    app.extensions["triage.engine"].dispose()


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
)


def _worker_command(app: Flask, instance: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """`flask --app app triage worker ARGS` with the environment that points it at the app's database and SMTP."""
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
    return [sys.executable, "-m", "flask", "--app", "app", "triage", "worker", *args], env


def _wait_until_held(handler: HoldingSmtp, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not handler.holding.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the worker never reached DATA (exit {proc.poll()}):\n{log.read_text()}")


def _outbox_message_ids(app: Flask) -> list[str]:
    with app.extensions["triage.sessions"]() as s:
        query = (
            select(Message.message_id)
            .join(OutboxItem, OutboxItem.message_id == Message.id)
            .order_by(OutboxItem.id)
        )
        return list(s.scalars(query))


def test_worker_killed_mid_send_loses_nothing_and_resends_the_same_message(
    smtp_app: Flask, holding_smtp: tuple[HoldingSmtp, int], tmp_path: Path
) -> None:
    handler = holding_smtp[0]
    client, token = smtp_app.test_client(), _token(smtp_app)
    for i in range(3):
        raw = make_email(subject=f"enquiry {i}", sender=f"c{i}@centre{i}.example")
        assert post_email(client, token, raw).status_code == 202
    expected = _outbox_message_ids(smtp_app)
    assert len(expected) == 3

    command, env = _worker_command(smtp_app, tmp_path / "worker-instance")
    env["OUTBOX_CONNECTIONS"] = "1"  # one message in flight: the held one
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_until_held(
                handler, proc, log
            )  # the worker has sent the whole message and awaits the reply
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    handler.release.set()

    [first_attempt] = handler.received
    assert _message_id(first_attempt) == expected[0]
    rows = outbox_rows(smtp_app)
    # the dead worker held the message in hand and the next (two rows per connection)
    assert [r.status for r in rows] == ["sending", "sending", "pending"]
    assert {r.claimed_by for r in rows[:2]} == {f"{socket.gethostname()}:{proc.pid}"}
    # the row it had not claimed goes out at once; its lease keeps every other worker off the two
    assert deliver(smtp_app, "impatient-worker") == 1
    with smtp_app.extensions["triage.sessions"]() as s:
        s.execute(
            update(OutboxItem).values(claimed_at=utcnow() - LEASE - timedelta(seconds=1))
        )  # lease over
        s.commit()

    command, env = _worker_command(smtp_app, tmp_path / "worker-instance", "--once")
    restarted = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "deliver-outbox=2" in restarted.stdout

    rows = outbox_rows(smtp_app)
    assert [(r.status, r.claimed_by, r.last_error) for r in rows] == [("sent", None, None)] * 3
    assert (
        handler.received.count(first_attempt) == 2
    )  # the resend is the stored message, byte for byte
    delivered = [_message_id(raw) for raw in handler.delivered]
    assert set(delivered) == set(expected)  # every reply reached the server
    if handler.keep_held:  # at-least-once: the one duplicate carries the first attempt's Message-ID
        assert len(delivered) == 4 and Counter(delivered) == Counter([*expected, expected[0]])
    else:
        assert sorted(delivered) == sorted(expected)  # exactly once each


class SlowSmtp:
    """aiosmtpd handler that takes a while over each message, so a worker can be stopped between two."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.3)
        self.delivered.append(envelope.content)
        return "250 OK"


EMAILS = 12  # replies the stopped worker must not all have sent (0.3 s each)


def test_sigterm_finishes_the_message_in_hand_and_hands_the_rest_back(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    handler, port = SlowSmtp(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    app = create_app(
        {
            **app_config,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": port,
            "SUPPORT_ADDRESS": "support@imi.test",
        }
    )
    try:
        client, token = app.test_client(), _token(app)
        for i in range(EMAILS):
            assert (
                post_email(
                    client, token, make_email(subject=f"q{i}", sender=f"c{i}@centre{i}.example")
                ).status_code
                == 202
            )
        expected = _outbox_message_ids(app)
        command, env = _worker_command(app, tmp_path / "worker-instance")
        # one connection: one message in hand (with the default four, all four in flight finish and
        # a short burst can be sent whole before the signal is handled)
        env["OUTBOX_CONNECTIONS"] = "1"
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while len(handler.delivered) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert len(handler.delivered) >= 2, (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # a clean exit, not the lease-holding death of SIGKILL
        time.sleep(0.5)  # let the server finish the DATA it may still be answering
        rows = outbox_rows(app)
        sent_by_first = len(handler.delivered)
        assert 2 <= sent_by_first < EMAILS  # stopped early ...
        assert (
            sum(r.status == "sent" for r in rows) == sent_by_first
        )  # ... recorded what it sent ...
        assert {(r.status, r.claimed_by) for r in rows if r.status != "sent"} == {
            ("pending", None)
        }  # ... gave back the rest
        assert (
            deliver(app, "next-worker") == EMAILS - sent_by_first
        )  # at once, no lease to wait out
        delivered = [_message_id(raw) for raw in handler.delivered]
        assert sorted(delivered) == sorted(expected)  # every reply exactly once
    finally:
        app.extensions["triage.engine"].dispose()
        controller.stop()


# --- 2. the IMAP connection cut in the middle of a FETCH ----------------------------------------------------


@pytest.fixture
def imap_proxy(dovecot: int) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test Dovecot."""
    with TcpProxy(("127.0.0.1", dovecot)) as proxy:
        yield proxy


@pytest.fixture
def proxied_imap_app(app_config: dict[str, Any], imap_proxy: TcpProxy) -> Iterator[Flask]:
    """The app (no model needed) polling a fresh Dovecot mailbox through the proxy."""
    user = f"u{uuid.uuid4().hex[:10]}"
    app = create_app(
        {
            **app_config,
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": imap_proxy.port,
            "IMAP_USER": user,
            "IMAP_PASSWORD": "secret",
            "IMAP_TLS": False,
        }
    )
    yield app
    app.extensions["triage.engine"].dispose()


def _stored_raw(app: Flask) -> dict[str, bytes]:
    with app.extensions["triage.sessions"]() as s:
        return {
            row.message_id: row.raw
            for row in s.scalars(select(InboundEmail).order_by(InboundEmail.id))
        }


def _last_uid(app: Flask) -> int:
    with app.extensions["triage.sessions"]() as s:
        return s.scalars(select(ImapCheckpoint)).one().last_uid


def test_imap_connection_cut_mid_fetch_fails_clearly_then_stores_each_message_once(
    proxied_imap_app: Flask, imap_proxy: TcpProxy, engine: Engine
) -> None:
    app = proxied_imap_app
    emails = _emails(3)
    _append(app, *emails)
    cut_after = 120  # bytes of the answer to the second UID FETCH: "* 2 FETCH (UID 2 BODY[] {n}" then the message
    assert all(
        len(raw) > cut_after + 100 for raw in emails
    )  # so the cut falls well inside the message
    imap_proxy.cut_on(b"UID FETCH", nth=2, reply_bytes=cut_after)

    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=["triage", "poll-imap"])
    elapsed = time.monotonic() - started
    assert (
        result.exit_code == 1 and "IMAP poll failed" in result.output and "EOF" in result.output
    ), result.output
    assert imap_proxy.cuts == 1 and not imap_proxy.armed
    assert (
        elapsed < 10
    )  # the dropped connection is noticed at once, not after the 30 s socket timeout
    # the first message was stored, checkpointed and flagged; the one in flight left no trace
    ids = [_message_id(raw) for raw in emails]
    assert _stored_raw(app) == {ids[0]: emails[0].replace(b"\n", b"\r\n")}
    assert _count(engine, Ticket) == 1 and _last_uid(app) == 1 and _seen_uids(app) == {1}

    assert _poll(app) == 2  # a healthy connection, same mailbox (same checkpoint key)
    assert _stored_raw(app) == {
        i: raw.replace(b"\n", b"\r\n") for i, raw in zip(ids, emails, strict=True)
    }
    assert _count(engine, InboundEmail) == 3 and _count(engine, Ticket) == 3
    assert _last_uid(app) == 3 and _seen_uids(app) == {1, 2, 3}
    assert _poll(app) == 0 and _count(engine, Ticket) == 3


# --- 3. PostgreSQL going away during a webhook POST ---------------------------------------------------------


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test PostgreSQL server."""
    url = make_url(database_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        yield proxy


@pytest.fixture
def proxied_db_app(
    app_config: dict[str, Any], database_url: str, pg_proxy: TcpProxy
) -> Iterator[Flask]:
    """The app talking to PostgreSQL only through the proxy."""
    url = make_url(database_url).set(host="127.0.0.1", port=pg_proxy.port)
    app = create_app({**app_config, "DATABASE_URL": url.render_as_string(hide_password=False)})
    yield app
    app.extensions["triage.engine"].dispose()


def _assert_503(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.is_json and response.get_json()["error"].startswith("database unavailable")
    assert response.get_json()["status"] == 503 and response.headers["Retry-After"]


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_database_outage_before_the_post_is_503_and_the_retry_stores_it_once(
    proxied_db_app: Flask, pg_proxy: TcpProxy, engine: Engine
) -> None:
    client, token = (
        proxied_db_app.test_client(),
        _token(proxied_db_app),
    )  # the token is made while it is up
    raw = make_email(message_id="<outage-before@college.example>")
    pg_proxy.stop()
    _assert_503(post_email(client, token, raw))
    assert (
        _count(engine, InboundEmail) == 0
        and _count(engine, Ticket) == 0
        and _count(engine, OutboxItem) == 0
    )
    pg_proxy.start()  # the same port again
    retry = post_email(client, token, raw)
    assert retry.status_code == 202 and retry.get_json()["duplicate"] is False
    assert (
        _count(engine, InboundEmail) == 1
        and _count(engine, Ticket) == 1
        and _count(engine, OutboxItem) == 1
    )


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_database_outage_in_the_middle_of_the_post_is_503_and_the_retry_stores_it_once(
    proxied_db_app: Flask, pg_proxy: TcpProxy, engine: Engine
) -> None:
    client, token = proxied_db_app.test_client(), _token(proxied_db_app)
    raw = make_email(message_id="<outage-storing@college.example>")
    pg_proxy.cut_on(
        b"INSERT INTO inbound_emails", outage=True
    )  # the outage comes with the webhook's one INSERT
    _assert_503(post_email(client, token, raw, process=False))
    assert not pg_proxy.running and not pg_proxy.armed
    assert _count(engine, InboundEmail) == 0
    pg_proxy.start()
    retry = post_email(client, token, raw)
    assert retry.status_code == 202 and retry.get_json()["duplicate"] is False
    assert retry.get_json()["status"] == "processed" and retry.get_json()["reference"]
    assert (
        _count(engine, InboundEmail) == 1
        and _count(engine, Ticket) == 1
        and _count(engine, OutboxItem) == 1
    )


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_database_outage_while_the_worker_writes_keeps_the_mail_and_the_retry_makes_one_ticket(
    proxied_db_app: Flask, pg_proxy: TcpProxy, engine: Engine
) -> None:
    client, token = proxied_db_app.test_client(), _token(proxied_db_app)
    raw = make_email(message_id="<outage-during@college.example>")
    accepted = post_email(
        client, token, raw, process=False
    )  # the webhook has stored it and answered
    assert accepted.status_code == 202 and accepted.get_json()["status"] == "pending"
    pg_proxy.cut_on(
        b'COPY "tickets"', outage=True
    )  # the outage comes as the worker writes the ticket
    with pytest.raises(OperationalError):
        process_all(proxied_db_app)
    assert not pg_proxy.running and not pg_proxy.armed
    with engine.connect() as conn:
        [(status, stored, ticket_id)] = conn.execute(
            select(InboundEmail.status, InboundEmail.raw, InboundEmail.ticket_id)
        ).all()
    assert (status, stored, ticket_id) == (
        "pending",
        raw,
        None,
    )  # whole, and waiting for processing
    assert (
        _count(engine, Ticket) == 0
        and _count(engine, Message) == 0
        and _count(engine, OutboxItem) == 0
    )
    pg_proxy.start()
    assert process_all(proxied_db_app) == 1  # the worker's next round
    again = post_email(
        client, token, raw, process=False
    )  # the provider retrying its POST changes nothing
    body = again.get_json()
    assert body["status"] == "processed" and body["reference"] and body["duplicate"] is True
    assert (
        _count(engine, InboundEmail) == 1
        and _count(engine, Ticket) == 1
        and _count(engine, OutboxItem) == 1
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_locked_by_a_stuck_writer_is_503_and_the_retry_stores_it_once(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    import sqlite3

    from triage import schema
    from triage.database import make_engine

    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}?timeout=0.5"
    engine = make_engine(url)
    schema.upgrade(engine)
    app = create_app({**app_config, "DATABASE_URL": url})
    try:
        client, token = app.test_client(), _token(app)
        raw = make_email(message_id="<sqlite-locked@college.example>")
        stuck = sqlite3.connect(
            path, isolation_level=None
        )  # another program holding the write lock
        stuck.execute("BEGIN EXCLUSIVE")
        try:
            _assert_503(post_email(client, token, raw))
        finally:
            stuck.execute("ROLLBACK")
            stuck.close()
        assert _count(engine, InboundEmail) == 0 and _count(engine, Ticket) == 0
        retry = post_email(client, token, raw)
        assert retry.status_code == 202 and retry.get_json()["duplicate"] is False
        assert (
            _count(engine, InboundEmail) == 1
            and _count(engine, Ticket) == 1
            and _count(engine, OutboxItem) == 1
        )
    finally:
        app.extensions["triage.engine"].dispose()
        engine.dispose()


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_a_malformed_bearer_value_is_refused_without_touching_the_database(
    proxied_db_app: Flask, pg_proxy: TcpProxy
) -> None:
    client = proxied_db_app.test_client()
    pg_proxy.stop()  # the database is unreachable
    for value in ("not-a-token", "imi_" + "x" * 300):
        refused = post_email(client, value, make_email(), process=False)
        assert refused.status_code == 401 and "invalid" in refused.get_json()["error"]  # not 503
    _assert_503(
        post_email(client, "imi_looks_like_one", make_email(), process=False)
    )  # this one is looked up
