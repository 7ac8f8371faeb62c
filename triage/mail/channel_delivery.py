"""Send each outgoing message through the channel it is from: its SMTP server and login.

The envelope sender (the From address) names the channel; a channel without an SMTP server of its
own sends through the default channel's (or writes .eml files when there is none). Each channel
keeps one SMTP connection for the delivery round.
"""

from __future__ import annotations

import smtplib
from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.mail import channel_health, channels
from triage.mail.mail_login import LoginError, smtp_login
from triage.mail.oauth import TokenError
from triage.mail.transport import DeliveryOutcome, Login, Transport


class ChannelTransport:
    """A `Transport` per channel, chosen by the sender address; close it when the round ends."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions, self.settings = sessions, settings
        self.channels = channels.load(settings)
        self._transports: dict[str, Transport] = {}
        self._noted: set[str] = set()  # channels whose health this round has recorded

    def __enter__(self) -> ChannelTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, sender: str, recipient: str, raw: bytes, name: str) -> DeliveryOutcome:
        """Deliver one message through its channel; a refused login is a temporary failure."""
        channel = self.channels.owner(sender) or self.channels.get(channels.DEFAULT)
        if channel.smtp is None:
            channel = self.channels.get(channels.DEFAULT)
        try:
            outcome = self._transport(channel).send(sender, recipient, raw, name)
        except (LoginError, TokenError) as exc:
            self._note(channel.name, str(exc))
            return DeliveryOutcome(False, False, str(exc))
        if outcome.sent and channel.smtp is not None:
            self._note(channel.name, None)
        return outcome

    def _note(self, name: str, error: str | None) -> None:
        """Record the channel's health once per round (not once per message: the hot path)."""
        if name in self._noted:
            return
        self._noted.add(name)
        if error is None:
            channel_health.succeeded(self.sessions, name)
        else:
            channel_health.failed(self.sessions, name, error)

    def close(self) -> None:
        """End every channel's SMTP session."""
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def _transport(self, channel: channels.Channel) -> Transport:
        """The channel's transport, made on first use."""
        if channel.name not in self._transports:
            settings, login = self.settings, None
            if channel.smtp is not None:
                smtp = channel.smtp
                settings = replace(
                    self.settings,
                    smtp_host=smtp.host,
                    smtp_port=smtp.port,
                    smtp_starttls=smtp.starttls,
                    smtp_timeout=smtp.timeout,
                )
                login = self._login(channel)
            self._transports[channel.name] = Transport(settings, login)
        return self._transports[channel.name]

    def _login(self, channel: channels.Channel) -> Login | None:
        """The login step of the channel's SMTP sessions (None: the server takes mail without)."""
        credentials, smtp = channel.smtp_credentials, channel.smtp
        if credentials is None or smtp is None:
            return None
        token = channels.token_getter(self.sessions, self.settings, credentials)

        def login(session: smtplib.SMTP) -> None:
            smtp_login(session, smtp.host, smtp.port, credentials, token)

        return login
