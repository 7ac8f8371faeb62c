"""A raw email built from a JSON contact form, so form tickets take the same path as mail."""

from __future__ import annotations

import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from triage.mail.parse import single_line
from triage.orm import utcnow


def message_from_form(sender: str, name: str, subject: str, body: str, domain: str) -> bytes:
    """Raw RFC 822 bytes for a ticket submitted as JSON; identical input gives identical bytes."""
    msg = EmailMessage()
    local, _, domain_part = single_line(sender, 254).rpartition("@")
    # Address quotes or encodes the name
    msg["From"] = Address(display_name=single_line(name, 200), username=local, domain=domain_part)
    msg["To"] = f"support@{domain}"
    msg["Subject"] = single_line(subject)
    digest = hashlib.sha256("\x1f".join([sender, name, subject, body]).encode()).hexdigest()
    msg["Message-ID"] = f"<form.{digest[:40]}@api.{domain}>"
    msg["Date"] = format_datetime(utcnow().replace(hour=0, minute=0, second=0, microsecond=0))
    msg.set_content(body)
    return msg.as_bytes()
