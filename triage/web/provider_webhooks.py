"""Mail providers' inbound webhooks on the API blueprint: `POST /api/v1/inbound/mailgun` (and
`.../mailgun/mime`), `/sendgrid` and `/postmark`. Each checks its provider's own authentication,
takes the raw MIME from the provider's field, and stores it exactly as `POST /api/v1/inbound`
does (202 with the stored email's id)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import unquote_to_bytes

from flask import request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from triage.mail import providers, webhook_tokens
from triage.mail.providers import PayloadError, Provider
from triage.orm import utcnow
from triage.web import settings, statement_db
from triage.web.api import bp, store_webhook_mail
from triage.web.body import read_body
from triage.web.errors import ApiError

MAX_FORM_PARTS = 1000  # a provider's form has a few dozen fields and the attachments


def _not_configured(provider: Provider) -> ApiError:
    # 401 like any failed authentication: without its credentials no call can be taken
    return ApiError(401, f"the {provider} webhook is not enabled on this service")


def _unauthorised(message: str) -> ApiError:
    return ApiError(401, message)


def form_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a posted form as raw bytes (multipart or URL-encoded), so a message's 8-bit
    bytes are kept as sent; the first of a repeated name wins."""
    mimetype, options = parse_options_header(content_type)
    fields: dict[str, bytes] = {}
    parts: list[bytes]
    if mimetype == "application/x-www-form-urlencoded":
        for pair in body.split(b"&"):
            raw_name, _, raw_value = pair.partition(b"=")
            key = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", "replace")
            fields.setdefault(key, unquote_to_bytes(raw_value.replace(b"+", b" ")))
        return fields
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        raise ApiError(415, "send the provider's form (multipart/form-data or URL-encoded)")
    decoder = MultipartDecoder(options["boundary"].encode("latin-1"), max_parts=MAX_FORM_PARTS)
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        name, parts = "", []
        event = decoder.next_event()
        while not isinstance(event, Epilogue | NeedData):
            if isinstance(event, Field | File):
                name, parts = event.name, []
            elif isinstance(event, Data):
                parts.append(event.data)
                if not event.more_data:
                    fields.setdefault(name, b"".join(parts))
            event = decoder.next_event()
    except (ValueError, RequestEntityTooLarge):
        raise ApiError(400, "the multipart form is malformed") from None
    return fields


def _text(fields: dict[str, bytes], name: str) -> str:
    return fields.get(name, b"")[:500].decode("ascii", "replace")


def _store_once(provider: Provider, token: str, raw: bytes) -> ResponseReturnValue:
    """Store the mail; a signed token is taken first and given back if storing fails for a reason
    a retry could mend."""
    session = statement_db()
    keep = timedelta(seconds=2 * settings().mailgun_max_age)
    if not webhook_tokens.claim(session, provider, token, utcnow(), keep):
        raise _unauthorised("this webhook token was used before (a replayed request)")
    try:
        return store_webhook_mail(raw)
    except Exception:
        session.rollback()
        webhook_tokens.release(session, provider, token)
        raise


def _body() -> bytes:
    return read_body(settings().inbound_max_bytes)


@bp.post("/inbound/mailgun")
@bp.post("/inbound/mailgun/mime")
def mailgun_inbound() -> ResponseReturnValue:
    """Mailgun's forward() of a route to a URL ending in "mime": the signature (HMAC-SHA256 of
    timestamp and token under the webhook signing key), its freshness and a token never used before
    are required; the raw message is `body-mime`."""
    key = settings().mailgun_signing_key
    if not key:
        raise _not_configured(Provider.MAILGUN)
    fields = form_fields(_body(), request.headers.get("Content-Type", ""))
    timestamp, token = _text(fields, "timestamp"), _text(fields, "token")
    if not providers.mailgun_signature_valid(key, timestamp, token, _text(fields, "signature")):
        raise _unauthorised("the Mailgun signature does not match (check MAILGUN_SIGNING_KEY)")
    if not providers.timestamp_fresh(timestamp, time.time(), settings().mailgun_max_age):
        raise _unauthorised("the Mailgun timestamp is too old or in the future")
    if len(token) > providers.MAILGUN_TOKEN_MAX:
        raise _unauthorised("the Mailgun token is not one")
    try:
        raw = providers.form_mime(fields, Provider.MAILGUN)
    except PayloadError as exc:
        raise ApiError(400, str(exc), field=providers.MAILGUN_MIME_FIELD) from None
    return _store_once(Provider.MAILGUN, token, raw)


def _basic_auth(provider: Provider, user: str, password: str) -> None:
    if not user or not password:
        raise _not_configured(provider)
    if not providers.basic_auth_valid(request.headers.get("Authorization"), user, password):
        raise _unauthorised(f"wrong or missing basic auth for the {provider} webhook")


@bp.post("/inbound/sendgrid")
def sendgrid_inbound() -> ResponseReturnValue:
    """SendGrid Inbound Parse with "POST the raw, full MIME message": basic auth in the URL the
    webhook posts to; the raw message is the `email` field."""
    s = settings()
    _basic_auth(Provider.SENDGRID, s.sendgrid_inbound_user, s.sendgrid_inbound_password)
    fields = form_fields(_body(), request.headers.get("Content-Type", ""))
    try:
        raw = providers.form_mime(fields, Provider.SENDGRID)
    except PayloadError as exc:
        raise ApiError(400, str(exc), field=providers.SENDGRID_MIME_FIELD) from None
    return store_webhook_mail(raw)


@bp.post("/inbound/postmark")
def postmark_inbound() -> ResponseReturnValue:
    """Postmark's inbound webhook with raw email content included: basic auth in the webhook URL;
    the raw message is the JSON's `RawEmail`."""
    s = settings()
    _basic_auth(Provider.POSTMARK, s.postmark_inbound_user, s.postmark_inbound_password)
    if request.mimetype != "application/json":
        raise ApiError(415, "send Postmark's inbound JSON with Content-Type: application/json")
    try:
        payload = json.loads(_body())
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not JSON") from None
    try:
        raw = providers.postmark_mime(payload)
    except PayloadError as exc:
        raise ApiError(400, str(exc), field=providers.POSTMARK_MIME_FIELD) from None
    return store_webhook_mail(raw)
