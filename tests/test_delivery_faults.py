"""Delivery under real faults: a database connection killed mid-round, an SMTP server slower than
the lease, a file transport on a filesystem that fills up, and logs that must not leak secrets.

In each: every reply arrives exactly once, nothing waits for a lease that a live worker holds, and
Admin > Outbox problems and /healthz say what is wrong while it is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, text, update
from sqlalchemy.pool import NullPool

from tests import factories
from tests.conftest import PG_URL, SmtpRecorder, free_port
from tests.faultproxy import TcpProxy
from tests.mailutil import deliver, make_email, outbox_rows, post_email
from tests.webutil import login, make_user
from triage import create_app
from triage.logs import TEXT_FORMAT, ScrubbingFormatter
from triage.mail.delivery import deliver_due
from triage.orm import OutboxItem, utcnow
from triage.outage import Outage
from triage.web.observability import JsonLines

PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgresql)]


def _replies(app: Flask, count: int) -> list[str]:
    """Store and process `count` centre emails (no model: each gets an acknowledgement); returns the
    Message-IDs of the replies queued in the outbox."""
    with factories.session_of(app) as s:
        token = factories.api_token(s)
    client = app.test_client()
    for i in range(count):
        response = post_email(
            client,
            token,
            make_email(subject=f"q{i}", body="results?", sender=f"c{i}@centre{i}.example"),
        )
        assert response.status_code == 202
    with app.extensions["triage.sessions"]() as s:
        ids = [row.message.message_id for row in s.query(OutboxItem).order_by(OutboxItem.id)]
    assert len(ids) == count
    return ids


def _make_due(app: Flask) -> None:
    with app.extensions["triage.sessions"]() as s:
        s.execute(update(OutboxItem).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def _metrics_token(app: Flask) -> str:
    with factories.session_of(app) as s:
        return factories.api_token(s, scopes=("metrics",))


def _health(app: Flask, token: str) -> dict[str, Any]:
    response = app.test_client().get("/healthz", headers={"Authorization": f"Bearer {token}"})
    body: dict[str, Any] = response.get_json()
    return body


def _admin_outbox(app: Flask) -> str:
    client = app.test_client()
    make_user(app, "admin@imi.test", role="admin")
    login(client, "admin@imi.test")
    return client.get("/admin/outbox").get_data(as_text=True)


# --- an SMTP server slower per message than the lease -------------------------------------------------


class SlowSmtp(SmtpRecorder):
    """Takes `delay` seconds over each message before answering 250 (without blocking the server)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        answer: str = await super().handle_DATA(server, session, envelope)
        return answer


@pytest.fixture
def slow_smtp() -> Iterator[tuple[SlowSmtp, int]]:
    """A real SMTP server (aiosmtpd) that takes 1 s per message."""
    from aiosmtpd.controller import Controller

    handler = SlowSmtp(1.0)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_a_server_slower_than_the_lease_gets_each_reply_once(
    app_config: dict[str, Any], slow_smtp: tuple[SlowSmtp, int]
) -> None:
    app = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": slow_smtp[1]})
    settings = app.extensions["triage.settings"]
    settings.outbox_lease_seconds = 0.6  # each message takes longer than the lease
    settings.outbox_connections = 1
    expected = _replies(app, 4)
    metrics = _metrics_token(app)
    stuck_seen: list[int] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        barrier.wait()
        deliver_due(app.extensions["triage.sessions"], settings, name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        stuck_seen.append(_health(app, metrics)["delivery"]["stuck_sending"])
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    received = Counter(message["Message-ID"] for message in slow_smtp[0].parsed())
    assert received == Counter(expected)  # each exactly once
    rows = outbox_rows(app)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 4  # none was taken back
    assert {r.claimed_by for r in rows} == {None}
    assert stuck_seen and set(stuck_seen) == {0}  # a live worker's rows are never reported stuck
    assert (
        len(set(slow_smtp[0].peers)) == 2
    )  # both workers sent: neither held rows it was not sending
    app.extensions["triage.engine"].dispose()


def test_rows_left_by_a_stopped_worker_show_as_stuck_then_go_out_once(
    app_config: dict[str, Any], smtp_server: tuple[SmtpRecorder, int]
) -> None:
    from triage.mail.outbox import claim

    app = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server[1]})
    settings = app.extensions["triage.settings"]
    settings.outbox_lease_seconds = 0.5
    expected = _replies(app, 2)
    metrics = _metrics_token(app)
    assert len(claim(app.extensions["triage.sessions"], "dead-worker")) == 2  # then it "dies"
    time.sleep(0.6)
    health = _health(app, metrics)
    assert health["status"] == "degraded" and health["delivery"]["stuck_sending"] == 2
    assert any("2 rows in sending" in problem for problem in health["problems"])
    page = _admin_outbox(app)
    assert "stuck in sending" in page and "no worker has recorded an outcome" in page
    assert deliver(app) == 2
    assert Counter(m["Message-ID"] for m in smtp_server[0].parsed()) == Counter(expected)
    assert _health(app, metrics)["delivery"]["stuck_sending"] == 0
    app.extensions["triage.engine"].dispose()


# --- the database connection killed in the middle of a delivery round ----------------------------------


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_database_connections_killed_mid_round_every_reply_once(
    app_config: dict[str, Any],
    smtp_server: tuple[SmtpRecorder, int],
    pg_seeded: Any,
) -> None:
    app = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server[1]})
    settings = app.extensions["triage.settings"]
    settings.outbox_connections = 2
    expected = _replies(app, 10)
    killer = create_engine(PG_URL, poolclass=NullPool)
    killed: list[int] = []
    recorder = smtp_server[0]

    def kill_on_third() -> None:  # runs as the third message arrives, before it is answered
        if len(recorder.messages) == 2 and not killed:
            with killer.connect() as conn:
                killed.extend(
                    conn.scalars(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND backend_type = 'client backend'"
                        )
                    )
                )

    recorder.on_data = kill_on_third
    started = time.monotonic()
    rounds = 0
    while rounds < 6 and any(r.status != "sent" for r in outbox_rows(app)):
        deliver(app)
        rounds += 1
    elapsed = time.monotonic() - started
    assert killed, "no connection was killed"
    rows = outbox_rows(app)
    assert [r.status for r in rows] == ["sent"] * 10 and {r.claimed_by for r in rows} == {None}
    received = Counter(message["Message-ID"] for message in recorder.parsed())
    assert received == Counter(expected)  # every reply exactly once: sends were recorded late
    assert elapsed < 30  # nothing waited for the 10-minute lease
    assert _health(app, _metrics_token(app))["delivery"]["stuck_sending"] == 0
    app.extensions["triage.engine"].dispose()
    killer.dispose()
    pg_seeded[0].dispose()  # its pooled connections were killed too


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_webhook_answers_202_once_stored_even_if_the_database_drops_next(
    app_config: dict[str, Any], pg_seeded: Any
) -> None:
    app = create_app(app_config)
    with factories.session_of(app) as s:
        token = factories.api_token(s)
    engine = app.extensions["triage.engine"]
    killer = create_engine(PG_URL, poolclass=NullPool)

    def drop_after_store(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO inbound_emails"):  # committed: autocommit
            pid = conn.connection.dbapi_connection.info.backend_pid
            with killer.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    event.listen(engine, "after_cursor_execute", drop_after_store)
    raw = make_email()
    response = post_email(app.test_client(), token, raw, process=False)
    event.remove(engine, "after_cursor_execute", drop_after_store)
    assert response.status_code == 202, response.get_data(as_text=True)
    again = post_email(app.test_client(), token, raw, process=False)
    assert again.status_code == 202 and again.get_json()["duplicate"] is True
    assert again.get_json()["id"] == response.get_json()["id"]
    engine.dispose()
    killer.dispose()


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_healthz_answers_a_known_metrics_token_while_the_database_is_down(
    app_config: dict[str, Any],
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = create_app({**app_config, "DATABASE_URL": proxied})
        metrics = _metrics_token(app)
        with factories.session_of(app) as s:
            other = factories.api_token(s, scopes=("metrics",))
        assert _health(app, metrics)["database"] == {"ok": True}
        proxy.stop()
        client = app.test_client()
        down = client.get("/healthz", headers={"Authorization": f"Bearer {metrics}"})
        assert down.status_code == 503
        assert down.get_json()["database"]["ok"] is False  # the details, not a generic error
        unknown = client.get("/healthz", headers={"Authorization": f"Bearer {other}"})
        assert unknown.status_code == 503 and "cannot be checked" in unknown.get_json()["error"]
        assert client.get("/healthz").get_json() == {"status": "unavailable"}
        proxy.start()
        app.extensions["triage.engine"].dispose()


# --- a file transport on a small filesystem that fills up ----------------------------------------------


@contextlib.contextmanager
def _tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount` (needs root and mount); skips the test with the reason when it
    cannot be mounted."""
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(filesystem: Path, leave: int) -> Path:
    """Fill a filesystem with one file, then free `leave` bytes of it; returns the file."""
    filler = filesystem / "filler"
    with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"x" * 1024)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs."""
    with _tmpfs(tmp_path / "small", "64k") as mount:
        yield mount


def test_a_full_disk_under_the_file_transport_is_retried_and_shown(
    app_config: dict[str, Any], small_filesystem: Path
) -> None:
    outbox = small_filesystem / "outbox"
    app = create_app({**app_config, "OUTBOX_DIR": outbox})
    expected = _replies(app, 6)
    metrics = _metrics_token(app)
    filler = _fill(small_filesystem, 8 * 1024)  # room for about two replies
    deliver(app)
    _make_due(app)
    deliver(app)  # still full: a second failure
    rows = outbox_rows(app)
    failing = [r for r in rows if r.status == "pending"]
    assert failing and all(r.last_error and "disk full" in r.last_error for r in failing)
    assert all(r.next_attempt_at > utcnow() for r in failing)  # backed off
    assert not list(outbox.glob("*.part"))  # no half-written file
    health = _health(app, metrics)
    assert health["delivery"]["retrying"] == len(failing) and "disk full" in " ".join(
        health["problems"]
    )
    assert "disk full" in _admin_outbox(app)
    filler.unlink()  # space freed
    _make_due(app)
    deliver(app)
    assert [r.status for r in outbox_rows(app)] == ["sent"] * 6
    written = Counter(
        message_from_bytes(path.read_bytes())["Message-ID"] for path in outbox.glob("*.eml")
    )
    assert written == Counter(expected)  # each reply exactly once
    assert _health(app, metrics)["delivery"]["retrying"] == 0
    app.extensions["triage.engine"].dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_full_database_disk_is_reported_as_such(
    app_config: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    with _tmpfs(tmp_path / "dbdisk", "8m") as disk:
        database = disk / "triage.db"
        shutil.copy(database_url.removeprefix("sqlite:///"), database)
        app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{database}"})
        with factories.session_of(app) as s:
            token = factories.api_token(s)
        _fill(disk, 0)
        big = make_email(body="x" * 200_000)
        response = post_email(app.test_client(), token, big, process=False)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert "disk is full" in response.get_json()["error"]
        app.extensions["triage.engine"].dispose()


# --- logs: readable, and never a secret -----------------------------------------------------------------


def test_outage_watch_warns_after_the_set_time_then_reminds_sparingly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    outage = Outage("mail transport", warn_after=60, remind_every=300, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="triage.outage"):
        for second in range(0, 900, 1):  # a failure every second for 15 minutes
            now[0] = float(second)
            outage.failed("451 4.3.0 try later")
        outage.succeeded()
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in levels if level == "WARNING"]
    assert levels[0] == ("INFO", "mail transport failing: 451 4.3.0 try later")
    assert len(warnings) == 4  # at 60 s, 360 s, 660 s, and "works again"
    assert "failing for 60 s" in warnings[0] and warnings[-1].startswith(
        "mail transport works again"
    )


def test_logs_of_a_failing_run_carry_no_token_hash_address_or_mail(
    app_config: dict[str, Any], smtp_server: tuple[SmtpRecorder, int]
) -> None:
    app = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server[1]})
    text_out, json_out = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text_out), logging.StreamHandler(json_out)]
    handlers[0].setFormatter(ScrubbingFormatter(TEXT_FORMAT))
    handlers[1].setFormatter(JsonLines())
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    settings = app.extensions["triage.settings"]
    settings.outage_warn_seconds = 0  # warn at the second failure
    try:
        with factories.session_of(app) as s:
            token = factories.api_token(s)
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        _replies(app, 1)
        smtp_server[0].answers = ["550 5.1.1 <c0@centre0.example>: no such user jo@college.example"]
        deliver(app)
        [refused] = outbox_rows(app)
        assert refused.last_error == (  # readable text, not 550 b'5.1.1 ...'
            "550 5.1.1 <c0@centre0.example>: no such user jo@college.example"
        )
        settings.smtp_port = free_port()  # the relay is down
        with factories.session_of(app) as s:
            row = s.query(OutboxItem).one()
            row.status, row.attempts = "pending", 0
        for _ in range(2):
            _make_due(app)
            deliver(app)
        # a database error whose parameters hold a token hash, and whose DETAIL echoes it
        from sqlalchemy.exc import SQLAlchemyError

        from triage.orm import ApiToken

        try:
            with factories.session_of(app) as s:
                s.add(ApiToken(name="dup", token_hash=token_hash, prefix="imi_x", scopes="read"))
                s.flush()
                s.add(ApiToken(name="dup2", token_hash=token_hash, prefix="imi_y", scopes="read"))
                s.flush()
        except SQLAlchemyError:
            logging.getLogger("triage.test").exception("storing a token failed")
        response = app.test_client().post(
            "/api/v1/inbound", data=b"x", headers={"Authorization": f"Bearer {token}x"}
        )
        assert response.status_code == 401
    finally:
        for handler in handlers:
            root.removeHandler(handler)
    for out in (text_out.getvalue(), json_out.getvalue()):
        assert "failing" in out and "storing a token failed" in out  # the run was logged
        for secret in (token, token_hash, "c0@centre0.example", "jo@college.example", "results?"):
            assert secret not in out, f"{secret!r} leaked into the logs:\n{out}"
        assert "Traceback" in out or '"error"' in out
    first = text_out.getvalue().splitlines()[0]
    assert __import__("re").match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: ", first
    ), first
    app.extensions["triage.engine"].dispose()
