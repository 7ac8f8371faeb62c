"""Mail providers' inbound webhooks (Mailgun, SendGrid Inbound Parse, Postmark): each provider's
own authentication checked, and the raw MIME message found in its payload. Pure functions: no
Flask, no database."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from enum import StrEnum


class Provider(StrEnum):
    """A mail provider that posts inbound mail to us."""

    MAILGUN = "mailgun"
    SENDGRID = "sendgrid"
    POSTMARK = "postmark"


class PayloadError(ValueError):
    """A provider payload without the raw message where the provider documents it."""


MAILGUN_MIME_FIELD = "body-mime"  # Mailgun's forward() to a URL ending in "mime"
SENDGRID_MIME_FIELD = "email"  # SendGrid Inbound Parse with "POST the raw, full MIME message"
POSTMARK_MIME_FIELD = "RawEmail"  # Postmark's inbound JSON with raw email content included
MAILGUN_TOKEN_MAX = 200  # Mailgun's tokens are 50 characters; anything far longer is not one


def mailgun_signature_valid(signing_key: str, timestamp: str, token: str, signature: str) -> bool:
    """True if `signature` is the hex HMAC-SHA256 of timestamp + token under the webhook signing
    key (compared in constant time)."""
    if not signing_key or not timestamp or not token or not signature:
        return False
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


def timestamp_fresh(timestamp: str, now: float, tolerance: int) -> bool:
    """True if a Unix timestamp in seconds is within `tolerance` seconds of `now`, either side."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    return abs(now - int(timestamp)) <= tolerance


def basic_auth_valid(authorization: str | None, user: str, password: str) -> bool:
    """True if an `Authorization: Basic ...` header names this user and password (each compared in
    constant time, both always compared)."""
    if not user or not password or not authorization:
        return False
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 2048:
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    given_user, colon, given_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(given_user, user.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return bool(colon) and user_ok and password_ok


def form_mime(fields: dict[str, bytes], provider: Provider) -> bytes:
    """The raw message in a form-posting provider's field (`body-mime`, `email`); PayloadError if
    it is missing or empty."""
    name = MAILGUN_MIME_FIELD if provider == Provider.MAILGUN else SENDGRID_MIME_FIELD
    raw = fields.get(name, b"")
    if not raw.strip():
        hint = {
            Provider.MAILGUN: "the route's forward() URL must end in /mime for the raw message",
            Provider.SENDGRID: 'turn on "POST the raw, full MIME message" in Inbound Parse',
        }.get(provider, "")
        raise PayloadError(f"no {name!r} field with the raw message ({hint})")
    return raw


def postmark_mime(payload: object) -> bytes:
    """The raw message in Postmark's inbound JSON (`RawEmail`); PayloadError when absent."""
    if not isinstance(payload, dict):
        raise PayloadError("send Postmark's inbound JSON object")
    raw = payload.get(POSTMARK_MIME_FIELD)
    if not isinstance(raw, str) or not raw.strip():
        raise PayloadError(
            "no 'RawEmail' in the JSON: turn on \"Include raw email content in JSON payload\" "
            "in the Postmark inbound stream's settings"
        )
    # JSON text is Unicode, raw mail is bytes; a lone surrogate (which JSON can escape) becomes "?"
    return raw.encode("utf-8", "replace")
