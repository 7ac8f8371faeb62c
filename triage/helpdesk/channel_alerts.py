"""Tell the admins when a mail channel has been failing too long: once, then daily while it lasts.

The alert is sent straight through the default channel's SMTP server (not the outbox, whose rows
belong to tickets); each channel's alert is claimed in the database first, so one process sends it.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.mail import channel_delivery, channel_health, channels
from triage.orm import User, utcnow
from triage.states import Role

log = logging.getLogger(__name__)


def run(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Worker task: alert the admins of each channel failing for over CHANNEL_ALERT_MINUTES;
    returns how many alerts were sent."""
    configured = channels.load(settings)
    due = channel_health.due_alerts(sessions, configured, settings.channel_alert_minutes)
    if not due:
        return 0
    with sessions() as session:
        admins = list(
            session.scalars(
                select(User.email).where(User.role == Role.ADMIN, User.is_active.is_(True))
            )
        )
    sender = configured.get(channels.DEFAULT).address
    sent = 0
    with channel_delivery.ChannelTransport(sessions, settings) as transport:
        for status in due:
            log.error(
                "channel %s failing since %s: %s",
                status.name,
                status.failing_since,
                status.last_error,
            )
            for admin in admins:
                raw = _alert(settings, sender, admin, status)
                outcome = transport.send(sender, admin, raw, f"channel-alert-{status.name}")
                if outcome.sent:
                    sent += 1
                else:
                    log.error("channel alert to %s not sent: %s", admin, outcome.error)
    return sent


def _alert(
    settings: Settings, sender: str, admin: str, status: channel_health.ChannelStatus
) -> bytes:
    """The alert email to one admin."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = admin
    message["Subject"] = f"Mail channel {status.name} is failing"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid("channel-alert", settings.mail_domain)
    message["Auto-Submitted"] = "auto-generated"
    since = status.failing_since.strftime("%Y-%m-%d %H:%M UTC") if status.failing_since else "?"
    message.set_content(
        f"The mail channel {status.name} ({status.address}) has been failing since {since}.\n\n"
        f"Last error: {status.last_error}\n\n"
        "Admin > Channels shows its state and has a Test button; "
        "`flask triage channels check` runs the same check.\n"
    )
    return bytes(message)
