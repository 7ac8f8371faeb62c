"""Sending one message's bytes: over SMTP, or into a folder of .eml files when no SMTP is set.

Every failure is an outcome (`DeliveryOutcome`), never an exception: a refused recipient, a dropped
connection, a full disk or a folder that cannot be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triage.config import Settings


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one delivery attempt."""

    sent: bool
    permanent: bool = False
    error: str = ""


def smtp_text(code: int, text: bytes | str) -> str:
    """An SMTP answer as readable text: `550 5.1.1 mailbox unavailable`, not `550 b'5.1.1 ...'`."""
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(words.split())}"[:500]


def os_error_text(exc: OSError) -> str:
    """A file-system error as readable text, naming a full disk plainly."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: {exc.strerror or 'no space left on device'}"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


# a mail channel's login step on an open SMTP session (a password, or OAuth 2.0)
Login = Callable[[smtplib.SMTP], None]


def open_smtp(settings: Settings, login: Login | None = None) -> smtplib.SMTP:
    """Open an SMTP session: connect, STARTTLS and log in as set (the one place that does):
    `login` when a channel gives one, else SMTP_USER's password when set."""
    smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
    try:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if login is not None:
            login(smtp)
        elif settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
    except BaseException:
        smtp.close()
        raise
    return smtp


class Transport:
    """Sends raw bytes to one recipient: over SMTP, or into a folder of .eml files when no SMTP is
    set.

    One SMTP connection serves every message this transport sends: it is checked with NOOP before
    each reuse and opened again when the server has dropped it. Close it when done (`with
    Transport(settings) as transport:`). A transport is used by one thread at a time.
    """

    def __init__(self, settings: Settings, login: Login | None = None) -> None:
        self.settings = settings
        self.login = login  # a channel's login (password or OAuth 2.0); else SMTP_USER's
        self._folder_made: Path | None = None
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, sender: str, recipient: str, raw: bytes, name: str) -> DeliveryOutcome:
        """Deliver one message; temporary failures are not permanent, 5xx answers are."""
        if not self.settings.smtp_host:
            return self._write_file(raw, name)
        try:
            self._connected().sendmail(sender, [recipient], raw)
        except smtplib.SMTPRecipientsRefused as exc:  # the session is still good (smtplib reset it)
            code, text = next(iter(exc.recipients.values()))
            return DeliveryOutcome(False, code >= 500, smtp_text(code, text))
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the connection
                self.close()
            error = smtp_text(exc.smtp_code, exc.smtp_error)
            return DeliveryOutcome(False, exc.smtp_code >= 500, error)
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self.close()  # in an unknown state: the next message starts on a new connection
            return DeliveryOutcome(False, False, f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryOutcome(True)

    def close(self) -> None:
        """End the SMTP session, if one is open."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def _connected(self) -> smtplib.SMTP:
        """The open SMTP session if the server still answers it, else a new one."""
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (OSError, smtplib.SMTPException):
                pass
            self.close()
        self._smtp = open_smtp(self.settings, self.login)
        return self._smtp

    def _write_file(self, raw: bytes, name: str) -> DeliveryOutcome:
        """Write the message as `<name>.eml` (mode 0600) by way of a `.part` file removed on
        failure."""
        folder: Path = self.settings.outbox_dir or self.settings.instance_path / "outbox"
        target = folder / f"{name}.eml"
        partial = target.with_suffix(".eml.part")
        try:
            if folder != self._folder_made:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._folder_made = folder
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            partial.replace(target)
        except OSError as exc:
            self._folder_made = None
            with contextlib.suppress(OSError):  # no half-written file is left behind
                partial.unlink(missing_ok=True)
            return DeliveryOutcome(False, False, os_error_text(exc))
        return DeliveryOutcome(True)
