"""The signed "Did this answer your question?" links in automatic answers (no login needed).

A link's token names the ticket and the answer message (a hash of its Message-ID) and when it was
issued, signed with an HMAC of the app's secret key: `TICKET.MESSAGE.ISSUED.SIGNATURE`. Nothing in it
is secret; it cannot be made or changed without the key, and it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from triage.orm import utcnow

_PURPOSE = b"answer-feedback:"  # keeps these signatures apart from other uses of the key
_TOKEN = re.compile(r"^(\d{1,10})\.([0-9a-f]{16})\.([0-9a-z]{1,10})\.([A-Za-z0-9_-]{22})$")
YES, NO = "yes", "no"


class LinkError(ValueError):
    """A feedback link that cannot be used; `expired` tells an old link from a forged one."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class LinkTarget:
    """What a valid token names: the ticket and the hash of its answer's Message-ID."""

    ticket_id: int
    message_key: str
    issued_at: datetime


def message_key(message_id: str) -> str:
    """The short hash of a Message-ID that a token carries."""
    return hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:16]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _signature(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), _PURPOSE + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def make_token(
    secret: str, ticket_id: int, message_id: str, issued_at: datetime | None = None
) -> str:
    """A signed token for the answer `message_id` on ticket `ticket_id`."""
    issued = int((issued_at or utcnow()).timestamp())
    payload = f"{ticket_id}.{message_key(message_id)}.{_base36(issued)}"
    return f"{payload}.{_signature(secret, payload)}"


def read_token(secret: str, token: str, max_age: timedelta) -> LinkTarget:
    """The ticket and answer a token names; LinkError when it is malformed, forged or expired."""
    match = _TOKEN.match(token or "")
    if match is None:
        raise LinkError("this link is not one of ours, or it was cut short")
    payload = token.rpartition(".")[0]
    if not hmac.compare_digest(match.group(4), _signature(secret, payload)):
        raise LinkError("this link is not one of ours, or it was changed")
    issued_at = datetime.fromtimestamp(int(match.group(3), 36), UTC)
    if utcnow() - issued_at > max_age:
        raise LinkError("this link has expired", expired=True)
    return LinkTarget(int(match.group(1)), match.group(2), issued_at)


@dataclass(frozen=True)
class FeedbackLinks:
    """The two addresses an automatic answer offers."""

    yes: str
    no: str


def feedback_links(
    external_url: str, secret: str, ticket_id: int, message_id: str
) -> FeedbackLinks:
    """The "Yes, that solved it" and "No, I still need help" addresses for one answer."""
    token = make_token(secret, ticket_id, message_id)
    base = f"{external_url.rstrip('/')}/answer/{token}"
    return FeedbackLinks(f"{base}/{YES}", f"{base}/{NO}")
