"""A centre's history: every ticket from one email domain, with dates, categories and states."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from triage.orm import Ticket
from triage.states import OPEN_STATUSES

PAGE_SIZE = 50
# no nested repetition over one char
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}$")


@dataclass(frozen=True)
class CentreHistory:
    """One domain's tickets (a page of them), how many in all, and what they were about."""

    domain: str
    names: list[str]
    tickets: list[Ticket]
    total: int
    open_count: int
    first_at: datetime | None
    last_at: datetime | None
    categories: list[tuple[str, int]]
    page: int
    pages: int


def domain_of(address: str) -> str:
    """The domain of an email address, lower-cased ('' when there is none)."""
    return address.rpartition("@")[2].strip().lower() if "@" in address else ""


def centre_history(session: Session, domain: str, page: int = 1) -> CentreHistory | None:
    """Every ticket whose centre address is at this domain, newest first; None for a malformed
    domain."""
    domain = domain.strip().lower()
    if len(domain) > 253 or not _DOMAIN.match(domain):
        return None
    escaped = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    where = func.lower(Ticket.centre_email).like(f"%@{escaped}", escape="\\")
    summary = session.execute(
        select(func.count(), func.min(Ticket.created_at), func.max(Ticket.created_at)).where(where)
    ).one()
    total = summary[0] or 0
    labels = session.execute(
        select(
            func.coalesce(Ticket.confirmed_category, Ticket.predicted_category),
            Ticket.status,
            Ticket.centre_name,
        ).where(where)
    ).all()
    categories = Counter(label or "unclassified" for label, _s, _n in labels)
    names = sorted({name for _l, _s, name in labels if name})[:10]
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = session.scalars(
        select(Ticket)
        .where(where)
        .options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    return CentreHistory(
        domain,
        names,
        list(rows),
        total,
        sum(s in OPEN_STATUSES for _l, s, _n in labels),
        summary[1],
        summary[2],
        categories.most_common(),
        page,
        pages,
    )
