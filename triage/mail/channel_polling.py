"""Poll every channel's IMAP mailbox in turn, recording each one's health; a failing channel does
not stop the others."""

from __future__ import annotations

import imaplib
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.mail import channel_health, channels, imap
from triage.mail.mail_login import LoginError
from triage.mail.oauth import TokenError

CHECK_HEADER = "X-Triage-Channel-Check"  # marks the test message of `flask triage channels check`
_CHECK_MARK = CHECK_HEADER.lower().encode() + b":"
# stores one raw message that came in on the named channel (None: the default), committed
StoreOne = Callable[[bytes, str | None], object]
POLL_ERRORS = (imap.ImapError, LoginError, TokenError, OSError, imaplib.IMAP4.error)


def is_check_message(raw: bytes) -> bool:
    """Whether raw mail is a channel check's test message (looked for in the header block)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return any(line.lower().startswith(_CHECK_MARK) for line in head.splitlines())


def describe(exc: BaseException) -> str:
    """A poll failure in one line of words."""
    if isinstance(exc, (LoginError, TokenError, imap.ImapError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot reach the IMAP server: {exc.strerror or exc}"
    return f"IMAP error: {exc}"


def poll_channel(
    sessions: sessionmaker[Session],
    settings: Settings,
    channel: channels.Channel,
    store_one: StoreOne,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Poll one channel and record the outcome; the error is raised again for the caller."""
    name = None if channel.name == channels.DEFAULT else channel.name
    try:
        count = imap.poll(
            sessions,
            settings,
            # a check's test message is left for the check to see (and delete)
            lambda raw: imap.LEAVE if is_check_message(raw) else store_one(raw, name),
            should_stop=should_stop,
            channel=channel,
        )
    except POLL_ERRORS as exc:
        channel_health.failed(sessions, channel.name, describe(exc))
        raise
    channel_health.succeeded(sessions, channel.name)
    return count


def poll_all(
    sessions: sessionmaker[Session],
    settings: Settings,
    store_one: StoreOne,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, dict[str, str]]:
    """Poll every channel with a mailbox: (messages stored, the failures by channel name)."""
    total, failures = 0, {}
    for channel in channels.load(settings).polled():
        if should_stop():
            break
        try:
            total += poll_channel(sessions, settings, channel, store_one, should_stop)
        except POLL_ERRORS as exc:
            failures[channel.name] = describe(exc)
    return total, failures
