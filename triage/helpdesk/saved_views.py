"""Saved views across every queue: Mine, Unassigned, Urgent, Waiting on centre, Centre replied, All
open."""

from __future__ import annotations

from dataclasses import dataclass, replace

from triage.helpdesk.tickets import TicketFilter
from triage.states import OPEN_STATUSES, TicketStatus


@dataclass(frozen=True)
class View:
    """A named list of tickets: its slug in the URL, its title and the filter it applies."""

    slug: str
    title: str
    description: str
    filter: TicketFilter
    mine: bool = False  # the filter's assignee is whoever is looking


VIEWS: tuple[View, ...] = (
    View(
        "mine",
        "Mine",
        "Open and waiting tickets assigned to you",
        TicketFilter(statuses=OPEN_STATUSES),
        mine=True,
    ),
    View(
        "unassigned",
        "Unassigned",
        "Open tickets nobody has taken",
        TicketFilter(statuses=OPEN_STATUSES, unassigned=True),
    ),
    View(
        "urgent",
        "Urgent",
        "Exams happening now, still open",
        TicketFilter(statuses=OPEN_STATUSES, urgent=True),
    ),
    View(
        "waiting",
        "Waiting on centre",
        "Answered by staff; the centre has not replied yet",
        TicketFilter(statuses=(TicketStatus.PENDING,)),
    ),
    View(
        "centre-replied",
        "Centre replied",
        "The centre wrote again since staff last acted",
        TicketFilter(centre_replied=True),
    ),
    View(
        "open",
        "All open",
        "Every open or waiting ticket in every queue",
        TicketFilter(statuses=OPEN_STATUSES),
    ),
    View(
        "automatic",
        "Automatic mail",
        "Out-of-office replies, bounces and other automatic mail, in any state",
        TicketFilter(automatic=True),
    ),
)
BY_SLUG = {v.slug: v for v in VIEWS}


def view_filter(view: View, user_id: int, page: int, oldest_first: bool = True) -> TicketFilter:
    """The view's filter for this person and page."""
    return replace(
        view.filter,
        assignee_id=user_id if view.mine else None,
        page=page,
        oldest_first=oldest_first,
    )
