"""Channel health: each channel's last success and last error, its recent mail, its token expiry,
and the admins' alert when it has been failing too long (once, then daily)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.mail.channels import DEFAULT, Channel, Channels
from triage.orm import InboundEmail, MailChannel, OAuthToken, utcnow

log = logging.getLogger(__name__)
REALERT = timedelta(days=1)


def _row(session: Session, name: str) -> MailChannel:
    """The channel's health row, created on first use (a racing process may create it first)."""
    row = session.scalars(select(MailChannel).where(MailChannel.name == name)).one_or_none()
    if row is None:
        with session.begin_nested():
            session.add(MailChannel(name=name))
        row = session.scalars(select(MailChannel).where(MailChannel.name == name)).one()
    return row


def _update(sessions: sessionmaker[Session], name: str, success: bool, error: str = "") -> None:
    for _attempt in range(2):
        try:
            with sessions() as session, session.begin():
                row = _row(session, name)
                now = utcnow()
                if success:
                    row.last_success_at, row.failing_since, row.alerted_at = now, None, None
                else:
                    row.last_error, row.last_error_at = error[:2000], now
                    row.failing_since = row.failing_since or now
            return
        except IntegrityError:  # another process created the row meanwhile: once more
            continue


def succeeded(sessions: sessionmaker[Session], name: str) -> None:
    """Record a successful poll, post or send on the channel (it is no longer failing)."""
    _update(sessions, name, True)


def failed(sessions: sessionmaker[Session], name: str, error: str) -> None:
    """Record a failure in words (the first of a run of failures starts the alert clock)."""
    log.warning("channel %s: %s", name, error)
    _update(sessions, name, False, error)


@dataclass(frozen=True)
class ChannelStatus:
    """What Admin > Channels, /healthz and /metrics show of one channel."""

    name: str
    address: str
    source: str
    auth: str
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failing_since: datetime | None
    received_hour: int
    received_day: int
    token_expires_at: datetime | None

    def failing_longer_than(self, minutes: int, now: datetime) -> bool:
        """Whether it has been failing, with no success since, for over `minutes`."""
        return self.failing_since is not None and now - self.failing_since > timedelta(
            minutes=minutes
        )


def overview(session: Session, channels: Channels) -> list[ChannelStatus]:
    """Every configured channel's health, in name order (default first)."""
    now = utcnow()
    rows = {row.name: row for row in session.scalars(select(MailChannel))}
    counts = _received(session, now)
    expiries = dict(session.execute(select(OAuthToken.key, OAuthToken.expires_at)).all())
    found = []
    for channel in sorted(channels, key=lambda c: (c.name != DEFAULT, c.name)):
        row = rows.get(channel.name)
        hour, day = counts.get(channel.name, (0, 0))
        found.append(
            ChannelStatus(
                name=channel.name,
                address=channel.address,
                source=channel.source,
                auth=_auth(channel),
                last_success_at=row.last_success_at if row else None,
                last_error=row.last_error if row and row.failing_since else None,
                last_error_at=row.last_error_at if row else None,
                failing_since=row.failing_since if row else None,
                received_hour=hour,
                received_day=day,
                token_expires_at=_expiry(channel, expiries),
            )
        )
    return found


def _auth(channel: Channel) -> str:
    credentials = channel.imap_credentials or channel.smtp_credentials
    return str(credentials.method) if credentials is not None else "none"


def _expiry(channel: Channel, expiries: dict[str, datetime | None]) -> datetime | None:
    """When the channel's cached OAuth 2.0 token expires (None: no token, or a password)."""
    for credentials in (channel.imap_credentials, channel.smtp_credentials):
        if credentials is not None and credentials.grant is not None:
            return expiries.get(credentials.grant.cache_key())
    return None


def _received(session: Session, now: datetime) -> dict[str, tuple[int, int]]:
    """Mail stored per channel in the last hour and the last day."""
    name = func.coalesce(InboundEmail.channel, DEFAULT)
    hour = func.sum(case((InboundEmail.received_at >= now - timedelta(hours=1), 1), else_=0))
    query = (
        select(name, hour, func.count())
        .where(InboundEmail.received_at >= now - timedelta(days=1))
        .group_by(name)
    )
    return {n: (int(h or 0), int(d)) for n, h, d in session.execute(query)}


def due_alerts(
    sessions: sessionmaker[Session], channels: Channels, minutes: int
) -> list[ChannelStatus]:
    """The channels failing for over `minutes` whose admins were not told in the last day;
    marked as told (so each process sends the alert once)."""
    now = utcnow()
    due = []
    with sessions() as session, session.begin():
        statuses = {s.name: s for s in overview(session, channels)}
        for row in session.scalars(
            select(MailChannel).where(MailChannel.failing_since.is_not(None)).with_for_update()
        ):
            status = statuses.get(row.name)
            if status is None or not status.failing_longer_than(minutes, now):
                continue
            if row.alerted_at is not None and now - row.alerted_at < REALERT:
                continue
            row.alerted_at = now
            due.append(status)
    return due
