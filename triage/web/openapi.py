"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (a test checks it against
the routes)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from flask_login import current_user

from triage import catalogue
from triage.states import (
    Action,
    InboundSource,
    InboundStatus,
    MessageDirection,
    MessageKind,
    TicketStatus,
)
from triage.web.api import bp
from triage.web.auth import ANY_SCOPE, token_required


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_AUTH = {
    "401": _error("missing, invalid or revoked token"),
    "403": _error("the token lacks this operation's scope"),
    "429": _error("over the token's rate limit"),
}
_PROVIDER_ERRORS = {
    "400": _error("no raw message in the provider's field, or it is not a parseable email"),
    "401": _error(
        "the provider's authentication failed (or its webhook is not enabled here): nothing stored"
    ),
    "413": _error("larger than the size cap"),
    "415": _error("not the provider's content type"),
    "503": _error("database unavailable; retry"),
}


def _provider_webhook(summary: str, description: str, media: str, security: Any) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description
            + " Stored exactly as POST /api/v1/inbound stores raw mail: answered 202 "
            "with the stored email's id; a worker makes the ticket.",
            "security": security,
            "requestBody": {"required": True, "content": {media: {"schema": {"type": "object"}}}},
            "responses": {
                "202": _json(
                    "Accepted", "stored; processing is pending (or done, for a duplicate)"
                ),
                **_PROVIDER_ERRORS,
            },
        }
    }


_MAILGUN = _provider_webhook(
    "Mailgun inbound route (forward() to a URL ending in /mime)",
    "Form fields timestamp, token and signature (hex HMAC-SHA256 of timestamp and token under "
    "MAILGUN_SIGNING_KEY) are checked, the timestamp must be fresh (MAILGUN_MAX_AGE) and the "
    "token never used before; the raw message is body-mime.",
    "multipart/form-data",
    [],
)
_TICKET_ID = {"name": "ticket_id", "in": "path", "required": True, "schema": {"type": "integer"}}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "IMI centre-enquiry triage API",
        "version": "1",
        "description": "Bearer tokens carry scopes: "
        "inbound (POST /inbound, POST /tickets), read (GET), write (PATCH, replies), "
        "metrics (/metrics, /healthz details). A token without the operation's scope gets 403.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "status"],
                "properties": {
                    "error": {"type": "string"},
                    "status": {"type": "integer"},
                    "field": {"type": "string"},
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["id", "status", "reference", "message_id", "duplicate"],
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"enum": list(InboundStatus)},
                    "reference": {"type": ["string", "null"]},
                    "message_id": {"type": "string"},
                    "state": {"enum": list(InboundStatus)},
                    "duplicate": {"type": "boolean"},
                    "note": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
            "InboundStatus": {
                "type": "object",
                "required": ["id", "status", "reference", "message_id", "received_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"enum": list(InboundStatus)},
                    "reference": {"type": ["string", "null"]},
                    "message_id": {"type": "string"},
                    "source": {"enum": list(InboundSource)},
                    "state": {"enum": list(InboundStatus)},
                    "attempts": {"type": "integer"},
                    "reason": {"type": "string"},
                    "received_at": {"type": "string"},
                    "processed_at": {"type": ["string", "null"]},
                },
            },
            "Message": {
                "type": "object",
                "required": ["id", "direction", "kind", "message_id", "body", "created_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "direction": {"enum": list(MessageDirection)},
                    "kind": {"enum": list(MessageKind)},
                    "message_id": {"type": "string"},
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                    "automatic_reason": {"type": ["string", "null"]},
                    "created_at": {"type": "string"},
                },
            },
            "Ticket": {
                "type": "object",
                "required": [
                    "id",
                    "reference",
                    "status",
                    "queue",
                    "urgent",
                    "due_at",
                    "created_at",
                ],
                "properties": {
                    "id": {"type": "integer"},
                    "reference": {"type": "string"},
                    "centre_email": {"type": "string"},
                    "centre_name": {"type": "string"},
                    "subject": {"type": "string"},
                    "status": {"enum": list(TicketStatus)},
                    "action": {"enum": [*Action, None]},
                    "predicted_category": {"type": ["string", "null"]},
                    "predicted_confidence": {"type": ["number", "null"]},
                    "confirmed_category": {"type": ["string", "null"]},
                    "queue": {"type": ["string", "null"]},
                    "assignee": {"type": ["string", "null"]},
                    "urgent": {
                        "type": "boolean",
                        "description": "an exam happening now: sorted first, short target",
                    },
                    "urgent_reason": {"type": ["string", "null"]},
                    "due_at": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": "when the next staff response is due; "
                        "null while waiting on the centre or closed",
                    },
                    "centre_replied": {
                        "type": "boolean",
                        "description": "the centre wrote again since staff last acted",
                    },
                    "reply_version": {
                        "type": "integer",
                        "description": "(one ticket only) the id of the latest staff reply (0 before "
                        "any); send it "
                        "back with a reply (If-Match or reply_version) to be told, 409, when "
                        "someone replied since you read the ticket",
                    },
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "messages": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Message"},
                    },
                },
            },
            "TicketList": {
                "type": "object",
                "required": ["tickets", "total", "page", "per_page"],
                "properties": {
                    "tickets": {"type": "array", "items": {"$ref": "#/components/schemas/Ticket"}},
                    "total": {"type": "integer"},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                },
            },
            "QueueList": {
                "type": "object",
                "required": ["queues"],
                "properties": {
                    "queues": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "slug": {"type": "string"},
                                "name": {"type": "string"},
                                "open": {"type": "integer"},
                                "oldest_open_at": {"type": ["string", "null"]},
                            },
                        },
                    }
                },
            },
        },
    },
    "paths": {
        "/api/v1/inbound": {
            "post": {
                "summary": "Submit one raw RFC 822 email",
                "description": "Answers as soon as the email is stored "
                "(status pending, with its id): a worker classifies it and makes the ticket "
                "moments later (GET /api/v1/inbound/{id} for the reference). Anything with a "
                "header block is stored: what cannot become a ticket is answered with state "
                "rejected and the reason. An exact copy of a stored email is answered with it "
                "(duplicate true); a different email reusing a Message-ID is an email of its own.",
                "parameters": [
                    {
                        "name": "channel",
                        "in": "query",
                        "required": False,
                        "description": "the mail channel it came in on (CHANNELS_FILE); "
                        "replies go out through it. Default: the default channel",
                        "schema": {"type": "string", "maxLength": 64},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "message/rfc822": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                "responses": {
                    "202": _json(
                        "Accepted", "stored; processing is pending (or done, for a duplicate)"
                    ),
                    "400": _error("not an email (empty, or no header block), or no such channel"),
                    "413": _error("larger than the size cap"),
                    "415": _error("wrong content type"),
                    "503": _error("database unavailable; retry"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/inbound/{inbound_id}": {
            "get": {
                "summary": "Where one submitted email is: "
                "pending, processed (with its ticket reference) or rejected",
                "parameters": [
                    {
                        "name": "inbound_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": _json("InboundStatus", "the stored email's state"),
                    "404": _error("no such inbound email (or posted by another token)"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/inbound/mailgun": _MAILGUN,
        "/api/v1/inbound/mailgun/mime": _MAILGUN,
        "/api/v1/inbound/sendgrid": _provider_webhook(
            "SendGrid Inbound Parse (raw, full MIME message)",
            "Basic auth (SENDGRID_INBOUND_USER, SENDGRID_INBOUND_PASSWORD) in the URL SendGrid "
            "posts to; the raw message is the form field email.",
            "multipart/form-data",
            [{"basic": []}],
        ),
        "/api/v1/inbound/postmark": _provider_webhook(
            "Postmark inbound webhook (raw email content included)",
            "Basic auth (POSTMARK_INBOUND_USER, POSTMARK_INBOUND_PASSWORD) in the webhook URL; "
            "the raw message is the JSON field RawEmail.",
            "application/json",
            [{"basic": []}],
        ),
        "/api/v1/tickets": {
            "post": {
                "summary": "Create a ticket from a contact form",
                "description": "Processed within the request, unlike the inbound webhook: "
                "the answer carries the ticket reference a contact form shows the centre.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["from", "subject", "body"],
                                "properties": {
                                    "from": {"type": "string", "format": "email"},
                                    "name": {"type": "string"},
                                    "subject": {"type": "string"},
                                    "body": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        "Accepted", "the ticket is made (status processed, with its reference)"
                    ),
                    "400": _error("invalid field"),
                    "503": _error("database unavailable; retry"),
                    **_AUTH,
                },
            },
            "get": {
                "summary": "List tickets",
                "parameters": [
                    {"name": "queue", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"enum": list(TicketStatus)}},
                    {"name": "category", "in": "query", "schema": {"enum": list(catalogue.SLUGS)}},
                    {"name": "assignee", "in": "query", "schema": {"type": "string"}},
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    {"name": "sort", "in": "query", "schema": {"enum": ["oldest", "newest"]}},
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100000},
                    },
                    {
                        "name": "per_page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": {
                    "200": _json("TicketList", "a page of tickets"),
                    "400": _error("bad filter"),
                    **_AUTH,
                },
            },
        },
        "/api/v1/tickets/{ticket_id}": {
            "get": {
                "summary": "One ticket with its messages",
                "parameters": [_TICKET_ID],
                "responses": {
                    "200": _json("Ticket", "the ticket"),
                    "404": _error("no such ticket"),
                    **_AUTH,
                },
            },
            "patch": {
                "summary": "Change status, category, queue or assignee",
                "parameters": [_TICKET_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {"enum": [TicketStatus.RESOLVED, TicketStatus.OPEN]},
                                    "category": {"enum": list(catalogue.SLUGS)},
                                    "queue": {"type": "string"},
                                    "assignee": {"type": ["string", "null"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("Ticket", "the changed ticket"),
                    "400": _error("invalid change"),
                    "404": _error("no such ticket"),
                    "409": _error("not possible in this state"),
                    **_AUTH,
                },
            },
        },
        "/api/v1/tickets/{ticket_id}/replies": {
            "post": {
                "summary": "Reply to the centre",
                "description": "With an If-Match header (the ETag of GET /tickets/{ticket_id}, "
                'e.g. "reply-42") or a reply_version field, the reply is refused (409) when '
                "another staff reply was sent since that version: read it first.",
                "parameters": [
                    _TICKET_ID,
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": 'the ticket\'s ETag ("reply-N"), or *',
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["body"],
                                "properties": {
                                    "body": {"type": "string"},
                                    "reply_version": {"type": "integer", "minimum": 0},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json("Message", "the queued reply"),
                    "400": _error("no body, or a malformed If-Match or reply_version"),
                    "404": _error("no such ticket"),
                    "409": _error("ticket is resolved, or someone replied since that version"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/queues": {
            "get": {
                "summary": "Queues with open counts",
                "responses": {"200": _json("QueueList", "queues"), **_AUTH},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document (also readable by a logged-in staff session)",
                "responses": {"200": {"description": "OpenAPI"}, **_AUTH},
            }
        },
    },
}


_INCIDENT_ID = {
    "name": "incident_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
}
_IDS = {"type": "array", "maxItems": 500, "items": {"type": "integer", "minimum": 1}}


def _body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _answers(ok: str, description: str, *errors: tuple[str, str]) -> dict[str, Any]:
    return {
        ok: {"description": description, "content": {"application/json": {}}},
        **{code: _error(text) for code, text in errors},
        **_AUTH,
    }


_NO_INCIDENT, _BAD = ("404", "no such incident"), ("400", "invalid field")
_RULE = ("409", "not possible now (the reason is given)")
# incidents: one cause, many centres (one reply to all, one resolution), links and merges
SPEC["paths"].update(
    {
        "/api/v1/incidents": {
            "get": {
                "summary": "The latest incidents",
                "responses": _answers("200", "incidents, newest first"),
            },
            "post": {
                "summary": "Open an incident, optionally with tickets",
                "requestBody": _body(
                    ["title"],
                    {
                        "title": {"type": "string", "maxLength": 200},
                        "category": {"enum": [*catalogue.SLUGS, None]},
                        "ticket_ids": _IDS,
                    },
                ),
                "responses": _answers("201", "the incident", _BAD, _RULE),
            },
        },
        "/api/v1/incidents/{incident_id}": {
            "get": {
                "summary": "One incident with its tickets",
                "parameters": [_INCIDENT_ID],
                "responses": _answers("200", "the incident", _NO_INCIDENT),
            }
        },
        "/api/v1/incidents/{incident_id}/tickets": {
            "post": {
                "summary": "Join tickets to the incident",
                "parameters": [_INCIDENT_ID],
                "requestBody": _body(["ticket_ids"], {"ticket_ids": _IDS}),
                "responses": _answers("200", "the incident", _BAD, _NO_INCIDENT, _RULE),
            }
        },
        "/api/v1/incidents/{incident_id}/replies": {
            "post": {
                "summary": "One reply to every centre in the incident, each on its own ticket",
                "parameters": [_INCIDENT_ID],
                "requestBody": _body(["body"], {"body": {"type": "string"}}),
                "responses": _answers(
                    "201", "tickets answered and skipped", _BAD, _NO_INCIDENT, _RULE
                ),
            }
        },
        "/api/v1/incidents/{incident_id}/resolve": {
            "post": {
                "summary": "Resolve the incident and every ticket in it",
                "parameters": [_INCIDENT_ID],
                "responses": _answers("200", "the resolved incident", _NO_INCIDENT, _RULE),
            }
        },
        "/api/v1/tickets/{ticket_id}/links": {
            "post": {
                "summary": "Link the ticket to another (related or duplicate)",
                "parameters": [_TICKET_ID],
                "requestBody": _body(
                    ["ticket_id"],
                    {"ticket_id": {"type": "integer"}, "kind": {"enum": ["related", "duplicate"]}},
                ),
                "responses": _answers(
                    "201", "the ticket's links", _BAD, ("404", "no such ticket"), _RULE
                ),
            }
        },
        "/api/v1/tickets/{ticket_id}/merge": {
            "post": {
                "summary": "Merge this ticket (a centre's duplicate) into another of the same centre",
                "parameters": [_TICKET_ID],
                "requestBody": _body(["into"], {"into": {"type": "integer"}}),
                "responses": _answers("200", "merged", _BAD, ("404", "no such ticket"), _RULE),
            }
        },
    }
)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI document: for a logged-in member of staff (the API page) or a bearer token."""
    if current_user.is_authenticated:
        return jsonify(SPEC)
    return _openapi_for_token()


@token_required(scope=ANY_SCOPE)
def _openapi_for_token() -> ResponseReturnValue:
    return jsonify(SPEC)
