"""API blueprint (/api/v1): the inbound webhook and ticket creation from JSON."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import defer

from triage.helpdesk import tokens
from triage.mail import channels
from triage.mail.contact_form import message_from_form
from triage.mail.inbound import InboundContext, Received, accept, receive
from triage.mail.parse import NotAnEmail, UnparseableEmail
from triage.orm import InboundEmail, format_reference
from triage.states import InboundSource, InboundStatus
from triage.web import db, session_factory, settings, statement_db
from triage.web.auth import token_required
from triage.web.body import json_body, read_body
from triage.web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
_EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _context() -> InboundContext:
    return InboundContext(settings(), current_app.extensions["triage.model_provider"])


def _accepted(result: Received, pending_note: str) -> ResponseReturnValue:
    body = {
        "id": result.inbound_id,
        "status": result.status,
        "state": result.status,
        "reference": result.reference,
        "message_id": result.message_id,
        "duplicate": result.duplicate,
    }
    if result.status == InboundStatus.PENDING:
        body["note"] = pending_note
    if result.status == InboundStatus.REJECTED:
        body["reason"] = _reason(result.reason)
    return jsonify(body), 202


def _reason(error: str | None) -> str:
    """Why stored mail could not become a ticket, as the sender may read it (one line, bounded)."""
    return " ".join((error or "it could not be read as an email").split())[:300]


@bp.post("/inbound")
@token_required(scope="inbound")
def inbound() -> ResponseReturnValue:
    """Take one raw RFC 822 message: store it and answer 202 at once; a worker makes the ticket."""
    mimetype = request.mimetype
    if mimetype not in {"message/rfc822", "application/octet-stream", "text/plain"}:
        raise ApiError(415, "send the raw email with Content-Type: message/rfc822")
    channel = request.args.get("channel") or None
    if channel is not None and channel not in channels.load(settings()).by_name:
        raise ApiError(400, f"no channel named {channel[:64]!r}")
    return store_webhook_mail(read_body(settings().inbound_max_bytes), channel)


def store_webhook_mail(raw: bytes, channel: str | None = None) -> ResponseReturnValue:
    """Store one raw email taken by a webhook (ours or a mail provider's) and answer 202 with its
    id; a worker makes the ticket. Anything with a header block is kept (as rejected, with the
    reason, if it must be). `channel` names the mail channel it came in on (None: the default)."""
    try:
        stored_as = None if channel == channels.DEFAULT else channel
        result = accept(
            statement_db(),
            raw,
            InboundSource.WEBHOOK,
            channel=stored_as,
            token_id=g.api_token.id if "api_token" in g else None,
        )
    except NotAnEmail as exc:
        raise ApiError(400, f"not an email: {exc}") from None
    return _accepted(
        result, f"stored; a worker processes it shortly (GET /api/v1/inbound/{result.inbound_id})"
    )


@bp.get("/inbound/<int:inbound_id>")
@token_required(scope=("inbound", "read"))  # the gateway that posted it may ask
def inbound_status(inbound_id: int) -> ResponseReturnValue:
    """Where one stored email is: pending, processed (with its ticket reference) or rejected.

    A token with only the inbound scope sees only the mail it posted; no internal error text is
    ever shown (a rejected email's reason is the service's own words).
    """
    row = db().get(InboundEmail, inbound_id, options=[defer(InboundEmail.raw)])
    token = g.api_token
    if row is None or (not tokens.has_scope(token, "read") and row.api_token_id != token.id):
        raise ApiError(404, "no inbound email with this id")
    body = {
        "id": row.id,
        "status": row.status,
        "state": row.status,
        "reference": format_reference(row.ticket_id) if row.ticket_id else None,
        "message_id": row.message_id,
        "source": row.source,
        "attempts": row.attempts,
        "received_at": row.received_at.isoformat(),
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
    }
    if row.status == InboundStatus.REJECTED:
        body["reason"] = _reason(row.last_error)
    return jsonify(body)


def _text_field(data: dict[str, object], name: str, required: bool, limit: int) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string", field=name)
    if required and not value.strip():
        raise ApiError(400, f"{name} is required", field=name)
    if len(value) > limit:
        raise ApiError(400, f"{name} is longer than {limit} characters", field=name)
    return value


@bp.post("/tickets")
@token_required(scope="inbound")
def create_ticket() -> ResponseReturnValue:
    """Create a ticket from JSON {from, name?, subject, body} through the same decision path as
    email, at once."""
    data = json_body()
    if not isinstance(data, dict):
        raise ApiError(400, "send a JSON object with from, subject and body")
    sender = _text_field(data, "from", True, 254).strip()
    if not _EMAIL.match(sender):
        raise ApiError(400, "from must be an email address", field="from")
    name = _text_field(data, "name", False, 200)
    subject = _text_field(data, "subject", True, 900)
    body = _text_field(data, "body", True, 100_000)
    raw = message_from_form(sender, name, subject, body, settings().mail_domain)
    try:  # processed in the request: the caller gets the ticket reference in the answer
        result = receive(session_factory(), _context(), raw, InboundSource.API)
    except UnparseableEmail as exc:
        raise ApiError(400, f"not a parseable email: {exc}") from None
    return _accepted(result, "stored; processing failed for now and will be retried by the worker")
