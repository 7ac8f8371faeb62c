"""Outgoing mail: signed Message-IDs, reply texts from templates, and safe headers."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from triage.catalogue import Category
from triage.classifier.cleaning import clean_subject
from triage.mail.parse import single_line
from triage.models import format_reference, utcnow

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False,  # noqa: S701 — plain text mail
                   keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
_OUR_ID = re.compile(r"^<imi\.(\d+)\.([0-9a-f]{16})\.([0-9a-f]{20})@")

AUTO_REPLIED = "auto-replied"
AUTO_GENERATED = "auto-generated"


def _sign(secret: str, ticket_id: int, nonce: str) -> str:
    return hmac.new(secret.encode(), f"{ticket_id}.{nonce}".encode(), hashlib.sha256).hexdigest()[:20]


def new_message_id(secret: str, ticket_id: int, domain: str) -> str:
    """A Message-ID for our mail on a ticket, carrying an HMAC-signed ticket token."""
    nonce = secrets.token_hex(8)
    return f"<imi.{ticket_id}.{nonce}.{_sign(secret, ticket_id, nonce)}@{domain}>"


def ticket_from_message_id(secret: str, message_id: str) -> int | None:
    """The ticket id in one of our Message-IDs, if its signature is valid."""
    match = _OUR_ID.match(message_id or "")
    if not match:
        return None
    ticket_id, nonce, signature = int(match.group(1)), match.group(2), match.group(3)
    return ticket_id if hmac.compare_digest(signature, _sign(secret, ticket_id, nonce)) else None


def render(template: str, **context: Any) -> str:
    """Render a plain-text mail template."""
    return _ENV.get_template(template).render(**context)


def reply_subject(ticket_id: int, original: str) -> str:
    """'[IMI-000123] Re: original subject', with reply prefixes and old references folded away."""
    base = clean_subject(single_line(original, 300)) or "Your enquiry"
    return f"[{format_reference(ticket_id)}] Re: {base}"


def auto_reply_text(category: Category, reference: str, centre_name: str) -> str:
    """The body of an automatic FAQ answer."""
    return render("auto_reply.txt", category=category, reference=reference, name=centre_name)


def acknowledgement_text(reference: str, centre_name: str) -> str:
    """The body of an acknowledgement for mail routed to staff."""
    return render("acknowledgement.txt", reference=reference, name=centre_name)


def build(
    *,
    message_id: str,
    from_name: str,
    from_address: str,
    to: str,
    subject: str,
    body: str,
    in_reply_to: str | None,
    references: list[str],
    auto_submitted: str | None,
) -> EmailMessage:
    """An outgoing message; every value copied from inbound mail is made single-line first."""
    msg = EmailMessage()
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(utcnow())
    msg["From"] = formataddr((single_line(from_name, 200), single_line(from_address, 254)))
    msg["To"] = single_line(to, 254)
    msg["Subject"] = single_line(subject)
    if in_reply_to:
        msg["In-Reply-To"] = single_line(in_reply_to)
    refs = [single_line(r) for r in references if r][-20:]
    if refs:
        msg["References"] = " ".join(refs)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(body)
    return msg
