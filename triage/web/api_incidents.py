"""REST API for incidents, ticket links and merges (bearer token; read for GET, write otherwise)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from triage.helpdesk import incidents, tickets
from triage.orm import Incident
from triage.states import LinkKind
from triage.web import db, settings
from triage.web.api import bp
from triage.web.api_tickets import ticket_or_404, token_actor
from triage.web.auth import token_required
from triage.web.body import json_body
from triage.web.errors import ApiError

MAX_ID = 2**31 - 1


def incident_json(incident: Incident) -> dict[str, Any]:
    """The API's view of an incident."""
    return {
        "id": incident.id,
        "title": incident.title,
        "category": incident.category,
        "status": incident.status,
        "tickets": [
            {"id": t.id, "reference": t.reference, "status": t.status} for t in incident.tickets
        ],
        "created_at": incident.created_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
    }


def _object(allowed: set[str], required: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The JSON body as an object with only `allowed` fields and every `required` one."""
    data = json_body()
    if not isinstance(data, dict):
        raise ApiError(400, f"send a JSON object with: {', '.join(sorted(allowed))}")
    if unknown := sorted(set(data) - allowed):
        raise ApiError(400, f"unknown field {unknown[0]!r}", field=unknown[0])
    if missing := sorted(required - set(data)):
        raise ApiError(400, f"{missing[0]} is required", field=missing[0])
    return data


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} must be a non-empty string", field=name)
    if len(value) > limit:
        raise ApiError(400, f"{name} is longer than {limit} characters", field=name)
    return value


def _id(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ApiError(400, f"{name} must be a ticket id (a positive whole number)", field=name)
    return value


def _ids(data: dict[str, Any]) -> list[int]:
    value = data.get("ticket_ids", [])
    if not isinstance(value, list) or len(value) > 500:
        raise ApiError(
            400, "ticket_ids must be a list of at most 500 ticket ids", field="ticket_ids"
        )
    return [_id(v, "ticket_ids") for v in value]


def _incident(incident_id: int) -> Incident:
    try:
        return incidents.get_incident(db(), incident_id)
    except tickets.TicketError:
        raise ApiError(404, f"no incident {incident_id}") from None


def _commit_or_conflict(work: Any) -> Any:
    """Run a change and commit it; a rule it breaks is a 409 with nothing changed."""
    session = db()
    try:
        result = work()
    except tickets.TicketError as exc:
        session.rollback()
        raise ApiError(409, str(exc)) from None
    session.commit()
    return result


def _outcome_json(outcome: incidents.IncidentOutcome) -> dict[str, Any]:
    return {"done": [t.reference for t in outcome.done], "skipped": outcome.skipped}


@bp.get("/incidents")
@token_required
def list_incidents() -> ResponseReturnValue:
    """The latest incidents, newest first."""
    return jsonify({"incidents": [incident_json(i) for i in incidents.recent_incidents(db(), 100)]})


@bp.post("/incidents")
@token_required
def create_incident() -> ResponseReturnValue:
    """Open an incident, optionally with tickets."""
    data = _object({"title", "category", "ticket_ids"}, frozenset({"title"}))
    title, ids = _text(data, "title", 200), _ids(data)
    category = data.get("category")
    if category is not None and not isinstance(category, str):
        raise ApiError(400, "category must be a string", field="category")
    incident, outcome = _commit_or_conflict(
        lambda: incidents.create_incident(db(), token_actor(), title, category, ids)
    )
    return jsonify({**incident_json(_incident(incident.id)), **_outcome_json(outcome)}), 201


@bp.get("/incidents/<int:incident_id>")
@token_required
def get_incident(incident_id: int) -> ResponseReturnValue:
    """One incident with its tickets."""
    return jsonify(incident_json(_incident(incident_id)))


@bp.post("/incidents/<int:incident_id>/tickets")
@token_required
def join_incident(incident_id: int) -> ResponseReturnValue:
    """Join tickets to the incident."""
    ids = _ids(_object({"ticket_ids"}, frozenset({"ticket_ids"})))
    incident = _incident(incident_id)
    outcome = _commit_or_conflict(lambda: incidents.join(db(), token_actor(), incident, ids))
    return jsonify({**incident_json(_incident(incident_id)), **_outcome_json(outcome)})


@bp.post("/incidents/<int:incident_id>/replies")
@token_required
def reply_incident(incident_id: int) -> ResponseReturnValue:
    """One reply to every centre in the incident, each on its own ticket."""
    body = _text(_object({"body"}, frozenset({"body"})), "body", 100_000)
    incident = _incident(incident_id)
    outcome = _commit_or_conflict(
        lambda: incidents.reply_all(db(), settings(), token_actor(), incident, body)
    )
    return jsonify(_outcome_json(outcome)), 201


@bp.post("/incidents/<int:incident_id>/resolve")
@token_required
def resolve_incident(incident_id: int) -> ResponseReturnValue:
    """Resolve the incident and every ticket in it (409 naming any that cannot be)."""
    incident = _incident(incident_id)
    outcome = _commit_or_conflict(lambda: incidents.resolve_incident(db(), token_actor(), incident))
    return jsonify({**incident_json(_incident(incident_id)), **_outcome_json(outcome)})


@bp.post("/tickets/<int:ticket_id>/links")
@token_required
def link_tickets(ticket_id: int) -> ResponseReturnValue:
    """Link the ticket to another: {"ticket_id": 12, "kind": "related" | "duplicate"}."""
    data = _object({"ticket_id", "kind"}, frozenset({"ticket_id"}))
    kind = data.get("kind", LinkKind.RELATED)
    if kind not in set(LinkKind):
        raise ApiError(400, "kind must be related or duplicate", field="kind")
    one, other = ticket_or_404(ticket_id), ticket_or_404(_id(data["ticket_id"], "ticket_id"))
    _commit_or_conflict(lambda: incidents.link(db(), token_actor(), one, other, LinkKind(kind)))
    links = incidents.links_of(db(), one)
    return jsonify({"links": [{"ticket": t.reference, "kind": k} for t, k in links]}), 201


@bp.post("/tickets/<int:ticket_id>/merge")
@token_required
def merge_ticket(ticket_id: int) -> ResponseReturnValue:
    """Merge this ticket (a centre's duplicate) into another of the same centre: {"into": 12}."""
    data = _object({"into"}, frozenset({"into"}))
    duplicate, into = ticket_or_404(ticket_id), ticket_or_404(_id(data["into"], "into"))
    _commit_or_conflict(lambda: incidents.merge(db(), token_actor(), duplicate, into))
    return jsonify({"merged": duplicate.reference, "into": into.reference, "id": into.id})
