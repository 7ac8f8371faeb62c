"""Dashboard figures: volume per day and category, automation share, corrections, first reply, backlog."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.models import Queue, Ticket, utcnow
from triage.tickets import OPEN_STATUSES


def dashboard(session: Session, days: int = 14) -> dict[str, Any]:
    """All dashboard figures for the last `days` days."""
    since = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(Ticket.created_at, Ticket.predicted_category, Ticket.confirmed_category, Ticket.action,
               Ticket.first_response_at, Ticket.status, Ticket.resolved_at)
        .where(Ticket.created_at >= since)
    ).all()  # fmt: skip
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    auto, corrected, confirmed = 0, Counter[str](), Counter[str]()
    first_reply_hours = []
    for created, predicted, confirmed_cat, action, first_response, _status, _resolved in rows:
        per_day[created.date()][predicted or "unclassified"] += 1
        auto += action == "auto_reply"
        if confirmed_cat:
            confirmed[confirmed_cat] += 1
            if confirmed_cat != predicted:
                corrected[confirmed_cat] += 1
        if first_response:
            first_reply_hours.append((first_response - created).total_seconds() / 3600)
    backlog = session.execute(
        select(Queue.slug, Ticket.id).outerjoin(
            Ticket, (Ticket.queue_id == Queue.id) & Ticket.status.in_(OPEN_STATUSES)
        )
    ).all()
    backlog_counts = Counter(slug for slug, ticket_id in backlog if ticket_id is not None)
    for slug, _ in backlog:
        backlog_counts.setdefault(slug, 0)
    today = utcnow().date()
    day_list = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    return {
        "days": day_list,
        "per_day": {d: dict(per_day.get(d, {})) for d in day_list},
        "total": len(rows),
        "auto_reply_share": auto / len(rows) if rows else 0.0,
        "corrected_share": {c: corrected[c] / n for c, n in confirmed.items()},
        "median_first_reply_hours": statistics.median(first_reply_hours) if first_reply_hours else None,
        "backlog": dict(sorted(backlog_counts.items())),
    }
