"""Check a channel end to end: log in to IMAP and open the folder, send a test message to the
channel's own address through its SMTP server, and watch it arrive.

The test message carries `X-Triage-Channel-Check`; the poller skips such mail (it never becomes a
ticket), and the check deletes it once seen.
"""

from __future__ import annotations

import contextlib
import imaplib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.mail import channel_delivery, channel_health, channels, imap
from triage.mail.channel_polling import CHECK_HEADER, POLL_ERRORS, describe
from triage.orm import utcnow


@dataclass
class CheckReport:
    """What the check did, step by step; `ok` is False once a step failed."""

    channel: str
    steps: list[str] = field(default_factory=list)
    ok: bool = True

    def fail(self, step: str) -> None:
        """Record a failed step: the check has failed."""
        self.steps.append(f"FAILED: {step}")
        self.ok = False


def check(
    sessions: sessionmaker[Session],
    settings: Settings,
    channel: channels.Channel,
    wait_seconds: float = 60,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckReport:
    """Run the check and record its outcome as the channel's health."""
    report = CheckReport(channel.name)
    token = secrets.token_hex(8)
    conn = _open_folder(sessions, settings, channel, report)
    try:
        if report.ok:
            _send_test(sessions, settings, channel, token, report)
        if report.ok and conn is not None and report.steps[-1].startswith("sent"):
            _see_it_arrive(conn, token, wait_seconds, sleep, report)
    finally:
        if conn is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()
    if report.ok:
        channel_health.succeeded(sessions, channel.name)
    else:
        channel_health.failed(sessions, channel.name, report.steps[-1].removeprefix("FAILED: "))
    return report


def _open_folder(
    sessions: sessionmaker[Session],
    settings: Settings,
    channel: channels.Channel,
    report: CheckReport,
) -> imaplib.IMAP4 | None:
    """Log in and open the folder (None for a webhook channel, or on failure)."""
    if channel.imap is None:
        report.steps.append("no IMAP mailbox: a webhook channel (arrival is not watched)")
        return None
    try:
        conn = imap.connect(sessions, settings, channel)
        status, data = conn.select(imap.quote(channel.imap.folder))
        if status != "OK":
            raise imap.ImapError(f"cannot open folder {channel.imap.folder}: {data!r}")
    except POLL_ERRORS as exc:
        report.fail(describe(exc))
        return None
    report.steps.append(
        f"logged in to {channel.imap.host} and opened {channel.imap.folder} "
        f"({int(data[0] or 0)} messages)"
    )
    return conn


def _send_test(
    sessions: sessionmaker[Session],
    settings: Settings,
    channel: channels.Channel,
    token: str,
    report: CheckReport,
) -> None:
    """Send the test message to the channel's own address through its SMTP server."""
    if channel.smtp is None and not settings.smtp_host:
        report.steps.append("no SMTP server: replies are written to files (nothing sent)")
        return
    message = EmailMessage()
    message["From"] = channel.address
    message["To"] = channel.address
    message["Subject"] = f"Channel check {token}"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid("channel-check", settings.mail_domain)
    message["Auto-Submitted"] = "auto-generated"
    message[CHECK_HEADER] = token
    message.set_content("A test message from the triage service's channel check.\n")
    with channel_delivery.ChannelTransport(sessions, settings) as transport:
        outcome = transport.send(channel.address, channel.address, bytes(message), f"check-{token}")
    if outcome.sent:
        report.steps.append(f"sent a test message to {channel.address}")
    else:
        report.fail(f"sending to {channel.address} failed: {outcome.error}")


def _see_it_arrive(
    conn: imaplib.IMAP4,
    token: str,
    wait_seconds: float,
    sleep: Callable[[float], None],
    report: CheckReport,
) -> None:
    """Wait for the test message in the folder, then delete it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn.noop()
            status, data = conn.uid("SEARCH", "HEADER", CHECK_HEADER, token)
        except POLL_ERRORS as exc:
            report.fail(describe(exc))
            return
        uids = (data[0] or b"").split() if status == "OK" and data else []
        if uids:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.uid("STORE", b",".join(uids).decode(), "+FLAGS", r"(\Deleted)")
                conn.expunge()
            report.steps.append("the test message arrived (and was deleted)")
            return
        if time.monotonic() >= deadline:
            report.fail(f"the test message did not arrive within {wait_seconds:g} s")
            return
        sleep(1)
