"""Staff pages: queues, a queue's tickets, one ticket with its actions, raw sources and attachments."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import select

from triage import catalogue
from triage.helpdesk import tickets
from triage.models import Attachment, Classification, InboundEmail, Message, Queue, User
from triage.web import db, settings
from triage.web.downloads import attachment_disposition
from triage.web.params import BadParameter, int_param

bp = Blueprint("staff", __name__)


@bp.before_request
@login_required
def _require_login() -> None:
    """Every staff page needs a logged-in user."""


def me() -> User:
    """The logged-in user's row in this request's session."""
    user = db().get(User, current_user.row.id)
    assert user is not None
    return user


@bp.get("/")
def index() -> ResponseReturnValue:
    """Start at the queues."""
    return redirect(url_for("staff.queues"))


@bp.get("/queues")
def queues() -> ResponseReturnValue:
    """Every queue with open counts and oldest waiting age; triage first."""
    return render_template("queues.html", queues=tickets.queue_summaries(db()))


def _int_arg(name: str, default: int | None = None) -> int | None:
    return int_param(request.args.get(name), name, default)


@bp.get("/queues/<slug>")
def queue(slug: str) -> ResponseReturnValue:
    """A queue's tickets, filtered, searched, sorted by age, paginated."""
    session = db()
    q = session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none()
    if q is None:
        abort(404)
    status = request.args.get("status", "open")
    status = status if status in (*tickets.STATUSES, "all") else "open"
    category = request.args.get("category") or None
    category = category if category in catalogue.BY_SLUG else None
    assignee = request.args.get("assignee", "")
    f = tickets.TicketFilter(
        queue=slug,
        status=None if status == "all" else status,
        category=category,
        assignee_id=me().id if assignee == "me" else None if assignee == "none" else _int_arg("assignee"),
        unassigned=assignee == "none",
        text=(request.args.get("q") or "").strip() or None,
        oldest_first=request.args.get("sort", "oldest") != "newest",
        page=int_param(request.args.get("page"), "page", 1, high=100_000) or 1,
    )
    rows, total = tickets.list_tickets(session, f)
    pages = max(1, -(-total // f.page_size))
    staff = session.scalars(select(User).where(User.is_active).order_by(User.email)).all()
    return render_template("queue.html", queue=q, tickets=rows, total=total, page=f.page, pages=pages, f=f,
                           status=status, assignee=assignee, categories=catalogue.CATEGORIES, staff=staff)  # fmt: skip


@bp.get("/tickets/<int:ticket_id>")
def ticket(ticket_id: int) -> ResponseReturnValue:
    """One ticket: thread, the model's decision, notes, audit trail and actions."""
    session = db()
    try:
        t = tickets.get_ticket(session, ticket_id)
    except tickets.TicketError:
        abort(404)
    classification = session.scalars(
        select(Classification).where(Classification.ticket_id == t.id).order_by(Classification.id)
    ).first()
    context: dict[str, Any] = {
        "t": t,
        "classification": classification,
        "notes": tickets.notes(session, t),
        "history": tickets.history(session, t),
        "categories": catalogue.CATEGORIES,
        "queues": session.scalars(select(Queue).order_by(Queue.slug)).all(),
        "staff": session.scalars(select(User).where(User.is_active).order_by(User.email)).all(),
        "canned": [c for c in catalogue.CATEGORIES if c.answer],
        "me": me(),
    }
    return render_template("ticket.html", **context)


_ACTIONS = {"claim", "assign", "category", "move", "note", "reply", "resolve", "reopen"}


@bp.post("/tickets/<int:ticket_id>/<action>")
def act(ticket_id: int, action: str) -> ResponseReturnValue:
    """Apply one staff action to a ticket, then show the ticket again."""
    if action not in _ACTIONS:
        abort(404)
    session = db()
    user = me()
    actor = tickets.Actor.of_user(user)
    try:
        t = tickets.get_ticket(session, ticket_id)
        form = request.form
        if action == "claim":
            tickets.assign(session, actor, t, user)
        elif action == "assign":
            assignee_id = int_param(form.get("assignee_id"), "assignee_id")
            assignee = session.get(User, assignee_id) if assignee_id is not None else None
            tickets.assign(session, actor, t, assignee)
        elif action == "category":
            tickets.set_category(session, actor, t, form.get("category", ""))
        elif action == "move":
            tickets.move(session, actor, t, form.get("queue", ""))
        elif action == "note":
            tickets.add_note(session, actor, t, form.get("body", ""))
        elif action == "reply":
            tickets.reply(session, settings(), actor, t, form.get("body", ""))
        elif action == "resolve":
            tickets.resolve(session, actor, t)
        else:
            tickets.reopen(session, actor, t)
        session.commit()
        flash({"reply": "Reply queued for sending.", "resolve": "Ticket resolved."}.get(action, "Saved."))
    except (tickets.TicketError, BadParameter) as exc:
        session.rollback()
        flash(exc.message if isinstance(exc, BadParameter) else str(exc), "error")
    return redirect(url_for("staff.ticket", ticket_id=ticket_id))


@bp.get("/messages/<int:message_id>/raw")
def raw_source(message_id: int) -> ResponseReturnValue:
    """Download a message's raw RFC 822 source (as an attachment, never rendered)."""
    session = db()
    message = session.get(Message, message_id)
    if message is None:
        abort(404)
    raw = message.raw
    if raw is None:
        raw = session.scalar(select(InboundEmail.raw).where(InboundEmail.message_id == message.message_id))
    if raw is None:
        abort(404)
    return Response(raw, mimetype="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
                             "X-Content-Type-Options": "nosniff"})  # fmt: skip


@bp.get("/attachments/<int:attachment_id>")
def attachment(attachment_id: int) -> ResponseReturnValue:
    """Download an attachment as opaque bytes."""
    att = db().get(Attachment, attachment_id)
    if att is None or att.data is None:
        abort(404)
    return Response(att.data, mimetype="application/octet-stream",
                    headers={"Content-Disposition": attachment_disposition(att.filename),
                             "X-Content-Type-Options": "nosniff"})  # fmt: skip
