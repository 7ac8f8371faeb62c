"""Category-to-queue routing as stored in the database (seeded from the catalogue, editable by
admins)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.orm import Queue, RoutingRule


def routing_map(session: Session) -> dict[str, str]:
    """Map each category slug to the slug of the queue its tickets go to."""
    rows = session.execute(
        select(RoutingRule.category, Queue.slug).join(Queue, RoutingRule.queue_id == Queue.id)
    )
    return {category: queue for category, queue in rows}  # noqa: C416 (rows are Row objects)
