"""API blueprint (/api/v1): the inbound webhook and ticket creation from JSON."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from triage.mail.inbound import InboundContext, Received, message_from_form, receive
from triage.mail.parse import UnparseableEmail
from triage.web import session_factory, settings
from triage.web.auth import token_required
from triage.web.body import read_body
from triage.web.errors import ApiError, json_body

bp = Blueprint("api", __name__, url_prefix="/api/v1")
_EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _context() -> InboundContext:
    return InboundContext(settings(), current_app.extensions["triage.models"])


def _accepted(result: Received) -> ResponseReturnValue:
    body = {
        "status": result.status,
        "reference": result.reference,
        "message_id": result.message_id,
        "duplicate": result.duplicate,
    }
    if result.status == "pending":
        body["note"] = "stored; processing failed for now and will be retried by the worker"
    return jsonify(body), 202


def _receive(raw: bytes, source: str) -> ResponseReturnValue:
    try:
        result = receive(session_factory(), _context(), raw, source)
    except UnparseableEmail as exc:
        raise ApiError(400, f"not a parseable email: {exc}") from None
    return _accepted(result)


@bp.post("/inbound")
@token_required(scope="inbound")
def inbound() -> ResponseReturnValue:
    """Take one raw RFC 822 message; 202 with the ticket reference once it is committed."""
    mimetype = request.mimetype
    if mimetype not in {"message/rfc822", "application/octet-stream", "text/plain"}:
        raise ApiError(415, "send the raw email with Content-Type: message/rfc822")
    raw = read_body(settings().inbound_max_bytes)
    return _receive(raw, "webhook")


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
    """Create a ticket from JSON {from, name?, subject, body} through the same decision path as email."""
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
    return _receive(raw, "api")
