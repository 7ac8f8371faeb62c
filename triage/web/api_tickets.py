"""REST API (/api/v1, bearer token): list and read tickets, change them, reply, list queues."""

from __future__ import annotations

import re
from typing import Any

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import catalogue
from triage.helpdesk import due, tickets
from triage.orm import Message, Queue, Ticket, User
from triage.states import TicketStatus
from triage.web import db, settings
from triage.web.api import bp
from triage.web.auth import token_required
from triage.web.body import json_body
from triage.web.errors import ApiError
from triage.web.params import int_param


def ticket_json(t: Ticket, with_messages: bool = False) -> dict[str, Any]:
    """The API's view of a ticket."""
    body: dict[str, Any] = {
        "id": t.id,
        "reference": t.reference,
        "centre_email": t.centre_email,
        "centre_name": t.centre_name,
        "subject": t.subject,
        "status": t.status,
        "action": t.action,
        "predicted_category": t.predicted_category,
        "predicted_confidence": t.predicted_confidence,
        "confirmed_category": t.confirmed_category,
        "queue": t.queue.slug if t.queue else None,
        "assignee": t.assignee.email if t.assignee else None,
        "urgent": t.urgent,
        "urgent_reason": t.urgent_reason,
        "due_at": due_time.isoformat() if (due_time := due.due_at(t)) is not None else None,
        "centre_replied": t.centre_replied,
        "created_at": t.created_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
    }
    if with_messages:
        body["messages"] = [message_json(m) for m in t.messages]
        body["reply_version"] = tickets.reply_version(db(), t)
    return body


def message_json(m: Message) -> dict[str, Any]:
    """The API's view of a message."""
    return {
        "id": m.id,
        "direction": m.direction,
        "kind": m.kind,
        "message_id": m.message_id,
        "from": m.from_address,
        "to": m.to_addresses,
        "subject": m.subject,
        "body": m.body_text,
        "automatic_reason": m.auto_submitted_reason,
        "created_at": m.created_at.isoformat(),
    }


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = int_param(request.args.get(name), name, default, low, high)
    return default if value is None else value


def _choice(name: str, allowed: tuple[str, ...] | set[str]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in allowed:
        raise ApiError(400, f"{name} must be one of: {', '.join(sorted(allowed))}", field=name)
    return value


def _status_arg() -> TicketStatus | None:
    value = _choice("status", set(TicketStatus))
    return None if value is None else TicketStatus(value)


@bp.get("/tickets")
@token_required
def list_tickets() -> ResponseReturnValue:
    """Tickets filtered by queue, status, category, assignee and text; paginated."""
    session = db()
    queues = set(session.scalars(select(Queue.slug)))
    assignee = request.args.get("assignee")
    assignee_id = None
    if assignee:
        assignee_id = session.scalar(select(User.id).where(User.email == assignee.lower()))
        if assignee_id is None:
            raise ApiError(400, "assignee must be a staff email address", field="assignee")
    f = tickets.TicketFilter(
        queue=_choice("queue", queues),
        status=_status_arg(),
        category=_choice("category", set(catalogue.SLUGS)),
        assignee_id=assignee_id,
        text=(request.args.get("q") or "")[:200] or None,
        oldest_first=_choice("sort", ("oldest", "newest")) != "newest",
        page=_int_arg("page", 1, 1, 100_000),
        page_size=_int_arg("per_page", tickets.PAGE_SIZE, 1, 200),
    )
    rows, total = tickets.list_tickets(session, f)
    return jsonify(
        {
            "tickets": [ticket_json(t) for t in rows],
            "total": total,
            "page": f.page,
            "per_page": f.page_size,
        }
    )


def ticket_or_404(ticket_id: int) -> Ticket:
    """The ticket with this id, or a 404 API error."""
    try:
        return tickets.get_ticket(db(), ticket_id)
    except tickets.TicketError:
        raise ApiError(404, f"no ticket {ticket_id}") from None


@bp.get("/tickets/<int:ticket_id>")
@token_required
def get_ticket(ticket_id: int) -> ResponseReturnValue:
    """One ticket with its messages; its ETag is its reply version (for If-Match on a reply)."""
    body = ticket_json(ticket_or_404(ticket_id), with_messages=True)
    response = jsonify(body)
    response.headers["ETag"] = f'"reply-{body["reply_version"]}"'
    return response


def token_actor() -> tickets.Actor:
    """The actor of this API call: its token."""
    return tickets.Actor.of_token(g.api_token.name)


@bp.patch("/tickets/<int:ticket_id>")
@token_required
def update_ticket(ticket_id: int) -> ResponseReturnValue:
    """Change status (resolved/open), category, queue or assignee; all or nothing."""
    data = json_body()
    allowed = {"status", "category", "queue", "assignee"}
    if not isinstance(data, dict) or not data:
        raise ApiError(400, f"send a JSON object with any of: {', '.join(sorted(allowed))}")
    unknown = set(data) - allowed
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    for name, value in data.items():
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string", field=name)
    session = db()
    t = ticket_or_404(ticket_id)
    actor = token_actor()
    for name in ("category", "queue", "assignee", "status"):
        if name not in data:
            continue
        try:
            _apply(session, actor, t, name, data[name])
        except tickets.TicketError as exc:
            session.rollback()
            raise ApiError(409 if name == "status" else 400, str(exc), field=name) from None
        except ApiError:
            session.rollback()
            raise
    session.commit()
    return jsonify(ticket_json(t))


def _apply(session: Session, actor: tickets.Actor, t: Ticket, name: str, value: str | None) -> None:
    """Apply one field of a PATCH."""
    if name == "category":
        tickets.set_category(session, actor, t, value or "")
    elif name == "queue":
        tickets.move(session, actor, t, value or "")
    elif name == "assignee":
        assignee = None
        if value:
            assignee = session.scalars(
                select(User).where(User.email == value.lower())
            ).one_or_none()
            if assignee is None:
                raise ApiError(400, "assignee must be a staff email address", field="assignee")
        tickets.assign(session, actor, t, assignee)
    elif value == TicketStatus.RESOLVED:
        tickets.resolve(session, actor, t)
    elif value == TicketStatus.OPEN:
        tickets.reopen(session, actor, t)
    else:
        raise ApiError(400, "status can be set to resolved or open", field="status")


@bp.post("/tickets/<int:ticket_id>/replies")
@token_required
def post_reply(ticket_id: int) -> ResponseReturnValue:
    """Reply to the centre (queued in the outbox, threaded)."""
    data = json_body()
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("body"), str)
        or not data["body"].strip()
    ):
        raise ApiError(400, "body is required", field="body")
    if len(data["body"]) > 100_000:
        raise ApiError(400, "body is longer than 100000 characters", field="body")
    seen = _seen_version(data)
    session = db()
    t = ticket_or_404(ticket_id)
    try:
        message = tickets.reply(
            session, settings(), token_actor(), t, data["body"], seen_version=seen
        )
    except tickets.ReplyConflict as exc:
        session.rollback()
        raise ApiError(
            409, f"someone replied since version {seen}: read the ticket first (now {exc.version})"
        ) from None
    except tickets.TicketError as exc:
        session.rollback()
        raise ApiError(409, str(exc)) from None
    session.commit()
    return jsonify(message_json(message)), 201


_ETAG = re.compile(r'^(?:W/)?"reply-(\d{1,18})"$')


def _seen_version(data: dict[str, Any]) -> int | None:
    """The reply version the caller read: from If-Match ("reply-N"; * means any) or the body's
    reply_version; None when neither is given."""
    version = data.get("reply_version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**62
    ):
        raise ApiError(400, "reply_version must be a whole number", field="reply_version")
    header = (request.headers.get("If-Match") or "").strip()
    if not header or header == "*":
        return version
    match = _ETAG.fullmatch(header)
    if match is None:
        raise ApiError(
            400, 'If-Match must be the ticket\'s ETag, e.g. "reply-42"', field="If-Match"
        )
    return int(match.group(1))


@bp.get("/queues")
@token_required
def list_queues() -> ResponseReturnValue:
    """Queues with open counts and the oldest waiting ticket's time."""
    return jsonify(
        {
            "queues": [
                {
                    "slug": q.slug,
                    "name": q.name,
                    "open": q.open_count,
                    "oldest_open_at": q.oldest.isoformat() if q.oldest else None,
                }
                for q in tickets.queue_summaries(db())
            ]
        }
    )
