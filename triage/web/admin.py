"""Admin pages: users, queues, routing, macros, API tokens, failed outbox and inbound mail."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from triage import catalogue
from triage.classifier import registry
from triage.helpdesk import due, second_factor, stats, tickets
from triage.helpdesk import macros as saved_replies
from triage.helpdesk import tokens as api_tokens
from triage.helpdesk import users as accounts
from triage.mail import channel_check, channel_health, channels, inbound, outbox
from triage.mail.recipients import unanswerable
from triage.orm import (
    ApiToken,
    AuditEvent,
    InboundEmail,
    Job,
    ModelVersion,
    OutboxItem,
    Queue,
    RoutingRule,
    Ticket,
    User,
    utcnow,
)
from triage.states import OPEN_STATUSES, AuditAction, ModelStatus, OutboxStatus, Role
from triage.web import charts, db, session_factory, settings
from triage.web.formatting import plural
from triage.web.login import login_required
from triage.web.params import required_int
from triage.worker import jobs

bp = Blueprint("admin", __name__, url_prefix="/admin")
CHECK_WAIT_SECONDS = 20  # the Test button waits this long for the test message to arrive


@bp.before_request
@login_required
def _require_admin() -> None:
    """Admins only."""
    if not current_user.is_admin:
        abort(403)


def _audit(action: AuditAction, **details: object) -> None:
    db().add(
        AuditEvent(
            actor=f"user:{current_user.row.email}",
            user_id=current_user.row.id,
            action=action,
            details=details,
        )
    )


@bp.route("/users", methods=["GET", "POST"])
def users() -> ResponseReturnValue:
    """List users; create one; rename, reset a password, change role, deactivate or reactivate."""
    session = db()
    if request.method == "POST":
        try:
            if request.form.get("op") == "create":
                _create_user(session, request.form)
            else:
                _change_user(session, request.form)
            session.commit()
            flash("Saved.")
        except accounts.UserError as exc:
            session.rollback()
            flash(str(exc), "error")
        return redirect(url_for("admin.users"))
    return render_template(
        "admin.html",
        section="users",
        rows=session.scalars(select(User).order_by(User.email)).all(),
        roles=accounts.ROLES,
        open_counts=dict(
            session.execute(
                select(Ticket.assignee_id, func.count())
                .where(Ticket.assignee_id.is_not(None), Ticket.status.in_(OPEN_STATUSES))
                .group_by(Ticket.assignee_id)
            ).all()
        ),
    )


def _create_user(session: Session, form: MultiDict[str, str]) -> None:
    user = accounts.create_user(
        session,
        form.get("email", ""),
        form.get("password", ""),
        form.get("role", Role.AGENT),
        form.get("name", ""),
    )
    _audit(AuditAction.USER_CREATED, email=user.email, role=user.role)


def _change_user(session: Session, form: MultiDict[str, str]) -> None:
    """Rename, reset the password, deactivate or reactivate, or change the role of a user."""
    user = session.get(User, required_int(form.get("user_id"), "user_id"))
    if user is None:
        raise accounts.UserError("no such user")
    op = form.get("op")
    if user.id == current_user.row.id and op not in ("rename", "password"):
        raise accounts.UserError("you cannot change your own role or deactivate yourself")
    if op == "rename":
        user.name = accounts.clean_name(form.get("name", ""))
        _audit(AuditAction.USER_RENAMED, email=user.email, name=user.name)
    elif op == "password":
        accounts.set_password(user, form.get("password", ""))
        _audit(AuditAction.USER_PASSWORD_RESET, email=user.email)
    elif op == "toggle":
        _toggle_active(session, user, form.get("tickets_to", ""))
    elif op == "second_factor_off":
        second_factor.remove(user)
        accounts.end_sessions(user)
        _audit(AuditAction.USER_SECOND_FACTOR, email=user.email, enabled=False)
    elif form.get("role") in accounts.ROLES:
        revoked = accounts.change_role(session, user, Role(form["role"]))
        _audit(AuditAction.USER_CHANGED, email=user.email, role=user.role, active=user.is_active)
        _revoked(revoked, user.email, f"now {user.role}")
    else:
        raise accounts.UserError("unknown change")


def _toggle_active(session: Session, user: User, tickets_to: str) -> None:
    """Deactivate or reactivate; deactivating hands the user's open tickets to the person chosen
    (unassigned by default) and revokes the API tokens the user made."""
    if user.is_active:
        _hand_over(session, user, tickets_to)
    revoked = accounts.set_active(session, user, not user.is_active)
    _audit(AuditAction.USER_CHANGED, email=user.email, role=user.role, active=user.is_active)
    _revoked(revoked, user.email, "deactivated")


def _revoked(rows: list[ApiToken], creator: str, change: str) -> None:
    """Audit and report the API tokens a change to their creator revoked."""
    for row in rows:
        _audit(AuditAction.TOKEN_REVOKED, name=row.name, reason=f"creator {creator} {change}")
    if rows:
        flash(f"{plural(len(rows), 'API token')} made by {creator} revoked ({change}).")


def _hand_over(session: Session, user: User, tickets_to: str) -> None:
    """Give a leaving user's open and waiting tickets to `tickets_to` (a user id; empty:
    nobody)."""
    to = None
    if tickets_to:
        to = session.get(User, required_int(tickets_to, "tickets_to"))
        if to is None:
            raise accounts.UserError("choose who gets their open tickets, or nobody")
    admin = session.get(User, current_user.row.id)
    assert admin is not None
    try:
        moved = tickets.hand_over_open_tickets(session, tickets.Actor.of_user(admin), user, to)
    except tickets.TicketError as exc:
        raise accounts.UserError(str(exc)) from None
    if moved:
        where = f"assigned to {to.name or to.email}" if to is not None else "now unassigned"
        count = f"{len(moved)} open ticket{'' if len(moved) == 1 else 's'}"
        flash(f"{count} of {user.email} {'is' if len(moved) == 1 else 'are'} {where}.")


@bp.route("/queues", methods=["GET", "POST"])
def queues() -> ResponseReturnValue:
    """List queues; add one; set the notify address and the response targets (business minutes)."""
    session = db()
    if request.method == "POST":
        form = request.form
        slug = form.get("slug", "").strip().lower()
        notify = form.get("notify_address", "").strip().lower() or None
        if notify and unanswerable(notify):
            flash(
                f"notify address must be one valid email address (no spaces): {notify!r}", "error"
            )
            return redirect(url_for("admin.queues"))
        queue = session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none()
        if queue is None:
            if not slug.replace("-", "").isalnum() or len(slug) > 64:
                flash("queue slug: letters, digits and dashes only", "error")
                return redirect(url_for("admin.queues"))
            queue = Queue(
                slug=slug,
                name=form.get("name", "").strip()[:200] or slug,
                first_response_minutes=due.DEFAULT_FIRST_MINUTES,
                next_response_minutes=due.DEFAULT_NEXT_MINUTES,
                urgent_response_minutes=due.DEFAULT_URGENT_MINUTES,
            )
            session.add(queue)
        queue.notify_address = notify
        try:
            for field, label in (
                ("first_response_minutes", "first response"),
                ("next_response_minutes", "next response"),
                ("urgent_response_minutes", "urgent response"),
            ):
                if form.get(field, "").strip():
                    setattr(queue, field, due.validate_minutes(form[field], f"{label} target"))
        except ValueError as exc:
            session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("admin.queues"))
        _audit(
            AuditAction.QUEUE_SAVED,
            slug=slug,
            notify_address=notify,
            first_response_minutes=queue.first_response_minutes,
            next_response_minutes=queue.next_response_minutes,
            urgent_response_minutes=queue.urgent_response_minutes,
        )
        session.commit()
        flash("Saved.")
        return redirect(url_for("admin.queues"))
    rows = session.scalars(select(Queue).order_by(Queue.slug)).all()
    return render_template(
        "admin.html",
        section="queues",
        rows=rows,
        bad_addresses={
            q.id: problem
            for q in rows
            if q.notify_address and (problem := unanswerable(q.notify_address))
        },
    )


@bp.route("/routing", methods=["GET", "POST"])
def routing() -> ResponseReturnValue:
    """Which queue each category goes to."""
    session = db()
    queues_by_slug = {q.slug: q for q in session.scalars(select(Queue))}
    if request.method == "POST":
        rule = session.scalars(
            select(RoutingRule).where(RoutingRule.category == request.form.get("category"))
        ).one_or_none()
        queue = queues_by_slug.get(request.form.get("queue", ""))
        if rule is None or queue is None:
            flash("unknown category or queue", "error")
        else:
            rule.queue = queue
            _audit(AuditAction.ROUTING_CHANGED, category=rule.category, queue=queue.slug)
            session.commit()
            flash("Saved.")
        return redirect(url_for("admin.routing"))
    rules = session.scalars(select(RoutingRule).order_by(RoutingRule.id)).all()
    return render_template(
        "admin.html",
        section="routing",
        rows=rules,
        queues=sorted(queues_by_slug),
        titles={c.slug: c.title for c in catalogue.CATEGORIES},
    )


@bp.route("/macros", methods=["GET", "POST"])
def macros() -> ResponseReturnValue:
    """The macros staff start replies from: edit, add, delete."""
    session = db()
    if request.method == "POST":
        form = request.form
        user = session.get(User, current_user.row.id)
        macro_id = form.get("macro_id", "")
        try:
            if user is None:
                abort(403)
            if form.get("op") == "delete":
                saved_replies.delete(session, user, int(macro_id) if macro_id.isdigit() else 0)
                flash("Macro deleted.")
            else:
                saved_replies.save(
                    session,
                    user,
                    int(macro_id) if macro_id.isdigit() else None,
                    form.get("title", ""),
                    form.get("body", ""),
                    form.get("category") or None,
                )
                flash("Macro saved.")
            session.commit()
        except saved_replies.MacroError as exc:
            session.rollback()
            flash(str(exc), "error")
        return redirect(url_for("admin.macros"))
    return render_template(
        "admin.html",
        section="macros",
        rows=saved_replies.list_macros(session),
        categories=catalogue.CATEGORIES,
    )


@bp.route("/tokens", methods=["GET", "POST"])
def tokens() -> ResponseReturnValue:
    """List API tokens; create one (shown once); revoke."""
    session = db()
    new_token = None
    if request.method == "POST":
        if request.form.get("op") == "revoke":
            row = api_tokens.revoke(session, required_int(request.form.get("token_id"), "token_id"))
            if row is not None:
                _audit(AuditAction.TOKEN_REVOKED, name=row.name)
            flash("Token revoked.")
        else:
            try:
                scopes = request.form.getlist("scope")
                row, new_token = api_tokens.create_token(
                    session, request.form.get("name", ""), current_user.row.id, scopes
                )
                _audit(AuditAction.TOKEN_CREATED, name=row.name, scopes=row.scopes)
            except ValueError as exc:
                flash(str(exc), "error")
        session.commit()
    rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc())).all()
    return render_template(
        "admin.html", section="tokens", rows=rows, new_token=new_token, scopes=api_tokens.SCOPE_HELP
    )


@bp.route("/outbox", methods=["GET", "POST"])
def outbox_page() -> ResponseReturnValue:
    """Outgoing mail in trouble: stuck in sending or waiting for a retry, with the reason, and
    mail that failed permanently, with a retry button."""
    session = db()
    if request.method == "POST":
        item = outbox.retry_failed(session, required_int(request.form.get("item_id"), "item_id"))
        if item is not None:
            _audit(AuditAction.OUTBOX_RETRIED, item=item.id)
        session.commit()
        flash("Queued for another attempt.")
        return redirect(url_for("admin.outbox_page"))
    rows = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.status == OutboxStatus.FAILED)
        .order_by(OutboxItem.id.desc())
    ).all()
    lease = timedelta(seconds=settings().outbox_lease_seconds)
    return render_template(
        "admin.html",
        section="outbox",
        rows=rows,
        troubled=outbox.troubled(session, lease),
        OutboxStatus=OutboxStatus,
    )


@bp.route("/channels", methods=["GET", "POST"])
def channels_page() -> ResponseReturnValue:
    """Each mail channel's health, and a Test button running the end-to-end check."""
    config = settings()
    configured = channels.load(config)
    report = None
    if request.method == "POST":
        name = request.form.get("channel", "")
        if name not in configured.by_name:
            abort(400, description=f"no channel named {name!r}")
        db().commit()  # hold no transaction (SQLite: the write lock) while the check runs
        report = channel_check.check(
            session_factory(), config, configured.get(name), wait_seconds=CHECK_WAIT_SECONDS
        )
        _audit(AuditAction.CHANNEL_CHECKED, channel=name, ok=report.ok)
        db().commit()
    statuses = channel_health.overview(db(), configured)
    return render_template(
        "admin.html",
        section="channels",
        statuses=statuses,
        report=report,
        alert_minutes=config.channel_alert_minutes,
        now=utcnow(),
    )


@bp.route("/inbound", methods=["GET", "POST"])
def inbound_page() -> ResponseReturnValue:
    """Stored mail that did not become a ticket (unparseable, or processing fails), with retry."""
    session = db()
    if request.method == "POST":
        row = inbound.retry_processing(
            session, required_int(request.form.get("inbound_id"), "inbound_id")
        )
        if row is not None:
            _audit(AuditAction.INBOUND_RETRIED, inbound=row.id, message_id=row.message_id)
            flash("The worker will process it again.")
        session.commit()
        return redirect(url_for("admin.inbound_page"))
    rows = inbound.problem_mail(session)
    return render_template(
        "admin.html", section="inbound", rows=rows, max_attempts=inbound.MAX_PROCESS_ATTEMPTS
    )


@bp.get("/inbound/<int:inbound_id>/raw")
def inbound_raw(inbound_id: int) -> ResponseReturnValue:
    """The stored bytes of one inbound email, as a download (never rendered)."""
    row = db().get(InboundEmail, inbound_id)
    if row is None:
        abort(404)
    return Response(
        row.raw,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="inbound-{row.id}.eml"'},
    )


@bp.route("/models", methods=["GET", "POST"])
def models() -> ResponseReturnValue:
    """Model versions side by side, quality from staff corrections; retrain, activate, roll back."""
    session = db()
    by = f"user:{current_user.row.email}"
    if request.method == "POST":
        op = request.form.get("op")
        try:
            if op == "retrain":
                job = jobs.request_retrain(session, by)
                flash(f"Retrain job {job.id} queued; a worker picks it up within seconds.")
            elif op == "activate":
                version = request.form.get("version", "")
                registry.activate_checked(session, settings().models_dir, version, by)
                flash(f"Model {version} is now active.")
            elif op == "rollback":
                version = registry.rollback(session, settings().models_dir, by)
                flash(f"Rolled back to {version}.")
            session.commit()
        except registry.ModelLoadError as exc:
            session.rollback()
            flash(str(exc), "error")
        return redirect(url_for("admin.models"))
    versions = session.scalars(
        select(ModelVersion).order_by(ModelVersion.created_at.desc()).limit(6)
    ).all()
    active = next((v for v in versions if v.status == ModelStatus.ACTIVE), None)
    report = ((active.metrics or {}).get("test") or {}) if active else {}
    heatmap = (
        charts.trusted(charts.confusion(report["labels"], report["confusion_matrix"]))
        if report
        else None
    )
    auto = report.get("auto_reply") or {}
    operating = (auto["coverage"], 1 - auto["precision"]) if auto else None
    curve = (
        charts.trusted(charts.risk_coverage(report.get("risk_coverage") or [], operating))
        if report
        else None
    )
    latest_job = session.scalars(select(Job).order_by(Job.id.desc()).limit(1)).first()
    return render_template(
        "models.html",
        versions=versions,
        active=active,
        heatmap=heatmap,
        curve=curve,
        latest_job=latest_job,
        quality=stats.production_quality(session),
        slugs=catalogue.SLUGS,
    )
