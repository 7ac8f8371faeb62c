"""Staff pages: queues, a queue's tickets, one ticket with its actions, raw mail and attachments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as flask_session
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from triage import catalogue
from triage.helpdesk import (
    bulk_actions,
    centres,
    due,
    incidents,
    macros,
    presence,
    saved_views,
    search,
    tickets,
    users,
)
from triage.helpdesk.history import describe
from triage.helpdesk.previews import PreviewKind, preview_type
from triage.mail.forwards import split_forward
from triage.orm import (
    Attachment,
    Classification,
    InboundEmail,
    Message,
    Queue,
    Ticket,
    User,
    utcnow,
)
from triage.states import OPEN_STATUSES, MessageDirection, TicketStatus
from triage.web import db, settings
from triage.web.downloads import attachment_disposition
from triage.web.formatting import plural
from triage.web.login import login_required
from triage.web.params import BadParameter, int_param, required_int

bp = Blueprint("staff", __name__)
MAX_PAGE = 100_000
ALL_STATUSES = "all"  # the queue page's status filter: tickets in any status
# the query parameters a ticket list reads, kept in its page links (nothing else is passed on)
PAGE_LINK_PARAMS = ("status", "category", "assignee", "q", "sort")


@bp.before_request
@login_required
def _require_login() -> None:
    """Every staff page needs a logged-in user."""


@bp.app_template_global()
def due_of(ticket: Ticket) -> dict[str, str] | None:
    """Due time for lists: {"text", "title", "state"}, state due|soon|overdue; None if not due."""
    when = due.due_at(ticket)
    if when is None:
        return None
    seconds = int((when - utcnow()).total_seconds())
    span = _span(abs(seconds))
    title = f"due {when.astimezone(due.UK):%d %b %H:%M} UK time"
    if seconds <= 0:
        return {"text": f"overdue {span}", "title": title, "state": "overdue"}
    return {"text": f"due in {span}", "title": title, "state": "soon" if seconds <= 3600 else "due"}


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@bp.app_template_global()
def view_counts() -> dict[str, int]:
    """Open urgent and centre-replied counts for the navigation bar."""
    session = db()
    urgent = (
        session.scalar(
            select(func.count())
            .select_from(Ticket)
            .where(Ticket.urgent.is_(True), Ticket.status.in_(OPEN_STATUSES))
        )
        or 0
    )
    replied = tickets.count_tickets(
        session, saved_views.view_filter(saved_views.BY_SLUG["centre-replied"], 0, 1)
    )
    return {"urgent": urgent, "centre-replied": replied}


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
    session = db()
    return render_template(
        "queues.html",
        queues=tickets.queue_summaries(session),
        suggestions=incidents.suggestions(session),
    )


@bp.app_template_global()
def page_url(endpoint: str, page: int) -> str:
    """A ticket list's link to another of its pages: its filters kept, any other parameter
    dropped."""
    values: dict[str, Any] = {**(request.view_args or {}), "page": page}
    values.update((name, value) for name in PAGE_LINK_PARAMS if (value := request.args.get(name)))
    return url_for(endpoint, **values)


def _int_arg(name: str, default: int | None = None) -> int | None:
    return int_param(request.args.get(name), name, default)


def _page() -> int:
    """The ?page= of a list (1 when absent; 400 when not a page number)."""
    return int_param(request.args.get("page"), "page", 1, high=MAX_PAGE) or 1


def _list_context(session: Session) -> dict[str, Any]:
    """What every ticket list needs for its bulk-action bar."""
    return {
        "queues": session.scalars(select(Queue).order_by(Queue.slug)).all(),
        "categories": catalogue.CATEGORIES,
        "staff": session.scalars(select(User).where(User.is_active).order_by(User.email)).all(),
        "open_incidents": incidents.open_incidents(session),
        "undo_ids": flask_session.pop(UNDO_KEY, []),
        "undo_seconds": UNDO_SHOWN_SECONDS,
    }


UNDO_KEY = "undo_resolved"  # the tickets a bulk resolve just resolved, offered once for Undo


@bp.get("/queues/<slug>")
def queue(slug: str) -> ResponseReturnValue:
    """A queue's tickets, filtered, searched, urgent first then by waiting time, paginated."""
    session = db()
    q = session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none()
    if q is None:
        abort(404)
    status = request.args.get("status", TicketStatus.OPEN)
    status = status if status in (*TicketStatus, ALL_STATUSES) else TicketStatus.OPEN
    category = request.args.get("category") or None
    category = category if category in catalogue.BY_SLUG else None
    assignee = request.args.get("assignee", "")
    f = tickets.TicketFilter(
        queue=slug,
        status=None if status == ALL_STATUSES else TicketStatus(status),
        category=category,
        assignee_id=me().id
        if assignee == "me"
        else None
        if assignee == "none"
        else _int_arg("assignee"),
        unassigned=assignee == "none",
        text=(request.args.get("q") or "").strip() or None,
        oldest_first=request.args.get("sort", "oldest") != "newest",
        page=_page(),
    )
    rows, total = tickets.list_tickets(session, f)
    pages = max(1, -(-total // f.page_size))
    return render_template(
        "queue.html",
        queue=q,
        tickets=rows,
        total=total,
        page=f.page,
        pages=pages,
        f=f,
        status=status,
        statuses=[*TicketStatus, ALL_STATUSES],
        assignee=assignee,
        **_list_context(session),
    )


@bp.get("/views/<slug>")
def view(slug: str) -> ResponseReturnValue:
    """A saved view across all queues (Mine, Unassigned, Urgent, Waiting, Replied, All open)."""
    chosen = saved_views.BY_SLUG.get(slug)
    if chosen is None:
        abort(404)
    session = db()
    f = saved_views.view_filter(
        chosen, me().id, _page(), request.args.get("sort", "oldest") != "newest"
    )
    rows, total = tickets.list_tickets(session, f)
    pages = max(1, -(-total // f.page_size))
    return render_template(
        "view.html",
        view=chosen,
        views=saved_views.VIEWS,
        tickets=rows,
        total=total,
        page=f.page,
        pages=pages,
        f=f,
        **_list_context(session),
    )


@bp.get("/search")
def search_page() -> ResponseReturnValue:
    """Search every queue by reference, centre address or name, subject and the centre's words."""
    query = (request.args.get("q") or "").strip()
    session = db()
    results = search.search(session, query, _page()) if query else None
    return render_template("search.html", q=query, results=results, **_list_context(session))


@bp.get("/centres/<domain>")
def centre(domain: str) -> ResponseReturnValue:
    """Every ticket from one centre's email domain, with dates and categories."""
    session = db()
    history = centres.centre_history(session, domain, _page())
    if history is None:
        abort(404)
    return render_template("centre.html", centre=history, **_list_context(session))


def _back(default: str) -> str:
    """The local page a form came from (never another site)."""
    target = request.form.get("next", "")
    parts = urlsplit(target)
    if (
        target.startswith("/")
        and not target.startswith("//")
        and not parts.scheme
        and not parts.netloc
    ):
        return target
    return default


@bp.post("/tickets/bulk")
def bulk_action() -> ResponseReturnValue:
    """Assign, move, confirm or resolve every selected ticket; says which could not be, and why."""
    session = db()
    operation = request.form.get("op", "")
    value = (
        request.form.get(f"{operation}_value", "") if operation in bulk_actions.OPERATIONS else ""
    )
    try:
        ids = [required_int(v, "ticket_id") for v in request.form.getlist("ticket_id")]
        outcome = bulk_actions.apply(session, tickets.Actor.of_user(me()), ids, operation, value)
        session.commit()
        flash(f"{plural(outcome.done, 'ticket')} changed.", "message" if outcome.done else "error")
        if operation == "resolve" and outcome.changed:
            flask_session[UNDO_KEY] = outcome.changed
        if outcome.refused:
            flash("Not changed: " + "; ".join(outcome.refused[:20]), "error")
    except (tickets.TicketError, BadParameter) as exc:
        session.rollback()
        flash(exc.message if isinstance(exc, BadParameter) else str(exc), "error")
    return redirect(_back(url_for("staff.queues")))


@bp.get("/tickets/<int:ticket_id>")
def ticket(ticket_id: int) -> ResponseReturnValue:
    """One ticket: thread, the model's decision and urgency, notes, readable history and actions."""
    session = db()
    try:
        t = tickets.get_ticket(session, ticket_id)
    except tickets.TicketError:
        abort(404)
    return _render_ticket(session, t)


def _render_ticket(
    session: Session,
    t: Ticket,
    *,
    drafts: dict[str, str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The ticket page; `drafts` puts text back in the reply or note box (an action that could
    not be done never loses what was typed)."""
    classification = session.scalars(
        select(Classification).where(Classification.ticket_id == t.id).order_by(Classification.id)
    ).first()
    names = users.display_names(session)
    user = me()
    actor = tickets.Actor.of_user(user)
    undo = tickets.undoable_resolve(session, actor, t)
    context: dict[str, Any] = {
        "t": t,
        "classification": classification,
        "notes": tickets.notes(session, t),
        "history": [(e, describe(e, names)) for e in tickets.history(session, t)],
        "categories": catalogue.CATEGORIES,
        "queues": session.scalars(select(Queue).order_by(Queue.slug)).all(),
        "staff": session.scalars(select(User).where(User.is_active).order_by(User.email)).all(),
        "macros": macros.for_category(session, t.confirmed_category or t.predicted_category),
        "me": user,
        "forwards": {
            m.id: f
            for m in t.messages
            if m.direction == MessageDirection.INBOUND and (f := split_forward(m.body_text))
        },
        "due": due.due_at(t),
        "links": incidents.links_of(session, t),
        "open_incidents": incidents.open_incidents(session),
        "domain": centres.domain_of(t.centre_email),
        "drafts": drafts or {},
        "reply_version": tickets.reply_version(session, t),
        "undo_seconds": UNDO_SHOWN_SECONDS if undo is not None else 0,
        "viewers": presence.others(session, t.id, user.id),
    }
    return render_template("ticket.html", **context), status


UNDO_SHOWN_SECONDS = 10  # how long the page offers Undo after a resolve


def _assign(session: Session, actor: tickets.Actor, t: Ticket, form: MultiDict[str, str]) -> None:
    assignee_id = int_param(form.get("assignee_id"), "assignee_id")
    assignee = session.get(User, assignee_id) if assignee_id is not None else None
    tickets.assign(session, actor, t, assignee)


def _claim(session: Session, actor: tickets.Actor, t: Ticket, form: MultiDict[str, str]) -> None:
    """Take the ticket; refused when it changed hands since the page showed who had it."""
    expected = form.get("assignee_was")
    if expected is not None and expected != str(t.assignee_id or ""):
        holder = t.assignee.name or t.assignee.email if t.assignee else "nobody"
        raise tickets.TicketError(
            f"the ticket changed hands since you opened it (now: {holder}); look, then take it"
        )
    tickets.assign(session, actor, t, actor.user)


def _reply(session: Session, actor: tickets.Actor, t: Ticket, form: MultiDict[str, str]) -> None:
    seen = int_param(form.get("seen_version"), "seen_version", low=0)
    tickets.reply(session, settings(), actor, t, form.get("body", ""), seen_version=seen)


_StaffAction = Callable[[Session, tickets.Actor, Ticket, MultiDict[str, str]], object]
_STAFF_ACTIONS: dict[str, _StaffAction] = {  # the form's action -> what it does to the ticket
    "claim": _claim,
    "assign": _assign,
    "category": lambda session, actor, t, form: tickets.set_category(
        session, actor, t, form.get("category", "")
    ),
    "move": lambda session, actor, t, form: tickets.move(session, actor, t, form.get("queue", "")),
    "note": lambda session, actor, t, form: tickets.add_note(
        session, actor, t, form.get("body", "")
    ),
    "urgent": lambda session, actor, t, form: tickets.set_urgent(
        session, actor, t, form.get("urgent") == "1", form.get("reason", "")
    ),
    "reply": _reply,
    "resolve": lambda session, actor, t, _form: tickets.resolve(session, actor, t),
    "undo-resolve": lambda session, actor, t, _form: tickets.undo_resolve(session, actor, t),
    "reopen": lambda session, actor, t, _form: tickets.reopen(session, actor, t),
}
_TYPED = {"reply": "reply", "note": "note"}  # actions whose typed text the page keeps on failure


@bp.post("/tickets/<int:ticket_id>/<action>")
def act(ticket_id: int, action: str) -> ResponseReturnValue:
    """Apply one staff action to a ticket, then show it (or the next, after "Send and next").

    When it cannot be done the ticket page comes back with the message and whatever was typed in
    the reply or note box; "Send and resolve" sends, then says why it could not resolve.
    """
    apply = _STAFF_ACTIONS.get(action)
    if apply is None:
        abort(404)
    session = db()
    user = me()
    actor = tickets.Actor.of_user(user)
    then = request.form.get("then", "")
    try:
        t = tickets.get_ticket(session, ticket_id)
    except tickets.TicketError:
        abort(404)
    try:
        apply(session, actor, t, request.form)
    except (tickets.TicketError, BadParameter) as exc:
        session.rollback()
        flash(exc.message if isinstance(exc, BadParameter) else str(exc), "error")
        if action not in _TYPED:
            return redirect(url_for("staff.ticket", ticket_id=ticket_id))
        t = tickets.get_ticket(session, ticket_id)
        status = 409 if isinstance(exc, tickets.ReplyConflict) else 400
        return _render_ticket(
            session, t, drafts={_TYPED[action]: request.form.get("body", "")}, status=status
        )
    notes = (
        _resolve_after_reply(session, actor, t) if action == "reply" and then == "resolve" else []
    )
    destination = _after(session, t, user, action, then)
    session.commit()
    flash(_done(action))
    for message, kind in notes:
        flash(message, kind)
    return redirect(destination)


def _resolve_after_reply(
    session: Session, actor: tickets.Actor, t: Ticket
) -> list[tuple[str, str]]:
    """ "Send and resolve" after the reply went: confirm the model's category when the macro the
    agent started from is of it, then resolve; the messages to show (why it did not resolve)."""
    said: list[tuple[str, str]] = []
    macro_id = int_param(request.form.get("macro_id"), "macro_id")
    confirmed = macros.confirms_category(session, macro_id, t)
    if confirmed is not None:
        tickets.set_category(session, actor, t, confirmed)
        title = catalogue.BY_SLUG[confirmed].title
        said.append(
            (f"Category confirmed as “{title}” for you: the macro you used is for it.", "message")
        )
    try:
        tickets.resolve(session, actor, t)  # refuses before changing anything
        said.append(("Ticket resolved.", "message"))
    except tickets.TicketError as exc:
        said.append((f"Your reply was sent, but the ticket was not resolved: {exc}.", "error"))
    return said


def _after(session: Session, t: Ticket, user: User, action: str, then: str) -> str:
    """Where to go after an action: the ticket, or after "Send and next" the queue's next ticket."""
    if action != "reply" or then != "next":
        return url_for("staff.ticket", ticket_id=t.id)
    following = tickets.next_ticket(session, t, user)
    if following is not None:
        return url_for("staff.ticket", ticket_id=following.id)
    return url_for("staff.queue", slug=t.queue.slug if t.queue else catalogue.TRIAGE_QUEUE)


def _done(action: str) -> str:
    """The message that says the action was done."""
    if action == "reply":
        return "Reply queued for sending."
    if action == "undo-resolve":
        return "Undone: the ticket is open again."
    return "Ticket resolved." if action == "resolve" else "Saved."


@bp.post("/tickets/<int:ticket_id>/presence")
def ticket_presence(ticket_id: int) -> ResponseReturnValue:
    """The open ticket page reports every few seconds (typing or not, or leaving); answers who
    else has the ticket open, who is typing, and the ticket's reply version."""
    session = db()
    user = me()
    if session.get(Ticket, ticket_id) is None:
        abort(404)
    data = request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    if data.get("leaving") is True:
        presence.leave(session, ticket_id, user.id)
        session.commit()
        return jsonify({"ok": True})
    presence.report(session, ticket_id, user.id, data.get("typing") is True)
    session.commit()
    t = session.get(Ticket, ticket_id)
    assert t is not None
    return jsonify(
        {
            "viewers": [
                {"name": v.name, "typing": v.typing}
                for v in presence.others(session, ticket_id, user.id)
            ],
            "reply_version": tickets.reply_version(session, t),
        }
    )


@bp.route("/preferences", methods=["GET", "POST"])
def preferences() -> ResponseReturnValue:
    """Which notification emails the logged-in person gets."""
    session = db()
    user = me()
    if request.method == "POST":
        for name in NOTIFICATION_KINDS:
            setattr(user, name, request.form.get(name) == "on")
        session.commit()
        flash("Preferences saved.")
        return redirect(url_for("staff.preferences"))
    return render_template("preferences.html", user=user, kinds=NOTIFICATION_KINDS)


NOTIFICATION_KINDS = {
    "notify_centre_replies": "a centre replies on a ticket assigned to me",
    "notify_urgent": "a ticket is urgent (an exam happening now): mine, or any in a queue "
    "with no notify address",
    "notify_overdue": "a ticket goes past its due time: mine, or any in a queue with no notify "
    "address",
}


@bp.get("/api-docs")
def api_docs() -> ResponseReturnValue:
    """The API reference, rendered from the OpenAPI document by a vendored Swagger UI."""
    return render_template("api_docs.html")


@bp.get("/messages/<int:message_id>/raw")
def raw_source(message_id: int) -> ResponseReturnValue:
    """Download a message's raw RFC 822 source (as an attachment, never rendered)."""
    session = db()
    message = session.get(Message, message_id)
    if message is None:
        abort(404)
    raw = message.raw
    if raw is None:
        raw = session.scalar(  # a Message-ID may be reused: the email of this ticket, first
            select(InboundEmail.raw)
            .where(
                InboundEmail.message_id == message.message_id,
                InboundEmail.ticket_id == message.ticket_id,
            )
            .order_by(InboundEmail.id)
            .limit(1)
        )
    if raw is None:
        abort(404)
    return Response(
        raw,
        mimetype="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )


# an attachment viewed in the browser runs nothing and loads nothing: no script, no other origin
_PREVIEW_POLICY = {
    PreviewKind.IMAGE: "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
    # Chromium's and Firefox's PDF viewers refuse a sandboxed document; scripts stay off
    PreviewKind.PDF: "default-src 'none'; object-src 'self'",
}


@bp.get("/attachments/<int:attachment_id>/view")
def attachment_preview(attachment_id: int) -> ResponseReturnValue:
    """Show an image or PDF attachment in the browser, served as the type its bytes are."""
    att = db().get(Attachment, attachment_id)
    shown = preview_type(att.data) if att is not None else None
    if att is None or att.data is None or shown is None:
        abort(404)
    media_type, kind = shown
    return Response(
        att.data,
        mimetype=media_type,
        headers={
            "Content-Disposition": attachment_disposition(att.filename).replace(
                "attachment;", "inline;", 1
            ),
            "Content-Security-Policy": _PREVIEW_POLICY[kind],
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "SAMEORIGIN",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


@bp.get("/attachments/<int:attachment_id>")
def attachment(attachment_id: int) -> ResponseReturnValue:
    """Download an attachment as opaque bytes."""
    att = db().get(Attachment, attachment_id)
    if att is None or att.data is None:
        abort(404)
    return Response(
        att.data,
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": attachment_disposition(att.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )
