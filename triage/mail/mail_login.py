"""Log in to IMAP and SMTP servers: a password, or an OAuth 2.0 token over SASL XOAUTH2 or
OAUTHBEARER (RFC 7628).

A token the server refuses is dropped and fetched again once (it may have been revoked before it
expired); a second refusal raises `LoginError` with one line naming what to fix.
"""

from __future__ import annotations

import binascii
import imaplib
import json
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field

from triage.mail.oauth import AuthMethod, OAuthGrant

# fetches a token for the login; True asks for a new one (the cached one was refused)
TokenGetter = Callable[[bool], str]
XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"


class LoginError(Exception):
    """The server refused the login; the message is one line naming what to fix."""


@dataclass(frozen=True)
class Credentials:
    """How one channel logs in: a user and password, or an OAuth 2.0 grant and SASL mechanism."""

    user: str
    password: str = field(default="", repr=False)
    grant: OAuthGrant | None = None
    mechanism: str = XOAUTH2

    @property
    def method(self) -> AuthMethod:
        """Password or the OAuth 2.0 provider."""
        return self.grant.method if self.grant is not None else AuthMethod.PASSWORD


def xoauth2(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial client response."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, host: str, port: int, token: str) -> bytes:
    """The SASL OAUTHBEARER initial client response (RFC 7628), with the GS2 header."""
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


class _Sasl:
    """One SASL exchange: the initial response, then the empty reply to an error challenge."""

    def __init__(self, credentials: Credentials, host: str, port: int, token: str) -> None:
        self.credentials, self.host, self.port, self.token = credentials, host, port, token
        self.sent = False
        self.server_error = ""

    def initial(self) -> bytes:
        if self.credentials.mechanism == OAUTHBEARER:
            return oauthbearer(self.credentials.user, self.host, self.port, self.token)
        return xoauth2(self.credentials.user, self.token)

    def respond(self, challenge: bytes) -> bytes:
        """The first call gives the token; a later one is the server's error (answered empty)."""
        if not self.sent:
            self.sent = True
            return self.initial()
        self.server_error = _sasl_error(challenge)
        return b"\x01" if self.credentials.mechanism == OAUTHBEARER else b""


def _sasl_error(challenge: bytes) -> str:
    """The JSON error a server sends as its challenge after refusing a token, as short text."""
    try:
        details = json.loads(challenge or b"{}")
    except (ValueError, binascii.Error):
        return challenge.decode("utf-8", "replace")[:200]
    if not isinstance(details, dict):
        return str(details)[:200]
    return ", ".join(f"{k}={v}" for k, v in details.items())[:200]


def imap_login(
    conn: imaplib.IMAP4, host: str, port: int, credentials: Credentials, token: TokenGetter
) -> None:
    """Log in to an open IMAP connection with a password or a token (retried once, fresh)."""

    def by_password() -> None:
        conn.login(credentials.user, credentials.password)

    def by_token(sasl: _Sasl) -> None:
        conn.authenticate(credentials.mechanism, sasl.respond)

    _login("IMAP", credentials, token, (host, port), by_password, by_token)


def smtp_login(
    smtp: smtplib.SMTP, host: str, port: int, credentials: Credentials, token: TokenGetter
) -> None:
    """Authenticate an open SMTP session with a password or a token (retried once, fresh)."""

    def by_password() -> None:
        smtp.login(credentials.user, credentials.password)

    def by_token(sasl: _Sasl) -> None:
        smtp.ehlo_or_helo_if_needed()
        smtp.auth(
            credentials.mechanism,
            lambda challenge=None: sasl.respond(challenge or b"").decode(),
            initial_response_ok=True,
        )

    _login("SMTP", credentials, token, (host, port), by_password, by_token)


_REFUSALS = (smtplib.SMTPAuthenticationError, imaplib.IMAP4.error)


def _login(
    protocol: str,
    credentials: Credentials,
    token: TokenGetter,
    server: tuple[str, int],
    by_password: Callable[[], None],
    by_token: Callable[[_Sasl], None],
) -> None:
    """A password login, or a token login retried once with a fresh token; LoginError when
    refused (a dropped IMAP connection, `IMAP4.abort`, is raised as it is)."""
    if credentials.grant is None:
        try:
            by_password()
        except _REFUSALS as exc:
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            raise LoginError(
                f"{protocol} login as {credentials.user} refused: {_answer(exc)}"
            ) from None
        return
    refused = ""
    for renew in (False, True):
        sasl = _Sasl(credentials, *server, token(renew))
        try:
            by_token(sasl)
            return
        except _REFUSALS as exc:
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            detail = f" ({sasl.server_error})" if sasl.server_error else ""
            refused = f"{_answer(exc)}{detail}"
    raise LoginError(_refused_line(protocol, credentials, refused))


def _answer(exc: Exception) -> str:
    """A server's refusal as one short line."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return _text(exc)


_SERVER_HINTS = {
    AuthMethod.MICROSOFT: {
        "IMAP": "check that the app has IMAP.AccessAsApp with admin consent, its Exchange service "
        "principal exists (New-ServicePrincipal) and has FullAccess on the mailbox "
        "(Add-MailboxPermission)",
        "SMTP": "check that the app has SMTP.SendAsApp with admin consent, FullAccess on the "
        "mailbox (Add-MailboxPermission) and SMTP AUTH is on for it "
        "(Set-CASMailbox -SmtpClientAuthenticationDisabled $false)",
    },
    AuthMethod.GOOGLE_SERVICE_ACCOUNT: {
        "IMAP": "check that IMAP is on for the user and delegation allows https://mail.google.com/",
        "SMTP": "check that delegation allows https://mail.google.com/ for this user",
    },
    AuthMethod.GOOGLE_REFRESH_TOKEN: {
        "IMAP": "check that IMAP is on and the grant has the scope https://mail.google.com/",
        "SMTP": "check that the grant has the scope https://mail.google.com/",
    },
}


def _refused_line(protocol: str, credentials: Credentials, refused: str) -> str:
    """One line for a token the server refused twice: its answer and what to check."""
    hint = _SERVER_HINTS.get(credentials.method, {}).get(protocol, "check the token's scope")
    return (
        f"{protocol} server refused the {credentials.method} token for {credentials.user}: "
        f"{refused}; {hint}"
    )


def _text(value: object) -> str:
    """A server's answer as one short line of text."""
    if isinstance(value, imaplib.IMAP4.error) and value.args:
        value = value.args[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:300]
