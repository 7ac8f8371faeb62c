"""Staff pages for incidents, ticket links and merges (thin: the rules are in helpdesk/incidents)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from triage import catalogue
from triage.helpdesk import incidents, tickets
from triage.orm import Ticket, parse_reference
from triage.states import LinkKind
from triage.web import db, settings
from triage.web.formatting import plural
from triage.web.login import login_required
from triage.web.params import BadParameter
from triage.web.staff import me

bp = Blueprint("incidents", __name__)


@bp.before_request
@login_required
def _require_login() -> None:
    """Every page here needs a logged-in member of staff."""


def _actor() -> tickets.Actor:
    return tickets.Actor.of_user(me())


def ticket_ids(text: str) -> list[int]:
    """Ticket ids from references or numbers separated by spaces, commas or new lines."""
    ids = []
    for word in text.replace(",", " ").split():
        number = parse_reference(word)
        if number is None and word.isascii() and word.isdigit() and len(word) <= 9:
            number = int(word)
        if number is None or number > 2**31 - 1:
            raise tickets.TicketError(f"{word[:40]!r} is not a ticket reference (IMI-000123)")
        ids.append(number)
    return ids


def _one_ticket(session: Session, reference: str) -> Ticket:
    ids = ticket_ids(reference)
    if len(ids) != 1:
        raise tickets.TicketError("give one ticket reference, like IMI-000123")
    return tickets.get_ticket(session, ids[0])


def _report(outcome: incidents.IncidentOutcome, done: str) -> None:
    """Say how many tickets an incident action changed and why any were skipped."""
    flash(f"{plural(len(outcome.done), 'ticket')} {done}.", "message" if outcome.done else "error")
    if outcome.skipped:
        flash("Skipped: " + "; ".join(outcome.skipped[:20]), "error")


def _attempt(what: str, work: Callable[[Session], object], back: str) -> ResponseReturnValue:
    """Run one change and commit it, or roll it back and say why; then go `back`."""
    session = db()
    try:
        work(session)
        session.commit()
    except (tickets.TicketError, BadParameter) as exc:
        session.rollback()
        flash(f"Could not {what}: {exc}", "error")
    return redirect(back)


@bp.get("/incidents")
def index() -> ResponseReturnValue:
    """Open and recent incidents, and groups of tickets that look like one."""
    session = db()
    return render_template(
        "incidents.html",
        recent=incidents.recent_incidents(session),
        suggestions=incidents.suggestions(session),
        categories=catalogue.CATEGORIES,
    )


@bp.post("/incidents")
def create() -> ResponseReturnValue:
    """Open an incident from a title, a category and ticket references (or a suggestion's ids)."""
    session = db()
    try:
        ids = ticket_ids(request.form.get("tickets", ""))
        incident, outcome = incidents.create_incident(
            session,
            _actor(),
            request.form.get("title", ""),
            request.form.get("category") or None,
            ids,
        )
        session.commit()
    except tickets.TicketError as exc:
        session.rollback()
        flash(f"Could not open the incident: {exc}", "error")
        return redirect(url_for("incidents.index"))
    _report(outcome, "joined the incident")
    return redirect(url_for("incidents.show", incident_id=incident.id))


@bp.get("/incidents/<int:incident_id>")
def show(incident_id: int) -> ResponseReturnValue:
    """One incident: its tickets, one reply for all, resolve all."""
    try:
        incident = incidents.get_incident(db(), incident_id)
    except tickets.TicketError:
        abort(404)
    return render_template("incident.html", incident=incident, categories=catalogue.CATEGORIES)


def _incident_action(
    incident_id: int, what: str, work: Callable[[Session], object]
) -> ResponseReturnValue:
    return _attempt(what, work, url_for("incidents.show", incident_id=incident_id))


@bp.post("/incidents/<int:incident_id>/join")
def join(incident_id: int) -> ResponseReturnValue:
    """Add tickets (by reference) to the incident."""

    def work(session: Session) -> None:
        incident = incidents.get_incident(session, incident_id)
        outcome = incidents.join(
            session, _actor(), incident, ticket_ids(request.form.get("tickets", ""))
        )
        _report(outcome, "joined the incident")

    return _incident_action(incident_id, "add the tickets", work)


@bp.post("/incidents/<int:incident_id>/reply")
def reply(incident_id: int) -> ResponseReturnValue:
    """One reply to every centre in the incident, each on its own ticket."""

    def work(session: Session) -> None:
        incident = incidents.get_incident(session, incident_id)
        outcome = incidents.reply_all(
            session, settings(), _actor(), incident, request.form.get("body", "")
        )
        _report(outcome, "answered (each centre on its own ticket)")

    return _incident_action(incident_id, "send the reply", work)


@bp.post("/incidents/<int:incident_id>/resolve")
def resolve(incident_id: int) -> ResponseReturnValue:
    """Resolve the incident and every ticket in it."""

    def work(session: Session) -> None:
        incident = incidents.get_incident(session, incident_id)
        _report(incidents.resolve_incident(session, _actor(), incident), "resolved")

    return _incident_action(incident_id, "resolve the incident", work)


def _ticket_action(
    ticket_id: int, what: str, work: Callable[[Session, Ticket], object]
) -> ResponseReturnValue:
    def run(session: Session) -> None:
        work(session, tickets.get_ticket(session, ticket_id))
        flash("Done.")

    return _attempt(what, run, url_for("staff.ticket", ticket_id=ticket_id))


@bp.post("/tickets/<int:ticket_id>/link")
def link(ticket_id: int) -> ResponseReturnValue:
    """Link the ticket to another (related or duplicate)."""
    kind = request.form.get("kind", LinkKind.RELATED)
    if kind not in LinkKind.__members__.values():
        kind = LinkKind.RELATED
    return _ticket_action(
        ticket_id,
        "link the tickets",
        lambda session, t: incidents.link(
            session,
            _actor(),
            t,
            _one_ticket(session, request.form.get("other", "")),
            LinkKind(kind),
        ),
    )


@bp.post("/tickets/<int:ticket_id>/unlink/<int:other_id>")
def unlink(ticket_id: int, other_id: int) -> ResponseReturnValue:
    """Remove a link."""
    return _ticket_action(
        ticket_id,
        "unlink the tickets",
        lambda session, t: incidents.unlink(
            session, _actor(), t, tickets.get_ticket(session, other_id)
        ),
    )


@bp.post("/tickets/<int:ticket_id>/merge")
def merge(ticket_id: int) -> ResponseReturnValue:
    """Merge this ticket (a duplicate) into another of the same centre; show the one kept."""
    session = db()
    try:
        duplicate = tickets.get_ticket(session, ticket_id)
        into = _one_ticket(session, request.form.get("into", ""))
        incidents.merge(session, _actor(), duplicate, into)
        session.commit()
    except tickets.TicketError as exc:
        session.rollback()
        flash(f"Could not merge: {exc}", "error")
        return redirect(url_for("staff.ticket", ticket_id=ticket_id))
    flash(f"{duplicate.reference} was merged into this ticket.")
    return redirect(url_for("staff.ticket", ticket_id=into.id))


@bp.post("/tickets/<int:ticket_id>/incident")
def ticket_incident(ticket_id: int) -> ResponseReturnValue:
    """Join the ticket to an open incident, or take it out of its incident."""

    def work(session: Session, t: Ticket) -> None:
        chosen = request.form.get("incident", "")
        if chosen == "leave":
            incidents.leave(session, _actor(), t)
        elif chosen.isascii() and chosen.isdigit() and len(chosen) < 10:
            incidents.join(session, _actor(), incidents.get_incident(session, int(chosen)), [t.id])
        else:
            raise tickets.TicketError("choose an incident")

    return _ticket_action(ticket_id, "change the incident", work)
