"""Dashboard figures: volume per day and category, automation share, corrections, first reply,
backlog."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.helpdesk.tickets import queue_summaries
from triage.orm import AnswerFeedback, Classification, Message, ModelVersion, Ticket, utcnow
from triage.states import Action, MessageDirection, MessageKind


def dashboard(session: Session, days: int = 14) -> dict[str, Any]:
    """All dashboard figures for the last `days` days."""
    since = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(
            Ticket.created_at,
            Ticket.predicted_category,
            Ticket.confirmed_category,
            Ticket.action,
            Ticket.first_response_at,
            Ticket.status,
            Ticket.resolved_at,
        ).where(Ticket.created_at >= since)
    ).all()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    auto, corrected, confirmed = 0, Counter[str](), Counter[str]()
    auto_by_day: Counter[date] = Counter()
    first_reply_hours: list[float] = []
    staff_reply_hours: list[float] = []
    for created, predicted, confirmed_cat, action, first_response, _status, _resolved in rows:
        per_day[created.date()][predicted or "unclassified"] += 1
        auto += action == Action.AUTO_REPLY
        auto_by_day[created.date()] += action == Action.AUTO_REPLY
        if confirmed_cat:
            confirmed[confirmed_cat] += 1
            if confirmed_cat != predicted:
                corrected[confirmed_cat] += 1
        # an automatic reply is stamped a moment before the row's creation time: never negative
        if first_response:
            hours = max(0.0, (first_response - created).total_seconds() / 3600)
            first_reply_hours.append(hours)
            if action != Action.AUTO_REPLY:
                staff_reply_hours.append(hours)
    today = utcnow().date()
    day_list = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    return {
        "days": day_list,
        "per_day": {d: dict(per_day.get(d, {})) for d in day_list},
        "total": len(rows),
        "auto_reply_share": auto / len(rows) if rows else 0.0,
        "auto_reply_share_by_day": {
            f"{d:%d %b}": auto_by_day[d] / sum(per_day[d].values())
            for d in day_list
            if per_day.get(d)
        },
        "corrected_share": {c: corrected[c] / n for c, n in confirmed.items()},
        "median_first_reply_hours": statistics.median(first_reply_hours)
        if first_reply_hours
        else None,
        "median_staff_first_reply_hours": statistics.median(staff_reply_hours)
        if staff_reply_hours
        else None,
        "backlog": {
            q.slug: q.open_count for q in sorted(queue_summaries(session), key=lambda q: q.slug)
        },
    }


def production_quality(session: Session) -> dict[str, Any]:
    """What staff corrections say about the live model: auto-reply precision and the most corrected
    categories."""
    rows = session.execute(
        select(Ticket.action, Ticket.predicted_category, Ticket.confirmed_category).where(
            Ticket.confirmed_category.is_not(None)
        )
    ).all()
    auto = [(p, c) for action, p, c in rows if action == Action.AUTO_REPLY]
    corrections = Counter((p or "none", c) for _a, p, c in rows if p != c)
    return {
        "confirmed": len(rows),
        "auto_replied_confirmed": len(auto),
        "auto_reply_precision": sum(p == c for p, c in auto) / len(auto) if auto else None,
        "top_corrections": corrections.most_common(10),
    }


DRIFT_TRIAGE_POINTS = 0.10  # flag a change of 10 points or more in the share sent to triage
DRIFT_DISTANCE = 0.20  # flag a total variation distance of 0.2 or more between category mixes
DRIFT_MIN_TICKETS = 20


def drift(session: Session) -> dict[str, Any]:
    """This week's share sent to triage and category mix against the four weeks before, with
    flags."""
    now = utcnow()
    week, before = now - timedelta(days=7), now - timedelta(days=35)
    rows = session.execute(
        select(Ticket.created_at, Ticket.predicted_category, Ticket.action).where(
            Ticket.created_at >= before
        )
    ).all()
    this = [(p or "unclassified", a) for created, p, a in rows if created >= week]
    past = [(p or "unclassified", a) for created, p, a in rows if created < week]

    def mix(items: list[tuple[str, Action | None]]) -> dict[str, float]:
        counts = Counter(p for p, _a in items)
        return {k: v / len(items) for k, v in counts.items()} if items else {}

    def triage_share(items: list[tuple[str, Action | None]]) -> float | None:
        return (
            sum(a in {Action.TRIAGE, Action.NONE, None} for _p, a in items) / len(items)
            if items
            else None
        )

    this_mix, past_mix = mix(this), mix(past)
    distance = 0.5 * sum(
        abs(this_mix.get(k, 0) - past_mix.get(k, 0)) for k in set(this_mix) | set(past_mix)
    )
    share_now, share_before = triage_share(this), triage_share(past)
    enough = len(this) >= DRIFT_MIN_TICKETS and len(past) >= DRIFT_MIN_TICKETS
    flags = []
    if (
        enough
        and share_now is not None
        and share_before is not None
        and abs(share_now - share_before) >= DRIFT_TRIAGE_POINTS
    ):
        flags.append(f"share sent to triage moved from {share_before:.0%} to {share_now:.0%}")
    if enough and distance >= DRIFT_DISTANCE:
        flags.append(f"the category mix changed (total variation distance {distance:.2f})")
    return {
        "this_week": len(this),
        "previous_four_weeks": len(past),
        "triage_share_now": share_now,
        "triage_share_before": share_before,
        "distance": distance,
        "this_mix": this_mix,
        "past_mix": past_mix,
        "flags": flags,
        "enough_data": enough,
    }


def answer_feedback(session: Session) -> list[dict[str, Any]]:
    """Per model version and category: automatic answers sent, confirmed and rejected by centres,
    unanswered, the centres' precision (confirmed / (confirmed + rejected)) and the model's own
    estimate (its auto-reply precision for the category on its test set)."""
    first = (
        select(func.min(Classification.id).label("id"))
        .group_by(Classification.ticket_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Classification.model_version,
            Classification.category,
            func.count(Message.id),
            func.count(AnswerFeedback.id).filter(AnswerFeedback.solved.is_(True)),
            func.count(AnswerFeedback.id).filter(AnswerFeedback.solved.is_(False)),
        )
        .select_from(Message)
        .join(Classification, Classification.ticket_id == Message.ticket_id)
        .join(first, first.c.id == Classification.id)
        .outerjoin(AnswerFeedback, AnswerFeedback.message_id == Message.id)
        .where(
            Message.direction == MessageDirection.OUTBOUND, Message.kind == MessageKind.AUTO_REPLY
        )
        .group_by(Classification.model_version, Classification.category)
        .order_by(Classification.model_version.desc(), Classification.category)
    ).all()
    versions = {version for version, *_rest in rows}
    query = select(ModelVersion.version, ModelVersion.metrics)
    found = session.execute(query.where(ModelVersion.version.in_(versions))).all()
    metrics: dict[str, dict[str, Any]] = dict(found)
    return [
        {
            "model_version": version,
            "category": category,
            "sent": sent,
            "confirmed": yes,
            "rejected": no,
            "unanswered": sent - yes - no,
            "confirmed_precision": yes / (yes + no) if yes + no else None,
            "model_estimate": _estimated_precision(metrics.get(version) or {}, category),
        }
        for version, category, sent, yes, no in rows
    ]


def _estimated_precision(metrics: dict[str, Any], category: str) -> float | None:
    """A model's auto-reply precision for a category, from its test report (else cross-validation)."""
    for report in (metrics.get("test"), metrics.get("cross_validation")):
        per_category = ((report or {}).get("auto_reply") or {}).get("per_category") or {}
        precision = (per_category.get(category) or {}).get("precision")
        if precision is not None:
            return float(precision)
    return None
