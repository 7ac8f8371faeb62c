"""Response targets: when an open ticket is due, in business hours (England and Wales bank holidays
excluded).

Each queue has a first-response and a next-response target in business minutes (09:00-17:00 UK time,
Monday to Friday, not on bank holidays, which come from the maintained `holidays` package). An
urgent ticket (an exam happening now) has a short target in plain minutes, whatever the day or hour:
exams run when centres run them. A ticket waiting on the centre, resolved or answered automatically
is not due.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from triage.orm import Queue, Ticket
from triage.states import TicketStatus

UK = ZoneInfo("Europe/London")
OPENS, CLOSES = time(9, 0), time(17, 0)
DAY_MINUTES = (CLOSES.hour - OPENS.hour) * 60
DEFAULT_FIRST_MINUTES, DEFAULT_NEXT_MINUTES, DEFAULT_URGENT_MINUTES = 480, 480, 15
MAX_TARGET_MINUTES = 60 * DAY_MINUTES  # sixty business days: anything longer is a typing mistake


@lru_cache(maxsize=64)
def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_business_day(day: date) -> bool:
    """Monday to Friday and not an England and Wales bank holiday."""
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def add_business_minutes(start: datetime, minutes: int) -> datetime:
    """The moment `minutes` of business time after `start` (UTC in, UTC out)."""
    local = start.astimezone(UK)
    day, at = local.date(), local.time()
    remaining = float(max(0, minutes))
    while True:
        if not is_business_day(day) or at >= CLOSES:
            day, at = day + timedelta(days=1), OPENS
            continue
        at = max(at, OPENS)
        opened = datetime.combine(day, at, tzinfo=UK)
        left_today = (datetime.combine(day, CLOSES, tzinfo=UK) - opened).total_seconds() / 60
        if remaining <= left_today:
            return (opened + timedelta(minutes=remaining)).astimezone(UTC)
        remaining -= left_today
        day, at = day + timedelta(days=1), OPENS


def clock_start(ticket: Ticket) -> datetime:
    """When the current wait began: creation until staff first answer, then the centre's latest
    reply."""
    if ticket.first_response_at is None:
        return ticket.created_at
    return ticket.centre_replied_at or ticket.last_inbound_at or ticket.created_at


def due_at(ticket: Ticket, queue: Queue | None = None) -> datetime | None:
    """When an open ticket needs its next staff response; None when waiting on the centre or
    closed."""
    if ticket.status != TicketStatus.OPEN:
        return None
    queue = queue or ticket.queue
    start = clock_start(ticket)
    if ticket.urgent:
        minutes = queue.urgent_response_minutes if queue is not None else DEFAULT_URGENT_MINUTES
        return start + timedelta(minutes=minutes)
    if ticket.first_response_at is None:
        minutes = queue.first_response_minutes if queue is not None else DEFAULT_FIRST_MINUTES
    else:
        minutes = queue.next_response_minutes if queue is not None else DEFAULT_NEXT_MINUTES
    return add_business_minutes(start, minutes)


def is_overdue(ticket: Ticket, now: datetime) -> bool:
    """True when the ticket's due time has passed."""
    due = due_at(ticket)
    return due is not None and due <= now


def validate_minutes(value: str, name: str) -> int:
    """A target from a form: whole minutes from 1 to sixty business days, else ValueError naming the
    field."""
    value = value.strip()
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > 9
        or not 1 <= int(value) <= MAX_TARGET_MINUTES
    ):
        raise ValueError(f"{name} must be a whole number of minutes from 1 to {MAX_TARGET_MINUTES}")
    return int(value)
